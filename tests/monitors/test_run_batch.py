"""The runner observes a whole pass with one read of the metric store, and that changes
nothing: every state, transition and notification decision is what observing each monitor
on its own (the runner before batching) gives."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Matcher, Sample
from signalbox.metrics.store import SeriesPoints
from signalbox.monitors.definitions.model import Monitor, State
from signalbox.monitors.engine.passes import MonitorPass, PassReport
from signalbox.monitors.engine.policy import dependency_order
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.notify import Notification
from signalbox.monitors.outbox.store import Outbox
from signalbox.monitors.state.store import MonitorStore
from signalbox.query import Engine
from signalbox.storage import open_database

T0 = 1_700_000_040_000
MIN = 60_000

MIXED = """
- name: web_slow
  description: d
  query: avg_over_time(latency[3m])
  warning: "> 4"
  critical: "> 8"
  recover: "< 3"
  for: 2m
  depends_on: [db_down]
  notify: [ops]
  repeat: 3m
- name: db_down
  description: d
  query: db_up
  critical: "< 1"
  notify: [ops]
- name: web1_slow
  description: d
  query: latency{host="web1"} * 1000
  critical: "> 8000"
  no_data: ok
  notify: [ops]
- name: web2_slow
  description: d
  query: latency{host="web2"} * 1000
  critical: "> 8000"
  flapping: {low: 10, high: 20}
  notify: [ops]
- name: web3_slow
  description: d
  query: latency{host="web3"} * 1000
  warning: "> 5000"
  depends_on: [web1_slow]
  notify: [ops]
- name: worst
  description: d
  query: max(latency)
  warning: "> 5"
- name: ratio
  description: d
  query: latency / on(dc) latency
  critical: "> 1"
- name: queue_deep
  description: d
  queue: {name: photos, high: 1000, low: 10}
  notify: [ops]
- name: feed_stale
  description: d
  stale: {metric: 'feed_items{source="photos"}', after: 3m}
  notify: [ops]
- name: spool_stale
  description: d
  stale: {spool_file: "photos*.metrics", after: 5m, severity: warning}
"""

HOSTS = {"web1": "a", "web2": "a", "web3": "b"}


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, n: Notification) -> None:
        self.sent.append(n)


class CountingStore(MemoryMetricStore):
    """A memory store counting the reads it serves."""

    def __init__(self) -> None:
        super().__init__()
        self.selects = 0
        self.latests = 0

    def select(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool = True,
        align_ms: int = 0,
    ) -> list[SeriesPoints]:
        self.selects += 1
        return super().select(
            matchers, start_ms, end_ms, step_ms=step_ms, aggregates=aggregates, align_ms=align_ms
        )

    def latest(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels, int, float]]:
        self.latests += 1
        return super().latest(matchers)


def runner_over(tmp: Path, store: MemoryMetricStore, yaml_text: str) -> MonitorRunner:
    (tmp / "monitors").mkdir(exist_ok=True)
    (tmp / "monitors" / "m.yaml").write_text(yaml_text)
    db = open_database(f"sqlite:///{tmp / 'state.db'}")
    return MonitorRunner(
        paths=[tmp / "monitors"],
        metric_store=store,
        state=MonitorStore(db),
        outbox=Outbox(db, rng=random.Random(1)),
        notifiers={"ops": Recorder()},
        repeat_s=3600,
        engine=Engine(store, coarsest_resolution_s=0),
        host="web1",
    )


def one_monitor_at_a_time(
    runner: MonitorRunner, state: MonitorStore, monitors: Sequence[Monitor], now_ms: int
) -> PassReport:
    """The runner's pass as it was before batching: each monitor observed on its own."""
    p = MonitorPass(state, now_ms, PassReport(now_ms), repeat_s=runner.repeat_s)
    for m in dependency_order(monitors):
        try:
            got = runner.observe(m, now_ms)
        except Exception as e:
            got = e
        p.evaluate(m, got)
    with state.transaction():
        state.save_series(p.writes.records, p.writes.removed)
    return p.report


maybe = st.one_of(st.none(), st.floats(0, 12, allow_nan=False))
step = st.fixed_dictionaries(
    {
        "latency": st.fixed_dictionaries({h: maybe for h in HOSTS}),
        "db_up": st.sampled_from([None, 0.0, 1.0, 1.0]),
        "queue": st.one_of(st.none(), st.floats(0, 2000, allow_nan=False)),
        "feed": st.booleans(),
        "spool_age": st.one_of(st.none(), st.floats(0, 600, allow_nan=False)),
    }
)


