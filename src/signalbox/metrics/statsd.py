"""StatsD over UDP: parse packets (pure), aggregate between collections (pure), listen (I/O).

What each StatsD type becomes, chosen so PromQL works on it the way a Prometheus user
expects (the shape of Prometheus' ``statsd_exporter``):

* counter ``name:N|c[|@rate]`` → cumulative counter ``name_total`` (``_total`` is not
  doubled), each increment scaled by ``1/rate``. ``rate()`` works across flushes and a
  restart of the listener reads as a counter reset. Negative increments are refused:
  they would break monotonicity (send a gauge delta instead).
* gauge ``name:N|g`` → gauge ``name`` that keeps its value between flushes; a signed value
  (``+N``/``-N``) is a delta from the current value, as in etsy statsd, so a negative gauge
  is set by sending ``0`` then ``-N`` (what the ``statsd`` client library does).
* timer ``name:N|ms`` → summary ``name_seconds`` (milliseconds become seconds):
  ``_count`` and ``_sum`` cumulative (weighted by ``1/rate``), plus, for each flush that saw
  observations, ``{quantile="0.5"|"0.9"|"0.99"}`` (nearest rank) and ``_min``/``_max``.
  Quantiles come from at most ``max_timer_samples`` observations per interval (a uniform
  reservoir); count, sum, min and max are always exact.
* histogram ``h`` and distribution ``d`` → the same summary shape, named ``name`` and with
  the value as sent: DogStatsD histograms carry no unit.
* set ``name:member|s`` → gauge ``name``: distinct members seen since the previous flush.

DogStatsD extensions: tags ``|#k:v,k2`` become labels (tag names go through
:func:`sanitize_name`; a tag without a value becomes the label value ``"true"``; an invalid
or duplicate tag name, or an empty value, makes the line an error rather than a guess),
multi-value lines ``name:1:2:3|h`` (not for sets, whose member is the whole value), and the
container-id field ``|c:...`` (accepted and ignored: it describes the sender, not the metric).
Client-side timestamps ``|T...`` are refused.

Names go through :func:`sanitize_name` (``api.hits`` → ``api_hits``) and must then be
valid Prometheus names. A line that is not UTF-8 or holds a control character is refused,
as in spool files. Blank lines are ignored.

Nothing is dropped silently: every refused line becomes a :class:`LineError`, counted in
``signalbox_statsd_bad_lines_total`` and kept (the last ``max_errors``) for
:meth:`StatsdAggregator.take_errors`. Series live as long as the aggregator (a counter must
not vanish between flushes), which is why their number is capped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import selectors
import socket
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from signalbox.exceptions import SignalboxError
from signalbox.metrics.parse import LineError, control_char_reason, excerpt
from signalbox.metrics.samples import (
    LABEL_NAME,
    METRIC_NAME,
    Labels,
    MetricMeta,
    Sample,
    SeriesKey,
    labels_of,
    sanitize_name,
)

__all__ = [
    "QUANTILES",
    "LineError",
    "StatsdAggregator",
    "StatsdLine",
    "StatsdListenError",
    "StatsdServer",
    "parse_packet",
]

log = logging.getLogger("signalbox")

StatsdKind = Literal["counter", "gauge", "timer", "histogram", "set"]
_KINDS: dict[str, StatsdKind] = {
    "c": "counter",
    "g": "gauge",
    "ms": "timer",
    "h": "histogram",
    "d": "histogram",
    "s": "set",
}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True, slots=True)
class StatsdLine:
    """One parsed measurement. ``line`` is its 1-based line number within the packet.

    ``value`` is unused for sets (``member`` holds the member); ``delta`` marks a signed
    gauge value. ``name`` is already sanitized and valid.
    """

    name: str
    kind: StatsdKind
    value: float
    labels: Labels = ()
    sample_rate: float = 1.0
    delta: bool = False
    member: str = ""
    line: int = 0


class StatsdListenError(SignalboxError):
    """The UDP socket could not be opened (address in use, bad host, no permission)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port, self.reason = host, port, reason
        super().__init__(f"cannot listen for StatsD on {host}:{port}: {reason}")


class _Bad(Exception):
    """Internal: why the line being parsed is refused."""


# ---------------------------------------------------------------------------------------
# Parsing (pure)


