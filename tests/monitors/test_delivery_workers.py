"""Delivery off the evaluation path: a worker per notifier, bounded attempts, bounded stop.

Issue 8: a receiver that accepted and never answered held ``serve``'s monitor loop (one
evaluation in 20 s at a 2 s interval) and a receiver answering 500 got one attempt in that
time. Here, over SQLite and PostgreSQL (the outbox lives in the store): the monitor loop
keeps its interval and a healthy notifier its pace beside a hung one; a failing receiver
is retried on the backoff schedule with no pass involved; stopping leaves a stuck attempt
behind within the bound and the next start sends it, once. The same through a real
``signalbox serve`` is tests/monitors/test_delivery_serve.py.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import Settings, settings_from_dict
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Matcher
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors.engine.loop import start_monitor_loop
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.notify import Notification, NotifyError, WebhookNotifier
from signalbox.monitors.outbox.metrics import FAILED_METRIC, PENDING_METRIC, TOTAL_METRIC
from signalbox.monitors.outbox.store import Outbox
from signalbox.monitors.outbox.workers import ROUND, DeliveryWorkers
from signalbox.monitors.state.store import MonitorStore
from signalbox.storage import Database, open_database
from signalbox.storage.backoff import backoff_s
from tests.monitors.delivery_helpers import always_down, hook
from tests.monitors.notify.notify_helpers import make_notification

T0 = 1_700_000_000_000

INTERVAL_MS = 250
ALWAYS_CRITICAL = always_down("hung", "ok", repeat="100ms")  # a repeat due at every pass


def _settings(tmp_path: Path, store_url: str, notifiers: dict[str, object]) -> Settings:
    (tmp_path / "monitors").mkdir(exist_ok=True)
    (tmp_path / "monitors" / "m.yaml").write_text(ALWAYS_CRITICAL)
    return settings_from_dict(
        {
            "store": store_url,
            "monitors": {"interval": f"{INTERVAL_MS}ms"},
            "notifiers": notifiers,
        },
        source="t.toml",
        base_dir=tmp_path,
    )


def _pass_times(store: SQLMetricStore, since_ms: int) -> list[int]:
    """When the monitor's state sample was written: one per evaluation pass."""
    (points,) = store.select(
        [Matcher("__name__", "=", "signalbox_monitor_state")],
        since_ms,
        int(time.time() * 1000) + 1000,
        aggregates=False,
    )
    return points.timestamps


def test_a_hung_receiver_neither_stretches_the_interval_nor_delays_another_notifier(
    tmp_path: Path, store_url: str
) -> None:
    with hook(status=None) as hung, hook(status=200) as ok:
        s = _settings(
            tmp_path,
            store_url,
            {  # the hung one keeps the default 10 s timeout: longer than the whole test
                "hung": {"type": "webhook", "url": hung.url},
                "ok": {"type": "webhook", "url": ok.url},
            },
        )
        started_ms = int(time.time() * 1000)
        stop = threading.Event()
        thread = start_monitor_loop(s, lambda: SQLMetricStore(open_database(s.store_url)), stop)
        time.sleep(1.25)  # five passes or so
        stopping = time.monotonic()
        stop.set()
        thread.join(10)
        stop_took = time.monotonic() - stopping

        reader = SQLMetricStore(open_database(s.store_url))
        passes = _pass_times(reader, started_ms)
        reader.close()
        # a pass each interval (500 ms slack), though the hung receiver holds its attempt
        # for 10 s
        assert len(passes) >= 3, passes
        assert max(b - a for a, b in itertools.pairwise(passes)) < INTERVAL_MS + 500, passes
        # the healthy receiver got each pass's notification soon after the pass made it
        got = sorted(wall for _, wall, _ in ok.hits)
        for p in passes[:-1]:
            assert any(0 <= wall - p / 1000 < 1.0 for wall in got), (p, got)
        # the hung receiver got the first notification once (held open), nothing more
        assert len(hung.hits) == 1
        # stopping did not wait for it (bounded by STOP_WAIT_S = 2 s) ...
        assert not thread.is_alive() and stop_took < 4.0, stop_took

        db = open_database(s.store_url)
        try:
            rows = {e.id: e for e in Outbox(db).entries() if e.notifier == "hung"}
            (held_id,) = (b["id"] for b in hung.bodies())
            held = rows[held_id]
            # ... and its notification waits in the outbox, due at once for the next start
            assert held.status == "pending" and held.attempts == 1
            assert held.next_attempt_ms <= int(time.time() * 1000)
            assert "stopped while this attempt was under way" in held.last_error
            # the healthy receiver's rows were sent, but for one the last pass queued just
            # before the stop: no new attempt starts once stopping, so it waits, never tried
            unsent = [e for e in Outbox(db).entries() if e.notifier == "ok" and e.status != "sent"]
            assert len(unsent) <= 1, unsent
            assert all(
                e.status == "pending" and e.attempts == 0 and e.created_ms >= passes[-1]
                for e in unsent
            ), (unsent, passes)
        finally:
            db.close()


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, n: Notification) -> None:
        self.sent.append(n)


