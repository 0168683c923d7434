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
  Quantiles come from a uniform reservoir of at most ``max_timer_samples`` observations per
  timer and ``max_timer_samples_total`` over all timers per interval (once the pool is
  used up, a timer keeps sampling uniformly into what it holds; one that holds nothing
  reports no quantiles that interval); count, sum, min and max are always exact.
* histogram ``h`` and distribution ``d`` → the same summary shape, named ``name`` and with
  the value as sent: DogStatsD histograms carry no unit.
* set ``name:member|s`` → gauge ``name``: distinct members seen since the previous flush,
  exact up to ``max_set_members`` per set and ``max_set_members_total`` over all sets per
  interval; members past either bound are refused (counted and reported, so the gauge is
  then a lower bound and says so in the log). Members are kept as hashes: their length
  costs nothing.

Memory is bounded, whatever clients send: at most ``max_series`` live series (a name is
at most 200 characters and its tags 1,000, see :mod:`~signalbox.metrics.statsd.parse`),
each with a fixed-size state plus the per-interval timer and set pools above. New series
are admitted from a per-interval budget (:mod:`~signalbox.metrics.statsd.admission`), in
all and per sending address, so a flood of new names is bounded per interval and the next
interval accepts new names again; a series that received nothing for ``stale_after_ms``
is forgotten (a counter then starts again from 0, which ``rate()`` reads as a reset).

Nothing is dropped silently: every refused line is counted in
``signalbox_statsd_bad_lines_total`` and in ``signalbox_statsd_refused_total{source,reason}``.
Invalid lines (syntax, a type clash, a value that would overflow to infinity) are kept one
by one (the last ``max_errors``) for :meth:`StatsdAggregator.take_errors`; refusals for
cardinality (new-series budget, series and set limits) are summarised there once per
interval per source, with the count, so a flood does not flood the log too.
"""

from __future__ import annotations

import math
import random
import threading
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TypeAlias

from signalbox.metrics.parse.lex import LineError, excerpt
from signalbox.metrics.samples import Labels, MetricMeta, Sample, SeriesKey, labels_of
from signalbox.metrics.statsd.admission import (
    NewSeriesBudget,
    Reason,
    Refusals,
    SourceLabels,
)
from signalbox.metrics.statsd.parse import StatsdKind, StatsdLine, parse_packet

if TYPE_CHECKING:
    from signalbox.metrics.settings import StatsdSettings

__all__ = ["QUANTILES", "StatsdAggregator"]

# What a series reports at a flush: key, kind, value, and for summaries
# (count, sum, observations this interval, min, max, reservoir: sorted outside the lock).
_Summary: TypeAlias = "tuple[float, float, int, float, float, array[float]]"
_Report: TypeAlias = "tuple[SeriesKey, StatsdKind, float, _Summary | None]"

QUANTILES = (0.5, 0.9, 0.99)
_ACTIVE = -1  # _Series.seen_ms of a series that received something this interval


@dataclass(slots=True)
class _Timer:
    count: float = 0.0  # cumulative, weighted by 1/rate
    total: float = 0.0  # cumulative
    seen: int = 0  # observations this interval
    low: float = math.inf
    high: float = -math.inf
    reservoir: array[float] = field(default_factory=lambda: array("d"))


@dataclass(slots=True)
class _Series:
    """One live series: its kind, its value (counter total, gauge) or its interval state."""

    kind: StatsdKind
    value: float = 0.0
    seen_ms: int = _ACTIVE  # the flush that closed its last interval with input
    timer: _Timer | None = None
    members: set[int] | None = None  # hashes of this interval's set members


class _Refused(Exception):
    """Internal: why the line being applied is refused, and under which reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def _suffixed(name: str, suffix: str) -> str:
    return name if name.endswith(suffix) else name + suffix


