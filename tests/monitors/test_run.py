"""The monitor runner: passes with injected time, notification policy, persistence across restarts."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.config import settings_from_dict
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Matcher, Sample, labels_of
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import MetricStore
from signalbox.monitors.definitions.model import FlagAction, Monitor, State
from signalbox.monitors.engine.evaluate import SeriesState, Transition
from signalbox.monitors.engine.loop import start_monitor_loop
from signalbox.monitors.engine.passes import PassReport
from signalbox.monitors.engine.policy import decide, dependency_order
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.notify import Notification, Notifier, WebhookNotifier
from signalbox.monitors.outbox.store import Outbox
from signalbox.monitors.state.records import SeriesRecord
from signalbox.monitors.state.store import MonitorStore
from signalbox.monitors.status import build_status
from signalbox.query import Engine
from signalbox.storage import open_database
from tests.monitors.notify.notify_helpers import Receiver, receiver
from tests.stores import pg_schema_url, sqlite_url

__all__ = ["receiver"]

T0 = 1_700_000_000_000
MIN = 60_000


class Recorder:
    """A notifier that keeps every notification it is given."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, n: Notification) -> None:
        self.sent.append(n)

    def kinds(self) -> list[str]:
        return [n.kind for n in self.sent]


class Rig:
    """Monitor files, a metric store, a state database and a runner over them."""

    def __init__(
        self,
        tmp_path: Path,
        yaml_text: str,
        *,
        notifiers: dict[str, Notifier] | None = None,
        repeat_s: float = 3600,
        metrics: MetricStore | None = None,
        url: str | None = None,
    ) -> None:
        self.dir = tmp_path / "monitors"
        self.dir.mkdir(exist_ok=True)
        (self.dir / "m.yaml").write_text(yaml_text)
        self.db = open_database(url or sqlite_url(tmp_path))
        self.metrics = metrics or MemoryMetricStore()
        self.ops = Recorder()
        self.notifiers: dict[str, Notifier] = (
            notifiers if notifiers is not None else {"ops": self.ops}
        )
        self.repeat_s = repeat_s
        self.runner = self.new_runner()

    def new_runner(self, **kw: object) -> MonitorRunner:
        """Fresh objects over the same database: what a restart of `serve` builds."""
        return MonitorRunner(
            paths=[self.dir],
            metric_store=self.metrics,
            state=MonitorStore(self.db),
            outbox=Outbox(self.db, rng=random.Random(3)),
            notifiers=self.notifiers,
            repeat_s=self.repeat_s,
            engine=Engine(self.metrics, coarsest_resolution_s=0),
            host="web1",
            **kw,  # type: ignore[arg-type]
        )

    def put(self, name: str, value: float, at_ms: int, **labels: str) -> None:
        self.metrics.write([Sample(name, labels_of(labels), value, at_ms)], at_ms)

    def at(self, at_ms: int, **values: float) -> PassReport:
        """Write ``values`` (metric=value) at ``at_ms`` and run a pass then."""
        for name, v in values.items():
            self.put(name, v, at_ms)
        return self.runner.run_pass(at_ms)

    def history(self, monitor: str) -> list[tuple[str, str]]:
        return [(e.event, e.note) for e in self.runner.state.history(monitor)]

    def record(self, monitor: str, labels: Labels = ()) -> SeriesRecord:
        return self.runner.state.series(monitor)[monitor][labels]