class Stuck:
    """A notifier whose send blocks until released, then fails (a receiver that hangs and
    finally drops the connection)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, n: Notification) -> None:
        self.entered.set()
        self.release.wait(30)
        raise NotifyError("stuck", "POST http://127.0.0.1:1: connection reset", True)


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_database(store_url)
    yield database
    database.close()


def test_a_row_stuck_at_stop_is_released_and_sent_once_by_the_next_start(db: Database) -> None:
    box = Outbox(db, rng=random.Random(1))
    box.enqueue("pager", make_notification(id="n-stuck"), T0)
    stuck = Stuck()
    first = DeliveryWorkers(box, {"pager": stuck}, clock=FrozenClock(T0 / 1000))
    first.start()
    try:
        assert stuck.entered.wait(5)
        began = time.monotonic()
        assert first.stop(timeout_s=0.5) == ["pager"]  # left behind, not waited for
        assert time.monotonic() - began < 1.5
        (row,) = box.entries()
        assert (row.status, row.attempts, row.next_attempt_ms) == ("pending", 1, T0)

        # "the next start": a fresh outbox and workers, the receiver answering now
        again = Outbox(db, rng=random.Random(2))
        works = Recorder()
        second = DeliveryWorkers(again, {"pager": works}, clock=FrozenClock(T0 / 1000 + 1))
        second.start()
        _wait(lambda: again.entries()[0].status == "sent")
        assert second.stop() == []
    finally:
        stuck.release.set()  # the old attempt fails now, after the row was sent ...
        _wait(lambda: not first.alive())
    (row,) = Outbox(db).entries()
    assert [n.id for n in works.sent] == ["n-stuck"]
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, "")  # ... and changes nothing


def test_a_failing_receiver_is_retried_on_the_backoff_schedule_with_no_pass_at_all(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    base, cap = 0.1, 0.4
    box = Outbox(db, base_delay_s=base, max_delay_s=cap, rng=random.Random(5))
    with hook(status=500, path="/hooks/T0KEN-s3cr3t") as failing, hook(status=200) as ok:
        box.enqueue("flaky", make_notification(id="n-flaky"), _now_ms())
        workers = DeliveryWorkers(
            box,
            {"flaky": WebhookNotifier("flaky", failing.url), "ok": WebhookNotifier("ok", ok.url)},
        )
        caplog.set_level(logging.WARNING, logger="signalbox.monitors.outbox")
        workers.start()
        try:
            # 0.1 s doubling to 0.4 s: 5 attempts within 1.1 s of backoff; polled, bounded
            _wait(lambda: len(failing.hits) >= 5, timeout=2.5)
            box.enqueue("ok", make_notification(id="n-ok"), _now_ms())
            workers.wake(["ok"])  # what the loop does after a pass queued for "ok"
            _wait(lambda: len(ok.hits) == 1, timeout=1.0)
        finally:
            assert workers.stop() == []
    times = failing.times()
    assert len(times) >= 5, times  # 0.1 s doubling to 0.4 s: at least 5 attempts in 2.5 s
    assert {b["id"] for b in failing.bodies()} == {"n-flaky"}
    for n, (a, b) in enumerate(itertools.pairwise(times), start=1):
        # backoff_s draws from the upper half of min(cap, base * 2^(n-1))
        full = min(cap, base * 2 ** (n - 1))
        assert full / 2 - 0.02 <= b - a <= full + 0.3, (n, b - a)
    assert backoff_s(1, random.Random(0), base_s=base, cap_s=cap) <= base  # the schedule tested
    (row,) = [e for e in box.entries() if e.id == "n-flaky"]
    assert row.status == "pending" and row.attempts == len(times)
    # one log line per failed attempt, naming the notifier and the reason, never the token
    failed = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(failed) == len(times), failed
    assert all("to flaky" in m and "answered HTTP 500" in m for m in failed), failed
    assert "T0KEN" not in caplog.text and "s3cr3t" not in caplog.text
    assert box.stats.snapshot() == {"flaky": (len(times), len(times)), "ok": (1, 0)}


def test_a_pass_writes_the_backlog_and_the_attempts_per_notifier(
    db: Database, tmp_path: Path
) -> None:
    (tmp_path / "m.yaml").write_text(always_down("hung", "ok", repeat="1m"))
    metrics = MemoryMetricStore()
    stuck = Stuck()
    stuck.release.set()  # fails at once
    ok = Recorder()
    runner = MonitorRunner(
        paths=[tmp_path / "m.yaml"],
        metric_store=metrics,
        state=MonitorStore(db),
        outbox=Outbox(db, base_delay_s=30, rng=random.Random(1)),
        notifiers={"hung": stuck, "ok": ok},
        repeat_s=3600,
    )
    runner.run_pass(T0)  # queues a firing for each; "hung" fails, "ok" gets it
    runner.run_pass(T0 + 60_000)  # queues a repeat each; the firing still waits for "hung"

    def value(name: str, notifier: str) -> float:
        (v,) = [
            v
            for n, labels, _, v in metrics.latest()
            if n == name and ("notifier", notifier) in labels
        ]
        return v

    # counted before the second pass queued: "hung" had 1 waiting, "ok" none
    assert (value(PENDING_METRIC, "hung"), value(PENDING_METRIC, "ok")) == (1, 0)
    assert (value(TOTAL_METRIC, "hung"), value(FAILED_METRIC, "hung")) == (1, 1)
    assert (value(TOTAL_METRIC, "ok"), value(FAILED_METRIC, "ok")) == (1, 0)
    assert metrics.metadata()[FAILED_METRIC].type == "counter"
    assert len(ok.sent) == 2 and runner.outbox.pending_counts() == {"hung": 2}


def test_a_backlog_longer_than_a_round_goes_out_without_waiting_for_the_poll(
    db: Database,
) -> None:
    box = Outbox(db)
    n = ROUND + 20
    with db.transaction():
        for i in range(n):  # distinct alerts, so none waits behind another
            box.enqueue("ok", make_notification(id=f"n-{i}", labels=(("i", str(i)),)), T0)
    ok = Recorder()
    workers = DeliveryWorkers(box, {"ok": ok}, clock=FrozenClock(T0 / 1000), poll_s=30)
    workers.start()
    try:
        _wait(lambda: len(ok.sent) == n, timeout=5)
    finally:
        assert workers.stop() == []
    assert [x.id for x in ok.sent] == [f"n-{i}" for i in range(n)]  # oldest first


def test_rows_of_a_notifier_no_longer_configured_are_dead_and_the_others_untouched(
    db: Database,
) -> None:
    box = Outbox(db)
    box.enqueue("gone", make_notification(id="n-gone"), T0)
    box.enqueue("ok", make_notification(id="n-ok"), T0)
    ok = Recorder()
    (d,) = box.expire_unconfigured(T0, {"ok": ok}).deliveries
    assert (d.entry.id, d.outcome) == ("n-gone", "dead")
    assert "'gone' is not configured" in d.error
    assert {e.id: e.status for e in box.entries()} == {"n-gone": "dead", "n-ok": "pending"}
    assert ok.sent == []  # that is its worker's job
    assert [d.entry.id for d in box.deliver_due(T0, {"ok": ok}, only="ok").deliveries] == ["n-ok"]


def test_an_http_attempt_is_bounded_as_a_whole_not_per_read() -> None:
    """A receiver that trickles its answer a byte at a time never trips a per-read timeout;
    the attempt's deadline still ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    done = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                if done.wait(0.1):
                    return
                conn.sendall(bytes([byte]))

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    hook_ = WebhookNotifier("slow", f"http://127.0.0.1:{server.getsockname()[1]}/x", timeout_s=0.6)
    began = time.monotonic()
    try:
        with pytest.raises(NotifyError, match=r"timed out \(no complete answer within 0.6s\)") as e:
            hook_.send(make_notification())
        assert e.value.retryable
        assert time.monotonic() - began < 1.5
    finally:
        done.set()
        t.join(5)
        server.close()


# -- helpers -------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _wait(cond: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s")
