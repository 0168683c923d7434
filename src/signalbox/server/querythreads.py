"""The threads the HTTP API's queries run in: a query handed from the event loop to a thread
and its answer handed back, with as little between them as a query ``1`` allows.

anyio's ``to_thread.run_sync`` did this before: its two checkpoints (two more turns of the
event loop), the capacity limiter's and the shielding cancel scope's bookkeeping were
about a third of a cheap query's instructions (``bench/serve_request.py --callgrind``). Here
a request takes a slot (at most ``limit`` queries in threads at once, the rest wait in
order, holding no thread), hands the call to an idle thread (or starts one), and waits for
its answer shielded from cancellation, as anyio waited: a query whose client went away is
stopped by its budget (:mod:`signalbox.server.querygate`), never abandoned while it runs.

A thread runs the call in a copy of the request's context (contextvars: the request
context, the budget), then waits for the next; one idle for :data:`IDLE_S` ends, as
anyio's did, so a burst's threads and their database connections do not stay (the
connections' sweeper treats :data:`THREAD_NAME` threads as transient, as anyio's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from signalbox.storage.connections import QUERY_THREAD_NAME as THREAD_NAME

__all__ = ["IDLE_S", "THREAD_NAME", "QueryThreads", "on_loop"]

T = TypeVar("T")

IDLE_S = 10.0
"""How long a thread waits for work before it ends (anyio's ``MAX_IDLE_TIME``)."""

_Job = tuple[contextvars.Context, Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class QueryThreads:
    """At most ``limit`` calls running in threads at once; the rest wait their turn."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.busy = 0
        """Slots taken (calls running, or handed a slot and about to run)."""
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()  # _idle: taken on the loop, given back in threads

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a thread, after a free slot; its answer or its exception."""
        loop = asyncio.get_running_loop()
        if self.busy < self.limit and not self._waiting:
            self.busy += 1
        else:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiting.append(waiter)
            try:
                await waiter  # cancellable: a wait for a slot holds nothing
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed a slot as it was cancelled: pass it on
                else:
                    self._waiting.remove(waiter)
                raise
        try:
            answer: asyncio.Future[T] = loop.create_future()
            self._worker().jobs.put((contextvars.copy_context(), fn, args, answer))
            with anyio.CancelScope(shield=True):  # the thread runs on: wait for it
                value = await answer
            return value
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it
                return
        self.busy -= 1

    def _worker(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        worker = _Worker(self)
        worker.start()
        return worker

    def _idle_again(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def _retire(self, worker: _Worker) -> bool:
        """Whether an idle ``worker`` may end (False: it was handed a job meanwhile)."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False


class _Worker(threading.Thread):
    def __init__(self, pool: QueryThreads) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.pool = pool
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            try:
                context, fn, args, answer = self.jobs.get(timeout=IDLE_S)
            except queue.Empty:
                if self.pool._retire(self):
                    return
                continue  # a job is on its way
            value: Any = None
            error: BaseException | None = None
            try:
                value = context.run(fn, *args)
            except BaseException as e:
                error = e
            loop = answer.get_loop()
            # idle before the answer is seen: the next request finds this thread free
            self.pool._idle_again(self)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, answer, value, error)
            del context, fn, args, answer, value, error, loop


def _settle(answer: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if answer.cancelled():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(value)


def on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    """Run ``fn`` on ``loop`` from a query thread and wait until it has run (its exception
    raised here)."""
    done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def call() -> None:
        try:
            fn()
        except BaseException as e:
            done.set_exception(e)
        else:
            done.set_result(None)

    loop.call_soon_threadsafe(call)
    done.result()