LATENCY = """
- name: resize_slow
  description: Resizes slower than users tolerate.
  owner: photos
  runbook: https://wiki.example/resize
  query: latency
  warning: "> 4"
  critical: "> 8"
  repeat: 10m
  labels: {team: photos}
  notify: [ops]
"""


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """A rig over LATENCY, its state on SQLite and on PostgreSQL."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url()) if request.param == "postgresql" else None
        r = Rig(tmp_path, LATENCY, url=url)
        yield r
        r.db.close()


# -- notifications --------------------------------------------------------------------------


def test_firing_then_repeat_every_interval_then_one_resolved(rig: Rig) -> None:
    rig.at(T0, latency=9)
    rig.at(T0 + 5 * MIN, latency=9)
    rig.at(T0 + 10 * MIN, latency=9.5)
    rig.at(T0 + 11 * MIN, latency=1)
    rig.at(T0 + 12 * MIN, latency=1)
    assert rig.ops.kinds() == ["firing", "repeat", "resolved"]
    firing, repeat, resolved = rig.ops.sent
    assert (firing.state, firing.previous_state, firing.value, firing.summary) == (
        State.CRITICAL,
        State.OK,
        9.0,
        "latency = 9 > 8",
    )
    assert (
        firing.labels == (("team", "photos"),)
        and firing.owner == "photos"
        and firing.repeat_s == 600
    )
    assert repeat.started_at == firing.started_at == T0 / 1000 and repeat.value == 9.5
    assert (resolved.state, resolved.previous_state, resolved.ends_at) == (
        State.OK,
        State.CRITICAL,
        (T0 + 11 * MIN) / 1000,
    )
    assert resolved.started_at == T0 / 1000
    assert len({n.id for n in rig.ops.sent}) == 3


def test_no_resolved_is_sent_when_no_firing_was(tmp_path: Path) -> None:
    r = Rig(tmp_path, LATENCY.replace("notify: [ops]", "notify: [ops]\n  no_data: ok"))
    r.at(T0, latency=3)
    r.at(T0 + MIN, latency=2)
    r.at(T0 + 10 * MIN)  # no data at all, ok by policy
    assert r.ops.sent == []
    r.db.close()


def test_escalation_and_de_escalation_each_fire_with_the_previous_state(rig: Rig) -> None:
    rig.at(T0, latency=5)
    rig.at(T0 + MIN, latency=9)
    rig.at(T0 + 2 * MIN, latency=5)
    assert [(n.kind, n.previous_state, n.state) for n in rig.ops.sent] == [
        ("firing", State.OK, State.WARNING),
        ("firing", State.WARNING, State.CRITICAL),
        ("firing", State.CRITICAL, State.WARNING),
    ]


def test_unknown_is_recorded_but_neither_fires_nor_resolves(rig: Rig) -> None:
    rig.at(T0, latency=9)
    rig.at(T0 + 6 * MIN)  # the sample fell out of the 5m lookback: no data -> UNKNOWN
    assert rig.record("resize_slow").state.state is State.UNKNOWN
    rig.at(T0 + 30 * MIN)
    assert rig.ops.kinds() == ["firing"]


def test_every_transition_is_stored_with_time_value_and_reason(rig: Rig) -> None:
    rig.at(T0, latency=9)
    rig.at(T0 + MIN, latency=1)
    states = [e for e in rig.runner.state.history("resize_slow") if e.event == "state"]
    assert [(e.at_ms, e.from_state, e.to_state, e.value, e.reason) for e in states] == [
        (T0, State.OK, State.CRITICAL, 9.0, "latency = 9 > 8"),
        (T0 + MIN, State.CRITICAL, State.OK, 1.0, "recovered: 1, not > 4"),
    ]
    assert [
        e.reason for e in rig.runner.state.history("resize_slow") if e.event == "notification"
    ] == [
        "firing to ops",
        "resolved to ops",
    ]


# -- silences, acks, dependencies, flapping -------------------------------------------------


def test_a_silence_holds_notifications_records_transitions_and_its_expiry_resumes(rig: Rig) -> None:
    rig.runner.state.add_silence(
        "resize_slow", (), now_ms=T0, until_ms=T0 + 30 * MIN, by="alice", reason="deploy"
    )
    rig.at(T0 + MIN, latency=9)
    rig.at(T0 + 20 * MIN, latency=9)  # a repeat would be due: still silenced
    assert rig.ops.sent == []
    (change,) = [e for e in rig.runner.state.history("resize_slow") if e.event == "state"]
    assert change.note.startswith("silenced by silence #1 by alice: deploy")
    rig.at(T0 + 30 * MIN, latency=9)  # the silence has ended
    assert [(n.kind, n.started_at) for n in rig.ops.sent] == [("firing", (T0 + MIN) / 1000)]


def test_a_problem_that_starts_and_ends_inside_a_silence_sends_nothing(rig: Rig) -> None:
    rig.runner.state.add_silence(
        "resize_slow", (), now_ms=T0, until_ms=T0 + 30 * MIN, by="a", reason="x"
    )
    rig.at(T0 + MIN, latency=9)
    rig.at(T0 + 2 * MIN, latency=1)
    rig.at(T0 + 40 * MIN, latency=1)
    assert rig.ops.sent == []


def test_a_resolve_during_a_silence_is_sent_when_the_silence_ends(rig: Rig) -> None:
    rig.at(T0, latency=9)
    rig.runner.state.add_silence(
        "resize_slow", (), now_ms=T0 + 1, until_ms=T0 + 30 * MIN, by="a", reason="x"
    )
    rig.at(T0 + MIN, latency=1)
    assert rig.ops.kinds() == ["firing"]
    rig.at(T0 + 31 * MIN, latency=1)
    assert rig.ops.kinds() == ["firing", "resolved"]


def test_a_silence_for_some_series_leaves_the_others_notifying(tmp_path: Path) -> None:
    r = Rig(tmp_path, LATENCY)
    r.runner.state.add_silence(
        "resize_slow", (("shard", "7"),), now_ms=T0, until_ms=T0 + 9 * MIN, by="a", reason="x"
    )
    r.put("latency", 9, T0, shard="7")
    r.put("latency", 9, T0, shard="8")
    r.runner.run_pass(T0)
    assert [n.labels for n in r.ops.sent] == [(("shard", "8"), ("team", "photos"))]
    r.db.close()


def test_an_ack_stops_repeats_until_the_state_changes(rig: Rig) -> None:
    rig.at(T0, latency=5)
    rig.runner.state.acknowledge("resize_slow", now_ms=T0 + 1, by="carol", reason="on it")
    rig.at(T0 + 10 * MIN, latency=5)
    rig.at(T0 + 20 * MIN, latency=5)
    assert rig.ops.kinds() == ["firing"]
    rig.at(T0 + 21 * MIN, latency=9)  # escalation: the ack no longer holds
    rig.at(T0 + 31 * MIN, latency=9)
    assert rig.ops.kinds() == ["firing", "firing", "repeat"]


DEPENDENT = """
- name: resize_slow
  description: Resizes slower than users tolerate.
  query: latency
  critical: "> 8"
  depends_on: [photo_db_down]
  notify: [ops]
