"""StatsD aggregation between collections: pure (no I/O, time passed in), thread-safe.

What each StatsD type becomes, chosen so PromQL works on it the way a Prometheus user
expects (the shape of Prometheus' ``statsd_exporter``):

* counter ``name:N|c[|@rate]`` → cumulative counter ``name_total`` (``_total`` is not
  doubled), each increment scaled by ``1/rate``. ``rate()`` works across flushes and a
  restart of the listener reads as a counter reset. Negative increments are refused by the
  parser: they would break monotonicity (send a gauge delta instead).
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

Nothing is dropped silently: every refused line becomes a :class:`LineError`, counted in
``signalbox_statsd_bad_lines_total`` and kept (the last ``max_errors``) for
:meth:`StatsdAggregator.take_errors`. Series live as long as the aggregator (a counter must
not vanish between flushes), which is why their number is capped.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from signalbox.metrics.parse.lex import LineError, excerpt
from signalbox.metrics.samples import Labels, MetricMeta, Sample, SeriesKey, labels_of
from signalbox.metrics.statsd.parse import StatsdKind, StatsdLine, parse_packet

__all__ = ["QUANTILES", "StatsdAggregator"]

QUANTILES = (0.5, 0.9, 0.99)


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
