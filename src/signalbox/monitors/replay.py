"""Replay one monitor over a time range with the real state machine.

``monitors test`` and ``monitors backtest`` both need to know what a monitor *would have
done*: its states at given times, its transitions, when it was not OK and how many
notifications that would have cost. They get it from :func:`replay`, which asks the engine
for the monitor's numbers over the whole window in ONE range query and then feeds every
step to :func:`~signalbox.monitors.evaluate.evaluate_vector` (``for``, ``recover``,
``no_data`` and flapping included), exactly as the runner does one evaluation at a time.

Most steps of real history change nothing (a settled OK series staying OK), so those skip
the state machine: a step is taken as unchanged only when every series is *settled* (no
pending level, a full flap history of its current state) and its new value maps to that
same state, which the state machine provably leaves as it is apart from the last value
and time seen. Those two are filled in before the next real evaluation, so the states the
evaluator sees are the ones it would have built itself (a property test pins this).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from signalbox.exceptions import UsageError
from signalbox.metrics.samples import Labels
from signalbox.monitors import flapping
from signalbox.monitors.evaluate import SeriesState, Transition, evaluate_vector
from signalbox.monitors.model import (
    Monitor,
    QueueCheck,
    Rule,
    StaleCheck,
    State,
    ThresholdCheck,
    worst,
)
from signalbox.query import Engine, parse_expr
from signalbox.query.ast import VectorSelector


class ReplayError(UsageError):
    """A monitor that cannot be replayed (a Nagios plugin has no stored history)."""


Column = list[float | None]
"""One series' number at every step (None: the query returned nothing for it then)."""


def series_key(metric: Mapping[str, str]) -> Labels:
    """A result series' key: its labels without ``__name__``, as the runner keys alerts.

    Prometheus drops the metric name from alert labels too. Should two series of one
    result share a key (a selector matching two metric names with equal labels), the
    runner keeps the first in the engine's order and logs the rest; replays do the same
    and list the dropped keys in :attr:`ReplayResult.dropped`.
    """
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


# -- the numbers --------------------------------------------------------------------------


