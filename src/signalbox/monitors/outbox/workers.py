"""Delivery off the evaluation path: one worker thread per notifier, as Alertmanager has one
queue per integration.

The monitor loop only evaluates and enqueues (:meth:`MonitorRunner.run_pass` with
``deliver=False``), then :meth:`DeliveryWorkers.wake`\\ s the workers of the notifiers it
queued for. Each worker delivers only its notifier's rows (``Outbox.deliver_due(only=...)``)
and then sleeps until that notifier's next row is due (its retry on the backoff schedule,
whatever the evaluation interval), a wake-up, or :data:`POLL_S` (rows queued by another
process, a drill from the CLI). So a receiver that hangs until its timeout, or fails on
every attempt, delays its own deliveries and nothing else: not the passes, not the other
notifiers.

With several ``serve`` instances on one store only the leader delivers
(:mod:`signalbox.storage.leader`): workers run no round while ``leading()`` says no, and the
outbox's claim fence stops a send from starting once the lease is someone else's.

Stopping never waits on a receiver for long: workers are daemon threads, :meth:`stop`
joins them for a bounded time, and the rows still in flight then are handed back to the
outbox (:meth:`Outbox.release_in_flight`), due at once for the next start. Nothing is lost:
every row is in the database before a worker sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from signalbox.clock import Clock, SystemClock
from signalbox.monitors.notify.notification import Notifier
from signalbox.monitors.outbox.store import Outbox
from signalbox.storage.leader import LostLeadership

__all__ = ["POLL_S", "ROUND", "STOP_WAIT_S", "DeliveryWorkers"]

log = logging.getLogger("signalbox.monitors.outbox.workers")

POLL_S = 5.0
"""The longest a worker sleeps without looking at its notifier's rows."""
STOP_WAIT_S = 2.0
"""How long :meth:`DeliveryWorkers.stop` waits for attempts under way, all workers together."""
_MIN_SLEEP_S = 0.01
ROUND = 100
"""Rows a worker tries per round before it looks at the table again."""


class _Worker:
    """Delivers one notifier's rows until stopped."""

    def __init__(self, name: str, notifier: Notifier, pool: DeliveryWorkers) -> None:
        self.name, self.notifier, self.pool = name, notifier, pool
        self.wakeup = threading.Event()
        self.thread = threading.Thread(
            target=self.run, name=f"signalbox-notify-{name}", daemon=True
        )

    def run(self) -> None:
        pool, stop = self.pool, self.pool.stopping
        while not stop.is_set():
            self.wakeup.clear()
            if not pool.leading():  # another instance delivers; woken when this one leads
                self.wakeup.wait(pool.poll_s)
                continue
            now_ms = pool.now_ms()
            next_ms: int | None = None
            try:
                report = pool.outbox.deliver_due(
                    now_ms, {self.name: self.notifier}, only=self.name, stop=stop, limit=ROUND
                )
                if report.attempts >= ROUND:
                    continue  # a backlog: the next round at once, not after a sleep
                next_ms = pool.outbox.next_attempt_ms(self.name, after_ms=now_ms)
            except LostLeadership as e:  # the claim found another instance leading
                log.info("notifier %r: %s; stopped delivering", self.name, e)
                continue
            except Exception:  # the database, most likely: try again at the next poll
                if stop.is_set():  # an attempt that outlived the stop: its row was released
                    log.info("notifier %r: the attempt left behind at stop ended", self.name)
                    return
                log.exception("delivery round for notifier %r failed; retrying", self.name)
            sleep = pool.poll_s
            if next_ms is not None:
                sleep = min(sleep, max(_MIN_SLEEP_S, (next_ms - pool.now_ms()) / 1000))
            self.wakeup.wait(sleep)


class DeliveryWorkers:
    """A worker thread per notifier over one outbox (each thread has its own connection).

    Args:
        outbox: where the rows are; shared by the workers.
        notifiers: by name, as configured; one worker each.
        clock: "now" for due times (the loop's clock).
        poll_s: the longest a worker sleeps without looking for rows.
        leading: whether this process may deliver now (default: always; ``serve`` asks its
            leadership, and :meth:`wake`\\ s the workers when it starts to lead).
    """

    def __init__(
        self,
        outbox: Outbox,
        notifiers: Mapping[str, Notifier],
        *,
        clock: Clock | None = None,
        poll_s: float = POLL_S,
        leading: Callable[[], bool] | None = None,
    ) -> None:
        self.outbox, self.clock, self.poll_s = outbox, clock or SystemClock(), poll_s
        self.leading: Callable[[], bool] = leading or _always
        self.stopping = threading.Event()
        self._workers = {name: _Worker(name, n, self) for name, n in notifiers.items()}

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def start(self) -> None:
        for w in self._workers.values():
            w.thread.start()

    def wake(self, names: Iterable[str] | None = None) -> None:
        """Have these notifiers' workers (default: all) look for due rows now."""
        for name in self._workers if names is None else names:
            w = self._workers.get(name)
            if w is not None:
                w.wakeup.set()

    def alive(self) -> list[str]:
        """The notifiers whose worker thread is still running."""
        return [name for name, w in self._workers.items() if w.thread.is_alive()]

    def stop(self, timeout_s: float = STOP_WAIT_S) -> list[str]:
        """Stop every worker: no new attempt starts, attempts under way get ``timeout_s`` (all
        together) to finish; rows still in flight after that are released for the next start.
        Returns the notifiers whose worker was still stuck in a send."""
        self.stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout_s
        for w in self._workers.values():
            if w.thread.is_alive():
                w.thread.join(max(0.0, deadline - time.monotonic()))
        stuck = self.alive()
        if stuck:
            try:
                self.outbox.release_in_flight(self.now_ms())
            except Exception:
                log.exception("could not release the notifications still in flight")
        return stuck


def _always() -> bool:
    return True