def parse_packet(data: bytes, source: str) -> tuple[list[StatsdLine], list[LineError]]:
    """Parse every newline-separated line of one datagram.

    Blank lines are ignored; every other line yields one or more :class:`StatsdLine`
    (several for multi-value lines) or exactly one :class:`LineError`. Never raises.
    """
    parsed: list[StatsdLine] = []
    errors: list[LineError] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = excerpt(raw.decode("utf-8", "replace"))
            errors.append(LineError(source, lineno, "line is not valid UTF-8", shown))
            continue
        bad_char = control_char_reason(text)
        if bad_char is not None:
            errors.append(LineError(source, lineno, bad_char, excerpt(text)))
            continue
        try:
            parsed.extend(_parse_line(text, lineno))
        except _Bad as bad:
            errors.append(LineError(source, lineno, str(bad), excerpt(text)))
    return parsed, errors


def _parse_line(text: str, lineno: int) -> list[StatsdLine]:
    raw_name, colon, rest = text.partition(":")
    if not colon:
        raise _Bad("expected 'name:value|type', found no ':'")
    if not raw_name:
        raise _Bad("empty metric name")
    name = sanitize_name(raw_name)
    if not METRIC_NAME.match(name):
        raise _Bad(f"invalid metric name {raw_name!r}")
    fields = rest.split("|")
    if len(fields) < 2:
        raise _Bad("expected 'name:value|type', found no '|type'")
    kind = _KINDS.get(fields[1])
    if kind is None:
        raise _Bad(f"unknown metric type {fields[1]!r} (expected c, g, ms, h, d or s)")
    rate: float | None = None
    labels: Labels | None = None
    for extra in fields[2:]:
        if extra.startswith("@"):
            if rate is not None:
                raise _Bad("sample rate given twice")
            rate = _number(extra[1:], "sample rate")
            if not 0.0 < rate <= 1.0:
                raise _Bad(f"sample rate {extra[1:]!r} is not in (0, 1]")
        elif extra.startswith("#"):
            if labels is not None:
                raise _Bad("tags given twice")
            labels = _parse_tags(extra[1:], kind)
        elif extra.startswith("c:"):
            continue  # DogStatsD container id: about the sender, not the metric
        elif extra.startswith("T"):
            raise _Bad("client-side timestamps ('|T') are not supported")
        else:
            raise _Bad(f"unknown field {extra!r} (expected '@rate' or '#tags')")
    tags, sample_rate = labels or (), rate or 1.0
    value_text = fields[0]
    if kind == "set":
        if not value_text:
            raise _Bad("empty set member")
        return [StatsdLine(name, kind, 0.0, tags, sample_rate, member=value_text, line=lineno)]
    out = []
    for part in value_text.split(":"):
        value = _number(part, "value")
        if kind == "counter" and value < 0:
            raise _Bad(f"negative counter increment {part!r} (counters only go up; use a gauge)")
        if kind == "timer" and value < 0:
            raise _Bad(f"negative timer duration {part!r}")
        delta = kind == "gauge" and part.startswith(("+", "-"))
        out.append(StatsdLine(name, kind, value, tags, sample_rate, delta=delta, line=lineno))
    return out


