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
import anyio.from_thread
import anyio.to_thread

from signalbox.exceptions import QueryLimitError
from signalbox.limits import Budget, HeavyLane, QueryLimits, running

__all__ = ["QueryGate"]

T = TypeVar("T")


class QueryGate:
    """The queue, thread pool and heavy lane one server's queries share.

    A query holds one of ``max_concurrency`` places while it is light. When it turns heavy
    it gives its place back and waits for a heavy slot instead (at most ``max_concurrency``
    queries may wait so; past that a heavy query is refused at once, 503), so queries that
    turned out heavy never fill the places cheap queries need.
    """

    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self.lane = HeavyLane(limits.heavy_concurrency)
        self._places: anyio.Semaphore | None = None
        self._threads: anyio.CapacityLimiter | None = None

    def _pools(self) -> tuple[anyio.Semaphore, anyio.CapacityLimiter]:
        # made on first use: they belong to the event loop that runs the server
        if self._places is None or self._threads is None:
            n = self.limits.max_concurrency
            self._places = anyio.Semaphore(n)
            # light queries, heavy ones waiting (at most n) and heavy ones running
            self._threads = anyio.CapacityLimiter(2 * n + self.limits.heavy_concurrency)
        return self._places, self._threads

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a query thread under a fresh budget, after its turn in the queue."""
        budget = Budget(self.limits, lane=self.lane)
        places, threads = self._pools()
        acquired = False
        with anyio.move_on_after(max(0.0, budget.deadline - time.monotonic())):
            await places.acquire()
            acquired = True
        if not acquired:
            raise budget.timeout("the query queue")
        held = True

        def give_back() -> None:  # on the event loop
            nonlocal held
            if held:
                held = False
                places.release()

        def turned_heavy() -> None:  # in the query's thread
            if self.lane.waiting >= self.limits.max_concurrency:
                raise QueryLimitError(
                    "concurrency",
                    f"too many heavy queries: {self.lane.waiting} already wait for one of "
                    f"{self.limits.heavy_concurrency} heavy slots (query.heavy_concurrency); "
                    "try again later",
                )
            anyio.from_thread.run_sync(give_back)

        budget.on_heavy = turned_heavy
        try:
            return await anyio.to_thread.run_sync(_within, budget, fn, args, limiter=threads)
        finally:
            give_back()


def _within(budget: Budget, fn: Callable[..., T], args: tuple[object, ...]) -> T:
    with running(budget):
        budget.check_deadline("the query queue")
        return fn(*args)
