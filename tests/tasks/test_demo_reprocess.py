"""The demo's reprocessing jobs: deferred with the gate's reading while the simulated
database is busy, run once it is quiet again (a real metric store and query engine, the
real worker; the worker's clock moves past the deferral instead of the test sleeping)."""

from __future__ import annotations

import random
import time

from signalbox.clock import FrozenClock
from signalbox.demo.reprocess import (
    BUSY_FOR_S,
    BUSY_START_S,
    GATE_NAME,
    LOAD_METRIC,
    QUEUE,
    Reprocessing,
    db_threads_running,
    demo_tasks_settings,
    install,
)
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.query import Engine
from signalbox.tasks.memstore import MemoryQueueStore
from signalbox.tasks.registry import Registry
from signalbox.tasks.settings import TasksSettings
from signalbox.tasks.worker import Worker


def _load(store: MemoryMetricStore, value: float) -> None:
    now = int(time.time() * 1000)
    store.write([Sample(LOAD_METRIC, (("db", "photos-db"),), value, now)], now)


def test_the_simulated_load_is_busy_once_a_cycle_and_quiet_otherwise() -> None:
    rng = random.Random(1)
    assert db_threads_running(BUSY_START_S - 1, rng) < 25
    assert db_threads_running(BUSY_START_S + 1, rng) > 40
    assert db_threads_running(BUSY_START_S + BUSY_FOR_S + 1, rng) < 25


def test_jobs_defer_with_the_reading_while_the_database_is_busy_and_drain_after() -> None:
    metrics = MemoryMetricStore()
    registry = Registry()
    task = install(Engine(metrics), registry)
    queue = MemoryQueueStore()
    ids = Reprocessing(task, queue, photos=5).enqueue_batch()
    clock = FrozenClock(time.time())
    settings = demo_tasks_settings(TasksSettings())

    def burst() -> None:
        Worker(queue, registry=registry, settings=settings, clock=clock).run(burst=True)

    _load(metrics, 62.0)
    burst()
    [s] = queue.stats(int(clock.now() * 1000))
    assert (s.ready, s.scheduled, s.outcomes) == (
        0, len(ids), {"done": 0, "failed": 0, "dead": 0, "deferred": len(ids)},
    )  # fmt: skip
    [(gate, reason, held)] = s.holding
    assert gate == GATE_NAME and held == len(ids)
    assert reason == f"max({LOAD_METRIC}) 62 >= 40 (reopens below 25)"

    _load(metrics, 12.0)
    time.sleep(2.1)  # the gate's reading is cached for 2 s
    clock.advance(60)  # past the longest deferral
    burst()
    [s] = queue.stats(int(clock.now() * 1000))
    assert (s.ready, s.scheduled, s.holding) == (0, 0, ())
    assert s.outcomes == {"done": len(ids), "failed": 0, "dead": 0, "deferred": len(ids)}
    assert queue.gate_closures() == {GATE_NAME: len(ids)}
    assert QUEUE == "reprocess"
