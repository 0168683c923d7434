"""Replaying monitors over stored data: exact scenarios with injected times, and properties
pinning the replay to the definition (one instant query and one state-machine step per step)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.exceptions import UsageError
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Sample
from signalbox.monitors.backtest.replay import NotificationCount, ReplayError, replay, series_key
from signalbox.monitors.definitions.load import load_monitors
from signalbox.monitors.definitions.model import (
    Flapping,
    Monitor,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
)
from signalbox.monitors.engine.evaluate import SeriesState, Transition, evaluate_vector
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.notify import Notification
from signalbox.monitors.outbox.store import Outbox
from signalbox.monitors.state.store import MonitorStore
from signalbox.query import Engine, QueryResult
from signalbox.query.batch import observations
from signalbox.storage import open_database
from tests.monitors.builders import threshold_monitor
from tests.stores import sqlite_url

T0 = 1_700_000_040_000  # a whole minute
MIN = 60_000
WEB1: Labels = (("host", "web1"),)
WEB2: Labels = (("host", "web2"),)


def threshold(
    query: str = "x",
    warning: str | None = "> 4",
    critical: str | None = "> 8",
    recover: str | None = None,
    *,
    for_s: float = 0.0,
    no_data: State = State.UNKNOWN,
    flap: Flapping | None = None,
    repeat_s: float | None = None,
) -> Monitor:
    return threshold_monitor(
        query,
        warning,
        critical,
        recover,
        for_s=for_s,
        no_data=no_data,
        flapping=flap,
        repeat_s=repeat_s,
    )


def store_with(series: dict[Labels, Sequence[float | None]], name: str = "x") -> MemoryMetricStore:
    """One sample per minute from T0; None leaves that minute out."""
    store = MemoryMetricStore()
    store.write(
        [
            Sample(name, labels, v, T0 + i * MIN)
            for labels, values in series.items()
            for i, v in enumerate(values)
            if v is not None
        ],
        0,
    )
    return store


def changes(ts: Sequence[Transition]) -> list[tuple[int, Labels, State, State]]:
    return [
        ((t.at_ms - T0) // MIN, t.labels, t.from_state, t.to_state)
        for t in ts
        if t.event == "state"
    ]


def test_fires_after_for_de_escalates_at_once_and_recovers_only_below_recover() -> None:
    store = store_with({WEB1: [2, 2, 9, 9, 9, 9, 9, 5, 4, 2.5, 1]})
    m = threshold(recover="< 3", for_s=180)
    r = replay(m, Engine(store), T0, T0 + 10 * MIN, MIN)
    assert changes(r.transitions) == [
        (5, WEB1, State.OK, State.CRITICAL),  # raw critical since 2m, held for 3m
        (7, WEB1, State.CRITICAL, State.WARNING),
        (9, WEB1, State.WARNING, State.OK),  # 4 at 8m is between recover and warning: held
    ]
    [iv] = r.intervals()
    assert (iv.labels, iv.start_ms, iv.end_ms, iv.state, iv.peak) == (
        WEB1,
        T0 + 5 * MIN,
        T0 + 9 * MIN,
        State.CRITICAL,
        9.0,
    )
    assert iv.duration_ms(r.end_ms) == 4 * MIN
    assert r.time_in([State.CRITICAL]) == 2 * MIN and r.time_in([State.WARNING]) == 2 * MIN
    assert r.notifications(4 * 3600_000) == NotificationCount(firing=2, repeat=0, resolved=1)


def test_snapshots_give_state_and_pending_level_at_any_time() -> None:
    store = store_with({WEB1: [2, 2, 9, 9, 9, 9], WEB2: [1, 5, 5, 5, 5, 5]})
    m = threshold(for_s=180)
    at = [T0 - MIN, T0 + 3 * MIN, T0 + 3 * MIN + 30_000, T0 + 5 * MIN, T0 + 60 * MIN]
    r = replay(m, Engine(store), T0, T0 + 5 * MIN, MIN, snapshot_at=at)
    assert r.snapshots[T0 - MIN] == {}
    assert r.state_at(T0 + 3 * MIN, WEB1) == (State.OK, State.CRITICAL)
    assert r.state_at(T0 + 3 * MIN + 30_000, WEB1) == (
        State.OK,
        State.CRITICAL,
    )  # last step at or before
    assert r.state_at(T0 + 3 * MIN) == (State.OK, State.CRITICAL)  # the worst of both series
    assert r.state_at(T0 + 5 * MIN, WEB1) == (State.CRITICAL, None)
    assert r.state_at(T0 + 3 * MIN, WEB2) == (State.OK, State.WARNING)
    with pytest.raises(KeyError, match="snapshot_at"):
        r.state_at(T0 + 2 * MIN)
    assert r.state_at(T0 + 5 * MIN, WEB2) == (State.WARNING, None)  # raw warning since 1m
    assert r.state_at(T0 + 60 * MIN) == r.state_at(T0 + 5 * MIN)  # after the end: the final states
    assert r.state_at(T0 + 5 * MIN, (("host", "nope"),)) == (State.OK, None)


def test_threshold_monitor_costs_one_range_query_and_no_instant_query() -> None:
    calls: list[str] = []

    class CountingEngine(Engine):
        def range(self, expr: object, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
            calls.append("range")
            return super().range(expr, start_ms, end_ms, step_ms)  # type: ignore[arg-type]

        def instant(self, expr: object, at_ms: int) -> QueryResult:
            calls.append("instant")
            return super().instant(expr, at_ms)  # type: ignore[arg-type]

    store = store_with({WEB1: [1.0] * 200})
    replay(threshold("avg_over_time(x[5m])"), CountingEngine(store), T0, T0 + 199 * MIN, MIN)
    assert calls == ["range"]


def test_no_data_follows_the_policy_and_resolves_when_series_appear() -> None:
    store = store_with({WEB1: [None, None, None, 1, 1]})
    m = threshold(no_data=State.CRITICAL)
    r = replay(m, Engine(store), T0, T0 + 4 * MIN, MIN)
    assert changes(r.transitions) == [
        (0, (), State.OK, State.CRITICAL),
        (3, (), State.CRITICAL, State.OK),
    ]
    [iv] = r.intervals()
    assert (iv.labels, iv.state, iv.peak) == ((), State.CRITICAL, None)
    assert r.notifications(3600_000) == NotificationCount(firing=1, resolved=1)


def test_a_vanished_series_goes_to_no_data_then_is_forgotten_once_ok() -> None:
    store = store_with({WEB1: [9, 9] + [None] * 8, WEB2: [1] * 10})
    m = threshold(no_data=State.OK)
    r = replay(m, Engine(store), T0, T0 + 9 * MIN, MIN)
    # the engine's 5m lookback, (t - 5m, t], keeps web1's last sample (1m) visible until 5m
    assert changes(r.transitions) == [
        (0, WEB1, State.OK, State.CRITICAL),
        (6, WEB1, State.CRITICAL, State.OK),
    ]
    assert WEB1 not in r.states and WEB2 in r.states


def test_repeats_go_out_every_repeat_interval_while_firing() -> None:
    store = store_with({WEB1: [1] + [9] * 35 + [1]})
    r = replay(threshold(), Engine(store), T0, T0 + 36 * MIN, MIN)
    assert r.notifications(10 * MIN) == NotificationCount(firing=1, repeat=3, resolved=1)
    assert r.notifications(90_000) == NotificationCount(
        firing=1, repeat=17, resolved=1
    )  # every 2 steps
    assert r.notifications(10 * MIN, WEB1).total == 5 and r.notifications(10 * MIN, WEB2).total == 0


def test_nothing_is_sent_while_flapping() -> None:
    values: list[float | None] = [1, 9] * 12 + [1] * 30
    store = store_with({WEB1: values})
    m = threshold(flap=Flapping(low=20, high=30))
    r = replay(m, Engine(store), T0, T0 + (len(values) - 1) * MIN, MIN)
    state_changes = len(changes(r.transitions))
    assert any(t.event == "flapping_started" for t in r.transitions)
    assert any(t.event == "flapping_stopped" for t in r.transitions)
    sent = r.notifications(3600_000)
    assert 0 < sent.total < state_changes
    unflapped = replay(threshold(), Engine(store), T0, T0 + (len(values) - 1) * MIN, MIN)
    assert unflapped.notifications(3600_000).total == state_changes


def test_warm_up_carries_state_from_before_the_window() -> None:
    store = store_with({WEB1: [9] * 30})
    m = threshold(for_s=600)
    start = T0 + 20 * MIN
    cold = replay(m, Engine(store), start, T0 + 29 * MIN, MIN)
    assert cold.transitions == () and not cold.intervals()  # waits out `for` (10m > 9m) again
    warm = replay(m, Engine(store), start, T0 + 29 * MIN, MIN, warmup_ms=15 * MIN)
    assert warm.initial[WEB1].state is State.CRITICAL and warm.transitions == ()
    [iv] = warm.intervals()
    assert (iv.start_ms, iv.end_ms, iv.state) == (start, None, State.CRITICAL)
    assert warm.notifications(5 * MIN) == NotificationCount(
        repeat=1
    )  # notified before: repeat at +5m


def test_metric_staleness_is_the_age_of_the_newest_sample() -> None:
    store = store_with({WEB1: [1] * 5}, name="image_processed")
    m = Monitor("stale", "d", StaleCheck(after_seconds=180, metric="image_processed"))
    r = replay(m, Engine(store), T0, T0 + 12 * MIN, MIN)
    assert changes(r.transitions) == [(8, WEB1, State.OK, State.CRITICAL)]  # last at 4m, 4m+3m < 8m
    [iv] = r.intervals()
    assert iv.peak == 8 * 60.0  # seconds, at the last step
    assert r.values[WEB1][:6] == [0.0, 0.0, 0.0, 0.0, 0.0, 60.0]


def test_queue_monitor_uses_high_and_low_water_marks() -> None:
    depth = {(("queue", "photos"),): [5, 150, 120, 50, 11, 10, 3]}
    store = store_with(depth, name="signalbox_queue_depth")
    m = Monitor("q", "d", QueueCheck("photos", high=100, low=10))
    r = replay(m, Engine(store), T0, T0 + 6 * MIN, MIN)
    key = (("queue", "photos"),)
    assert changes(r.transitions) == [
        (1, key, State.OK, State.CRITICAL),
        (5, key, State.CRITICAL, State.OK),
    ]
    assert r.intervals()[0].peak == 150


def test_a_monitor_firing_below_a_threshold_reports_its_lowest_value_as_peak() -> None:
    store = store_with({WEB1: [50, 5, 2, 7, 50]})
    r = replay(threshold(warning="< 10", critical="< 3"), Engine(store), T0, T0 + 4 * MIN, MIN)
    [iv] = r.intervals()
    assert (iv.state, iv.peak) == (State.CRITICAL, 2.0)


def test_nagios_monitors_cannot_be_replayed() -> None:
    m = Monitor("disk", "d", NagiosCheck(("check_disk",)), file="mon.yaml", line=7)
    with pytest.raises(ReplayError, match=r"'disk' \(mon.yaml:7\) runs a Nagios plugin"):
        replay(m, Engine(MemoryMetricStore()), T0, T0 + MIN, MIN)


def test_bad_windows_are_refused() -> None:
    e = Engine(MemoryMetricStore())
    with pytest.raises(UsageError, match="step must be positive"):
        replay(threshold(), e, T0, T0 + MIN, 0)
    with pytest.raises(UsageError, match="before start"):
        replay(threshold(), e, T0, T0 - MIN, MIN)


def test_series_are_keyed_without_their_name_and_the_first_of_equals_is_kept() -> None:
    assert series_key({"__name__": "a", "h": "1"}) == (("h", "1"),)
    store = MemoryMetricStore()
    store.write(
        [Sample("a", WEB1, 9.0, T0), Sample("b", WEB1, 1.0, T0), Sample("a", WEB2, 1.0, T0)], 0
    )
    r = replay(threshold('{__name__=~"a|b"}'), Engine(store), T0, T0 + MIN, MIN)
    assert r.dropped == (WEB1,)  # b{host="web1"} shares a's labels: the runner keeps a's
    assert r.values[WEB1] == [9.0, 9.0] and r.states[WEB1].state is State.CRITICAL


# -- properties -----------------------------------------------------------------------------

_value = st.one_of(st.none(), st.sampled_from([0.0, 2.0, 3.5, 5.0, 9.0, math.nan]))


@st.composite
def _monitors(draw: st.DrawFn) -> Monitor:
    warning = draw(st.sampled_from([None, "> 4"]))
    critical = draw(st.sampled_from([None, "> 8"] if warning else ["> 8"]))
    recover = draw(st.sampled_from([None, "< 3"]))
    flap = draw(st.sampled_from([Flapping(enabled=False), Flapping(20, 30)]))
    return threshold(
        draw(st.sampled_from(["x", "max_over_time(x[2m])"])),
        warning,
        critical,
        recover,
        for_s=draw(st.sampled_from([0.0, 60.0, 150.0])),
        no_data=draw(st.sampled_from(list(State))),
        flap=flap,
    )


def _plateaus(draw: st.DrawFn, n_max: int) -> list[float | None]:
    runs = draw(st.lists(st.tuples(_value, st.integers(1, 30)), min_size=1, max_size=6))
    return [v for v, k in runs for _ in range(k)][:n_max]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_monitors(), st.data())
def test_replay_is_an_instant_query_and_a_state_machine_step_at_every_step(
    m: Monitor, data: st.DataObject
) -> None:
    web1 = data.draw(st.lists(_value, max_size=25))
    web2 = data.draw(st.lists(_value, max_size=25))
    store = store_with({WEB1: web1, WEB2: web2})
    engine = Engine(store)
    end = T0 + 24 * MIN
    r = replay(m, engine, T0, end, MIN)
    states: dict[Labels, SeriesState] = {}
    transitions: list[Transition] = []
    for t in range(T0, end + 1, MIN):
        res = engine.instant(m.check.query, t)  # type: ignore[union-attr]
        step = evaluate_vector(m, states, observations(res), t)
        states = step.states
        transitions.extend(step.transitions)
    assert r.transitions == tuple(transitions)
    assert r.states == states


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_monitors(), st.data())
def test_skipping_settled_steps_changes_nothing(m: Monitor, data: st.DataObject) -> None:
    web1 = _plateaus(data.draw, 120)
    web2 = _plateaus(data.draw, 120)
    store = store_with({WEB1: web1, WEB2: web2})
    engine = Engine(store)
    end = T0 + 119 * MIN
    at = [T0 + k * 7 * MIN for k in range(18)]
    fast = replay(m, engine, T0 + 10 * MIN, end, MIN, warmup_ms=10 * MIN, snapshot_at=at)
    slow = replay(
        m, engine, T0 + 10 * MIN, end, MIN, warmup_ms=10 * MIN, snapshot_at=at, shortcut=False
    )
    assert fast.transitions == slow.transitions
    assert fast.states == slow.states and fast.initial == slow.initial
    assert fast.snapshots == slow.snapshots


# -- the runner itself as the reference ------------------------------------------------------


class _Recorder:
    """A notifier that keeps the kind of every notification it is given."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def send(self, n: Notification) -> None:
        self.kinds.append(n.kind)


