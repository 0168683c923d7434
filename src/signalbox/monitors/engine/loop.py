"""The monitor loop ``serve`` runs: a pass every interval, outbox deliveries in between.

It runs in its own thread with its own database connection and metric store, and it never
dies of an error: a failed pass is logged and retried at the next interval.
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

log = logging.getLogger("signalbox.monitors")

DELIVER_EVERY_S = 5.0


def start_monitor_loop(
    settings: Settings,
    metric_store_factory: Callable[[], MetricStore],
    stop_event: threading.Event,
    *,
    clock: Clock | None = None,
) -> threading.Thread:
    """Run a pass every ``monitors.interval`` and outbox deliveries in between, until
    ``stop_event`` is set; returns the started daemon thread. Errors are logged, never fatal.

    The thread opens its own database connection and metric store (from the factory) and
    closes them when it stops.
    """
    from signalbox.monitors.engine.runner import MonitorRunner
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
            except Exception:
                log.exception("monitor loop cannot start: monitors are NOT being evaluated")
                return
            _loop(runner, settings.monitors.interval_s, stop_event, clk)

    t = threading.Thread(target=run, name="signalbox-monitors", daemon=True)
    t.start()
    return t


def _loop(runner: MonitorRunner, interval_s: float, stop: threading.Event, clock: Clock) -> None:
    next_pass = 0.0
    while not stop.is_set():
        now = clock.now()
        # PostgreSQL with several `serve` instances (a later issue): elect the leader here
        # (a lease row or pg_try_advisory_lock) and let only the leader run passes and
        # deliveries. Until then, the outbox claim already keeps two senders off one row.
        try:
            if now >= next_pass:
                next_pass = now + interval_s
                runner.run_pass(int(now * 1000))
            else:
                runner.deliver(int(now * 1000))
        except Exception:
            log.exception("monitor pass failed; will retry next interval")
        stop.wait(max(0.0, min(DELIVER_EVERY_S, next_pass - clock.now())))
