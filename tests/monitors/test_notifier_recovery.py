"""Once a notifier is fixed, its queued notifications go out: none stays stuck behind an
older row that cannot be delivered. Through the runner, with a real webhook receiver."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.config import Settings, settings_from_dict
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.notify import WebhookNotifier
from signalbox.monitors.outbox.store import Outbox
from signalbox.storage import Database, open_database
from tests.monitors.notify.notify_helpers import Receiver, receiver
from tests.stores import pg_schema_url, sqlite_url

__all__ = ["receiver"]

T0 = 1_700_000_000_000
MIN = 60_000

MONITOR = """
- name: resize_slow
  description: Resizes slower than users tolerate.
  query: latency
  critical: "> 8"
  repeat: 10m
  notify: [hook]
"""


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(pg_schema_url())
            if request.param == "postgresql"
            else sqlite_url(tmp_path)
        )
        d = open_database(url)
        yield d
        d.close()


class Setup:
    """Monitor files and a config whose webhook reads its Authorization from the environment."""

    def __init__(self, tmp_path: Path, db: Database, receiver: Receiver) -> None:
        (tmp_path / "monitors").mkdir()
        (tmp_path / "monitors" / "m.yaml").write_text(MONITOR)
        self.settings: Settings = settings_from_dict(
            {
                "notifiers": {
                    "hook": {
                        "type": "webhook",
                        "url": f"{receiver.url}/hook",
                        "headers_from_env": {"Authorization": "HOOK_AUTH"},
                    }
                }
            },
            source="signalbox.toml",
            base_dir=tmp_path,
            environ={},
        )
        self.db, self.metrics = db, MemoryMetricStore()

    def runner(self, environ: dict[str, str], **outbox: float) -> MonitorRunner:
        """What `serve` or `monitors run` builds in a process with ``environ``."""
        return MonitorRunner.from_settings(
            self.settings,
            self.metrics,
            self.db,
            environ=environ,
            outbox=Outbox(self.db, rng=random.Random(3), **outbox),
        )

    def put(self, value: float, at_ms: int) -> None:
        self.metrics.write([Sample("latency", (), value, at_ms)], at_ms)


def kinds(receiver: Receiver) -> list[str]:
    return [json.loads(q.body)["kind"] for q in receiver.requests]


def test_rows_of_a_notifier_missing_its_secret_go_out_in_order_at_the_first_pass_after_the_fix(
    tmp_path: Path, db: Database, receiver: Receiver
) -> None:
    s = Setup(tmp_path, db, receiver)
    broken = s.runner(environ={})
    for minute in range(31):  # fires, then repeats every 10m, for half an hour
        s.put(9, T0 + minute * MIN)
        report = broken.run_pass(T0 + minute * MIN)
        assert report.delivery.sent == 0
    assert receiver.requests == []
    held = broken.outbox.entries(status="pending")
    assert [e.kind for e in held] == ["firing", "repeat", "repeat", "repeat"]
    # untried, so not backing off: nothing counted an attempt against a notifier never built
    assert all(e.attempts == 0 and e.next_attempt_ms == e.created_ms for e in held)
    (why,) = {d.error for d in report.delivery.deliveries}
    assert "HOOK_AUTH" in why and "fix signalbox.toml" in why

    fixed = s.runner(environ={"HOOK_AUTH": "Bearer t0ken"})  # restarted with the secret set
    s.put(9, T0 + 31 * MIN)
    report = fixed.run_pass(T0 + 31 * MIN)
    assert report.delivery.sent == 4
    assert kinds(receiver) == ["firing", "repeat", "repeat", "repeat"]
    assert {q.headers["Authorization"] for q in receiver.requests} == {"Bearer t0ken"}
    assert fixed.outbox.entries(status="pending") == []


def test_a_drill_after_the_fix_sends_the_held_drill_first_instead_of_waiting_behind_it(
    tmp_path: Path, db: Database, receiver: Receiver
) -> None:
    s = Setup(tmp_path, db, receiver)
    (d,) = s.runner(environ={}).drill("resize_slow", T0)
    assert d.outcome == "retry" and "HOOK_AUTH" in d.error
    (d,) = s.runner(environ={"HOOK_AUTH": "x"}).drill("resize_slow", T0 + MIN)
    assert d.outcome == "sent", d.error
    assert kinds(receiver) == ["drill", "drill"]
    assert [e.status for e in Outbox(db).entries()] == ["sent", "sent"]


def test_a_row_past_max_age_and_backing_off_no_longer_holds_newer_ones_back(
    tmp_path: Path, db: Database, receiver: Receiver
) -> None:
    s = Setup(tmp_path, db, receiver)
    env = {"HOOK_AUTH": "x"}
    receiver.status = 500
    s.put(9, T0)
    s.runner(env, base_delay_s=600, max_delay_s=600).run_pass(T0)  # next attempt 5-10m away
    receiver.status = 200
    s.put(1, T0 + MIN)
    report = s.runner(env).run_pass(T0 + MIN)
    assert report.delivery.deliveries == []  # the resolved waits behind its firing: order kept
    # Restarted with max_age = 90s: the firing row is past it and not due, so it would be
    # dead at its next failure anyway; it goes now and the resolved behind it goes out.
    report = s.runner(env, max_age_s=90).run_pass(T0 + 2 * MIN)
    outcomes = [(d.entry.kind, d.outcome) for d in report.delivery.deliveries]
    assert outcomes == [("firing", "dead"), ("resolved", "sent")]
    assert "expired so newer" in report.delivery.deliveries[0].error
    assert "500" in report.delivery.deliveries[0].error
    assert kinds(receiver) == ["firing", "resolved"]  # the first (failed) firing, then resolved


def test_rows_for_a_notifier_removed_from_the_config_are_dead_at_once_not_in_the_way(
    tmp_path: Path, db: Database, receiver: Receiver
) -> None:
    s = Setup(tmp_path, db, receiver)
    hook = WebhookNotifier("hook", f"{receiver.url}/hook")
    outbox = Outbox(db, rng=random.Random(3), base_delay_s=600, max_delay_s=600)
    receiver.status = 500
    s.put(9, T0)
    runner = MonitorRunner.from_settings(s.settings, s.metrics, db, environ={}, outbox=outbox)
    runner.notifiers = {"hook": hook}
    runner.run_pass(T0)
    (row,) = outbox.entries(status="pending")
    assert row.next_attempt_ms > T0 + MIN  # backing off
    report = outbox.deliver_due(T0 + MIN, {})  # "hook" is gone from this process's config
    assert [(d.outcome, d.entry.id) for d in report.deliveries] == [("dead", row.id)]
    assert "not configured" in report.deliveries[0].error


def test_an_expired_row_another_process_is_sending_is_neither_dead_nor_overtaken(
    tmp_path: Path, db: Database, receiver: Receiver
) -> None:
    """A claim moves a row one lease ahead, so an in-flight row looks "not due": a second
    process must wait for it, not mark it dead and send the newer row past it."""
    import threading

    s = Setup(tmp_path, db, receiver)
    hook = WebhookNotifier("hook", f"{receiver.url}/hook")
    sending, release = threading.Event(), threading.Event()

    class SlowHook:
        def send(self, n: object) -> None:
            sending.set()
            assert release.wait(10)
            hook.send(n)  # type: ignore[arg-type]

    first = Outbox(db, max_age_s=90)
    runner = s.runner(environ={})  # its notifier lacks its secret: rows wait, untried
    s.put(9, T0)
    runner.run_pass(T0)
    s.put(1, T0 + MIN)
    runner.run_pass(T0 + MIN)
    assert [e.kind for e in first.entries(status="pending")] == ["firing", "resolved"]
    t = threading.Thread(target=first.deliver_due, args=(T0 + MIN, {"hook": SlowHook()}))
    t.start()
    try:
        assert sending.wait(10)
        # another process, past the firing row's max_age, while the first is sending it
        second = Outbox(db, max_age_s=90)
        report = second.deliver_due(T0 + 2 * MIN, {"hook": hook})
        assert report.deliveries == []
        assert kinds(receiver) == []
    finally:
        release.set()
        t.join(10)
    assert kinds(receiver) == ["firing", "resolved"]  # in order, both from the first process
    assert first.entries(status="dead") == []