def _runner_yaml(m: Monitor) -> str:
    check = m.check
    assert isinstance(check, ThresholdCheck)
    lines = [
        f"- name: {m.name}",
        "  description: d",
        f"  query: '{check.query}'",
        "  notify: [ops]",
    ]
    for key in ("warning", "critical", "recover"):
        t = getattr(check, key)
        if t is not None:
            lines.append(f'  {key}: "{t}"')
    lines += [
        f"  for: {int(m.for_seconds)}s",
        f"  no_data: {m.no_data.value.lower()}",
        "  repeat: 5m",
    ]
    flap = m.flapping
    lines.append(
        f"  flapping: {{low: {flap.low:g}, high: {flap.high:g}}}"
        if flap.enabled
        else "  flapping: false"
    )
    return "\n".join(lines) + "\n"


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(_monitors(), st.data())
def test_replay_counts_the_notifications_the_real_runner_sends(
    tmp_path_factory: pytest.TempPathFactory, m: Monitor, data: st.DataObject
) -> None:
    tmp = tmp_path_factory.mktemp("runner")
    (tmp / "m.yaml").write_text(_runner_yaml(m))
    web1 = _plateaus(data.draw, 40)
    web2 = data.draw(st.lists(_value, max_size=40))
    store = store_with({WEB1: web1, WEB2: web2})
    ops = _Recorder()
    db = open_database(sqlite_url(tmp))
    engine = Engine(store, coarsest_resolution_s=0)
    runner = MonitorRunner(
        paths=[tmp / "m.yaml"],
        metric_store=store,
        state=MonitorStore(db),
        outbox=Outbox(db),
        notifiers={"ops": ops},
        repeat_s=3600,
        engine=engine,
    )
    end = T0 + 39 * MIN
    for t in range(T0, end + 1, MIN):
        report = runner.run_pass(t)
        assert not report.lint_errors
    loaded = load_monitors([tmp / "m.yaml"]).monitors[0]
    r = replay(loaded, engine, T0, end, MIN)
    want = NotificationCount(
        ops.kinds.count("firing"), ops.kinds.count("repeat"), ops.kinds.count("resolved")
    )
    assert r.notifications(5 * MIN) == want
    persisted = runner.state.series(m.name).get(m.name, {})
    assert {k: (v.state.state, v.state.pending) for k, v in persisted.items()} == {
        k: (s.state, s.pending) for k, s in r.states.items()
    }
    db.close()
