"""Transactions: all or nothing, nested calls join, savepoints, lock timeouts, concurrent DDL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from signalbox.exceptions import StoreError
from signalbox.storage import Database, open_database
from tests.storage.helpers import Worker, is_pg, started, wait_until, waiting_on_a_lock


def _table(db: Database) -> None:
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")


def _keys(db: Database) -> list[int]:
    return [r[0] for r in db.query("SELECT k FROM t ORDER BY k")]


def test_a_transaction_that_raises_half_way_leaves_nothing(db: Database) -> None:
    _table(db)
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO t (k) VALUES (1)")
        db.executemany("INSERT INTO t (k) VALUES (?)", [(2,), (3,)])
        raise RuntimeError("boom")
    assert _keys(db) == []
    assert not db.in_transaction


def test_a_statement_failing_half_way_leaves_nothing(db: Database) -> None:
    _table(db)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), db.transaction():
        db.execute("INSERT INTO t (k) VALUES (1)")
        db.execute("INSERT INTO t (k) VALUES (1)")  # the key again
    assert _keys(db) == []
    db.execute("INSERT INTO t (k) VALUES (5)")  # the connection is usable afterwards
    assert _keys(db) == [5]


def test_nested_transactions_join_the_outer_one(db: Database) -> None:
    _table(db)
    with pytest.raises(RuntimeError), db.transaction():
        with db.transaction():
            db.execute("INSERT INTO t (k) VALUES (1)")
        assert _keys(db) == [1]  # the inner block did not commit on its own
        raise RuntimeError("the outer one fails")
    assert _keys(db) == []
    with db.transaction(), db.transaction():
        db.execute("INSERT INTO t (k) VALUES (2)")
    assert _keys(db) == [2]


def test_a_savepoint_rolls_back_its_block_and_keeps_the_outer_writes(db: Database) -> None:
    _table(db)
    with db.transaction():
        db.execute("INSERT INTO t (k) VALUES (1)")
        with pytest.raises(RuntimeError), db.savepoint():
            db.execute("INSERT INTO t (k) VALUES (2)")
            raise RuntimeError("undo only this block")
        with db.savepoint():  # a second one, committed
            db.execute("INSERT INTO t (k) VALUES (3)")
            with pytest.raises(RuntimeError), db.savepoint():  # nested inside it
                db.execute("INSERT INTO t (k) VALUES (4)")
                raise RuntimeError
        db.execute("INSERT INTO t (k) VALUES (5)")
    assert _keys(db) == [1, 3, 5]


def test_a_failed_statement_inside_a_savepoint_leaves_the_transaction_usable(
    db: Database,
) -> None:
    """The PostgreSQL case: a read of a table retention dropped, inside a write transaction."""
    _table(db)
    with db.transaction():
        db.execute("INSERT INTO t (k) VALUES (1)")
        with pytest.raises(Exception) as info, db.savepoint():
            db.query("SELECT * FROM no_such_table")
        assert db.is_undefined_table(info.value)
        db.execute("INSERT INTO t (k) VALUES (2)")
    assert _keys(db) == [1, 2]


def test_a_savepoint_outside_a_transaction_is_a_transaction(db: Database) -> None:
    _table(db)
    with pytest.raises(RuntimeError), db.savepoint():
        db.execute("INSERT INTO t (k) VALUES (1)")
        raise RuntimeError
    with db.savepoint():
        db.execute("INSERT INTO t (k) VALUES (2)")
    assert _keys(db) == [2]
    assert not db.in_transaction


def test_is_undefined_table_tells_a_missing_table_from_other_errors(db: Database) -> None:
    _table(db)
    with pytest.raises(Exception) as missing:
        db.query("SELECT * FROM not_there")
    with pytest.raises(Exception) as other:
        db.query("SELECT no_such_column FROM t")
    assert db.is_undefined_table(missing.value)
    assert not db.is_undefined_table(other.value)
    assert not db.is_undefined_table(RuntimeError("no such table: t"))


@pytest.mark.service("postgresql")
def test_an_error_caught_without_a_savepoint_fails_the_commit_loudly_on_postgresql() -> None:
    """PostgreSQL answers COMMIT of an aborted transaction with a silent ROLLBACK; the
    writes before the failure must not vanish without an error."""
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        db = open_database(url)
        _table(db)
        with pytest.raises(StoreError, match=r"rolled back.*savepoint"), db.transaction():
            db.execute("INSERT INTO t (k) VALUES (1)")
            try:
                db.query("SELECT * FROM no_such_table")
            except Exception as e:
                assert db.is_undefined_table(e)
        assert _keys(db) == []
        db.execute("INSERT INTO t (k) VALUES (2)")
        assert _keys(db) == [2]
        db.close()


def test_a_lock_timeout_fails_a_blocked_ddl_with_a_clear_error(db: Database) -> None:
    _table(db)
    db.execute("INSERT INTO t (k) VALUES (1)")
    holding, release = threading.Event(), threading.Event()

    def hold_the_table() -> None:
        with db.transaction():  # PostgreSQL: AccessShareLock on t; SQLite: the writer lock
            db.query("SELECT k FROM t")
            holding.set()
            release.wait(20)

    w = started(hold_the_table)
    assert holding.wait(10)
    t0 = time.monotonic()
    with (
        pytest.raises(StoreError, match="gave up waiting for a lock") as info,
        db.transaction(lock_timeout_s=0.3),
    ):
        db.execute("DROP TABLE t")
    assert time.monotonic() - t0 < 5
    assert db.url in str(info.value)
    release.set()
    w.outcome()
    assert _keys(db) == [1]  # the table is still there
    with db.transaction(lock_timeout_s=0.3):
        db.execute("DROP TABLE t")  # nobody holds it now
    assert "t" not in db.table_names()


@pytest.mark.service("postgresql")
def test_concurrent_create_table_if_not_exists_fails_on_postgresql_without_the_helper() -> None:
    """Why create_table_if_missing exists (pins PostgreSQL's behaviour), and that it helps."""
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        a, b = open_database(url), open_database(url)
        ddl = "CREATE TABLE IF NOT EXISTS p_{} (k INTEGER PRIMARY KEY)"

        def race(table: str, second: Callable[[str], object]) -> Worker:
            """``a`` creates the table in an open transaction; ``b`` creates it too (waiting
            on ``a``), then ``a`` commits; returns ``b``'s worker."""
            created, finish = threading.Event(), threading.Event()
            b_pid: list[int] = []

            def first() -> None:
                with a.transaction():
                    a.execute(ddl.format(table))
                    created.set()
                    assert finish.wait(10)

            def other() -> None:
                b_pid.append(int(b.query("SELECT pg_backend_pid()")[0][0]))
                with b.transaction():
                    second(ddl.format(table))
                    b.execute(f"INSERT INTO p_{table} (k) VALUES (1)")

            fw = started(first)
            assert created.wait(10)
            sw = started(other)
            wait_until(lambda: bool(b_pid) and waiting_on_a_lock(b_pid[0]))
            finish.set()
            fw.outcome()
            return sw

        plain = race("plain", lambda sql: b.execute(sql))
        with pytest.raises(Exception, match=r"(?i)duplicate key|already exists"):
            plain.outcome()
        helped = race("helped", b.create_table_if_missing)
        helped.outcome()
        assert b.query("SELECT k FROM p_helped") == [(1,)]
        a.close()
        b.close()


def test_create_table_if_missing_creates_once_and_joins_the_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction():
        db.create_table_if_missing("CREATE TABLE IF NOT EXISTS c (k INTEGER)")
        raise RuntimeError
    assert "c" not in db.table_names()
    db.create_table_if_missing("CREATE TABLE IF NOT EXISTS c (k INTEGER)")
    db.create_table_if_missing("CREATE TABLE IF NOT EXISTS c (k INTEGER)")
    assert "c" in db.table_names()
    with pytest.raises(Exception, match=r"(?i)syntax"):
        db.create_table_if_missing("CREATE TABLE IF NOT EXISTS (")


MIGRATIONS = [
    (1, "a", ["CREATE TABLE m1 (id {serial}, v TEXT)"]),
    (2, "b", ["CREATE TABLE m2 (k TEXT PRIMARY KEY, b {blob})", "CREATE INDEX m2_b ON m2 (b)"]),
]


def test_processes_migrating_at_once_both_succeed(db: Database) -> None:
    others = [open_database(db.url) for _ in range(3)]
    go = threading.Barrier(len(others), timeout=10)

    def migrate(d: Database) -> int:
        go.wait()
        return d.migrate("race", MIGRATIONS)

    workers = [started(lambda d=d: migrate(d)) for d in others]
    assert [w.outcome() for w in workers] == [2, 2, 2]
    assert db.schema_version("race") == 2
    for d in others:
        d.close()


def test_serial_keys_are_never_reused(db: Database) -> None:
    db.migrate("serial", MIGRATIONS[:1])
    db.execute("INSERT INTO m1 (v) VALUES ('a')")
    db.execute("INSERT INTO m1 (v) VALUES ('b')")
    db.execute("DELETE FROM m1 WHERE v = 'b'")
    db.execute("INSERT INTO m1 (v) VALUES ('c')")
    assert db.query("SELECT id, v FROM m1 ORDER BY id") == [(1, "a"), (3, "c")]
    assert is_pg(db) == ("BIGSERIAL" in db.fill("{serial}"))
