"""Several SQL metric stores on one database (separate connections, as separate processes
have): interleaved commits in every order, transactions that fail half-way, retention
dropping partitions under a reader. Caches in memory must never outlive what the database
holds, and every scenario reads the data back.

The interleavings are driven deterministically: a writer's transaction is held open with
``db.transaction()`` around its ``write`` (the store keeps nothing of a write it cannot
see commit), and a writer that must block on another's lock runs in a thread that the test
waits on until PostgreSQL shows it waiting.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import DuplicateSeries, Frame, NewLayout
from signalbox.storage import open_database
from tests.contracts.conftest import T0
from tests.stores import PG_BASE, pg_schema_url, sqlite_url

HOST = (("host", "h"),)
L1, L2 = b"layout-one------", b"layout-two------"
pg = pytest.mark.service("postgresql")

Opener = Callable[[], SQLMetricStore]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pg)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another store (its own Database: its own connections) on one database."""
    opened: list[SQLMetricStore] = []
    clock = FrozenClock(T0 / 1000 + 600)

    def opener(url: str) -> Opener:
        def new() -> SQLMetricStore:
            s = SQLMetricStore(open_database(url), clock=clock)
            opened.append(s)
            return s

        return new

    if request.param == "sqlite":
        yield opener(sqlite_url(tmp_path))
    else:
        with pg_schema_url() as url:
            yield opener(url)
            for s in opened:
                s.close()
            return
    for s in opened:
        s.close()


@pytest.fixture
def open_pg(tmp_path: Path) -> Iterator[Opener]:
    clock = FrozenClock(T0 / 1000 + 600)
    opened: list[SQLMetricStore] = []
    with pg_schema_url() as url:

        def new() -> SQLMetricStore:
            s = SQLMetricStore(open_database(url), clock=clock)
            opened.append(s)
            return s

        yield new
        for s in opened:
            s.close()


def one(name: str, value: float, **labels: str) -> Sample:
    return Sample(name, tuple(sorted(labels.items())), value)


def values(store: SQLMetricStore, name: str, ts: int) -> dict[tuple[tuple[str, str], ...], float]:
    """Every series of ``name`` with its value at ``ts`` (select) - the data read back."""
    out = {}
    for sp in store.select([Matcher("__name__", "=", name)], ts, ts):
        assert sp.timestamps == [ts]
        out[sp.labels] = sp.values[0]
    return out


def latest(store: SQLMetricStore) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What ``/metrics`` reads: the newest value of every series."""
    return {(n, labels): v for n, labels, _, v in store.latest()}


def all_series(store: SQLMetricStore) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return set(store.series())


def no_orphans(store: SQLMetricStore) -> None:
    """Every series id a layout or the snapshot names exists in the series table."""
    import msgspec

    db = store.db
    assert db.query(
        "SELECT count(*) FROM metric_layout_series WHERE series_id NOT IN (SELECT id FROM series)"
    ) == [(0,)]
    rows = db.query("SELECT data FROM series_ids_snapshot")
    if rows:
        snap = msgspec.msgpack.decode(bytes(rows[0][0]), type=dict[str, int])
        real = dict(db.query("SELECT name || '{' || labels, id FROM series"))
        assert all(real.get(k) == sid for k, sid in snap.items())


def wait_blocked(pid: int, timeout_s: float = 10.0) -> None:
    """Until PostgreSQL backend ``pid`` waits for a lock another session holds."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row = admin.execute("SELECT cardinality(pg_blocking_pids(%s))", (pid,)).fetchone()
            if row is not None and row[0] > 0:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never blocked")


class InThread:
    """Run one store call in a thread (its own connection) and let the test wait until it
    blocks on a lock, then collect its result or error."""

    def __init__(self, store: SQLMetricStore, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.pid = 0
        ready = threading.Event()

        def run() -> None:
            self.pid = store.db.query("SELECT pg_backend_pid()")[0][0]
            ready.set()
            try:
                self.result = fn()
            except BaseException as e:
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)
        wait_blocked(self.pid)

    def join(self) -> Any:
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


