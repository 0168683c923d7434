"""One reusable pymysql connection per gate, with short timeouts, reopened after any error.

A probe runs every couple of seconds; reconnecting each time would add a connection and
a handshake to the very server we are trying to spare. The connection is kept, and a
query that fails on a *reused* connection (the server's ``wait_timeout`` closed it while it
was idle) is tried once more on a fresh one before the failure counts.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

from signalbox.gates.dsn import MySQLDSN

__all__ = ["DEFAULT_TIMEOUT_S", "MySQLProbeConnection", "describe_error"]

DEFAULT_TIMEOUT_S = 2.0
"""Connect and read timeout of a probe: a server slower than this is not one to load."""

T = TypeVar("T")


def _pymysql() -> Any:
    try:
        import pymysql
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("MySQL gates need PyMySQL: pip install 'signalbox[mysql]'") from None
    return pymysql


class MySQLProbeConnection:
    """A lazily opened connection to ``dsn``; callers serialize (the gate's probe lock)."""

    def __init__(self, dsn: MySQLDSN, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._conn: Any = None

    def _open(self) -> Any:
        pymysql = _pymysql()
        d = self.dsn
        return pymysql.connect(
            host=d.host,
            port=d.port,
            user=d.user,
            password=d.password,
            database=d.database,
            unix_socket=d.unix_socket,
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            write_timeout=self.timeout_s,
            autocommit=True,
            program_name="signalbox-gate",
        )

    def run(self, fn: Callable[[Any], T]) -> T:
        """``fn(cursor)`` on the kept connection (a dict cursor), retried once on a fresh
        connection if the kept one had gone stale."""
        reused = self._conn is not None
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._open()
                reused = False
            try:
                with self._conn.cursor(_pymysql().cursors.DictCursor) as cur:
                    return fn(cur)
            except Exception as e:
                self.close()
                if not reused or attempt == 2 or "timed out" in str(e):
                    raise  # a server that hangs is not asked twice
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # already broken: nothing left to release
                conn.close()


def describe_error(e: BaseException, timeout_s: float | None = None) -> str:
    """A driver error as one line: ``Can't connect ... (error 2003)``, not a tuple repr; a
    timeout says how long it waited."""
    args: tuple[Any, ...] = tuple(getattr(e, "args", ()))
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"{args[1]} (error {args[0]})"
    else:
        text = (str(e).strip() or type(e).__name__).splitlines()[0]
    if timeout_s is not None and ("timed out" in text or "timeout" in text):
        text += f" (no answer within {timeout_s:g} s)"
    return text