def write_step(store: MemoryMetricStore, s: dict[str, object], t: int) -> None:
    samples = []
    latency = s["latency"]
    assert isinstance(latency, dict)
    for host, v in latency.items():
        if v is not None:
            samples.append(Sample("latency", (("dc", HOSTS[host]), ("host", host)), v, t))
    if s["db_up"] is not None:
        samples.append(Sample("db_up", (), float(s["db_up"]), t))  # type: ignore[arg-type]
    if s["queue"] is not None:
        samples.append(Sample("signalbox_queue_depth", (("queue", "photos"),), s["queue"], t))  # type: ignore[arg-type]
    if s["feed"]:
        samples.append(Sample("feed_items", (("source", "photos"),), 1.0, t))
    samples.append(Sample("feed_items", (("source", "other"),), 1.0, t))  # not selected
    samples.append(Sample("signalbox_spool_file_age_seconds", (("file", "a.metrics"),), 0.0, t))
    if s["spool_age"] is not None:
        labels = (("file", "photos.metrics"),)
        samples.append(Sample("signalbox_spool_file_age_seconds", labels, s["spool_age"], t))  # type: ignore[arg-type]
    store.write(samples, t)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(step, min_size=1, max_size=10), st.lists(st.integers(1, 4), min_size=10, max_size=10)
)
def test_the_batched_pass_decides_what_one_monitor_at_a_time_decides(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[dict[str, object]],
    gaps: list[int],
) -> None:
    tmp = tmp_path_factory.mktemp("batched")
    store = MemoryMetricStore()
    runner = runner_over(tmp, store, MIXED)
    reference = MonitorStore(open_database(f"sqlite:///{tmp / 'reference.db'}"))
    monitors = runner.load().monitors
    assert len(monitors) == 10
    t = T0
    for s, gap in zip(steps, gaps, strict=False):
        write_step(store, s, t)
        got = runner.run_pass(t)
        want = one_monitor_at_a_time(runner, reference, monitors, t)
        assert got.transitions == want.transitions
        assert got.check_errors == want.check_errors
        assert (got.monitors, got.series) == (want.monitors, want.series)
        assert runner.state.series() == reference.series()
        t += gap * MIN


def test_a_pass_reads_the_metric_store_once_however_many_monitors(tmp_path: Path) -> None:
    store = CountingStore()
    hosts = [f"web{i:03d}" for i in range(200)]
    text = "".join(
        f'- name: slow_{h}\n  description: d\n  query: avg_over_time(latency{{host="{h}"}}[5m])\n'
        f'  critical: "> 8"\n'
        f"- name: stale_{h}\n  description: d\n  stale: {{metric: 'latency{{host=\"{h}\"}}', after: 5m}}\n"
        for h in hosts
    )
    runner = runner_over(tmp_path, store, text)
    for k in range(3):
        t = T0 + k * MIN
        store.write(
            [Sample("latency", (("host", h),), 9.0 if h == "web007" else 1.0, t) for h in hosts], t
        )
        store.selects = store.latests = 0
        report = runner.run_pass(t)
        assert (store.selects, store.latests) == (1, 1)
        assert report.monitors == 400 and not report.check_errors
    firing = {
        name
        for name, recs in runner.state.series().items()
        for r in recs.values()
        if r.state.state is State.CRITICAL
    }
    assert firing == {"slow_web007"}


def test_a_query_that_fails_makes_only_its_monitor_unknown(tmp_path: Path) -> None:
    store = MemoryMetricStore()
    runner = runner_over(tmp_path, store, MIXED)
    write_step(
        store,
        {
            "latency": {"web1": 9.0, "web2": 1.0, "web3": 1.0},
            "db_up": 1.0,
            "queue": 5.0,
            "feed": True,
            "spool_age": 1.0,
        },
        T0,
    )
    report = runner.run_pass(T0)
    assert list(report.check_errors) == ["ratio"]
    assert "many-to-many" in report.check_errors["ratio"] or "many" in report.check_errors["ratio"]
    states = {
        name: [r.state.state for r in recs.values()] for name, recs in runner.state.series().items()
    }
    assert states["ratio"] == [State.UNKNOWN]
    assert states["web1_slow"] == [State.CRITICAL] and states["db_down"] == [State.OK]


def test_an_edited_monitor_file_takes_effect_at_the_next_pass(tmp_path: Path) -> None:
    store = MemoryMetricStore()
    runner = runner_over(tmp_path, store, MIXED)
    store.write([Sample("db_up", (), 0.5, T0)], T0)
    runner.run_pass(T0)
    assert runner.state.series()["db_down"][()].state.state is State.CRITICAL
    (tmp_path / "monitors" / "m.yaml").write_text(
        MIXED.replace('critical: "< 1"', 'critical: "< 0.1"')
    )
    store.write([Sample("db_up", (), 0.5, T0 + MIN)], T0 + MIN)
    runner.run_pass(T0 + MIN)
    assert runner.state.series()["db_down"][()].state.state is State.OK