# -- series registered by several writers ---------------------------------------------------
def test_writers_with_stale_caches_learn_each_others_series(open_store: Opener) -> None:
    a, b = open_store(), open_store()
    a.write([one("m", 1.0, w="a")], T0)
    b.write([one("m", 2.0, w="b")], T0)  # b loaded its map before a's series? it finds it
    a.write([one("m", 3.0, w="a"), one("m", 4.0, w="b")], T0 + 1000)
    b.write([one("m", 5.0, w="a"), one("m", 6.0, w="b"), one("m", 7.0, w="c")], T0 + 2000)
    a.write([one("m", 8.0, w="c")], T0 + 3000)
    for s in (a, b, open_store()):
        assert values(s, "m", T0 + 2000) == {
            (("w", "a"),): 5.0,
            (("w", "b"),): 6.0,
            (("w", "c"),): 7.0,
        }
        assert values(s, "m", T0 + 3000) == {(("w", "c"),): 8.0}
        assert s.db.query("SELECT count(*) FROM series") == [(3,)]
    no_orphans(a)


@pg
@pytest.mark.parametrize("order", list(itertools.permutations("abc")))
def test_series_committed_in_any_order_are_written_and_read_by_everyone(
    open_pg: Opener, order: tuple[str, ...]
) -> None:
    """Three writers insert new series in open transactions (ids 2, 3, 4 in that order) and
    commit in ``order``; a long-lived writer and reader that saw some of them first (the
    k+1-before-k visibility) must still write and read every series, and so must a fresh
    process starting from the snapshot they saved."""
    observer = open_pg()
    observer.write([one("base", 0.0)], T0)
    observer.latest()  # its read side now knows id 1
    writers = {w: open_pg() for w in "abc"}
    txs = {}
    for i, w in enumerate("abc"):  # ids are given out in this order
        txs[w] = writers[w].db.transaction()
        txs[w].__enter__()
        writers[w].write([one("m", 1.0, w=w)], T0 + i)  # (one stamp each: no lock shared)
    for step, w in enumerate(order):
        txs[w].__exit__(None, None, None)
        # the observer sees (and caches) the series committed so far, maybe k+1 before k
        committed = [one("m", 10.0 + step, w=x) for x in order[: step + 1]]
        observer.write(committed, T0 + 1000 * (step + 1))
        assert set(values(observer, "m", T0 + 1000 * (step + 1))) == {
            (("w", x),) for x in order[: step + 1]
        }
        assert {lb for n, lb in all_series(observer) if n == "m"} == {
            (("w", x),) for x in order[: step + 1]
        }
    final = T0 + 10_000
    every = [one("m", 100.0, w=w) for w in "abc"]
    for s in (observer, *writers.values()):
        s.write(every, final)
    fresh = open_pg()  # a new `collect --once`: loads the snapshot the others saved
    fresh.write([*every, one("m", 7.0, w="d")], final + 1000)
    for s in (observer, fresh, open_pg()):
        assert values(s, "m", final) == {(("w", w),): 100.0 for w in "abc"}
        assert latest(s)[("m", (("w", "d"),))] == 7.0
        assert {lb for n, lb in all_series(s) if n == "m"} == {(("w", w),) for w in "abcd"}
    no_orphans(fresh)


@pg
def test_a_reader_learns_a_series_committed_below_the_newest_id_it_knows(open_pg: Opener) -> None:
    """``/metrics`` (latest) and ``series()`` of a long-lived reader after the k+1-then-k order."""
    reader, a, b = open_pg(), open_pg(), open_pg()
    reader.write([one("base", 0.0)], T0)
    with a.db.transaction():
        a.write([one("late", 1.0)], T0)  # id k, not committed yet
        b.write([one("early", 2.0)], T0)  # id k+1, committed
        assert {n for n, _ in all_series(reader)} == {"base", "early"}
        assert set(latest(reader)) == {("base", ()), ("early", ())}
    assert latest(reader) == {("base", ()): 0.0, ("early", ()): 2.0, ("late", ()): 1.0}
    assert {n for n, _ in all_series(reader)} == {"base", "early", "late"}


