"""The alert state machine: previous state + one observation -> new state + transitions.

Pure and time-injected (``now_ms``), so the runner, ``monitors test`` and ``monitors
backtest`` all share it and a test can replay hours in microseconds.

Semantics, per series:

* The *raw* state of an observation is CRITICAL if the critical threshold holds, else
  WARNING if the warning threshold holds, else OK; no data (or NaN) maps through the
  monitor's ``no_data`` policy; a Nagios plugin's exit code is its raw state.
* ``for``: a level (WARNING, CRITICAL) is entered only once the raw state has been at that
  level or worse continuously for ``for``. Until then the level is *pending*: visible in
  :attr:`SeriesState.pending`, but not a transition. Escalation WARNING -> CRITICAL waits
  the same way; de-escalation and recovery are immediate.
* ``recover`` (hysteresis): while WARNING or CRITICAL, a value that no longer fires returns
  to OK only if ``recover`` holds; in between, the state is held as it is.
* Flapping (:mod:`signalbox.monitors.engine.flapping`) is computed over the resulting states and
  reported as events; suppressing notifications while flapping is the notifier's job, as
  are acknowledgements, silences and dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from signalbox.durations import format_duration
from signalbox.metrics.samples import Labels
from signalbox.monitors.definitions.model import Monitor, Rule, State
from signalbox.monitors.engine import flapping

EventKind = Literal["state", "flapping_started", "flapping_stopped"]


@dataclass(frozen=True, slots=True)
class Observation:
    """One evaluation's input for one series: a value, a plugin state, or neither (no data).

    ``text`` is the plugin's output line; it becomes the reason for Nagios monitors.
    """

    value: float | None = None
    state: State | None = None
    text: str = ""

    @property
    def has_data(self) -> bool:
        return self.state is not None or (self.value is not None and not math.isnan(self.value))


NO_DATA = Observation()


@dataclass(frozen=True, slots=True)
class SeriesState:
    """Everything the state machine remembers about one series between evaluations.

    ``warning_since``/``critical_since`` are when the raw state last reached that level or
    worse without interruption (None while it is below); ``pending``/``pending_since`` are
    the level waiting out ``for`` and since when. ``reason`` says why the state is what it
    is (the last transition's reason). ``history`` holds the last states for flap detection. Acks and silences are not here: they belong to the notification layer.
    """

    state: State
    since: int
    pending: State | None = None
    pending_since: int | None = None
    last_value: float | None = None
    last_seen_ms: int | None = None
    reason: str = ""
    warning_since: int | None = None
    critical_since: int | None = None
    history: tuple[State, ...] = ()
    flap_percent: float = 0.0
    flapping: bool = False

    @classmethod
    def initial(cls, now_ms: int) -> SeriesState:
        """A series seen for the first time starts OK (Nagios' assumption too)."""
        return cls(state=State.OK, since=now_ms)


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change (``event="state"``) or a flapping start/stop of one series.

    For flapping events ``from_state == to_state`` (the current state). ``flapping`` tells
    the notifier whether the series is flapping after this evaluation, so it can hold
    notifications back.
    """

    monitor: str
    labels: Labels
    from_state: State
    to_state: State
    at_ms: int
    value: float | None
    reason: str
    event: EventKind = "state"
    flapping: bool = False


@dataclass(frozen=True, slots=True)
class VectorResult:
    """Per-series states after one evaluation of a monitor, and what changed.

    ``forgotten`` holds the series left out of ``states`` because they were absent and are
    now at rest, with the state this evaluation left them in (the runner keeps such a
    series while a "resolved" is still owed for it).
    """

    states: dict[Labels, SeriesState] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    forgotten: dict[Labels, SeriesState] = field(default_factory=dict)


def _raw_state(monitor: Monitor, rule: Rule | None, obs: Observation) -> State:
    if obs.state is not None:
        return obs.state
    if not obs.has_data:
        return monitor.no_data
    if rule is None:
        raise ValueError(
            f"monitor {monitor.name!r} is a Nagios plugin check: observe it with "
            "Observation(state=...), not a value"
        )
    assert obs.value is not None
    if rule.critical is not None and rule.critical.holds(obs.value):
        return State.CRITICAL
    if rule.warning is not None and rule.warning.holds(obs.value):
        return State.WARNING
    return State.OK


def _next_state(
    cur: State, raw: State, rule: Rule | None, obs: Observation, warn_ready: bool, crit_ready: bool
) -> State:
    if raw is State.UNKNOWN:
        return State.UNKNOWN
    if raw is State.OK:
        recover = rule.recover if rule is not None and cur.firing else None
        value = obs.value if obs.has_data else None
        if recover is not None and value is not None and not recover.holds(value):
            return cur  # hysteresis: between recover and the firing thresholds
        return State.OK
    if raw is State.CRITICAL:
        if crit_ready or cur is State.CRITICAL:
            return State.CRITICAL
        if warn_ready:
            return State.WARNING
        return cur
    # raw WARNING
    if cur is State.CRITICAL or warn_ready:
        return State.WARNING
    return cur


def _reason(
    monitor: Monitor, rule: Rule | None, obs: Observation, cur: State, new: State, for_ms: int
) -> str:
    escalated = new.firing and new.severity > cur.severity and for_ms > 0
    held = f" for {format_duration(for_ms / 1000)}" if escalated else ""
    if obs.state is not None:
        return (obs.text or f"plugin exited {new.value}") + held
    if not obs.has_data:
        what = "no data" if obs.value is None else "value is NaN"
        return f"{what} (no_data: {monitor.no_data.value.lower()}){held}"
    assert rule is not None and obs.value is not None
    shown = rule.show(obs.value)
    if new is State.CRITICAL and rule.critical is not None:
        return f"{rule.subject} = {shown} {rule.show_threshold(rule.critical)}{held}"
    if new is State.WARNING and rule.warning is not None:
        return f"{rule.subject} = {shown} {rule.show_threshold(rule.warning)}{held}"
    if new is State.OK and cur.firing:
        if rule.recover is not None:
            return f"recovered: {shown} {rule.show_threshold(rule.recover)}"
        lowest = rule.warning or rule.critical
        return f"recovered: {shown}, not {rule.show_threshold(lowest)}" if lowest else "recovered"
    return f"{rule.subject} = {shown}"


def evaluate_series(
    monitor: Monitor,
    prev: SeriesState | None,
    obs: Observation | float | None,
    now_ms: int,
    labels: Labels = (),
) -> tuple[SeriesState, list[Transition]]:
    """Advance one series by one observation taken at ``now_ms``.

    ``obs`` may be a bare number or None (no data) for convenience. Returns the new state
    and the transitions it caused (a state change and/or a flapping start or stop).
    """
    if not isinstance(obs, Observation):
        obs = NO_DATA if obs is None else Observation(value=float(obs))
    p = prev if prev is not None else SeriesState.initial(now_ms)
    rule = monitor.rule()
    raw = _raw_state(monitor, rule, obs)

    warning_since = critical_since = None
    if raw.firing:
        warning_since = p.warning_since if p.warning_since is not None else now_ms
    if raw is State.CRITICAL:
        critical_since = p.critical_since if p.critical_since is not None else now_ms
    for_ms = round(monitor.for_seconds * 1000)
    warn_ready = warning_since is not None and now_ms - warning_since >= for_ms
    crit_ready = critical_since is not None and now_ms - critical_since >= for_ms

    cur = p.state
    new = _next_state(cur, raw, rule, obs, warn_ready, crit_ready)

    pending: State | None = None
    pending_since: int | None = None
    if critical_since is not None and not crit_ready and new is not State.CRITICAL:
        pending, pending_since = State.CRITICAL, critical_since
    elif warning_since is not None and not warn_ready and not new.firing:
        pending, pending_since = State.WARNING, warning_since

    reason = _reason(monitor, rule, obs, cur, new, for_ms) if new is not cur else p.reason
    history = flapping.push(p.history, new)
    percent = flapping.percent_state_change(history)
    flag = p.flapping
    if monitor.flapping.enabled:
        flag = flapping.is_flapping(
            p.flapping, percent, low=monitor.flapping.low, high=monitor.flapping.high
        )

    value = obs.value if obs.value is not None and not math.isnan(obs.value) else None
    state = replace(
        p,
        state=new,
        since=now_ms if new is not cur else p.since,
        pending=pending,
        pending_since=pending_since,
        last_value=value if value is not None else p.last_value,
        last_seen_ms=now_ms if obs.has_data else p.last_seen_ms,
        reason=reason,
        warning_since=warning_since,
        critical_since=critical_since,
        history=history,
        flap_percent=percent,
        flapping=flag,
    )

    transitions: list[Transition] = []
    if new is not cur:
        transitions.append(
            Transition(monitor.name, labels, cur, new, now_ms, value, reason, "state", flag)
        )
    if flag != p.flapping:
        if flag:
            why = f"flapping started: {percent:.1f}% state change >= {monitor.flapping.high:g}%"
        else:
            why = f"flapping stopped: {percent:.1f}% state change <= {monitor.flapping.low:g}%"
        event: EventKind = "flapping_started" if flag else "flapping_stopped"
        transitions.append(
            Transition(monitor.name, labels, new, new, now_ms, value, why, event, flag)
        )
    return state, transitions


def _is_resting(s: SeriesState) -> bool:
    return s.state is State.OK and s.pending is None and not s.flapping


def evaluate_vector(
    monitor: Monitor,
    prev: Mapping[Labels, SeriesState],
    result: Mapping[Labels, float | Observation],
    now_ms: int,
) -> VectorResult:
    """Evaluate one monitor against a whole query result (one value per label set).

    Series in ``prev`` missing from ``result`` are evaluated as no data, so they follow the
    ``no_data`` policy. When the result is empty and no series is known yet, one series
    with no labels stands for "the query returned nothing"; it resolves (to OK, with a
    transition if it had left OK) as soon as real series appear. Series that are absent
    and OK are forgotten, so a decommissioned shard does not linger.
    """
    out = VectorResult()
    for labels in sorted(result):
        x = result[labels]
        obs = x if isinstance(x, Observation) else Observation(value=float(x))
        state, trans = evaluate_series(monitor, prev.get(labels), obs, now_ms, labels)
        out.states[labels] = state
        out.transitions.extend(trans)

    for labels in sorted(set(prev) - set(result)):
        p = prev[labels]
        if result and p.last_seen_ms is None:
            # The "query returned nothing" stand-in: data is back under other labels.
            if p.state is not State.OK:
                why = f"data is back: the query returns {len(result)} series"
                out.transitions.append(
                    Transition(monitor.name, labels, p.state, State.OK, now_ms, None, why)
                )
            continue
        state, trans = evaluate_series(monitor, p, NO_DATA, now_ms, labels)
        out.transitions.extend(trans)
        if _is_resting(state):
            out.forgotten[labels] = state
        else:
            out.states[labels] = state

    if not result and not out.states and () not in prev:
        state, trans = evaluate_series(monitor, prev.get(()), NO_DATA, now_ms, ())
        out.transitions.extend(trans)
        if not _is_resting(state):
            out.states[()] = state
    return out