- name: photo_db_down
  description: The photo database does not answer.
  query: db_up
  critical: "< 1"
  notify: [ops]
"""


def test_a_dependency_that_is_not_ok_suppresses_and_says_so(tmp_path: Path) -> None:
    r = Rig(tmp_path, DEPENDENT)  # resize_slow comes first in the file, is evaluated second
    r.at(T0, db_up=0, latency=9)
    assert [n.monitor for n in r.ops.sent] == ["photo_db_down"]
    assert r.record("resize_slow").suppressed_by == "photo_db_down"
    (change,) = [e for e in r.runner.state.history("resize_slow") if e.event == "state"]
    assert change.note == "suppressed by photo_db_down"
    status = {m.name: m for m in build_status(r.runner, T0).monitors}
    assert status["resize_slow"].series[0].suppressed_by == "photo_db_down"
    r.at(T0 + MIN, db_up=1, latency=9)  # the database is back, resize is still slow
    assert [(n.monitor, n.kind) for n in r.ops.sent] == [
        ("photo_db_down", "firing"),
        ("photo_db_down", "resolved"),
        ("resize_slow", "firing"),
    ]
    r.db.close()


def test_dependencies_are_evaluated_first_whatever_the_file_order() -> None:
    from signalbox.monitors.definitions.model import ThresholdCheck

    def mon(name: str, *deps: str) -> Monitor:
        return Monitor(name, "d", ThresholdCheck("x"), depends_on=deps)

    order = dependency_order([mon("a", "b"), mon("c"), mon("b", "c"), mon("d", "a", "zzz")])
    assert [m.name for m in order] == ["c", "b", "a", "d"]


def test_flapping_holds_notifications_and_records_start_and_stop(tmp_path: Path) -> None:
    r = Rig(tmp_path, LATENCY.replace('  warning: "> 4"\n', ""))
    t = T0
    for i in range(12):
        r.at(t, latency=9 if i % 2 == 0 else 1)
        t += MIN
    events = [e for e in r.runner.state.history("resize_slow") if e.event == "flapping_started"]
    assert len(events) == 1 and events[0].note == "notifications held while flapping"
    started = events[0].at_ms
    assert all(n.created_at * 1000 < started for n in r.ops.sent)
    assert [
        e.note
        for e in r.runner.state.history("resize_slow")
        if e.event == "state" and e.at_ms > started
    ] == ["flapping"] * ((t - started) // MIN - 1)
    for _ in range(25):
        r.at(t, latency=1)
        t += MIN
    assert "flapping_stopped" in [e.event for e in r.runner.state.history("resize_slow")]
    kinds = r.ops.kinds()
    assert kinds.count("firing") == kinds.count("resolved")  # receivers end up told it is over
    r.db.close()


def test_a_series_that_vanishes_while_flapping_is_resolved_once_flapping_stops(
    tmp_path: Path,
) -> None:
    yaml_text = LATENCY.replace('  critical: "> 8"\n', "") + (
        "  no_data: ok\n  flapping: {low: 20, high: 30}\n"
    )
    r = Rig(tmp_path, yaml_text)
    t = T0
    for v in [0, 5, 0, 5, 0, 5]:  # fires three times, then the series goes away
        r.put("latency", v, t, host="web2")
        r.runner.run_pass(t)
        t += MIN
    assert r.ops.kinds() == ["firing", "resolved"] * 2 + ["firing"]
    for _ in range(34):  # no data (OK) while flapping: held; then flapping stops
        r.runner.run_pass(t)
        t += MIN
    events = [e.event for e in r.runner.state.history("resize_slow")]
    assert events.count("flapping_started") == events.count("flapping_stopped") == 1
    assert r.ops.kinds() == ["firing", "resolved"] * 3  # the held resolve is sent
    assert r.runner.state.series("resize_slow") == {}  # nothing owed: the series is forgotten
    r.db.close()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(State)), st.booleans(), st.booleans(), st.integers(0, 20 * MIN)
        ),
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None)
def test_the_policy_never_resolves_what_it_did_not_fire_and_never_speaks_while_held(
    steps: list[tuple[State, bool, bool, int]],
) -> None:
    rec = SeriesRecord("m", (), SeriesState.initial(T0))
    now, open_alert = T0, False
    for state, held, acked, advance in steps:
        now += advance
        since = rec.state.since if state is rec.state.state else now
        rec = SeriesRecord(
            "m",
            (),
            SeriesState(state, since),
            rec.notified_state,
            rec.fired_at_ms,
            rec.last_notified_ms,
            rec.last_notified_kind,
        )
        rec, kind = decide(
            rec, now_ms=now, repeat_ms=10 * MIN, hold="silenced" if held else "", acked=acked
        )
        if held:
            assert kind is None
        if kind == "resolved":
            assert open_alert and state is State.OK
            open_alert = False
        elif kind == "firing":
            assert state.firing
            open_alert = True
        elif kind == "repeat":
            assert open_alert and state.firing and not acked
        if not held and state.firing:
            assert rec.notified_state is state  # receivers always learn the current firing state
        if not held and state is State.OK:
            assert rec.notified_state is None


# -- actions --------------------------------------------------------------------------------


class Actions:
    def __init__(self) -> None:
        self.calls: list[tuple[FlagAction, str, State]] = []

    def apply(self, action: FlagAction, monitor: Monitor, transition: Transition) -> None:
        self.calls.append((action, monitor.name, transition.to_state))


ACTIONS = (
    LATENCY
    + '  on_critical: {flag: photo_uploads, set: "off"}\n  on_warning: {flag: photo_uploads, set: "50%"}\n'
)


def test_the_action_handler_is_called_once_per_transition_into_the_state(tmp_path: Path) -> None:
    r = Rig(tmp_path, ACTIONS)
    actions = Actions()
    r.runner = r.new_runner(action_handler=actions)
    for i, v in enumerate([9, 9, 9, 5, 9, 1, 9]):
        r.at(T0 + i * MIN, latency=v)
    assert [(a.set, s) for a, _, s in actions.calls] == [
        ("off", State.CRITICAL),
        ("50%", State.WARNING),
        ("off", State.CRITICAL),
        ("off", State.CRITICAL),
    ]
    r.db.close()


def test_the_default_action_handler_records_and_logs_the_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = Rig(tmp_path, ACTIONS)
    with caplog.at_level(logging.WARNING, logger="signalbox.monitors.engine.actions"):
        r.at(T0, latency=9)
        r.at(T0 + MIN, latency=9)
    text = (
        "flag photo_uploads set off requested by monitor resize_slow: this runner has no flag store"
    )
    assert [e.reason for e in r.runner.state.history("resize_slow") if e.event == "action"] == [
        text
    ]
    assert [rec.getMessage().split(" (")[0] for rec in caplog.records] == [text]
    r.db.close()


# -- checks ---------------------------------------------------------------------------------


def test_lint_errors_are_logged_and_the_valid_monitors_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = Rig(tmp_path, LATENCY + "- name: broken\n  description: no check here\n")
    with caplog.at_level(logging.ERROR, logger="signalbox.monitors"):
        report = r.at(T0, latency=9)
        r.at(T0 + MIN, latency=9)
    assert [e.monitor for e in report.lint_errors] == ["broken"]
    assert report.monitors == 1 and r.ops.kinds() == ["firing"]
    logged = [rec.getMessage() for rec in caplog.records if "not loaded" in rec.getMessage()]
    assert (
        len(logged) == 1 and "m.yaml:" in logged[0] and "broken" in logged[0]
    )  # once, not every pass
    r.db.close()


def test_an_unknown_notifier_is_reported_but_the_monitor_still_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = Rig(tmp_path, LATENCY.replace("notify: [ops]", "notify: [ops, pagr]"))
    with caplog.at_level(logging.ERROR):
        report = r.at(T0, latency=9)
    (err,) = report.lint_errors
    assert (err.monitor, err.key, err.line) == ("resize_slow", "notify", 11)
    assert "unknown notifier 'pagr'" in str(err)
    assert r.ops.kinds() == ["firing"]
    dead = [e for e in r.runner.outbox.entries() if e.notifier == "pagr"]
    assert [(e.status, e.last_error) for e in dead] == [
        ("dead", "notifier 'pagr' is not configured in signalbox.toml")
    ]
    assert any("monitor runs, but" in rec.getMessage() for rec in caplog.records)
    r.db.close()


STALE = """
- name: photos_feed_stale
  description: The photo feed stopped updating.
  stale: {metric: 'feed_items{source="photos"}', after: 10m}
  notify: [ops]