@pg
def test_two_writers_creating_the_same_series_at_once_share_its_id(open_pg: Opener) -> None:
    a, b = open_pg(), open_pg()
    a.write([one("base", 0.0)], T0)
    b.write([one("base", 0.0)], T0)
    with a.db.transaction():
        a.write([one("both", 1.0), one("only_a", 1.0)], T0 + 1000)
        # b inserts the same series: it waits for a's transaction
        waiting = InThread(b, lambda: b.write([one("both", 2.0), one("only_b", 2.0)], T0 + 2000))
    assert waiting.join().new_series == 2
    for s in (a, b, open_pg()):
        assert latest(s) == {
            ("base", ()): 0.0,
            ("both", ()): 2.0,
            ("only_a", ()): 1.0,
            ("only_b", ()): 2.0,
        }
    assert a.db.query("SELECT count(*) FROM series WHERE name = 'both'") == [(1,)]
    no_orphans(b)


# -- layouts ------------------------------------------------------------------------------
def file_samples(prefix: str, v: float) -> list[Sample]:
    return [one(f"{prefix}_x", v), one(f"{prefix}_y", v + 1)]


@pg
def test_two_writers_registering_one_shape_at_once_share_one_layout(open_pg: Opener) -> None:
    a, b = open_pg(), open_pg()
    with a.db.transaction():
        a.write(file_samples("f", 1.0), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 2)])
        waiting = InThread(
            b,
            lambda: b.write(
                file_samples("f", 5.0), T0 + 1000, add_labels=HOST, layouts=[NewLayout(L1, 0, 2)]
            ),
        )
    waiting.join()
    assert a.db.query("SELECT count(*) FROM metric_layouts") == [(1,)]
    assert a.known_layouts(HOST) == b.known_layouts(HOST) == {L1}
    a.write([], T0 + 2000, add_labels=HOST, frames=[Frame(L1, [10.0, 11.0])])
    b.write([], T0 + 3000, add_labels=HOST, frames=[Frame(L1, [20.0, 21.0])])
    for s in (a, b, open_pg()):
        assert values(s, "f_x", T0 + 1000) == {HOST: 5.0}
        assert values(s, "f_y", T0 + 2000) == {HOST: 11.0}
        assert latest(s) == {("f_x", HOST): 20.0, ("f_y", HOST): 21.0}
    no_orphans(a)


def test_writers_registering_shapes_in_turn_read_each_others_frames(open_store: Opener) -> None:
    a, b = open_store(), open_store()
    assert a.known_layouts(HOST) == b.known_layouts(HOST) == frozenset()
    a.write(file_samples("f", 1.0), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 2)])
    b.write(file_samples("g", 1.0), T0, add_labels=HOST, layouts=[NewLayout(L2, 0, 2)])
    # each sends frames for the other's layout too (another host process of the same files)
    a.write([], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [2.0, 3.0]), Frame(L2, [4.0, 5.0])])
    b.write([], T0 + 2000, add_labels=HOST, frames=[Frame(L2, [6.0, 7.0]), Frame(L1, [8.0, 9.0])])
    for s in (a, b, open_store()):
        assert values(s, "g_y", T0 + 1000) == {HOST: 5.0}
        assert latest(s) == {
            ("f_x", HOST): 8.0,
            ("f_y", HOST): 9.0,
            ("g_x", HOST): 6.0,
            ("g_y", HOST): 7.0,
        }


# -- a write that fails half-way ------------------------------------------------------------
class Unbindable:
    """A value no database driver can bind: the write fails at its sample rows, after its
    series and layouts were registered in the same transaction."""


