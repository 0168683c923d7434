"""Replay one monitor over a time range with the real state machine.

``monitors test`` and ``monitors backtest`` both need to know what a monitor *would have
done*: its states at given times, its transitions, when it was not OK and how many
notifications that would have cost. They get it from :func:`replay`, which asks the engine
for the monitor's numbers over the whole window in ONE range query and then feeds every
step to :func:`~signalbox.monitors.engine.evaluate.evaluate_vector` (``for``, ``recover``,
``no_data`` and flapping included), exactly as the runner does one evaluation at a time.

Most steps of real history change nothing (a settled OK series staying OK), so those skip
the state machine: a step is taken as unchanged only when every series is *settled* (no
pending level, a full flap history of its current state) and its new value maps to that
same state, which the state machine provably leaves as it is apart from the last value
and time seen. Those two are filled in before the next real evaluation, so the states the
evaluator sees are the ones it would have built itself (a property test pins this).

The result and what is read from it (incidents, notification counts) are
:mod:`signalbox.monitors.backtest.result`; its names are importable from here too.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import replace

from signalbox.exceptions import UsageError
from signalbox.metrics.samples import Labels
from signalbox.monitors.backtest.result import (
    Column,
    Interval,
    NotificationCount,
    ReplayResult,
    Segment,
)
from signalbox.monitors.definitions.model import (
    Monitor,
    QueueCheck,
    Rule,
    StaleCheck,
    State,
    ThresholdCheck,
)
from signalbox.monitors.engine import flapping
from signalbox.monitors.engine.evaluate import SeriesState, Transition, evaluate_vector
from signalbox.query import Engine, parse_expr
from signalbox.query.ast import VectorSelector

__all__ = [
    "Column",
    "Interval",
    "NotificationCount",
    "ReplayError",
    "ReplayResult",
    "Segment",
    "observe",
    "replay",
    "series_key",
]


class ReplayError(UsageError):
    """A monitor that cannot be replayed (a Nagios plugin has no stored history)."""


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
