"""Where the HTTP API's queries wait their turn, so no query can starve the server.

At most ``max_concurrency`` queries are evaluated at once; the rest wait here, in the event
loop, holding no thread, for as long as their timeout allows ("query timed out in the query
queue", 503, as Prometheus says). Each runs in a thread of its own pool (never the one
``/-/ready`` and the other routes use) under a :class:`~signalbox.limits.Budget`, whose heavy
lane keeps the few queries that turn out heavy from crowding out the cheap ones.
``/-/healthy`` never passes through here at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from signalbox.limits import Budget, HeavyLane, QueryLimits, running

__all__ = ["QueryGate"]

T = TypeVar("T")


class QueryGate:
    """The queue, thread pool and heavy lane one server's queries share."""

    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self.lane = HeavyLane(limits.heavy_concurrency)
        self._queue: anyio.CapacityLimiter | None = None
        self._threads: anyio.CapacityLimiter | None = None
        self.waiting = 0

    def _limiters(self) -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
        # made on first use: a limiter belongs to the event loop that runs the server
        if self._queue is None or self._threads is None:
            self._queue = anyio.CapacityLimiter(self.limits.max_concurrency)
            self._threads = anyio.CapacityLimiter(self.limits.max_concurrency)
        return self._queue, self._threads

    @property
    def running(self) -> int:
        return 0 if self._queue is None else int(self._queue.borrowed_tokens)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a query thread under a fresh budget, after its turn in the queue."""
        budget = Budget(self.limits, lane=self.lane)
        queue, threads = self._limiters()
        self.waiting += 1
        acquired = False
        try:
            with anyio.move_on_after(max(0.0, budget.deadline - time.monotonic())):
                await queue.acquire()
                acquired = True
        finally:
            self.waiting -= 1
        if not acquired:
            raise budget.timeout("the query queue")
        try:
            return await anyio.to_thread.run_sync(_within, budget, fn, args, limiter=threads)
        finally:
            queue.release()


def _within(budget: Budget, fn: Callable[..., T], args: tuple[object, ...]) -> T:
    with running(budget):
        budget.check_deadline("the query queue")
        return fn(*args)