def test_a_write_failing_after_registering_series_and_a_layout_leaves_no_trace(
    open_store: Opener,
) -> None:
    a = open_store()
    a.write([one("base", 0.0)], T0)
    doomed = [*file_samples("f", 1.0), one("bad", Unbindable())]  # type: ignore[arg-type]
    with pytest.raises(Exception) as failed:
        a.write(doomed, T0 + 1000, add_labels=HOST, layouts=[NewLayout(L1, 0, 2)])
    assert not isinstance(failed.value, AssertionError)
    assert a.known_layouts(HOST) == frozenset()
    # SQLite gives the rolled-back ids out again: other series must not inherit the old ones
    a.write([one("other", 5.0), one("another", 6.0)], T0 + 2000)
    a.write(file_samples("f", 2.0), T0 + 3000, add_labels=HOST, layouts=[NewLayout(L1, 0, 2)])
    a.write([], T0 + 4000, add_labels=HOST, frames=[Frame(L1, [3.0, 4.0])])
    for s in (a, open_store()):
        assert latest(s) == {
            ("base", ()): 0.0,
            ("other", ()): 5.0,
            ("another", ()): 6.0,
            ("f_x", HOST): 3.0,
            ("f_y", HOST): 4.0,
        }
        assert values(s, "f_x", T0 + 3000) == {HOST: 2.0}
        assert s.known_layouts(HOST) == {L1}
        assert "bad" not in {n for n, _ in all_series(s)}
    no_orphans(a)


def test_a_write_with_a_frame_of_the_wrong_size_stores_nothing(open_store: Opener) -> None:
    a = open_store()
    a.write(file_samples("f", 1.0), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 2)])
    with pytest.raises(Exception, match="a frame has 3 values for a layout of 2 series"):
        a.write([one("new", 1.0)], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [1.0, 2, 3])])
    a.write([one("newer", 2.0)], T0 + 2000)
    a.write([one("new", 3.0)], T0 + 3000, add_labels=HOST, frames=[Frame(L1, [5.0, 6.0])])
    for s in (a, open_store()):
        assert latest(s) == {
            ("f_x", HOST): 5.0,
            ("f_y", HOST): 6.0,
            ("newer", ()): 2.0,
            ("new", HOST): 3.0,
        }
        assert values(s, "new", T0 + 1000) == {}
    no_orphans(a)


def test_a_duplicate_series_rolls_back_new_series_then_the_plain_write_stores_them(
    open_store: Opener,
) -> None:
    """The collector's retry after DuplicateSeries (a second file repeating a framed file's
    series, plus a new one): the retry and every later write must use real ids."""
    a = open_store()
    a.write(file_samples("f", 1.0), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 2)])
    second = [one("f_x", 9.0), one("fresh", 7.0)]
    for i in range(1, 4):
        ts = T0 + 1000 * i
        with pytest.raises(DuplicateSeries):
            a.write(
                second,
                ts,
                add_labels=HOST,
                frames=[Frame(L1, [float(i), float(i)])],
                layouts=[NewLayout(L2, 0, 2)],
            )
        a.write([*file_samples("f", float(i)), one("fresh", 7.0 + i)], ts, add_labels=HOST)
        assert latest(a)[("fresh", HOST)] == 7.0 + i
    b = open_store()
    b.write([one("fresh", 20.0), one("later", 1.0)], T0 + 5000, add_labels=HOST)
    for s in (a, b):
        assert latest(s) == {
            ("f_x", HOST): 3.0,
            ("f_y", HOST): 4.0,
            ("fresh", HOST): 20.0,
            ("later", HOST): 1.0,
        }
        assert s.known_layouts(HOST) == {L1}
    no_orphans(a)


# -- retention under readers and rollups ----------------------------------------------------
DAY = 86_400_000