class StatsdAggregator:
    """Accumulates parsed lines between flushes; safe to feed from one thread and flush from another.

    Every bound is a constructor argument (see the module docstring for what each one
    does); :meth:`from_settings` takes them from ``[statsd]`` in ``signalbox.toml``.
    """

    def __init__(
        self,
        *,
        max_series: int = 100_000,
        max_new_series_per_interval: int = 10_000,
        max_new_series_per_source: int = 5_000,
        stale_after_ms: int = 15 * 60 * 1000,
        max_set_members: int = 100_000,
        max_set_members_total: int = 1_000_000,
        max_timer_samples: int = 10_000,
        max_timer_samples_total: int = 1_000_000,
        max_sources: int = 32,
        max_errors: int = 100,
        seed: int = 0,
    ) -> None:
        self.max_series = max_series
        self.stale_after_ms = stale_after_ms
        self.max_set_members = max_set_members
        self.max_set_members_total = max_set_members_total
        self.max_timer_samples = max_timer_samples
        self.max_timer_samples_total = max_timer_samples_total
        self.budget = NewSeriesBudget(
            min(max_new_series_per_interval, max_series),
            min(max_new_series_per_source, max_new_series_per_interval, max_series),
        )
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._series: dict[SeriesKey, _Series] = {}
        self._members_held = 0  # set members over all sets this interval
        self._samples_held = 0  # timer reservoir samples over all timers this interval
        self._errors: deque[LineError] = deque(maxlen=max_errors)
        self._summaries: list[LineError] = []
        self._refusals = Refusals(SourceLabels(max_sources))
        self._random = random.Random(seed)
        self.packets_total = 0
        self.lines_total = 0
        self.bad_lines_total = 0
        self.expired_total = 0

    @classmethod
    def from_settings(cls, settings: StatsdSettings) -> StatsdAggregator:
        """An aggregator with the bounds of ``[statsd]``."""
        return cls(
            max_series=settings.max_series,
            max_new_series_per_interval=settings.max_new_series_per_interval,
            max_new_series_per_source=settings.max_new_series_per_source,
            stale_after_ms=int(settings.stale_after_s * 1000),
        )

    def add_packet(self, data: bytes, source: str, sender: str | None = None) -> None:
        """Parse one datagram and account for every line in it. Never raises on bad input.

        ``source`` names the packet in error reports (``statsd 10.0.0.5:40123``); ``sender``
        is the address whose budget and refusal count it goes to (default ``source``).
        """
        lines, errors = parse_packet(data, source)
        good_lines = len({line.line for line in lines})
        who = source if sender is None else sender
        with self._cond:
            self.packets_total += 1
            self.lines_total += good_lines + len(errors)
            self._add_locked(lines, source, who)
            for e in errors:
                self._refusals.count(who, "invalid", partial(str, e.text))
            self._record_locked(errors)
            self._cond.notify_all()

    def add(
        self, lines: Iterable[StatsdLine], source: str = "statsd", sender: str | None = None
    ) -> None:
        """Add already-parsed lines (refusals are recorded as errors against ``source``)."""
        with self._cond:
            self._add_locked(list(lines), source, source if sender is None else sender)
            self._cond.notify_all()

    def wait_for_lines(self, total: int, timeout: float) -> bool:
        """Block until ``lines_total >= total`` or ``timeout`` seconds pass; say which."""
        with self._cond:
            return self._cond.wait_for(lambda: self.lines_total >= total, timeout)

    @property
    def series_count(self) -> int:
        """Live series held (the quantity ``max_series`` bounds)."""
        with self._lock:
            return len(self._series)

    def take_errors(self) -> list[LineError]:
        """The most recent invalid lines (at most ``max_errors``), oldest first, then one
        summary per source and reason of the cardinality refusals of each flushed interval;
        clears them."""
        with self._lock:
            errors = [*self._errors, *self._summaries]
            self._errors.clear()
            self._summaries.clear()
        return errors

    def _record_locked(self, errors: list[LineError]) -> None:
        self.bad_lines_total += len(errors)
        self._errors.extend(errors)

    def _add_locked(self, lines: list[StatsdLine], source: str, sender: str) -> None:
        refused: set[int] = set()
        for ln in lines:
            if ln.line in refused:
                continue  # one refusal per line, even for multi-value lines
            try:
                self._apply_locked(ln, sender)
            except _Refused as why:
                refused.add(ln.line)
                self.bad_lines_total += 1
                if why.reason == "invalid":
                    text = _describe(ln)
                    self._errors.append(LineError(source, ln.line, str(why), text))
                    self._refusals.count(sender, why.reason, partial(str, text))
                else:
                    self._refusals.count(sender, why.reason, partial(_describe, ln))

    def _apply_locked(self, ln: StatsdLine, sender: str) -> None:
        """Apply one line, or raise :class:`_Refused` leaving every series as it was."""
        if ln.kind == "counter":
            key: SeriesKey = (_suffixed(ln.name, "_total"), ln.labels)
        elif ln.kind == "timer":
            key = (_suffixed(ln.name, "_seconds"), ln.labels)
        else:
            key = (ln.name, ln.labels)
        s = self._series.get(key)
        if s is not None and s.kind != ln.kind:
            raise _Refused("invalid", f"{key[0]!r} is already a {s.kind}, not a {ln.kind}")
        # Check the line against the state it would change before creating anything.
        if ln.kind == "counter":
            old = s.value if s is not None else 0.0
            new = old + ln.value / ln.sample_rate
            if not math.isfinite(new):
                raise _Refused("invalid", _overflow("counter", key, old, new))
        elif ln.kind == "gauge":
            old = s.value if s is not None else 0.0
            new = old + ln.value if ln.delta else ln.value
            if not math.isfinite(new):
                raise _Refused("invalid", _overflow("gauge", key, old, new))
        elif ln.kind == "set":
            member = hash(ln.member)
            members = s.members if s is not None and s.members is not None else set()
            if member not in members:
                if len(members) >= self.max_set_members:
                    raise _Refused(
                        "max_set_members",
                        f"set {key[0]!r} has {self.max_set_members} members this interval (limit)",
                    )
                if self._members_held >= self.max_set_members_total:
                    raise _Refused(
                        "max_set_members",
                        f"sets hold {self.max_set_members_total} members in all this interval (limit)",
                    )
        else:
            _check_observation(key, s.timer if s is not None else None, ln)
        if s is None:
            s = self._admit_locked(key, ln.kind, sender)
        s.seen_ms = _ACTIVE
        if ln.kind == "counter" or ln.kind == "gauge":
            s.value = new
        elif ln.kind == "set":
            if s.members is None:
                s.members = set()
            if member not in s.members:
                s.members.add(member)
                self._members_held += 1
        else:
            self._observe_locked(s, ln)

    def _admit_locked(self, key: SeriesKey, kind: StatsdKind, sender: str) -> _Series:
        if len(self._series) >= self.max_series:
            raise _Refused("max_series", "")  # explained once per interval: _explanations
        if not self.budget.admit(sender):
            raise _Refused("new_series_budget", "")
        s = self._series[key] = _Series(kind)
        return s

    def _explanations(self) -> dict[Reason, str]:
        """What the per-interval summary says for each cardinality refusal."""
        return {
            "new_series_budget": f"new series budget spent ({self.budget.per_source} per "
            f"source, {self.budget.per_interval} in all per interval); existing series still "
            "update and new names are accepted again next interval",
            "max_series": f"the aggregator holds {self.max_series} series (max_series); a "
            f"series idle for {self.stale_after_ms / 1000:g}s is forgotten and makes room",
            "max_set_members": f"set members past {self.max_set_members} per set or "
            f"{self.max_set_members_total} in all per interval; those set sizes are lower bounds",
        }

    def _observe_locked(self, s: _Series, ln: StatsdLine) -> None:
        t = s.timer
        if t is None:
            t = s.timer = _Timer()
        value = ln.value / 1000.0 if ln.kind == "timer" else ln.value
        weight = 1.0 / ln.sample_rate
        t.count += weight
        t.total += value * weight
        t.low = min(t.low, value)
        t.high = max(t.high, value)
        t.seen += 1
        held = len(t.reservoir)
        if held < self.max_timer_samples and self._samples_held < self.max_timer_samples_total:
            t.reservoir.append(value)
            self._samples_held += 1
        elif held:  # uniform reservoir sampling (algorithm R) keeps quantiles unbiased
            slot = self._random.randrange(t.seen)
            if slot < held:
                t.reservoir[slot] = value

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        """Samples (stamped ``now_ms``) for everything held, and metadata for their names.

        Ends the interval: set counts and timer quantiles/min/max start afresh, the
        new-series budget is whole again, series idle for ``stale_after_ms`` are forgotten
        and this interval's cardinality refusals become summaries for :meth:`take_errors`.
        """
        with self._lock:
            live = self._end_interval_locked(now_ms)
            refused = sorted(self._refusals.totals.items())
            own = (self.packets_total, self.lines_total, self.bad_lines_total, self.expired_total)
        samples: list[Sample] = []
        metas: dict[str, MetricMeta] = {}

        def emit(name: str, labels: Labels, value: float, meta: MetricMeta) -> None:
            samples.append(Sample(name, labels, value, now_ms))
            metas.setdefault(meta.name, meta)

        for (name, labels), kind, value, timer in live:
            if kind == "counter":
                emit(name, labels, value, MetricMeta(name, "counter", "StatsD counter"))
            elif kind == "gauge":
                emit(name, labels, value, MetricMeta(name, "gauge", "StatsD gauge"))
            elif kind == "set":
                meta = MetricMeta(name, "gauge", "StatsD set: distinct members per flush interval")
                emit(name, labels, value, meta)
            elif timer is not None:
                count, total, seen, low, high, pool = timer
                reservoir = sorted(pool)
                unit = "seconds" if kind == "timer" else ""
                summary = MetricMeta(name, "summary", f"StatsD {kind}", unit)
                emit(name + "_count", labels, count, summary)
                emit(name + "_sum", labels, total, summary)
                for q in QUANTILES if reservoir else ():
                    rank = max(0, math.ceil(q * len(reservoir)) - 1)
                    quantile = labels_of((*labels, ("quantile", str(q))))
                    emit(name, quantile, reservoir[rank], summary)
                if seen:
                    emit(name + "_min", labels, low, MetricMeta(name + "_min", "gauge", "", unit))
                    emit(name + "_max", labels, high, MetricMeta(name + "_max", "gauge", "", unit))
        for own_name, own_value, why in zip(
            ("packets", "lines", "bad_lines", "series_expired"),
            own,
            (
                "UDP packets received",
                "non-blank lines received",
                "lines refused",
                f"series forgotten after receiving nothing for {self.stale_after_ms / 1000:g}s",
            ),
            strict=True,
        ):
            full = f"signalbox_statsd_{own_name}_total"
            emit(full, (), float(own_value), MetricMeta(full, "counter", f"StatsD {why}"))
        held = MetricMeta(
            "signalbox_statsd_series", "gauge", f"StatsD series held (max_series {self.max_series})"
        )
        emit("signalbox_statsd_series", (), float(len(live)), held)
        why_refused = MetricMeta(
            "signalbox_statsd_refused_total",
            "counter",
            "StatsD lines refused, by sending address (the first few; the rest are 'other') "
            "and reason: invalid, new_series_budget, max_series, max_set_members",
        )
        for (source, reason), n in refused:
            labels = (("reason", reason), ("source", source))
            emit("signalbox_statsd_refused_total", labels, float(n), why_refused)
        return samples, list(metas.values())

    def _end_interval_locked(self, now_ms: int) -> list[_Report]:
        """What each live series reports for the interval ending at ``now_ms``; resets the
        interval state and forgets the series idle for ``stale_after_ms``."""
        live: list[_Report] = []
        idle: list[SeriesKey] = []
        for key, s in self._series.items():
            if s.seen_ms == _ACTIVE:
                s.seen_ms = now_ms
            elif now_ms - s.seen_ms >= self.stale_after_ms:
                idle.append(key)
                continue
            timer = None
            value = s.value
            if s.members is not None:
                value = float(len(s.members))
                s.members = None
            t = s.timer
            if t is not None:
                timer = (t.count, t.total, t.seen, t.low, t.high, t.reservoir)
                t.seen, t.low, t.high, t.reservoir = 0, math.inf, -math.inf, array("d")
            live.append((key, s.kind, value, timer))
        for key in idle:
            del self._series[key]
        self.expired_total += len(idle)
        self._members_held = self._samples_held = 0
        self.budget.reset()
        self._summaries.extend(self._refusals.end_interval(self._explanations()))
        return live


def _overflow(kind: str, key: SeriesKey, old: float, new: float) -> str:
    return f"{kind} {key[0]!r} would become {new!r}; it keeps {old!r}"


def _check_observation(key: SeriesKey, t: _Timer | None, ln: StatsdLine) -> None:
    """Refuse an observation whose weighted value, count or sum would not be finite."""
    value = ln.value / 1000.0 if ln.kind == "timer" else ln.value
    weight = 1.0 / ln.sample_rate
    count = (t.count if t is not None else 0.0) + weight
    total = (t.total if t is not None else 0.0) + value * weight
    if not (math.isfinite(count) and math.isfinite(total)):
        raise _Refused(
            "invalid", f"{ln.kind} {key[0]!r}: count {count!r} or sum {total!r} would overflow"
        )


def _describe(ln: StatsdLine) -> str:
    value = ln.member if ln.kind == "set" else repr(ln.value)
    return excerpt(f"{ln.name}:{value} ({ln.kind})")