def _columns_from_engine(
    engine: Engine, query: str, first_ms: int, end_ms: int, step_ms: int, n: int
) -> tuple[dict[Labels, Column], list[Labels]]:
    result = engine.range(parse_expr(query), first_ms, end_ms, step_ms)
    columns: dict[Labels, Column] = {}
    dropped: list[Labels] = []
    for series in result.matrix:
        key = series_key(series.metric)
        if key in columns:
            dropped.append(key)
            continue
        col: Column = [None] * n
        for ts, value in series.points:
            col[(ts - first_ms) // step_ms] = value
        columns[key] = col
    return columns, dropped


def _age_columns(
    engine: Engine, check: StaleCheck, first_ms: int, end_ms: int, step_ms: int, n: int
) -> dict[Labels, Column]:
    """Age in seconds at every step, as the runner computes it from the newest sample.

    For a metric, now minus the newest sample's time; for a spool file, the collector's
    reported age plus the time since it reported. Samples are read from ``2 * after``
    before the first step (at least the engine's lookback); a series silent since before
    that is aged from its newest sample overall when that lies before the window end.
    """
    sel = parse_expr(check.selector)
    assert isinstance(sel, VectorSelector)  # the loader accepts only selectors here
    matchers = sel.all_matchers()
    reach = max(int(2 * check.after_seconds * 1000), engine.lookback_ms)
    points = {
        (sp.name, sp.labels): (sp.timestamps, sp.values)
        for sp in engine.store.select(matchers, first_ms - reach, end_ms, step_ms=step_ms)
    }
    for name, labels, last_ms, last in engine.store.latest(matchers):
        if (name, labels) not in points and last_ms <= end_ms:
            points[(name, labels)] = ([last_ms], [last])
    spool = check.metric is None
    columns: dict[Labels, Column] = {}
    for (name, labels), (ts, vs) in sorted(points.items()):
        key = series_key({"__name__": name, **dict(labels)})
        col: Column = [None] * n
        for i in range(n):
            t = first_ms + i * step_ms
            h = bisect_right(ts, t)
            if h:
                age = max(0.0, (t - ts[h - 1]) / 1000.0)
                col[i] = vs[h - 1] + age if spool else age
        if key not in columns and any(v is not None for v in col):
            columns[key] = col
    return columns


def observe(
    monitor: Monitor, engine: Engine, first_ms: int, end_ms: int, step_ms: int
) -> tuple[dict[Labels, Column], list[Labels]]:
    """The monitor's number per series at every step from ``first_ms`` through ``end_ms``,
    and the keys of series dropped as duplicates."""
    n = (end_ms - first_ms) // step_ms + 1
    check = monitor.check
    if isinstance(check, ThresholdCheck):
        return _columns_from_engine(engine, check.query, first_ms, end_ms, step_ms, n)
    if isinstance(check, QueueCheck):
        return _columns_from_engine(engine, check.selector, first_ms, end_ms, step_ms, n)
    if isinstance(check, StaleCheck):
        return _age_columns(engine, check, first_ms, end_ms, step_ms, n), []
    where = f" ({monitor.file}:{monitor.line})" if monitor.file else ""
    raise ReplayError(
        f"monitor {monitor.name!r}{where} runs a Nagios plugin: its results are not stored "
        "as history, so it cannot be replayed (only query, stale and queue monitors can)"
    )


# -- the loop -----------------------------------------------------------------------------


def _raw(rule: Rule, value: float) -> State | None:
    """The state a value maps to, as the state machine computes it; None for NaN (no data)."""
    if math.isnan(value):
        return None
    if rule.critical is not None and rule.critical.holds(value):
        return State.CRITICAL
    if rule.warning is not None and rule.warning.holds(value):
        return State.WARNING
    return State.OK


def _settled(s: SeriesState) -> bool:
    """Would a value mapping to ``s.state`` leave ``s`` unchanged (bar last value/seen)?"""
    if s.pending is not None or s.flapping or s.flap_percent != 0.0:
        return False
    if len(s.history) < flapping.HISTORY_SIZE or any(h is not s.state for h in s.history):
        return False
    if s.state is State.OK:
        return s.warning_since is None and s.critical_since is None
    if s.state is State.WARNING:
        return s.warning_since is not None and s.critical_since is None
    if s.state is State.CRITICAL:
        return s.warning_since is not None and s.critical_since is not None
    return False


@dataclass(frozen=True, slots=True)
class Segment:
    """One series in one state from ``start_ms`` until ``end_ms`` (None: still at the end)."""

    state: State
    start_ms: int
    end_ms: int | None


@dataclass(frozen=True, slots=True)
class Interval:
    """A run of steps where one series was not OK: an incident as a reviewer counts them.

    ``state`` is the worst state reached, ``peak`` the most extreme value seen while not
    OK (the maximum, or the minimum for monitors that fire *below* a threshold), and
    ``end_ms`` None when the series was still not OK at the end of the window.
    """

    labels: Labels
    start_ms: int
    end_ms: int | None
    state: State
    peak: float | None

    def duration_ms(self, window_end_ms: int) -> int:
        return (self.end_ms if self.end_ms is not None else window_end_ms) - self.start_ms


@dataclass(frozen=True, slots=True)
class NotificationCount:
    """Notifications one replay would have sent: first firing, repeats, resolved."""

    firing: int = 0
    repeat: int = 0
    resolved: int = 0

    @property
    def total(self) -> int:
        return self.firing + self.repeat + self.resolved

    def __add__(self, other: NotificationCount) -> NotificationCount:
        return NotificationCount(
            self.firing + other.firing, self.repeat + other.repeat, self.resolved + other.resolved
        )


@dataclass(frozen=True)
class ReplayResult:
    """What one monitor did over ``[start_ms, end_ms]`` evaluated every ``step_ms``.

    ``initial`` are the states just before ``start_ms`` (empty without warm-up),
    ``states`` those after the last step, ``transitions`` every change inside the window,
    ``values`` each series' number at every step from ``start_ms``, ``snapshots`` the
    states at each time asked for (after the last step at or before it), and ``dropped``
    the keys of result series ignored because an earlier one had the same labels.
    """

    monitor: Monitor
    start_ms: int
    end_ms: int
    step_ms: int
    initial: Mapping[Labels, SeriesState]
    states: Mapping[Labels, SeriesState]
    transitions: tuple[Transition, ...]
    values: Mapping[Labels, Column]
    snapshots: Mapping[int, Mapping[Labels, SeriesState]] = field(default_factory=dict)
    dropped: tuple[Labels, ...] = ()

    def series(self) -> list[Labels]:
        """Every series that took part: seen in the data or in a transition."""
        keys = set(self.initial) | set(self.values) | {t.labels for t in self.transitions}
        return sorted(keys)

    def state_at(self, at_ms: int, labels: Labels | None = None) -> tuple[State, State | None]:
        """``(state, pending level)`` at a snapshot time: of one series, or the worst of all."""
        snap = self.snapshots.get(at_ms)
        if snap is None:
            raise KeyError(
                f"no snapshot at {at_ms}: ask for it with replay(..., snapshot_at=[...])"
            )
        if labels is not None:
            s = snap.get(labels)
            return (s.state, s.pending) if s is not None else (State.OK, None)
        pendings = [s.pending for s in snap.values() if s.pending is not None]
        return worst([s.state for s in snap.values()]), (worst(pendings) if pendings else None)

    def segments(self, labels: Labels) -> list[Segment]:
        """The states of one series through the window, in order."""
        first = self.initial.get(labels)
        cur, since = (first.state if first is not None else State.OK), self.start_ms
        out: list[Segment] = []
        for t in self.transitions:
            if t.labels == labels and t.event == "state":
                if t.at_ms > since:
                    out.append(Segment(cur, since, t.at_ms))
                cur, since = t.to_state, t.at_ms
        out.append(Segment(cur, since, None))
        return out

    def time_in(self, states: Iterable[State], labels: Labels | None = None) -> int:
        """Milliseconds spent in any of ``states`` (summed over series unless ``labels``)."""
        wanted = set(states)
        total = 0
        for key in [labels] if labels is not None else self.series():
            for seg in self.segments(key):
                if seg.state in wanted:
                    total += (seg.end_ms if seg.end_ms is not None else self.end_ms) - seg.start_ms
        return total

    def intervals(self, labels: Labels | None = None) -> list[Interval]:
        """Incidents per series, ordered by start time then labels.

        An incident is a run of not-OK that fired (reached WARNING or CRITICAL): the span a
        receiver hears about from "firing" to "resolved". Runs of UNKNOWN alone are no
        data, not incidents; :meth:`time_in` measures them.
        """
        rule = self.monitor.rule()
        fire = (rule.critical or rule.warning) if rule is not None else None
        low = fire is not None and fire.direction == "below"
        out: list[Interval] = []
        for key in [labels] if labels is not None else self.series():
            run: list[Segment] = []
            for seg in [*self.segments(key), None]:
                if seg is not None and seg.state is not State.OK:
                    run.append(seg)
                    continue
                if any(r.state.firing for r in run):
                    start, end = run[0].start_ms, run[-1].end_ms
                    peak = self._peak(key, start, end, low)
                    out.append(Interval(key, start, end, worst([r.state for r in run]), peak))
                run = []
        out.sort(key=lambda i: (i.start_ms, i.labels))
        return out

    def _peak(self, labels: Labels, start_ms: int, end_ms: int | None, low: bool) -> float | None:
        col = self.values.get(labels)
        if col is None:
            return None
        lo = (start_ms - self.start_ms) // self.step_ms
        hi = len(col) if end_ms is None else (end_ms - self.start_ms) // self.step_ms
        seen = [v for v in col[lo:hi] if v is not None and not math.isnan(v)]
        if not seen:
            return None
        return min(seen) if low else max(seen)

    def notifications(self, repeat_ms: int, labels: Labels | None = None) -> NotificationCount:
        """What the runner would have sent, per series, summed unless ``labels`` is given.

        The runner's policy (:func:`signalbox.monitors.run.decide`), evaluation by
        evaluation: *firing* when the series fires in a state receivers were not told
        about (new problem, escalation, de-escalation), *repeat* while it keeps firing
        ``repeat_ms`` after the last one sent, *resolved* when it is back to OK after a
        firing was sent. UNKNOWN sends nothing, and nothing is sent while the series is
        flapping (the next evaluation after it stops catches up). Silences,
        acknowledgements and dependencies are not modelled. A series already firing at
        the window start is taken as told at the start.
        """
        total = NotificationCount()
        for key in [labels] if labels is not None else self.series():
            total += self._notifications_of(key, repeat_ms)
        return total

    def _notifications_of(self, labels: Labels, repeat_ms: int) -> NotificationCount:
        period = -(-max(repeat_ms, 1) // self.step_ms) * self.step_ms  # repeats land on steps
        first = self.initial.get(labels)
        cur = first.state if first is not None else State.OK
        flap = first.flapping if first is not None else False
        notified: State | None = cur if cur.firing else None
        sent = self.start_ms
        firing = repeat = resolved = 0

        def repeats_before(limit_ms: int) -> None:
            nonlocal sent, repeat
            if cur.firing and not flap and notified is cur:
                k = max(0, (limit_ms - 1 - sent) // period)
                repeat += k
                sent += k * period

        events = [t for t in self.transitions if t.labels == labels]
        i = 0
        while i < len(events):
            at = events[i].at_ms
            repeats_before(at)
            while i < len(events) and events[i].at_ms == at:
                t = events[i]
                if t.event == "state":
                    cur = t.to_state
                flap = t.flapping
                i += 1
            if flap:
                continue
            if cur.firing and notified is not cur:
                firing += 1
                notified, sent = cur, at
            elif cur.firing and at - sent >= repeat_ms:
                repeat += 1
                sent = at
            elif cur is State.OK and notified is not None:
                resolved += 1
                notified, sent = None, at
        repeats_before(self.end_ms + 1)
        return NotificationCount(firing, repeat, resolved)


def replay(
    monitor: Monitor,
    engine: Engine,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    warmup_ms: int = 0,
    snapshot_at: Iterable[int] = (),
    shortcut: bool = True,
) -> ReplayResult:
    """Evaluate ``monitor`` at every ``step_ms`` from ``start_ms`` through ``end_ms``.

    ``warmup_ms`` evaluates that much earlier first, so ``for`` and flap history are
    already under way at ``start_ms`` as they would be in a running system; only
    transitions from ``start_ms`` on are reported. ``snapshot_at`` asks for the states at
    those times. ``shortcut=False`` sends every step through the state machine (slower;
    tests use it to check that the shortcut changes nothing).

    Raises:
        ReplayError: the monitor is a Nagios plugin check.
        UsageError: the window or step is not acceptable (from the engine too).
    """
    if step_ms <= 0:
        raise UsageError(f"step must be positive, got {step_ms} ms")
    if end_ms < start_ms:
        raise UsageError(f"end ({end_ms}) is before start ({start_ms})")
    first = start_ms - -(-max(warmup_ms, 0) // step_ms) * step_ms
    columns, dropped = observe(monitor, engine, first, end_ms, step_ms)
    rule = monitor.rule()
    assert rule is not None  # observe() refused plugin checks
    n = (end_ms - first) // step_ms + 1
    wanted = sorted(set(snapshot_at))
    snapshots: dict[int, dict[Labels, SeriesState]] = {}
    w = 0
    while w < len(wanted) and wanted[w] < first:
        snapshots[wanted[w]] = {}
        w += 1

    states: dict[Labels, SeriesState] = {}
    lazy: dict[Labels, tuple[float, int]] = {}
    settled: set[Labels] = set()
    initial: dict[Labels, SeriesState] = {}
    transitions: list[Transition] = []
    cols = list(columns.items())

    def materialize() -> None:
        for key, (value, at) in lazy.items():
            states[key] = replace(states[key], last_value=value, last_seen_ms=at)
        lazy.clear()

    for i in range(n):
        t = first + i * step_ms
        if t == start_ms and first < start_ms:
            materialize()
            initial = dict(states)
        present = [(key, v) for key, col in cols if (v := col[i]) is not None]
        quiet = shortcut and bool(present) and len(present) == len(states)
        if quiet:
            for key, v in present:
                if key not in settled or _raw(rule, v) is not states[key].state:
                    quiet = False
                    break
        if quiet:
            for key, v in present:
                lazy[key] = (v, t)
        else:
            materialize()
            res = evaluate_vector(monitor, states, dict(present), t)
            states = res.states
            settled = {key for key, s in states.items() if _settled(s)}
            if t >= start_ms:
                transitions.extend(res.transitions)
        if w < len(wanted) and wanted[w] < t + step_ms:
            materialize()
            while w < len(wanted) and wanted[w] < t + step_ms:
                snapshots[wanted[w]] = dict(states)
                w += 1
    materialize()
    for at in wanted[w:]:
        snapshots[at] = dict(states)
    skip = (start_ms - first) // step_ms
    values = {key: col[skip:] for key, col in columns.items()}
    return ReplayResult(
        monitor,
        start_ms,
        end_ms,
        step_ms,
        initial,
        states,
        tuple(transitions),
        values,
        snapshots,
        tuple(sorted(set(dropped))),
    )