def test_a_partition_dropped_by_another_store_reads_as_gone_not_as_an_error(
    open_store: Opener,
) -> None:
    a, b = open_store(), open_store()
    old, new = T0 - 2 * DAY, T0
    a.write([one("m", 1.0)], old)
    a.write([one("m", 2.0)], new)
    b.select([Matcher("__name__", "=", "m")], old, new)  # b knows both partitions
    parts = b._partitions
    assert len(parts.starts[0]) == 2
    a.compact(T0 + 600_000)  # retention drops the old raw partition
    ids = b._series.matching_ids([Matcher("__name__", "=", "m")])
    out: dict[int, Any] = {}
    b._select_raw(ids, old, new, out)  # with b's stale list: the dropped table reads empty
    [sp] = out.values()
    assert sp.timestamps == [new] and sp.values == [2.0]
    assert latest(b) == {("m", ()): 2.0}
    assert b._partitions.starts[0] == {b.levels[0].partition_start(new)}  # reloaded by reads


def test_a_read_of_a_dropped_table_inside_a_transaction_keeps_its_earlier_writes(
    open_store: Opener,
) -> None:
    """What a rollup does: insert buckets, then read a partition retention just dropped."""
    a = open_store()
    parts = a._partitions
    with a.db.transaction():
        a.db.execute("INSERT INTO metric_rollups (tier, watermark_ms) VALUES (?, ?)", (60, 123))
        assert parts.read("SELECT series_id FROM samples_raw_1 WHERE ts > ?", (0,)) == []
        a.db.execute("INSERT INTO metric_rollups (tier, watermark_ms) VALUES (?, ?)", (300, 456))
    assert sorted(a.db.query("SELECT tier, watermark_ms FROM metric_rollups")) == [
        (60, 123),
        (300, 456),
    ]


def test_a_real_sql_error_in_a_partition_read_is_raised_not_read_as_empty(
    open_store: Opener,
) -> None:
    a = open_store()
    a.write([one("m", 1.0)], T0)
    [start] = a._partitions.starts[0]
    table = a.levels[0].table(start)
    with pytest.raises(Exception, match="no_such_column"):
        a._partitions.read(f"SELECT no_such_column FROM {table}")
    with a.db.transaction(), pytest.raises(Exception, match="no_such_column"):
        a._partitions.read(f"SELECT no_such_column FROM {table}")
    assert values(a, "m", T0) == {(): 1.0}


def test_a_rollup_over_a_partition_another_store_dropped_keeps_the_other_buckets(
    open_store: Opener,
) -> None:
    """b rolls up with a list of partitions that a's retention made stale: the dropped
    partition is skipped, the rest is rolled up and the watermark is right."""
    from signalbox.metrics.sql import rollup as sqlrollup

    a, b = open_store(), open_store()
    base = T0 - T0 % DAY
    a.write([one("m", 1.0)], base - DAY + 30_000)  # yesterday's partition
    a.write([one("m", 2.0)], base + 30_000)  # today's
    b._partitions.load(fresh=True)
    now = base + DAY + 3_600_000  # raw retention (1 day) has passed for yesterday
    with a.db.transaction():
        a.db.execute(f"DROP TABLE {a.levels[0].table(base - DAY)}")
        a.db.execute(
            f"DROP TABLE {a.levels[0].table(base - DAY).replace('samples_', 'frames_', 1)}"
        )
        a.db.execute("DELETE FROM metric_partitions WHERE tier = 0 AND start_ms = ?", (base - DAY,))
    sqlrollup.build_closed(b._partitions, now)  # yesterday's table is gone under it
    tier = b.levels[1]
    assert sqlrollup.watermark(b.db, 60) == (now - 30_000) // 60_000 * 60_000
    rows = b.db.query(
        f"SELECT ts, count, last FROM {tier.table(tier.partition_start(base))} ORDER BY ts"
    )
    assert rows == [(base + 60_000, 1, 2.0)]  # keyed by its end: (base, base + 1m]


