"""Where the HTTP API's queries wait their turn, so no query can starve the server.

At most ``max_concurrency`` queries are evaluated at once; the rest wait here, in the event
loop, holding no thread, for as long as their timeout allows ("query timed out in the query
queue", 503, as Prometheus says). Each runs in a thread of its own pool (never the one
``/-/ready`` and the other routes use) under a :class:`~signalbox.limits.Budget`, whose heavy
lane keeps the few queries that turn out heavy from crowding out the cheap ones.
``/-/healthy`` never passes through here at all.

A query whose client goes away stops (:func:`until_disconnected`): its wait in the queue
ends at once and its evaluation at the next deadline check, so a burst of abandoned heavy
requests (a closed dashboard tab, a load test's end) does not hold the places and threads
the next requests need, as Prometheus cancels a query's context when its client leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

import anyio
from starlette.types import Receive

from signalbox.exceptions import QueryLimitError
from signalbox.limits import Budget, HeavyLane, QueryLimits, running
from signalbox.server.querythreads import QueryThreads, on_loop

__all__ = ["Cancel", "QueryGate", "until_disconnected"]

T = TypeVar("T")


class Cancel:
    """One request's cancellation: fired (on the event loop) when its client goes away,
    it cancels the budget of every query the gate runs for that request, now or later."""

    __slots__ = ("_budgets", "why")

    def __init__(self) -> None:
        self.why: str | None = None
        self._budgets: list[Budget] = []

    def attach(self, budget: Budget) -> None:
        if self.why is not None:
            budget.cancel(self.why)
        else:
            self._budgets.append(budget)

    def fire(self, why: str) -> None:
        self.why = why
        for b in self._budgets:
            b.cancel(why)


_cancel: ContextVar[Cancel | None] = ContextVar("signalbox_request_cancel", default=None)


async def until_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """``await work()``, unless the client goes away first: then the queries it runs
    through a :class:`QueryGate` are cancelled and None is returned (nobody is there to
    answer). ``receive`` is the request's ASGI receive, its body already read: the next
    message it gives is the disconnect. Errors of ``work`` propagate as they are.

    The work runs in the calling task, under a cancel scope of its own; only the watcher
    of ``receive`` is a task, a plain asyncio one (uvicorn runs on asyncio), cancelled
    when the work is done. An anyio task group did the same with two tasks and a scope
    cancelled at every request's end, whose reason anyio formats with the task's repr:
    together a third of the app's own instructions for a cheap query
    (``bench/serve_request.py --callgrind``)."""
    cancel = Cancel()
    scope = anyio.CancelScope()

    async def watch() -> None:
        body_seen = False
        while True:
            try:
                message = await receive()
            except Exception:  # the server's receive failed: nothing left to watch
                return
            if message["type"] == "http.disconnect":
                cancel.fire("the client closed the connection")
                scope.cancel()  # ends a wait in the queue at once
                return
            if body_seen:  # a receive that repeats the body: nothing more to learn
                return
            body_seen = not message.get("more_body", False)

    token = _cancel.set(cancel)  # seen by the gate's run, in this task's context
    watcher = asyncio.ensure_future(watch())
    try:
        with scope:
            return await work()
        return None  # cancelled: the client went away
    finally:
        watcher.cancel()
        _cancel.reset(token)


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
        self.cancelled = 0
        """Queries stopped because their client went away (waiting or running)."""
        self._places: anyio.Semaphore | None = None
        self._threads: QueryThreads | None = None

    def _pools(self) -> tuple[anyio.Semaphore, QueryThreads]:
        # made on first use: they belong to the event loop that runs the server
        if self._places is None or self._threads is None:
            n = self.limits.max_concurrency
            self._places = anyio.Semaphore(n)
            # light queries, heavy ones waiting (at most n) and heavy ones running
            self._threads = QueryThreads(2 * n + self.limits.heavy_concurrency)
        return self._places, self._threads

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a query thread under a fresh budget, after its turn in the queue."""
        budget = Budget(self.limits, lane=self.lane)
        cancel = _cancel.get()
        if cancel is None:
            return await self._run(budget, fn, args)
        cancel.attach(budget)
        try:
            return await self._run(budget, fn, args)
        finally:
            if budget.cancelled is not None:
                self.cancelled += 1

    async def _run(self, budget: Budget, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        places, threads = self._pools()
        try:  # a free place (nobody waits for one then): no timer to set and cancel
            places.acquire_nowait()
        except anyio.WouldBlock:
            acquired = False
            with anyio.move_on_after(max(0.0, budget.deadline - time.monotonic())):
                await places.acquire()
                acquired = True
            if not acquired:
                raise budget.timeout("the query queue") from None
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
            on_loop(loop, give_back)

        budget.on_heavy = turned_heavy
        loop = asyncio.get_running_loop()
        try:
            return await threads.run(_within, budget, fn, args)
        finally:
            give_back()


def _within(budget: Budget, fn: Callable[..., T], args: tuple[object, ...]) -> T:
    with running(budget):
        budget.check_deadline("the query queue")
        return fn(*args)
