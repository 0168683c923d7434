"""The alert state machine: scenarios with injected times, and properties over any input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.monitors.definitions.model import (
    Flapping,
    Monitor,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
)
from signalbox.monitors.engine.evaluate import (
    NO_DATA,
    Observation,
    SeriesState,
    Transition,
    evaluate_series,
    evaluate_vector,
)
from tests.monitors.builders import threshold_monitor

T0 = 1_700_000_000_000
MIN = 60_000
QUERY = "avg_over_time(image_processing_time[5m])"


def monitor(
    warning: str | None = "> 4",
    critical: str | None = "> 8",
    recover: str | None = None,
    for_: float = 0.0,
    no_data: State = State.UNKNOWN,
    flapping: Flapping | None = None,
) -> Monitor:
    return threshold_monitor(
        QUERY,
        warning,
        critical,
        recover,
        name="image_processing_slow",
        description="Resizes slower than users tolerate.",
        for_s=for_,
        no_data=no_data,
        flapping=flapping,
    )


def run(
    m: Monitor, steps: Sequence[tuple[int, float | None]], labels: tuple[tuple[str, str], ...] = ()
) -> tuple[list[SeriesState], list[Transition]]:
    """Feed ``(time_ms, value)`` steps; return the state after each and all transitions."""
    state: SeriesState | None = None
    states, transitions = [], []
    for at, value in steps:
        state, trans = evaluate_series(m, state, value, at, labels)
        states.append(state)
        transitions.extend(trans)
    return states, transitions


def raw_level(m: Monitor, value: float | None) -> State:
    rule = m.rule()
    assert rule is not None
    if value is None or math.isnan(value):
        return m.no_data
    if rule.critical and rule.critical.holds(value):
        return State.CRITICAL
    if rule.warning and rule.warning.holds(value):
        return State.WARNING
    return State.OK


# -- scenarios ----------------------------------------------------------------------------


def test_a_new_series_starts_ok_and_fires_at_once_without_for() -> None:
    state, [t] = evaluate_series(monitor(), None, 5.0, T0, (("shard", "7"),))
    assert state.state is State.WARNING and state.since == T0 and state.pending is None
    assert t == Transition(
        "image_processing_slow",
        (("shard", "7"),),
        State.OK,
        State.WARNING,
        T0,
        5.0,
        f"{QUERY} = 5 > 4",
    )


def test_an_ok_value_on_a_new_series_is_no_transition() -> None:
    state, transitions = evaluate_series(monitor(), None, 1.0, T0)
    assert state.state is State.OK and transitions == []
    assert state.last_value == 1.0 and state.last_seen_ms == T0


def test_for_keeps_the_level_pending_until_it_has_held_long_enough() -> None:
    m = monitor(for_=180)
    states, transitions = run(m, [(T0, 8.6), (T0 + MIN, 8.7), (T0 + 2 * MIN, 9.0)])
    assert [s.state for s in states] == [State.OK] * 3
    assert [s.pending for s in states] == [State.CRITICAL] * 3
    assert {s.pending_since for s in states} == {T0}
    assert transitions == []

    state, [t] = evaluate_series(m, states[-1], 8.6, T0 + 3 * MIN)
    assert state.state is State.CRITICAL and state.pending is None and state.since == T0 + 3 * MIN
    assert (t.from_state, t.to_state) == (State.OK, State.CRITICAL)
    assert t.reason == f"{QUERY} = 8.6 > 8 for 3m"


def test_for_restarts_when_the_condition_is_interrupted() -> None:
    m = monitor(for_=180)
    steps = [(T0, 9.0), (T0 + 2 * MIN, 1.0), (T0 + 3 * MIN, 9.0), (T0 + 5 * MIN, 9.0)]
    states, transitions = run(m, steps)
    assert transitions == []
    assert states[1].pending is None and states[1].pending_since is None
    assert states[-1].pending_since == T0 + 3 * MIN
    _, [t] = evaluate_series(m, states[-1], 9.0, T0 + 6 * MIN)
    assert t.to_state is State.CRITICAL


def test_warning_fires_first_when_only_its_level_has_held_for_long_enough() -> None:
    m = monitor(for_=180)
    steps = [(T0, 5.0), (T0 + 2 * MIN, 9.0), (T0 + 3 * MIN, 9.0)]
    states, transitions = run(m, steps)
    assert [t.to_state for t in transitions] == [State.WARNING]
    assert transitions[0].reason == f"{QUERY} = 9 > 4 for 3m"
    assert states[-1].pending is State.CRITICAL and states[-1].pending_since == T0 + 2 * MIN
    _, [t] = evaluate_series(m, states[-1], 9.0, T0 + 5 * MIN)
    assert (t.from_state, t.to_state, t.reason) == (
        State.WARNING,
        State.CRITICAL,
        f"{QUERY} = 9 > 8 for 3m",
    )


def test_de_escalation_and_recovery_do_not_wait_for_for() -> None:
    m = monitor(for_=180)
    steps = [(T0, 9.0), (T0 + 3 * MIN, 9.0), (T0 + 4 * MIN, 5.0), (T0 + 5 * MIN, 1.0)]
    _, transitions = run(m, steps)
    assert [(t.to_state, t.at_ms) for t in transitions] == [
        (State.CRITICAL, T0 + 3 * MIN),
        (State.WARNING, T0 + 4 * MIN),
        (State.OK, T0 + 5 * MIN),
    ]
    assert transitions[1].reason == f"{QUERY} = 5 > 4"
    assert transitions[2].reason == "recovered: 1, not > 4"


def test_recover_holds_the_state_until_the_value_is_on_the_ok_side() -> None:
    m = monitor(recover="< 3")
    steps = [(T0, 9.0), (T0 + MIN, 3.5), (T0 + 2 * MIN, 3.0), (T0 + 3 * MIN, 2.9)]
    states, transitions = run(m, steps)
    assert [s.state for s in states] == [State.CRITICAL] * 3 + [State.OK]
    assert [t.reason for t in transitions] == [f"{QUERY} = 9 > 8", "recovered: 2.9 < 3"]


def test_recover_does_not_hold_back_de_escalation_to_warning() -> None:
    m = monitor(recover="< 3")
    states, _ = run(m, [(T0, 9.0), (T0 + MIN, 5.0)])
    assert states[-1].state is State.WARNING


def test_no_data_follows_the_no_data_policy() -> None:
    states, [t] = run(monitor(), [(T0, 1.0), (T0 + MIN, None)])
    assert states[-1].state is State.UNKNOWN
    assert t.reason == "no data (no_data: unknown)" and t.value is None
    assert states[-1].last_value == 1.0 and states[-1].last_seen_ms == T0


def test_no_data_ok_resolves_a_firing_series() -> None:
    _, transitions = run(monitor(no_data=State.OK), [(T0, 9.0), (T0 + MIN, None)])
    assert [(t.to_state, t.reason) for t in transitions] == [
        (State.CRITICAL, f"{QUERY} = 9 > 8"),
        (State.OK, "no data (no_data: ok)"),
    ]


def test_no_data_critical_honours_for() -> None:
    m = monitor(no_data=State.CRITICAL, for_=120)
    states, transitions = run(m, [(T0, None), (T0 + MIN, None), (T0 + 2 * MIN, None)])
    assert states[0].pending is State.CRITICAL
    assert [(t.to_state, t.at_ms, t.reason) for t in transitions] == [
        (State.CRITICAL, T0 + 2 * MIN, "no data (no_data: critical) for 2m")
    ]


def test_nan_counts_as_no_data() -> None:
    state, [t] = evaluate_series(monitor(), None, math.nan, T0)
    assert state.state is State.UNKNOWN and t.reason == "value is NaN (no_data: unknown)"
    assert state.last_seen_ms is None and t.value is None


def test_unknown_goes_back_to_ok_when_data_returns() -> None:
    _, transitions = run(monitor(recover="< 3"), [(T0, None), (T0 + MIN, 3.5)])
    assert [(t.to_state, t.reason) for t in transitions] == [
        (State.UNKNOWN, "no data (no_data: unknown)"),
        (State.OK, f"{QUERY} = 3.5"),
    ]


def test_staleness_reasons_read_as_durations() -> None:
    m = Monitor("spool_stale", "d", StaleCheck(600, spool_file="photos*.metrics"))
    _, [t] = evaluate_series(m, None, 700.0, T0)
    assert t.to_state is State.CRITICAL
    assert t.reason == "age of spool file photos*.metrics = 11m40s > 10m"


def test_queue_depth_fires_at_high_water_and_recovers_only_at_low_water() -> None:
    m = Monitor("photos_backlog", "d", QueueCheck("photos", high=1000, low=10))
    states, transitions = run(m, [(T0, 1000), (T0 + MIN, 500), (T0 + 2 * MIN, 10)])
    assert [s.state for s in states] == [State.CRITICAL, State.CRITICAL, State.OK]
    assert [t.reason for t in transitions] == [
        "depth of queue photos = 1000 >= 1000",
        "recovered: 10 <= 10",
    ]


def test_nagios_plugin_state_is_the_raw_state_and_its_output_the_reason() -> None:
    m = Monitor("disk", "d", NagiosCheck(("check_disk",)))
    obs = Observation(state=State.WARNING, text="DISK WARNING - free space: / 9%")
    state, [t] = evaluate_series(m, None, obs, T0)
    assert state.state is State.WARNING and t.reason == "DISK WARNING - free space: / 9%"
    state, [t] = evaluate_series(m, state, Observation(state=State.OK), T0 + MIN)
    assert t.reason == "plugin exited OK"


def test_a_nagios_monitor_refuses_a_bare_value() -> None:
    m = Monitor("disk", "d", NagiosCheck(("check_disk",)))
    with pytest.raises(ValueError, match=r"Observation\(state=\.\.\.\)"):
        evaluate_series(m, None, 3.0, T0)


def test_flapping_starts_and_stops_with_events_and_marks_transitions() -> None:
    m = monitor(flapping=Flapping(low=20, high=30))
    values = [9.0, 1.0] * 5 + [1.0] * 21
    states, transitions = run(m, [(T0 + i * MIN, v) for i, v in enumerate(values)])
    events = [t for t in transitions if t.event != "state"]
    assert [e.event for e in events] == ["flapping_started", "flapping_stopped"]
    started, stopped = events
    assert started.from_state == started.to_state
    assert started.reason.startswith("flapping started: ") and ">= 30%" in started.reason
    assert stopped.reason.startswith("flapping stopped: ") and "<= 20%" in stopped.reason
    during = [t for t in transitions if t.event == "state" and started.at_ms < t.at_ms]
    assert during and all(t.flapping for t in during if t.at_ms < stopped.at_ms)
    assert not states[-1].flapping and states[-1].flap_percent == 0.0


def test_flap_detection_can_be_switched_off() -> None:
    m = monitor(flapping=Flapping(enabled=False))
    states, transitions = run(m, [(T0 + i * MIN, v) for i, v in enumerate([9.0, 1.0] * 10)])
    assert states[-1].flap_percent > 30 and not states[-1].flapping
    assert all(t.event == "state" for t in transitions)


# -- a whole vector -------------------------------------------------------------------------

A = (("shard", "1"),)
B = (("shard", "2"),)


def test_vector_evaluation_keeps_one_state_per_series() -> None:
    res = evaluate_vector(monitor(), {}, {A: 5.0, B: 9.0}, T0)
    assert {k: s.state for k, s in res.states.items()} == {A: State.WARNING, B: State.CRITICAL}
    assert [(t.labels, t.to_state) for t in res.transitions] == [
        (A, State.WARNING),
        (B, State.CRITICAL),
    ]


def test_a_series_that_disappears_follows_the_no_data_policy() -> None:
    m = monitor()
    first = evaluate_vector(m, {}, {A: 5.0, B: 1.0}, T0)
    second = evaluate_vector(m, first.states, {B: 1.0}, T0 + MIN)
    assert second.states[A].state is State.UNKNOWN
    [t] = second.transitions
    assert (t.labels, t.from_state, t.to_state, t.reason) == (
        A,
        State.WARNING,
        State.UNKNOWN,
        "no data (no_data: unknown)",
    )


def test_an_absent_series_that_is_ok_is_forgotten() -> None:
    m = monitor(no_data=State.OK)
    first = evaluate_vector(m, {}, {A: 5.0, B: 1.0}, T0)
    second = evaluate_vector(m, first.states, {}, T0 + MIN)
    assert second.states == {}
    assert [(t.labels, t.to_state) for t in second.transitions] == [(A, State.OK)]


def test_an_empty_result_is_one_no_data_series_that_resolves_when_data_comes() -> None:
    m = monitor()
    first = evaluate_vector(m, {}, {}, T0)
    assert first.states[()].state is State.UNKNOWN
    [t] = first.transitions
    assert (t.labels, t.to_state, t.reason) == ((), State.UNKNOWN, "no data (no_data: unknown)")
    again = evaluate_vector(m, first.states, {}, T0 + MIN)
    assert again.transitions == [] and again.states[()].since == T0

    back = evaluate_vector(m, again.states, {A: 1.0, B: 1.0}, T0 + 2 * MIN)
    assert set(back.states) == {A, B}
    [t] = back.transitions
    assert (t.labels, t.from_state, t.to_state) == ((), State.UNKNOWN, State.OK)
    assert t.reason == "data is back: the query returns 2 series"


def test_an_empty_result_with_no_data_ok_keeps_no_state() -> None:
    res = evaluate_vector(monitor(no_data=State.OK), {}, {}, T0)
    assert res.states == {} and res.transitions == []


def test_vector_accepts_observations_for_plugin_checks() -> None:
    m = Monitor("disk", "d", NagiosCheck(("check_disk",)))
    res = evaluate_vector(m, {}, {(): Observation(state=State.CRITICAL, text="down")}, T0)
    assert res.states[()].state is State.CRITICAL and res.transitions[0].reason == "down"


# -- properties -----------------------------------------------------------------------------

values = st.one_of(
    st.none(), st.floats(min_value=-20, max_value=20, allow_nan=False), st.just(math.nan)
)
# Evaluations happen at distinct times (the runner evaluates each monitor once a pass).
steps = st.lists(st.tuples(st.integers(min_value=1000, max_value=5 * MIN), values), max_size=40)
policies = st.sampled_from(list(State))


def timeline(raw: list[tuple[int, float | None]]) -> list[tuple[int, float | None]]:
    out, at = [], T0
    for gap, v in raw:
        at += gap
        out.append((at, v))
    return out


@given(steps, policies)
def test_without_for_or_recover_the_state_is_a_function_of_the_current_value(
    raw: list[tuple[int, float | None]], policy: State
) -> None:
    m = monitor(no_data=policy)
    states, _ = run(m, timeline(raw))
    for (_, value), state in zip(timeline(raw), states, strict=True):
        assert state.state is raw_level(m, value)
        assert state.pending is None


@given(steps)
def test_with_recover_a_firing_state_never_goes_ok_between_recover_and_warning(
    raw: list[tuple[int, float | None]],
) -> None:
    m = monitor(recover="< 2")
    states, _ = run(m, timeline(raw))
    prev = State.OK
    for (_, value), state in zip(timeline(raw), states, strict=True):
        in_band = value is not None and 2 <= value <= 4
        if prev.firing and in_band:
            assert state.state is prev
        prev = state.state


@given(steps, st.sampled_from([0, 30, 60, 180, 600]), policies)
@settings(max_examples=200)
def test_for_never_fires_a_level_before_it_has_held_for_the_duration(
    raw: list[tuple[int, float | None]], for_s: int, policy: State
) -> None:
    m = monitor(for_=for_s, no_data=policy)
    tl = timeline(raw)
    _, transitions = run(m, tl)
    for t in transitions:
        if not (t.to_state.firing and t.to_state.severity > t.from_state.severity):
            continue
        i = max(k for k, (at, _) in enumerate(tl) if at == t.at_ms)
        start = i
        while start > 0 and raw_level(m, tl[start - 1][1]).severity >= t.to_state.severity:
            start -= 1
        assert raw_level(m, tl[i][1]).severity >= t.to_state.severity
        assert t.at_ms - tl[start][0] >= for_s * 1000


@given(steps, st.sampled_from([0, 120]), st.sampled_from([None, "< 2"]))
def test_transitions_chain_from_state_to_state(
    raw: list[tuple[int, float | None]], for_s: int, recover: str | None
) -> None:
    m = monitor(for_=for_s, recover=recover, flapping=Flapping())
    state: SeriesState | None = None
    for at, value in timeline(raw):
        before = state.state if state else State.OK
        state, transitions = evaluate_series(m, state, value, at)
        changes = [t for t in transitions if t.event == "state"]
        if state.state is before:
            assert changes == []
        else:
            [t] = changes
            assert (t.from_state, t.to_state, t.at_ms) == (before, state.state, at)
            assert state.since == at
        assert 0.0 <= state.flap_percent <= 100.0
        assert all(t.flapping == state.flapping for t in transitions)


def test_no_data_observation_constant_is_empty() -> None:
    assert Observation() == NO_DATA and not NO_DATA.has_data
