"""``serve`` loads the series index in a thread at start
(:meth:`SQLMetricStore.warm_up`); queries around it answer what a cold store answers.

- A query over many series (``sum by (shard)`` of 12,000 series of one name) that arrives
  while the warm-up's read is on its way waits for that read instead of reading the series
  again, and answers, to the bit, what a store that never warmed up answers; a query of a
  few series of another name asked before it does not wait.
- A warm-up that fails (PostgreSQL: the warm-up's connection terminated, as a restart
  does) raises to its thread only: the waiting query reads the series itself and answers
  the same, and so do later queries; ``serve``'s runner logs a failure (its store closed
  before the read: a stop during start) and returns.
SQLite and PostgreSQL, through the engine ``serve`` builds (the group cache included).
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.series import _WARM_WAIT_MIN
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine
from signalbox.server.serve import warm_up
from signalbox.storage import open_database
from tests.stores import PG_BASE, SQL_BACKENDS, pg_schema_url, sqlite_url

T0 = 1_700_000_000_000
N = _WARM_WAIT_MIN + 2_000  # one name's series: more than a query reads without waiting
QUERY = "sum by (shard) (m)"


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store of ``N`` series of ``m`` (label values that look like ``shard="..."`` and
    an escaped one among them) and 3 of ``few``, written once; its URL."""

    def fill(u: str) -> None:
        s = SQLMetricStore(open_database(u), clock=FrozenClock(T0 / 1000))
        samples = [
            Sample("m", (("line", str(i)), ("shard", str(i % 7))), float(i % 97) / 8, T0)
            for i in range(N - 2)
        ]
        samples += [
            Sample("m", (("a", 'x",shard="9'), ("line", "e1"), ("shard", "1")), 0.5, T0),
            Sample("m", (("a", "y,shard="), ("line", "e2")), 0.25, T0),
        ]
        samples += [Sample("few", (("k", str(i)),), float(i), T0) for i in range(3)]
        s.write(samples, T0)
        s.close()

    if request.param == "sqlite":
        u = sqlite_url(tmp_path_factory.mktemp("warm"))
        fill(u)
        yield u
        return
    with pg_schema_url() as u:
        fill(u)
        yield u


def _open(url: str) -> SQLMetricStore:
    return SQLMetricStore(open_database(url), clock=FrozenClock(T0 / 1000 + 10))


def _bits(result: Any) -> list[tuple[Any, bytes]]:
    return sorted(
        (tuple(sorted(v.metric.items())), struct.pack("<d", v.value)) for v in result.vector
    )


def _cold(url: str) -> list[tuple[Any, bytes]]:
    s = _open(url)
    try:
        return _bits(Engine(s).instant(QUERY, T0 + 1000))
    finally:
        s.close()


class _Query(threading.Thread):
    """``QUERY`` on ``engine`` in a thread of its own, as a request thread runs it."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine, self.got, self.error = engine, None, None

    def run(self) -> None:
        try:
            self.got = _bits(self.engine.instant(QUERY, T0 + 1000))
        except BaseException as e:  # handed to the test
            self.error = e


def _begin(store: SQLMetricStore) -> Any:
    with store._lock:
        return store._series.begin_warm()


def test_a_query_mid_warm_up_waits_for_it_and_answers_as_cold(url: str) -> None:
    want = _cold(url)
    assert len(want) == 8 and ((), struct.pack("<d", 0.25)) in want  # 7 shards, none
    store = _open(url)
    try:
        engine = Engine(store)
        fut = _begin(store)  # the warm-up has begun; its read is not done
        few = engine.instant("sum(few)", T0 + 1000)  # a few series: no wait
        assert [v.value for v in few.vector] == [3.0]
        q = _Query(engine)
        q.start()
        q.join(0.5)
        assert q.is_alive(), "the query did not wait for the warm-up's read"
        store._series.fill_warm(fut)  # the warm-up's thread reads every series
        q.join(60)
        assert q.error is None and q.got == want
        with store._lock:
            store._series.take_warm(wait=True)  # the warm-up's own take: nothing left
        assert len(store._series.rows) == N + 3
        assert _bits(engine.instant(QUERY, T0 + 1000)) == want  # warm: the same
    finally:
        store.close()


def test_a_whole_warm_up_then_queries_answer_as_cold(url: str) -> None:
    want = _cold(url)
    store = _open(url)
    try:
        store.warm_up()
        assert len(store._series.rows) == N + 3
        assert store._series._warm is None
        engine = Engine(store)
        assert _bits(engine.instant(QUERY, T0 + 1000)) == want
        assert _bits(engine.instant(QUERY, T0 + 2000)) == want  # groups cached: the same
    finally:
        store.close()


def _fail_read(store: SQLMetricStore, fut: Any) -> BaseException:
    """The warm-up's read made to fail for real, in a thread of its own (PostgreSQL: its
    connection terminated, as a server restart does; SQLite: its connection closed under
    it, as a handle lost to the process); what it raised."""
    out: list[BaseException] = []

    def run() -> None:
        if store.db.dialect.name == "sqlite":  # the thread's own handle closed under it
            store.db.conn.close()
        else:
            import psycopg

            (pid,) = store.db.query("SELECT pg_backend_pid()")[0]
            with psycopg.connect(PG_BASE, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        try:
            store._series.fill_warm(fut)
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert len(out) == 1, "the warm-up's read did not fail"
    return out[0]


def test_a_failed_warm_up_leaves_the_queries_answering_as_cold(url: str) -> None:
    want = _cold(url)
    store = _open(url)
    try:
        engine = Engine(store)
        fut = _begin(store)
        q = _Query(engine)
        q.start()
        q.join(0.3)
        assert q.is_alive()
        err = _fail_read(store, fut)
        assert "terminat" in str(err) or "closed" in str(err), err
        q.join(60)
        assert q.error is None and q.got == want  # read the series itself
        assert store._series._warm is None
        assert _bits(engine.instant(QUERY, T0 + 2000)) == want
    finally:
        store.close()


def test_serves_warm_up_runner_logs_a_failure_and_returns(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``serve`` stopped (its store closed) before the warm-up read anything."""
    store = _open(url)
    store.close()
    done = threading.Event()

    def run() -> None:
        warm_up(store)  # must not raise
        done.set()

    with caplog.at_level(logging.WARNING, logger="signalbox.serve"):
        t = threading.Thread(target=run)
        t.start()
        t.join(60)
    assert done.is_set()
    assert any("series index not loaded at start" in r.getMessage() for r in caplog.records)
