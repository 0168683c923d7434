"""The query threads (``signalbox.server.querythreads``): the slot limit, answers and errors
handed back, the request's context seen in the thread, a cancelled request waiting for its
running thread (never abandoning it), a cancelled wait leaking no slot, idle threads ending.
Real threads and a real event loop throughout."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import anyio
import pytest

from signalbox.server import querythreads
from signalbox.server.querythreads import THREAD_NAME, QueryThreads, on_loop
from signalbox.storage.connections import anyio_worker

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_at_most_limit_calls_run_at_once_and_every_answer_comes_back() -> None:
    pool = QueryThreads(2)
    running = 0
    most = 0
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return i * i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(pool.run(work, i) for i in range(7))))

    assert asyncio.run(main()) == [i * i for i in range(7)]
    assert most == 2
    assert pool.busy == 0


def test_errors_come_back_as_raised_and_the_context_is_the_requests() -> None:
    pool = QueryThreads(1)

    def fails() -> None:
        raise KeyError("gone")

    def who() -> tuple[str, str]:
        return WHO.get(), threading.current_thread().name

    async def main() -> tuple[str, str]:
        with pytest.raises(KeyError, match="gone"):
            await pool.run(fails)
        WHO.set("request 7")
        return await pool.run(who)

    assert asyncio.run(main()) == ("request 7", THREAD_NAME)
    assert pool.busy == 0


def test_a_cancelled_request_waits_for_its_running_call_then_frees_the_slot() -> None:
    pool = QueryThreads(1)
    started = threading.Event()
    finished: list[float] = []

    def slow() -> str:
        started.set()
        time.sleep(0.2)
        finished.append(time.monotonic())
        return "done"

    async def main() -> tuple[float, str]:
        with anyio.CancelScope() as scope:
            asyncio.get_running_loop().call_later(0.05, scope.cancel)
            await pool.run(slow)
        returned = time.monotonic()  # the cancellation is delivered once the call is over
        assert pool.busy == 0
        return returned, await pool.run(lambda: "next")  # the slot is free again

    returned, nxt = asyncio.run(main())
    assert started.is_set() and finished and finished[0] <= returned
    assert nxt == "next"


def test_a_cancelled_wait_for_a_slot_leaks_nothing() -> None:
    pool = QueryThreads(1)
    release = threading.Event()

    async def main() -> None:
        holder = asyncio.ensure_future(pool.run(release.wait, 5))
        await asyncio.sleep(0.02)
        waiter = asyncio.ensure_future(pool.run(lambda: "never"))
        await asyncio.sleep(0.02)
        assert pool.busy == 1 and not waiter.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        assert await holder is True
        assert pool.busy == 0
        assert await pool.run(lambda: 3) == 3

    asyncio.run(main())


def test_a_wait_cancelled_just_as_it_was_handed_the_slot_passes_it_on() -> None:
    pool = QueryThreads(1)
    release = threading.Event()

    async def main() -> None:
        waiter: asyncio.Future[str] | None = None

        async def hold() -> None:
            await pool.run(release.wait, 5)
            # the slot was just handed to the waiter, which has not run yet: cancel it now
            assert waiter is not None
            waiter.cancel()

        holder = asyncio.ensure_future(hold())
        await asyncio.sleep(0.02)
        waiter = asyncio.ensure_future(pool.run(lambda: "never"))
        await asyncio.sleep(0.02)
        release.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.busy == 0
        assert await asyncio.wait_for(pool.run(lambda: 3), 5) == 3

    asyncio.run(main())


def test_idle_threads_end_and_are_transient_for_the_connection_sweeper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(querythreads, "IDLE_S", 0.05)
    pool = QueryThreads(3)

    async def main() -> list[threading.Thread]:
        threads = await asyncio.gather(*(pool.run(_slow_current) for _ in range(3)))
        return list(threads)

    threads = asyncio.run(main())
    assert len(set(threads)) == 3
    assert all(anyio_worker(t) for t in threads)
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.is_alive() for t in threads)
    assert asyncio.run(pool.run(lambda: 1)) == 1  # a new thread after they ended


def _slow_current() -> threading.Thread:
    time.sleep(0.05)
    return threading.current_thread()


def test_on_loop_runs_on_the_loop_and_raises_there_errors_here() -> None:
    pool = QueryThreads(1)
    seen: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def in_thread() -> None:
            on_loop(loop, lambda: seen.append(threading.current_thread().name))

            def bad() -> None:
                raise ValueError("on the loop")

            with pytest.raises(ValueError, match="on the loop"):
                on_loop(loop, bad)

        await pool.run(in_thread)

    asyncio.run(main())
    assert seen == [threading.main_thread().name]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        QueryThreads(0)
