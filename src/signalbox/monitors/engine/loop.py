"""The monitor loop ``serve`` runs: a pass every interval; deliveries on workers of their own.

It runs in its own thread with its own database connection and metric store, and it never
dies of an error: a failed pass is logged and retried at the next interval. A pass only
evaluates and enqueues; each notifier's deliveries run on its own worker thread
(:mod:`signalbox.monitors.outbox.workers`), woken after the pass that queued for it, so a
receiver that hangs or fails cannot stretch the interval. Stopping waits a bounded time
for deliveries under way and leaves what is undelivered in the outbox.

With several ``serve`` instances on one PostgreSQL store, only the leader
(:mod:`signalbox.storage.leader`) runs passes and deliveries: the others wait, checking a
flag in memory, until they lead. A pass carries its term's fence into its transaction, so a
pass begun by a leader that then stalled past its lease commits nothing. A new term starts
with a pass at once, and the rows its predecessor was sending when it died become due
(:meth:`~signalbox.monitors.outbox.store.Outbox.release_claims`) rather than after the
outbox's claim lease.
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
from signalbox.storage.leader import Leadership, LostLeadership, SingleHost

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
    leader: Leadership | None = None,
) -> threading.Thread:
    """Run a pass every ``monitors.interval``, deliveries on a worker per notifier, until
    ``stop_event`` is set, while ``leader`` says this instance leads (default: always);
    returns the started daemon thread. Errors are logged, never fatal.

    The thread opens its own database (one connection per thread: its own and each
    worker's) and metric store (from the factory) and closes them when it stops, after at
    most :data:`~signalbox.monitors.outbox.workers.STOP_WAIT_S` for deliveries under way.
    """
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.monitors.outbox.workers import DeliveryWorkers
    from signalbox.storage import open_database

    clk = clock or SystemClock()
    lead: Leadership = leader or SingleHost(settings.host)

    def run() -> None:
        with contextlib.ExitStack() as stack:
            try:
                db = open_database(settings.store_url)
                stack.callback(db.close)
                store = metric_store_factory()
                stack.callback(store.close)
                runner = MonitorRunner.from_settings(settings, store, db, clock=clk)
                runner.outbox.fence = lead.fence(db)
                workers = DeliveryWorkers(
                    runner.outbox, runner.notifiers, clock=clk, leading=lead.leading
                )
            except Exception:
                log.exception("monitor loop cannot start: monitors are NOT being evaluated")
                return
            workers.start()
            stack.callback(_stop_workers, workers)
            _loop(runner, workers, settings.monitors.interval_s, stop_event, clk, lead)

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


LEADER_POLL_S = 0.25
"""How often an instance that does not lead looks whether it does (a flag in memory)."""


def _loop(
    runner: MonitorRunner,
    workers: DeliveryWorkers,
    interval_s: float,
    stop: threading.Event,
    clock: Clock,
    leader: Leadership,
) -> None:
    next_pass = 0.0
    term: str | None = None
    while not stop.is_set():
        current = leader.term()
        if current is None:
            if term is not None:
                log.warning(
                    "this instance does not lead now: its monitor passes and deliveries stop"
                )
            term = None
            stop.wait(LEADER_POLL_S)
            continue
        if current != term:  # a new term: a pass now
            term, next_pass = current, 0.0
            if leader.deposed() is not None:  # it died or stalled: what it sent is due now
                try:
                    runner.outbox.release_claims(int(clock.now() * 1000))
                except Exception:
                    log.exception("could not release the notifications of the previous leader")
            workers.wake()
        now = clock.now()
        if now >= next_pass:
            next_pass = now + interval_s
            now_ms = int(now * 1000)
            try:
                report = runner.run_pass(
                    now_ms, deliver=False, fence=leader.fence(runner.state.db, term)
                )
                workers.wake({e.notifier for e in report.queued})
                runner.outbox.expire_unconfigured(now_ms, runner.notifiers)
            except LostLeadership as e:
                log.warning("monitor pass at %d rolled back: %s", now_ms, e)
            except Exception:
                log.exception("monitor pass failed; will retry next interval")
        stop.wait(max(0.0, min(next_pass - clock.now(), LEADER_POLL_S * 4)))