- name: spool_stale
  description: The photo job stopped writing its spool file.
  stale: {spool_file: "photos*.metrics", after: 10m, severity: warning}
- name: queue_deep
  description: The photo queue is backing up.
  queue: {name: photos, high: 1000, low: 10}
"""


def test_staleness_and_queue_checks_read_their_rule_selectors(tmp_path: Path) -> None:
    r = Rig(tmp_path, STALE)
    r.put("feed_items", 5, T0, source="photos")
    r.put("feed_items", 5, T0 + 9 * MIN, source="other")
    r.put("signalbox_spool_file_age_seconds", 30, T0 + 8 * MIN, file="photos.metrics")
    r.put("signalbox_spool_file_age_seconds", 30, T0 + 8 * MIN, file="other.metrics")
    r.put("signalbox_queue_depth", 1500, T0 + 11 * MIN, queue="photos")
    r.runner.run_pass(T0 + 11 * MIN)
    feed = r.record("photos_feed_stale", (("source", "photos"),)).state
    assert (feed.state, feed.reason) == (
        State.CRITICAL,
        'age of feed_items{source="photos"} = 11m > 10m',
    )
    spool = r.record("spool_stale", (("file", "photos.metrics"),)).state
    assert (spool.state, spool.last_value) == (State.OK, 210.0)  # 30s old at collection + 3m since
    assert set(r.runner.state.series("spool_stale")["spool_stale"]) == {
        (("file", "photos.metrics"),)
    }
    q = r.record("queue_deep", (("queue", "photos"),)).state
    assert (q.state, q.reason) == (State.CRITICAL, "depth of queue photos = 1500 >= 1000")
    r.runner.run_pass(T0 + 18 * MIN)
    assert r.record("spool_stale", (("file", "photos.metrics"),)).state.state is State.WARNING
    r.db.close()


def test_a_nagios_plugin_sets_the_state_and_its_perfdata_becomes_metrics(tmp_path: Path) -> None:
    plugin = tmp_path / "check_photos"
    plugin.write_text("#!/bin/sh\necho 'PHOTOS CRITICAL - 5% free | free=5%;20;10;0;100'\nexit 2\n")
    plugin.chmod(0o755)
    r = Rig(
        tmp_path,
        f"""