# -- partitions created by two writers at once ----------------------------------------------
@pg
def test_two_writers_creating_one_partition_at_once_both_store(open_pg: Opener) -> None:
    a, b = open_pg(), open_pg()
    a.write([one("m", 0.0, w="a")], T0)
    b.write([one("m", 0.0, w="b")], T0)
    tomorrow = T0 + DAY  # a partition neither has created
    with a.db.transaction():
        a.write([one("m", 1.0, w="a")], tomorrow)
        waiting = InThread(b, lambda: b.write([one("m", 2.0, w="b")], tomorrow))
    waiting.join()
    for s in (a, b, open_pg()):
        assert values(s, "m", tomorrow) == {(("w", "a"),): 1.0, (("w", "b"),): 2.0}


def test_a_snapshot_missing_a_series_below_its_max_id_is_filled_in_by_key(
    open_store: Opener,
) -> None:
    """A snapshot saved while an id was still invisible (what the old code saved, and what
    a writer's snapshot may lack now): a fresh process finds the series by key, writes it
    under its real id, and saves a snapshot that has it. (PostgreSQL's writers keep no
    snapshot: they look a write's keys up, so the same write finds the series by key.)"""
    import msgspec

    a = open_store()
    a.write([one("m", 1.0, w="x"), one("m", 2.0, w="y"), one("m", 3.0, w="z")], T0)
    ids = dict(a.db.query("SELECT name || '{' || labels, id FROM series"))
    gap = {k: v for k, v in ids.items() if k != 'm{w="y"'}
    with a.db.transaction():
        a.db.execute(
            "UPDATE series_ids_snapshot SET max_id = ?, data = ? WHERE id = 1",
            (max(ids.values()), msgspec.msgpack.encode(gap)),
        )
    fresh = open_store()
    r = fresh.write([one("m", 20.0, w="y"), one("m", 40.0, w="new")], T0 + 1000)
    # new to this writer; only "new" was created (PostgreSQL's writers keep no snapshot: the
    # lookup by name finds "y" stored, so only "new" is new to it)
    assert r.new_series == (2 if fresh.db.dialect.name == "sqlite" else 1)
    assert fresh.db.query("SELECT count(*) FROM series") == [(4,)]
    assert values(open_store(), "m", T0 + 1000) == {(("w", "y"),): 20.0, (("w", "new"),): 40.0}
    if fresh.db.dialect.name != "sqlite":
        assert fresh.db.query("SELECT count(*) FROM series_ids_snapshot") == [(0,)]
        no_orphans(fresh)
        return
    [(blob,)] = fresh.db.query("SELECT data FROM series_ids_snapshot")
    saved = msgspec.msgpack.decode(bytes(blob), type=dict[str, int])
    assert saved['m{w="y"'] == ids['m{w="y"']
    no_orphans(fresh)


@pg
def test_retention_does_not_wait_forever_for_a_reader_holding_a_partition() -> None:
    """A connection left in a transaction that read a partition holds its lock; DROP TABLE
    gives up after the lock timeout, keeps the partition for later, and drops it then."""
    import psycopg

    with pg_schema_url() as url:
        clock = FrozenClock(T0 / 1000 + 600)
        a = SQLMetricStore(open_database(url), clock=clock)
        try:
            old = T0 - 2 * DAY
            a.write([one("m", 1.0)], old)
            a.write([one("m", 2.0)], T0)
            parts = a._partitions
            old_table = parts.levels[0].table(parts.levels[0].partition_start(old))
            with psycopg.connect(url) as holder:  # autocommit off: its read opens a transaction
                holder.execute(f"SELECT count(*) FROM {old_table}").fetchall()
                started = time.monotonic()
                parts.load(fresh=True)
                parts.drop_expired(T0 + 600_000, lock_timeout_s=0.3)
                assert time.monotonic() - started < 5
                assert old_table in a.db.table_names()  # still there: tried again later
                holder.rollback()
            a.compact(T0 + 600_000)
            assert old_table not in a.db.table_names()
            assert latest(a) == {("m", ()): 2.0}
        finally:
            a.close()