def _number(text: str, what: str) -> float:
    if not _NUMBER.match(text):
        raise _Bad(f"{what} {text!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise _Bad(f"{what} {text!r} is out of range")
    return value


def _parse_tags(text: str, kind: StatsdKind) -> Labels:
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item:
            continue
        raw, colon, value = item.partition(":")
        name = sanitize_name(raw)
        if not LABEL_NAME.match(name) or name.startswith("__"):
            raise _Bad(f"invalid tag name {raw!r}")
        if name in pairs:
            raise _Bad(f"tag {name!r} given twice")
        if kind in ("timer", "histogram") and name == "quantile":
            raise _Bad("tag 'quantile' is reserved for timer quantiles")
        if colon and not value:
            raise _Bad(f"tag {raw!r} has an empty value")
        pairs[name] = value if colon else "true"
    return labels_of(pairs)


# ---------------------------------------------------------------------------------------
# Aggregation (pure: no I/O, time passed in)


@dataclass(slots=True)
class _Timer:
    count: float = 0.0  # cumulative, weighted by 1/rate
    total: float = 0.0  # cumulative
    seen: int = 0  # observations this interval
    low: float = math.inf
    high: float = -math.inf
    reservoir: list[float] = field(default_factory=list)


def _suffixed(name: str, suffix: str) -> str:
    return name if name.endswith(suffix) else name + suffix


class StatsdAggregator:
    """Accumulates parsed lines between flushes; safe to feed from one thread and flush from another.

    ``max_series`` bounds the distinct StatsD series (one per name+labels+type) so that a
    misbehaving client cannot exhaust memory: lines for new series beyond it are refused as
    errors. ``max_set_members`` bounds each set within one interval the same way.
    """

    def __init__(
        self,
        *,
        max_series: int = 100_000,
        max_set_members: int = 100_000,
        max_timer_samples: int = 10_000,
        max_errors: int = 100,
        seed: int = 0,
    ) -> None:
        self.max_series = max_series
        self.max_set_members = max_set_members
        self.max_timer_samples = max_timer_samples
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._kinds: dict[SeriesKey, StatsdKind] = {}
        self._counters: dict[SeriesKey, float] = {}
        self._gauges: dict[SeriesKey, float] = {}
        self._timers: dict[SeriesKey, _Timer] = {}
        self._sets: dict[SeriesKey, set[str]] = {}
        self._errors: deque[LineError] = deque(maxlen=max_errors)
        self._random = random.Random(seed)
        self.packets_total = 0
        self.lines_total = 0
        self.bad_lines_total = 0

    def add_packet(self, data: bytes, source: str) -> None:
        """Parse one datagram and account for every line in it. Never raises on bad input."""
        lines, errors = parse_packet(data, source)
        good_lines = len({line.line for line in lines})
        with self._cond:
            self.packets_total += 1
            self.lines_total += good_lines + len(errors)
            self._add_locked(lines, source)
            self._record_locked(errors)
            self._cond.notify_all()

    def add(self, lines: Iterable[StatsdLine], source: str = "statsd") -> None:
        """Add already-parsed lines (refusals are recorded as errors against ``source``)."""
        with self._cond:
            self._add_locked(list(lines), source)
            self._cond.notify_all()

    def wait_for_lines(self, total: int, timeout: float) -> bool:
        """Block until ``lines_total >= total`` or ``timeout`` seconds pass; say which."""
        with self._cond:
            return self._cond.wait_for(lambda: self.lines_total >= total, timeout)

    @property
    def series_count(self) -> int:
        with self._lock:
            return len(self._kinds)

    def take_errors(self) -> list[LineError]:
        """The most recent refused lines (at most ``max_errors``), oldest first; clears them."""
        with self._lock:
            errors = list(self._errors)
            self._errors.clear()
        return errors

    def _record_locked(self, errors: list[LineError]) -> None:
        self.bad_lines_total += len(errors)
        self._errors.extend(errors)

    def _add_locked(self, lines: list[StatsdLine], source: str) -> None:
        refused: dict[int, LineError] = {}
        for ln in lines:
            if ln.line in refused:
                continue  # one error per line, even for multi-value lines
            reason = self._apply_locked(ln)
            if reason is not None:
                refused[ln.line] = LineError(source, ln.line, reason, _describe(ln))
        self._record_locked(list(refused.values()))

    def _apply_locked(self, ln: StatsdLine) -> str | None:
        """Apply one line; return why it was refused, or None."""
        if ln.kind == "counter":
            key: SeriesKey = (_suffixed(ln.name, "_total"), ln.labels)
        elif ln.kind == "timer":
            key = (_suffixed(ln.name, "_seconds"), ln.labels)
        else:
            key = (ln.name, ln.labels)
        known = self._kinds.get(key)
        if known is None:
            if len(self._kinds) >= self.max_series:
                return f"too many series (limit {self.max_series}); new series {key[0]!r} refused"
            self._kinds[key] = ln.kind
        elif known != ln.kind:
            return f"{key[0]!r} is already a {known}, not a {ln.kind}"
        if ln.kind == "counter":
            self._counters[key] = self._counters.get(key, 0.0) + ln.value / ln.sample_rate
        elif ln.kind == "gauge":
            base = self._gauges.get(key, 0.0) if ln.delta else 0.0
            self._gauges[key] = base + ln.value
        elif ln.kind == "set":
            members = self._sets.setdefault(key, set())
            if ln.member not in members and len(members) >= self.max_set_members:
                return f"set {key[0]!r} has {self.max_set_members} members this interval (limit)"
            members.add(ln.member)
        else:
            self._observe_locked(key, ln)
        return None

    def _observe_locked(self, key: SeriesKey, ln: StatsdLine) -> None:
        t = self._timers.get(key)
        if t is None:
            t = self._timers[key] = _Timer()
        value = ln.value / 1000.0 if ln.kind == "timer" else ln.value
        weight = 1.0 / ln.sample_rate
        t.count += weight
        t.total += value * weight
        t.low = min(t.low, value)
        t.high = max(t.high, value)
        t.seen += 1
        if len(t.reservoir) < self.max_timer_samples:
            t.reservoir.append(value)
        else:  # uniform reservoir sampling (algorithm R) keeps quantiles unbiased
            slot = self._random.randrange(t.seen)
            if slot < self.max_timer_samples:
                t.reservoir[slot] = value

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        """Samples (stamped ``now_ms``) for everything held, and metadata for their names.

        Ends the interval: set counts and timer quantiles/min/max start afresh.
        """
        with self._lock:
            counters = list(self._counters.items())
            gauges = list(self._gauges.items())
            sets = [(key, len(members)) for key, members in self._sets.items()]
            for members in self._sets.values():
                members.clear()
            timers = []
            for key, t in self._timers.items():
                timers.append((key, self._kinds[key], t.count, t.total, t.low, t.high, t.reservoir))
                t.seen, t.low, t.high, t.reservoir = 0, math.inf, -math.inf, []
            own = (self.packets_total, self.lines_total, self.bad_lines_total)
        samples: list[Sample] = []
        metas: dict[str, MetricMeta] = {}

        def emit(name: str, labels: Labels, value: float, meta: MetricMeta) -> None:
            samples.append(Sample(name, labels, value, now_ms))
            metas.setdefault(meta.name, meta)

        for (name, labels), value in counters:
            emit(name, labels, value, MetricMeta(name, "counter", "StatsD counter"))
        for (name, labels), value in gauges:
            emit(name, labels, value, MetricMeta(name, "gauge", "StatsD gauge"))
        for (name, labels), distinct in sets:
            meta = MetricMeta(name, "gauge", "StatsD set: distinct members per flush interval")
            emit(name, labels, float(distinct), meta)
        for (name, labels), kind, count, total, low, high, reservoir in timers:
            unit = "seconds" if kind == "timer" else ""
            summary = MetricMeta(name, "summary", f"StatsD {kind}", unit)
            emit(name + "_count", labels, count, summary)
            emit(name + "_sum", labels, total, summary)
            if not reservoir:
                continue
            reservoir.sort()
            for q in QUANTILES:
                rank = max(0, math.ceil(q * len(reservoir)) - 1)
                emit(name, labels_of((*labels, ("quantile", str(q)))), reservoir[rank], summary)
            emit(name + "_min", labels, low, MetricMeta(name + "_min", "gauge", "", unit))
            emit(name + "_max", labels, high, MetricMeta(name + "_max", "gauge", "", unit))
        for own_name, own_value, why in zip(
            ("packets", "lines", "bad_lines"),
            own,
            ("UDP packets received", "non-blank lines received", "lines refused"),
            strict=True,
        ):
            full = f"signalbox_statsd_{own_name}_total"
            emit(full, (), float(own_value), MetricMeta(full, "counter", f"StatsD {why}"))
        return samples, list(metas.values())


def _describe(ln: StatsdLine) -> str:
    value = ln.member if ln.kind == "set" else repr(ln.value)
    return excerpt(f"{ln.name}:{value} ({ln.kind})")


# ---------------------------------------------------------------------------------------
# Listening (I/O)

MAX_PACKET = 65535


class StatsdServer:
    """A UDP listener on a daemon thread feeding a :class:`StatsdAggregator`.

    Synchronous on purpose: the CLI starts it with :meth:`start` and ends it with
    :meth:`stop`; no event loop is needed. ``port=0`` picks a free port (see
    :attr:`address`). Any input, however malformed, is counted, never fatal.
    """

    def __init__(
        self, aggregator: StatsdAggregator, host: str = "127.0.0.1", port: int = 8125
    ) -> None:
        self.aggregator = aggregator
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound; only meaningful after :meth:`start`."""
        if self._sock is None:
            return (self.host, self.port)
        bound = self._sock.getsockname()
        return (str(bound[0]), int(bound[1]))

    def start(self) -> None:
        """Bind now (so a bad address fails here, as :class:`StatsdListenError`) and start receiving."""
        if self._thread is not None:
            return
        try:
            family, _, _, _, addr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise StatsdListenError(self.host, self.port, str(exc)) from exc
        try:
            with contextlib.suppress(OSError):  # a bigger buffer absorbs bursts between reads
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind(addr)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise StatsdListenError(self.host, self.port, exc.strerror or str(exc)) from exc
        self._sock = sock
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="signalbox-statsd", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving and close the socket; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        thread.join(timeout)
        for s in (self._sock, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._sock = self._wake_r = self._wake_w = None

    def __enter__(self) -> StatsdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        sock, wake = self._sock, self._wake_r
        assert sock is not None and wake is not None
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                try:
                    sel.select()
                except OSError:  # pragma: no cover - interrupted; check the flag again
                    continue
                self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(10_000):  # bounded, so a flood cannot starve stop()
            try:
                data, peer = sock.recvfrom(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP errors surfacing on the socket; keep listening
                return
            try:
                self.aggregator.add_packet(data, f"statsd {peer[0]}:{peer[1]}")
            except Exception:  # never let one packet kill the listener
                log.exception("statsd: failed to process a %d-byte packet from %s", len(data), peer)
