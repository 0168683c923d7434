"""The results cache's shared read of a blocking (PostgreSQL) data version.

Requests that arrive while a read runs share the next read, never the running one: that
one may have begun before a commit their clients know of. A version source whose read
blocks until the test lets it go, and takes the value it returns when it *begins* (as a
database read sees the commits made before its statement began), makes every order of
events happen by waiting for states, never by timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from signalbox.limits import QueryLimits
from signalbox.server.querygate import QueryGate
from signalbox.server.resultcache import Key, ResultCache


class HeldVersion:
    """A blocking data version: each read takes the current value as it begins, then
    waits for ``proceed`` (or fails when ``fail`` is set)."""

    blocking = True

    def __init__(self) -> None:
        self.value = 1
        self.began = 0
        self.proceed = threading.Event()
        self.fail = False
        self._lock = threading.Lock()

    def read(self) -> Hashable | None:
        with self._lock:
            self.began += 1
            seen = self.value
        assert self.proceed.wait(30), "a version read was never let go"
        if self.fail:
            raise RuntimeError("the database went away")
        return seen

    def close(self) -> None:
        pass


class Data:
    """What the store holds; an evaluation reads it when it runs (after its version read)."""

    def __init__(self) -> None:
        self.body = b"old"
        self.evaluations = 0

    def evaluate(self) -> tuple[bytes, bool]:
        self.evaluations += 1
        return self.body, True


def key_of(parsed: tuple[str, Hashable]) -> Key:
    return ("query", *parsed, 0, 0, 0)


async def until(ok: Callable[[], bool], what: str) -> None:
    """Let the loop and the threads run until ``ok()`` holds (``what``: in the failure)."""
    with anyio.fail_after(30):
        while not ok():
            await anyio.sleep(0.001)


def setup() -> tuple[ResultCache, HeldVersion, Data, QueryGate]:
    version = HeldVersion()
    cache = ResultCache(2**20, version)
    data = Data()
    key = key_of(cache.parse_query("x"))
    assert cache.get(key, 1) is None  # the entries are now those of version 1
    cache.put(key, 1, b"old")  # an answer made under version 1, before the commit below
    return cache, version, data, QueryGate(QueryLimits())


def ask(tg: TaskGroup, cache: ResultCache, gate: QueryGate, data: Data, out: list[bytes]) -> None:
    async def one() -> None:
        out.append(await cache.answer(gate, "x", key_of, data.evaluate))

    tg.start_soon(one)


def test_a_request_never_takes_a_read_begun_before_it_arrived() -> None:
    async def main() -> None:
        cache, version, data, gate = setup()
        first: list[bytes] = []
        later: list[bytes] = []
        async with anyio.create_task_group() as tg:
            ask(tg, cache, gate, data, first)
            await until(lambda: version.began == 1, "the first read began")
            version.value, data.body = 2, b"new"  # a commit, while that read runs
            ask(tg, cache, gate, data, later)  # a client that knows of the commit asks
            await anyio.lowlevel.checkpoint()
            await anyio.sleep(0.05)  # it waits; no second read begins while one runs
            assert version.began == 1
            version.proceed.set()
        # the first request arrived before the commit: version 1's answer is right for it
        assert first == [b"old"]
        # the later one must see the commit: its read began after it arrived
        assert later == [b"new"]
        assert version.began == 2 and cache.version_reads == 2
        assert data.evaluations == 1

    anyio.run(main)


def test_requests_arriving_during_a_read_share_the_next_one() -> None:
    async def main() -> None:
        cache, version, data, gate = setup()
        out: list[bytes] = []
        async with anyio.create_task_group() as tg:
            ask(tg, cache, gate, data, out)
            await until(lambda: version.began == 1, "the first read began")
            for _ in range(10):
                ask(tg, cache, gate, data, out)
            await anyio.sleep(0.05)
            version.proceed.set()
        assert out == [b"old"] * 11  # no commit meanwhile: every one a hit
        assert version.began == 2  # eleven requests, two reads
        assert data.evaluations == 0
        assert cache.hits == 11

    anyio.run(main)


@pytest.mark.parametrize("requests", [1, 5])
def test_a_failed_read_answers_without_the_cache(requests: int) -> None:
    async def main() -> None:
        cache, version, data, gate = setup()
        version.fail = True
        data.body = b"evaluated"
        version.proceed.set()
        out: list[bytes] = []
        async with anyio.create_task_group() as tg:
            for _ in range(requests):
                ask(tg, cache, gate, data, out)
        assert out == [b"evaluated"] * requests  # never the kept answer
        assert data.evaluations == requests
        assert cache.hits == 0

    anyio.run(main)