- name: photo_disk
  description: The photo disk is nearly full.
  command: [{plugin}]
  notify: [ops]
""",
    )
    r.runner.run_pass(T0)
    st_ = r.record("photo_disk").state
    assert (st_.state, st_.reason) == (State.CRITICAL, "PHOTOS CRITICAL - 5% free")
    got = {
        (n, lb): v
        for n, lb, _, v in r.metrics.latest([Matcher("__name__", "=~", "nagios_photo_disk_.*")])
    }
    assert got[("nagios_photo_disk_free_percent", (("host", "web1"),))] == 5.0
    assert got[("nagios_photo_disk_free_crit_percent", (("host", "web1"),))] == 10.0
    assert r.ops.sent[0].summary == "PHOTOS CRITICAL - 5% free"
    r.db.close()


def test_a_check_that_cannot_run_is_unknown_never_ok(tmp_path: Path) -> None:
    broken = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'metrics.db'}"))
    broken.close()  # every read now fails
    r = Rig(tmp_path, LATENCY, metrics=broken)
    report = r.runner.run_pass(T0)
    assert "resize_slow" in report.check_errors
    rec = r.record("resize_slow")
    assert rec.state.state is State.UNKNOWN and rec.state.reason.startswith("check failed: ")
    assert rec.state.last_seen_ms is None
    r.db.close()


def test_each_series_state_is_written_as_a_metric(tmp_path: Path) -> None:
    r = Rig(tmp_path, LATENCY)
    r.put("latency", 9, T0, shard="7", monitor="theirs")
    r.put("latency", 5, T0, shard="8")
    r.put("latency", 1, T0, shard="9")
    r.runner.run_pass(T0)
    got = {
        lb: (ts, v)
        for _, lb, ts, v in r.metrics.latest([Matcher("__name__", "=", "signalbox_monitor_state")])
    }
    web1 = ("host", "web1")  # the runner's host, as the collector adds it
    assert got == {
        (("exported_monitor", "theirs"), web1, ("monitor", "resize_slow"), ("shard", "7")): (
            T0,
            2.0,
        ),
        (web1, ("monitor", "resize_slow"), ("shard", "8")): (T0, 1.0),
        (web1, ("monitor", "resize_slow"), ("shard", "9")): (T0, 0.0),
    }
    assert r.metrics.metadata()["signalbox_monitor_state"].type == "gauge"
    r.db.close()


# -- restarts and durability ----------------------------------------------------------------

HOOKED = LATENCY.replace("notify: [ops]", "notify: [hook]")


def test_a_restart_neither_loses_nor_duplicates_a_notification(
    tmp_path: Path, receiver: Receiver
) -> None:
    r = Rig(tmp_path, HOOKED, notifiers={"hook": WebhookNotifier("hook", receiver.url)})
    receiver.status = 500
    r.put("latency", 9, T0)
    r.runner.run_pass(T0, deliver=False)  # "crash" right after the commit, before any delivery
    assert receiver.requests == []
    r.runner = r.new_runner()  # restart: new objects over the same database
    r.at(T0 + MIN, latency=9)  # delivery fails (500)
    r.runner = r.new_runner()
    r.at(T0 + 2 * MIN, latency=9)  # fails again
    receiver.status = 200
    for minute in range(3, 6):
        r.at(T0 + minute * MIN, latency=9)
    r.runner = r.new_runner()
    r.at(T0 + 6 * MIN, latency=1)
    r.runner = r.new_runner()
    r.at(T0 + 7 * MIN, latency=1)
    bodies = [json.loads(q.body) for q in receiver.requests]
    assert [b["kind"] for b in bodies] == ["firing", "firing", "firing", "resolved"]
    assert len({b["id"] for b in bodies[:3]}) == 1  # one notification, retried under one id
    assert [e.status for e in r.runner.outbox.entries()] == ["sent", "sent"]
    r.db.close()


def test_state_survives_a_restart_so_for_and_repeat_keep_counting(tmp_path: Path) -> None:
    r = Rig(tmp_path, LATENCY.replace("repeat: 10m", "repeat: 10m\n  for: 3m"))
    r.at(T0, latency=9)
    r.runner = r.new_runner()
    r.at(T0 + 2 * MIN, latency=9)
    assert r.ops.sent == [] and r.record("resize_slow").state.pending is State.CRITICAL
    r.runner = r.new_runner()
    r.at(T0 + 3 * MIN, latency=9)
    r.runner = r.new_runner()
    r.at(T0 + 13 * MIN, latency=9)
    assert r.ops.kinds() == ["firing", "repeat"]
    r.db.close()


# -- drill, status, loop --------------------------------------------------------------------


def test_a_drill_goes_through_the_outbox_marked_as_a_test(rig: Rig) -> None:
    (d,) = rig.runner.drill("resize_slow", T0)
    assert d.outcome == "sent" and d.entry.notifier == "ops"
    (n,) = rig.ops.sent
    assert n.drill and n.kind == "drill" and "nothing is wrong" in n.summary
    assert [e.kind for e in rig.runner.outbox.entries()] == ["drill"]
    assert rig.history("resize_slow") == [("drill", "")]


def test_status_shows_state_silence_ack_flapping_and_last_notification(rig: Rig) -> None:
    rig.at(T0, latency=9)
    rig.runner.state.acknowledge("resize_slow", now_ms=T0 + 1, by="carol", reason="on it")
    rig.runner.state.add_silence(
        "resize_slow", (), now_ms=T0 + 2, until_ms=T0 + 60 * MIN, by="al", reason="deploy"
    )
    report = build_status(rig.runner, T0 + 3)
    (m,) = report.monitors
    (s,) = m.series
    assert (m.name, m.kind, m.loaded, m.state) == ("resize_slow", "threshold", True, State.CRITICAL)
    assert (s.state, s.since_ms, s.value, s.acknowledged) == (
        State.CRITICAL,
        T0,
        9.0,
        "by carol: on it",
    )
    assert s.silenced.startswith("silence #1 by al: deploy until ")
    assert s.delivery is not None and (s.last_notified_kind, s.delivery.status) == (
        "firing",
        "sent",
    )
    d = report.to_dict()
    assert d["monitors"][0]["series"][0]["last_notification"]["delivery"]["status"] == "sent"
    assert json.loads(json.dumps(d)) == d


def test_the_loop_runs_passes_until_stopped(tmp_path: Path) -> None:
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "m.yaml").write_text(LATENCY.replace("notify: [ops]", "notify: [log]"))
    s = settings_from_dict(
        {"monitors": {"interval": "1s"}, "notifiers": {"log": {"type": "log"}}},
        source="t.toml",
        base_dir=tmp_path,
    )
    writer = SQLMetricStore(open_database(s.store_url))
    writer.write([Sample("latency", (), 9.0, None)], int(time.time() * 1000))
    writer.close()
    stop = threading.Event()
    thread = start_monitor_loop(s, lambda: SQLMetricStore(open_database(s.store_url)), stop)
    db = open_database(s.store_url)
    store = MonitorStore(db)
    outbox = Outbox(db)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # bounded wait for the first pass and its delivery
        if store.series() and [e.status for e in outbox.entries()] == ["sent"]:
            break  # (delivered by the notifier's worker, after the pass)
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert store.series()["resize_slow"][()].state.state is State.CRITICAL
    assert [e.status for e in outbox.entries()] == ["sent"]
    db.close()
