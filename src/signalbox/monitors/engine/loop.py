"""The monitor loop ``serve`` runs: a pass every interval; deliveries on workers of their own.

It runs in its own thread with its own database connection and metric store, and it never
dies of an error: a failed pass is logged and retried at the next interval. A pass only
evaluates and enqueues; each notifier's deliveries run on its own worker thread
(:mod:`signalbox.monitors.outbox.workers`), woken after the pass that queued for it, so a
receiver that hangs or fails cannot stretch the interval. Stopping waits a bounded time
for deliveries under way and leaves what is undelivered in the outbox.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from signalbox.clock import Clock, SystemClock
from signalbox.config import Settings
from signalbox.metrics.store import MetricStore

if TYPE_CHECKING:
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.monitors.outbox.workers import DeliveryWorkers

log = logging.getLogger("signalbox.monitors")


def start_monitor_loop(
    settings: Settings,
    metric_store_factory: Callable[[], MetricStore],
    stop_event: threading.Event,
    *,
    clock: Clock | None = None,
) -> threading.Thread:
    """Run a pass every ``monitors.interval``, deliveries on a worker per notifier, until
    ``stop_event`` is set; returns the started daemon thread. Errors are logged, never fatal.

    The thread opens its own database (one connection per thread: its own and each
    worker's) and metric store (from the factory) and closes them when it stops, after at
    most :data:`~signalbox.monitors.outbox.workers.STOP_WAIT_S` for deliveries under way.
    """
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.monitors.outbox.workers import DeliveryWorkers
    from signalbox.storage import open_database

    clk = clock or SystemClock()

    def run() -> None:
        with contextlib.ExitStack() as stack:
            try:
                db = open_database(settings.store_url)
                stack.callback(db.close)
                store = metric_store_factory()
                stack.callback(store.close)
                runner = MonitorRunner.from_settings(settings, store, db, clock=clk)
                workers = DeliveryWorkers(runner.outbox, runner.notifiers, clock=clk)
            except Exception:
                log.exception("monitor loop cannot start: monitors are NOT being evaluated")
                return
            workers.start()
            stack.callback(_stop_workers, workers)
            _loop(runner, workers, settings.monitors.interval_s, stop_event, clk)

    t = threading.Thread(target=run, name="signalbox-monitors", daemon=True)
    t.start()
    return t


def _stop_workers(workers: DeliveryWorkers) -> None:
    stuck = workers.stop()
    if stuck:
        log.warning(
            "stopped without waiting for notifier(s) %s: their receiver has not answered; "
            "what they were sending stays in the outbox for the next start",
            ", ".join(stuck),
        )


def _loop(
    runner: MonitorRunner,
    workers: DeliveryWorkers,
    interval_s: float,
    stop: threading.Event,
    clock: Clock,
) -> None:
    next_pass = 0.0
    while not stop.is_set():
        now = clock.now()
        # PostgreSQL with several `serve` instances (a later issue): elect the leader here
        # (a lease row or pg_try_advisory_lock) and let only the leader run passes and
        # deliveries. Until then, the outbox claim already keeps two senders off one row.
        if now >= next_pass:
            next_pass = now + interval_s
            now_ms = int(now * 1000)
            try:
                report = runner.run_pass(now_ms, deliver=False)
                workers.wake({e.notifier for e in report.queued})
                runner.outbox.expire_unconfigured(now_ms, runner.notifiers)
            except Exception:
                log.exception("monitor pass failed; will retry next interval")
        stop.wait(max(0.0, next_pass - clock.now()))
