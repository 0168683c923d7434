"""Request threads' PostgreSQL connections closed once idle, never while in use; every
connection named after its process and thread (``application_name``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.storage import Database, connections, open_database
from signalbox.storage.connections import ThreadConnections, application_name, pg_connector
from signalbox.storage.database import Database as _Database
from signalbox.storage.dialect import POSTGRESQL
from tests.storage.helpers import backend_state, pg_admin, started, wait_until
from tests.stores import pg_schema_url, sqlite_url

IDLE_S = 0.3
SWEEP_S = 0.25  # serve's is 2 s: the sweeps, not their period, are what is tested


@pytest.fixture(autouse=True)
def quick_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps each SWEEP_S, by a sweeper thread of this test's (one another test started
    may be in the middle of a 2 s sleep)."""
    monkeypatch.setattr(connections, "SWEEP_S", SWEEP_S)
    monkeypatch.setattr(connections, "_SWEEPER", connections._Sweeper())


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema_url() as url:
        yield url


def _reaping_db(url: str) -> Database:
    """A PostgreSQL database whose every thread counts as a request thread, idle-closed
    after IDLE_S (serve's are anyio's pool threads, after 10 s)."""
    conns = ThreadConnections(
        pg_connector(url), shared=False, idle_close_s=IDLE_S, transient=lambda t: True
    )
    return _Database(conns, POSTGRESQL, url)


def _gone(pid: int) -> bool:
    return backend_state(pid) is None


class Idle:
    """A thread that runs what it is handed, one call at a time, on its own connection."""

    def __init__(self) -> None:
        self._todo: list[object] = []
        self._ready = threading.Condition()
        self._stop = False
        self.thread = started(self._run)

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._todo or self._stop)
                if self._stop and not self._todo:
                    return
                fn, box = self._todo.pop(0)  # type: ignore[misc]
            try:
                box.append(("ok", fn()))
            except BaseException as e:
                box.append(("error", e))

    def call(self, fn: object) -> object:
        box: list[tuple[str, object]] = []
        with self._ready:
            self._todo.append((fn, box))
            self._ready.notify()
        wait_until(lambda: bool(box))
        kind, value = box[0]
        if kind == "error":
            raise value  # type: ignore[misc]
        return value

    def stop(self) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify()
        self.thread.outcome()


def _pid(db: Database) -> int:
    return int(db.query("SELECT pg_backend_pid()")[0][0])


@pytest.mark.service("postgresql")
def test_an_idle_request_threads_connection_is_closed_and_reopened_on_next_use(
    pg_url: str,
) -> None:
    db = _reaping_db(pg_url)
    t = Idle()
    try:
        first = t.call(lambda: _pid(db))
        assert isinstance(first, int)
        assert db.connections() == 1
        wait_until(lambda: _gone(first))  # idle: the sweep closed it
        assert db.connections() == 0
        second = t.call(lambda: _pid(db))  # the same thread: a new connection, no error
        assert second != first
        assert t.call(lambda: db.query("SELECT 1")) == [(1,)]
    finally:
        t.stop()
        db.close()


@pytest.mark.service("postgresql")
def test_a_connection_in_a_transaction_or_holding_a_session_lock_is_not_closed(
    pg_url: str,
) -> None:
    db = _reaping_db(pg_url)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    in_tx, in_lock, done = threading.Event(), threading.Event(), threading.Event()

    pids: dict[str, int] = {}

    def in_transaction() -> None:
        with db.transaction():
            db.execute("INSERT INTO t (k) VALUES (1)")
            pids["tx"] = _pid(db)
            in_tx.set()
            done.wait(10)  # idle far past IDLE_S, the transaction open
            db.execute("INSERT INTO t (k) VALUES (2)")

    def holding_lock() -> None:
        with db.exclusive("reap-test") as held:
            assert held
            pids["lock"] = _pid(db)
            in_lock.set()
            done.wait(10)
            assert _pid(db) == pids["lock"]  # the session holding the lock, still
        assert _pid(db) == pids["lock"]

    a, b = started(in_transaction), started(holding_lock)
    try:
        assert in_tx.wait(10) and in_lock.wait(10)
        time.sleep(IDLE_S * 4 + 4 * SWEEP_S)  # several sweeps past the idle time
        assert backend_state(pids["tx"]) == "idle in transaction"
        assert backend_state(pids["lock"]) == "idle"  # open, holding its lock
        assert pg_admin(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
            (pids["lock"],),
        ) == [(1,)]
        assert db.connections() == 2
    finally:
        done.set()
        a.outcome()
        b.outcome()
    assert db.query("SELECT k FROM t ORDER BY k") == [(1,), (2,)]  # committed whole
    db.close()


@pytest.mark.service("postgresql")
def test_a_long_statement_is_not_closed_under_it(pg_url: str) -> None:
    db = _reaping_db(pg_url)
    t = Idle()
    try:
        before = t.call(lambda: _pid(db))
        # runs for longer than the idle time and than a sweep's period
        took = IDLE_S * 2 + SWEEP_S * 2
        assert t.call(lambda: db.query(f"SELECT 7 FROM pg_sleep({took})")) == [(7,)]
        assert t.call(lambda: _pid(db)) == before  # used just now: not closed
    finally:
        t.stop()
        db.close()


def test_sqlite_connections_are_never_closed_idle(tmp_path: Path) -> None:
    db = open_database(sqlite_url(tmp_path))
    t = Idle()
    try:
        t.call(lambda: db.execute("CREATE TABLE t (k INTEGER)"))
        assert db.connections() == 2  # the opener's and the thread's
        time.sleep(2 * SWEEP_S)  # a sweep's period
        db.query("SELECT 1")  # the sweep runs on a store's use
        assert db.connections() == 2
    finally:
        t.stop()
        db.close()


@pytest.mark.service("postgresql")
def test_connections_are_named_after_process_and_thread(pg_url: str) -> None:
    db = open_database(pg_url)
    try:
        names: list[str] = []

        def named() -> None:
            names.append(str(db.query("SELECT current_setting('application_name')")[0][0]))

        w = threading.Thread(target=named, name="signalbox-reporter")
        w.start()
        w.join(30)
        named()
        assert names[0].startswith("signalbox-") and names[0].endswith("-reporter"), names
        assert names[1].startswith("signalbox-") and names[1].endswith("-MainThread"), names
        assert names[1] == application_name()
    finally:
        db.close()
    mine = open_database(pg_url + "&application_name=mine")  # the URL's name wins
    try:
        assert mine.query("SELECT current_setting('application_name')") == [("mine",)]
    finally:
        mine.close()
