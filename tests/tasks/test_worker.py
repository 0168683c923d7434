"""The worker on a real SQLite queue, one batch at a time on the test's thread, time frozen:
done, retried with backoff and jitter, dead with the traceback, deferred by gates without
using a retry, resumed from a checkpoint, held when its task is unknown, dead when its row
is corrupt, released at stop; priorities, delays and unique jobs end to end."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.gates.base import CallableGate, Decision
from signalbox.tasks.jobs import NewJob
from signalbox.tasks.registry import Registry, Task
from signalbox.tasks.sqlstore import SQLQueueStore
from signalbox.tasks.worker import Worker
from tests.tasks.conftest import FAST, NOW

NOW_MS = int(NOW * 1000)


def worker(store: SQLQueueStore, reg: Registry, clock: FrozenClock, **kw: Any) -> Worker:
    return Worker(store, registry=reg, settings=FAST, clock=clock, name="w1", **kw)


def test_a_job_runs_once_and_is_gone(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    seen: list[Any] = []
    t = Task(lambda a, b=None: seen.append((a, b)), name="collect", registry=reg)
    e = t.enqueue(1, b={"x": [1, 2]})
    w = worker(store, reg, clock)
    assert w.work_batch() == 1
    assert seen == [(1, {"x": [1, 2]})]
    assert store.get(e.id) is None and w.counts["done"] == 1
    assert w.work_batch() == 0


def test_a_failing_job_backs_off_then_dies_with_its_traceback(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(photo: int) -> None:
        raise ValueError(f"photo {photo} is corrupt")

    t = Task(explode, name="explode", queue="photos", registry=reg)
    jid = t.enqueue(7).id
    w = worker(store, reg, clock)
    delays = []
    with caplog.at_level(logging.ERROR, logger="signalbox.tasks.worker"):
        for _ in range(FAST.retries):
            assert w.work_batch() == 1
            j = store.get(jid)
            assert j is not None and j.status == "ready"
            delays.append((j.due_ms - int(clock.now() * 1000)) / 1000)
            clock.set(j.due_ms / 1000)
        assert w.work_batch() == 1
    # exponential: ~10 s then ~20 s, each drawn from the upper half (jitter)
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20
    dead = store.get(jid)
    assert dead is not None and dead.status == "dead" and dead.failures == 3
    assert "ValueError: photo 7 is corrupt" in dead.last_error and "Traceback" in dead.last_error
    first = caplog.records[0]
    assert f"job {jid}" in first.getMessage() and "queue photos" in first.getMessage()
    assert "attempt 1" in first.getMessage() and first.exc_info is not None
    assert "dead after 3 failures" in caplog.records[-1].getMessage()
    assert w.counts == {"failed": 2, "dead": 1}


def test_a_closed_gate_defers_without_using_a_retry_and_doubles_its_delay(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    load = {"open": False}
    gate = CallableGate(
        lambda: Decision(
            load["open"], "", "Threads_running 80 >= 50" if not load["open"] else "ok"
        ),
        name="mysql_load",
        interval=0,
        delay=1,
    )
    ran: list[int] = []

    def heavy(n: int) -> None:
        ran.append(n)
        raise RuntimeError("fails once it runs")

    t = Task(heavy, name="heavy", gates=[gate], registry=reg, retries=5)
    jid = t.enqueue(1).id
    w = worker(store, reg, clock)
    delays = []
    for _ in range(5):
        assert w.work_batch() == 1
        j = store.get(jid)
        assert j is not None
        delays.append(round((j.due_ms - int(clock.now() * 1000)) / 1000))
        clock.set(j.due_ms / 1000)
    assert ran == []
    assert [10 <= d <= 11 for d in delays[:1]] == [True]
    assert 20 <= delays[1] <= 22 and 40 <= delays[2] <= 44 and delays[3] == delays[4] == 60
    j = store.get(jid)
    assert j is not None
    assert (j.attempts, j.failures, j.defers) == (0, 0, 5)
    assert (j.gate, j.gate_reason) == ("mysql_load", "Threads_running 80 >= 50")
    assert store.gate_closures() == {"mysql_load": 5}
    # open again: it runs; its failure backs off as a first failure (deferrals forgotten)
    load["open"] = True
    assert w.work_batch() == 1
    j = store.get(jid)
    assert j is not None and ran == [1]
    assert (j.attempts, j.failures, j.defers, j.gate) == (1, 1, 0, None)
    assert 5_000 <= j.due_ms - int(clock.now() * 1000) <= 10_000


def test_a_checkpoint_stops_the_job_when_a_gate_closes_and_the_next_run_resumes_there(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    replica = {"ok": True}
    gate = CallableGate(lambda: replica["ok"], name="replication", interval=0)
    done: list[int] = []

    def reprocess(rows: int, ctx: Any) -> None:
        start = ctx.state["next"] if ctx.state else 0
        for i in range(start, rows):
            done.append(i)
            if i == 2:
                replica["ok"] = False  # the replica falls behind mid-job
            ctx.checkpoint({"next": i + 1})

    t = Task(reprocess, name="reprocess", gates=[gate], registry=reg)
    jid = t.enqueue(5).id
    w = worker(store, reg, clock)
    w.work_batch()
    j = store.get(jid)
    assert j is not None and done == [0, 1, 2]
    assert (j.checkpoint, j.gate, j.failures, j.attempts) == ('{"next":3}', "replication", 0, 0)
    replica["ok"] = True
    clock.set(j.due_ms / 1000)
    w.work_batch()
    assert done == [0, 1, 2, 3, 4] and store.get(jid) is None


def test_a_job_of_an_unknown_task_is_held_with_a_clear_error_not_dead(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    jid = store.enqueue(NewJob("default", "myapp.v2.new_task", "[[1]]", NOW_MS, NOW_MS)).id
    w = worker(store, reg, clock)
    with caplog.at_level(logging.WARNING, logger="signalbox.tasks.worker"):
        assert w.work_batch() == 1
    j = store.get(jid)
    assert j is not None and j.status == "ready"
    assert (j.attempts, j.failures) == (0, 0)
    assert j.due_ms == NOW_MS + 60_000
    assert "'myapp.v2.new_task' is not known" in j.last_error and "newer deploy" in j.last_error
    assert "held" in caplog.records[0].getMessage()
    # a worker that knows the task (the new deploy) runs it
    Task(lambda n: None, name="myapp.v2.new_task", registry=reg)
    clock.advance(60)
    assert w.work_batch() == 1 and store.get(jid) is None


def test_a_module_that_fails_to_import_is_logged_and_its_jobs_held(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="signalbox.tasks"):
        failed = reg.import_modules(["tests.tasks.no_such_module_here", "json"])
    assert list(failed) == ["tests.tasks.no_such_module_here"]
    assert "failed to import" in caplog.records[0].getMessage()
    jid = store.enqueue(
        NewJob("default", "tests.tasks.no_such_module_here.f", "[[]]", NOW_MS, NOW_MS)
    ).id
    worker(store, reg, clock).work_batch()
    j = store.get(jid)
    assert j is not None and "failed to import: tests.tasks.no_such_module_here" in j.last_error


def test_a_corrupt_argument_row_is_dead_at_once_with_the_reason(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    Task(lambda: None, name="t", registry=reg)
    bad_json = store.enqueue(NewJob("default", "t", "{not json", NOW_MS, NOW_MS)).id
    bad_shape = store.enqueue(NewJob("default", "t", '{"a": 1}', NOW_MS, NOW_MS)).id
    good = Task(lambda: None, name="ok", registry=reg).enqueue().id
    w = worker(store, reg, clock)
    while w.work_batch():
        pass
    for jid, why in ((bad_json, "not valid JSON"), (bad_shape, "not [args] or [args, kwargs]")):
        j = store.get(jid)
        assert j is not None and j.status == "dead" and why in j.last_error
    assert store.get(good) is None  # the worker went on


def test_stop_releases_the_claimed_jobs_not_started(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    w = worker(store, reg, clock)
    ran: list[int] = []

    def first_stops(n: int) -> None:
        ran.append(n)
        w.stop()

    t = Task(first_stops, name="t", registry=reg)
    ids = [t.enqueue(i).id for i in range(3)]
    w._per_job_s = 1e-6  # a warm worker claims a batch
    assert w.work_batch() == 3
    assert ran == [0] and store.get(ids[0]) is None
    for jid in ids[1:]:
        j = store.get(jid)
        assert j is not None and (j.attempts, j.claimed_by, j.due_ms) == (0, None, NOW_MS)


def test_priorities_delays_and_dates(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    from datetime import UTC, datetime

    order: list[str] = []
    low = Task(lambda s: order.append(s), name="low", registry=reg)
    high = Task(lambda s: order.append(s), name="high", priority=10, registry=reg)
    low.enqueue("low")
    high.enqueue("high")
    low.enqueue_in("10m", "later")
    low.enqueue_at(datetime.fromtimestamp(NOW + 3600, tz=UTC), "at")
    w = worker(store, reg, clock)
    w._per_job_s = 1e-6
    w.work_batch()
    assert order == ["high", "low"]
    clock.advance(600)
    w.work_batch()
    clock.advance(3000)
    w.work_batch()
    assert order == ["high", "low", "later", "at"]


def test_unique_for_keeps_a_second_enqueue_from_doubling_the_work(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    t = Task(lambda shard: None, name="reindex", unique_for="1h", registry=reg)
    a = t.enqueue(shard=7)
    assert t.enqueue(shard=7) == (a.id, False)
    assert t.enqueue(shard=8).created
    worker(store, reg, clock).work_batch()
    assert t.enqueue(shard=7).created  # the first one ran: a new call is new work


def test_queue_metrics_are_written_to_the_metric_store(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    from signalbox.metrics.memstore import MemoryMetricStore

    metrics = MemoryMetricStore()
    Task(lambda: None, name="idle", queue="idle", registry=reg)
    t = Task(lambda: None, name="p", queue="photos", registry=reg)
    for _ in range(3):
        t.enqueue()
    clock.advance(42)
    w = worker(store, reg, clock, metrics=metrics, queues=["photos"])
    w._per_job_s = 1e-6
    w.work_batch()
    Task(lambda: None, name="p", queue="photos", registry=reg).enqueue()
    clock.advance(5)
    w.write_metrics()
    got = {(n, labels): v for n, labels, _, v in metrics.latest()}
    photos = (("queue", "photos"),)
    assert got[("signalbox_queue_depth", photos)] == 1
    assert got[("signalbox_queue_oldest_age_seconds", photos)] == 5
    assert got[("signalbox_queue_running", photos)] == 0
    assert got[("signalbox_jobs_total", (("outcome", "done"), ("queue", "photos")))] == 3
    assert got[("signalbox_queue_depth", (("queue", "idle"),))] == 0  # zero is a value


def test_periodic_ticks_are_enqueued_once_by_the_leading_scheduler(
    store: SQLQueueStore, reg: Registry, clock: FrozenClock
) -> None:
    from signalbox.tasks.schedule import schedule_of

    Task(lambda: None, name="rollup", schedule=schedule_of(None, "10m"), registry=reg)
    a, b = (
        worker(store, reg, clock),
        Worker(store, registry=reg, settings=FAST, clock=clock, name="w2"),
    )
    for _ in range(7):  # an hour, both trying to lead every 10 minutes
        a._lead(int(clock.now() * 1000))
        b._lead(int(clock.now() * 1000))
        clock.advance(600)
    assert a._leading and not b._leading
    ticks = store.jobs()
    assert len(ticks) == 6 and {j.task for j in ticks} == {"rollup"}
    assert sorted({j.enqueued_ms % 600_000 for j in ticks}) == [NOW_MS % 600_000]


def test_a_run_past_its_timeout_fails_as_a_timeout(store: SQLQueueStore, reg: Registry) -> None:
    import time

    def stuck() -> None:
        while True:
            time.sleep(0.01)

    t = Task(stuck, name="stuck", timeout=0.3, retries=0, registry=reg)
    jid = t.enqueue().id
    w = Worker(store, registry=reg, settings=FAST, name="w")
    started = time.monotonic()
    w.run(burst=True)
    assert time.monotonic() - started < 5
    j = store.get(jid)
    assert j is not None and j.status == "dead" and "JobTimeout" in j.last_error
