"""Small tools of the storage tests: threads that report back, and PostgreSQL's own view."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from signalbox.storage import Database
from tests.stores import PG_BASE


class Worker(threading.Thread):
    """Runs ``fn`` on its own thread (so on its own connection); keeps its result or error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:
            self.error = e

    def outcome(self, timeout_s: float = 30.0) -> Any:
        self.join(timeout_s)
        assert not self.is_alive(), "the worker thread is stuck"
        if self.error is not None:
            raise self.error
        return self.result


def started(fn: Callable[[], Any]) -> Worker:
    w = Worker(fn)
    w.start()
    return w


def is_pg(db: Database) -> bool:
    return db.dialect.name == "postgresql"


def pg_admin(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A query on a separate autocommit connection (PostgreSQL's view of the others)."""
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as c:
        return c.execute(sql, params).fetchall()


def backend_state(pid: int) -> str | None:
    rows = pg_admin("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
    return rows[0][0] if rows else None


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``check`` until it holds (a state another thread or process reaches)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def waiting_on_a_lock(pid: int) -> bool:
    rows = pg_admin("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
    return bool(rows) and rows[0][0] == "Lock"
