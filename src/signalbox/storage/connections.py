"""Opening raw connections, and which one each thread uses.

A :class:`~signalbox.storage.database.Database` gives every thread its own connection,
opened lazily from the URL: a slow read on one thread never waits for another, and a read
never shares (or leaves open) another thread's transaction. In-memory SQLite is the one
exception: each connection to ``:memory:`` would be a separate empty database, so all
threads share one connection there, serialised by the database's lock.

PostgreSQL connections are in autocommit: a read outside :meth:`Database.transaction`
ends with the statement, so an idle reader never holds locks (it used to sit
``idle in transaction`` and make retention's ``DROP TABLE`` wait forever).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signalbox.exceptions import StoreError
from signalbox.storage.failures import translate
from signalbox.storage.ownership import check_sqlite

__all__ = ["Connector", "ThreadConnections", "pg_connector", "redact_url", "sqlite_connector"]

Connector = Callable[[], Any]
"""Opens one new raw connection (sqlite3 or psycopg), set up, or raises StoreError."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs (secrets never in clear)."""
    if "@" not in url:  # no credentials (every SQLite URL): skip parsing it
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def sqlite_connector(url: str, *, page_size: int = 16384, synchronous: str = "NORMAL") -> Connector:
    """Connections to ``sqlite:///PATH``, each with the pragmas the stores rely on.

    ``page_size`` applies when the file is created (small rows committed one at a time, as
    a task queue's, write less per commit with 4 KiB pages); ``synchronous = FULL`` makes
    every commit survive a power loss too, at an fsync each."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous: NORMAL or FULL, not {synchronous!r}")
    path = url[len("sqlite:///") :]
    if path != ":memory:":
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{url}: cannot create {p.parent}: {e.strerror}") from None

    def connect() -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN ourselves; check_same_thread=False lets
            # close() end every thread's connection (and :memory: be shared under a lock)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as e:
            raise translate(e, "sqlite", path) or StoreError(f"{url}: {e}") from None
        try:
            if path != ":memory:":
                # 16 KiB pages by default (only takes effect when the file is created): fewer,
                # fuller pages for the append-mostly sample tables; cheaper passes than 4 KiB.
                conn.execute(f"PRAGMA page_size = {int(page_size)}")
                # before anything that writes to an existing file (the WAL switch rewrites
                # its header): another application's file is refused untouched
                check_sqlite(conn, path)
                _use_wal(conn)
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: the working set of a pass
            conn.execute("PRAGMA temp_store = MEMORY")
        except (sqlite3.Error, StoreError) as e:
            conn.close()
            if isinstance(e, StoreError):  # another application's file
                raise
            # a full disk (no room for the -shm file), a damaged file, or the driver's words
            raise translate(e, "sqlite", path) or StoreError(f"{url}: {e}") from None
        return conn

    return connect


_SQLITE_BUSY = 5
_WAL_SWITCH_WAIT_S = 30.0  # as long as a writer waits for another (the busy timeout)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a new file to WAL. WAL persists in the file, so only the first connection
    switches it; but several processes opening a new file at once (two cron jobs) all try,
    and SQLite fails all but one with SQLITE_BUSY at once, without waiting (two readers
    each wanting the exclusive lock would deadlock): they try again until one has switched.
    """
    deadline = time.monotonic() + _WAL_SWITCH_WAIT_S
    pause = 0.002
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            busy = (getattr(e, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(pause * (1 + random.random()))
            pause = min(pause * 2, 0.1)


PG_CONNECT_TIMEOUT_S = 10
"""How long opening a PostgreSQL connection may take unless the URL's ``connect_timeout``
(or ``PGCONNECT_TIMEOUT``) says otherwise: a host dropping packets would otherwise stall a
pass for psycopg's 130 s or the OS's TCP timeout."""


def pg_connect_timeout(url: str) -> tuple[dict[str, Any], int | None]:
    """The keyword to add to ``url`` (``connect_timeout``, unless the URL or the environment
    sets it: the user's wins), and the timeout psycopg will apply (None: ``url`` does not
    parse; connecting says why)."""
    import os

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, timeout_from_conninfo

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return {}, None
    extra: dict[str, Any] = {}
    if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
        extra["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    try:
        return extra, timeout_from_conninfo({**params, **extra})
    except psycopg.Error:  # not a number: psycopg says so when connecting
        return extra, None


def pg_connector(url: str) -> Connector:
    """Autocommit connections to ``postgresql://...``, bounded by a connect timeout."""
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "PostgreSQL support needs the extra: pip install 'signalbox[postgresql]'"
        ) from None
    extra, timeout_s = pg_connect_timeout(url)

    def connect() -> Any:
        try:
            return psycopg.connect(url, autocommit=True, **extra)
        except psycopg.errors.ConnectionTimeout:
            within = "" if timeout_s is None else f" within {timeout_s}s"
            raise StoreError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: no answer{within} "
                "(connect_timeout in the store URL sets how long to wait)"
            ) from None
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {e}") from None

    return connect


@dataclass(slots=True)
class Conn:
    """One raw connection and where its caller is in a transaction."""

    raw: Any
    depth: int = 0  # nesting of transaction()/savepoint() blocks; 0: autocommit
    savepoints: int = 0  # savepoints open, naming the next one


@dataclass
class ThreadConnections:
    """A connection per thread (or one shared by all, for in-memory SQLite).

    Connections of threads that have ended are closed when the next thread opens one, so a
    server's pool of short-lived worker threads does not accumulate them.
    """

    connect: Connector
    shared: bool
    _local: threading.local = field(default_factory=threading.local)
    _all: list[tuple[threading.Thread, Conn]] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False
    _one: Conn | None = None

    def get(self) -> Conn:
        """The calling thread's connection, opened on first use."""
        if self.shared:
            if self._one is None:
                return self._open()
            return self._one
        try:
            c: Conn = self._local.conn
        except AttributeError:
            return self._open()
        return c

    def _open(self) -> Conn:
        with self._guard:
            if self._closed:
                raise StoreError("the database was closed")
            if self.shared and self._one is not None:
                return self._one
            self._close_dead_threads()
        c = Conn(self.connect())
        with self._guard:
            if self._closed:  # closed while we connected
                c.raw.close()
                raise StoreError("the database was closed")
            self._all.append((threading.current_thread(), c))
            if self.shared:
                self._one = c
            else:
                self._local.conn = c
        return c

    def _close_dead_threads(self) -> None:
        dead = [(t, c) for t, c in self._all if not t.is_alive()]
        if self.shared or not dead:
            return
        self._all = [(t, c) for t, c in self._all if t.is_alive()]
        for _, c in dead:
            _close_quietly(c.raw)

    def discard(self, c: Conn) -> None:
        """Forget the calling thread's broken connection; its next call opens a new one."""
        with self._guard:
            self._all = [(t, x) for t, x in self._all if x is not c]
            if self.shared:
                self._one = None
            elif getattr(self._local, "conn", None) is c:
                del self._local.conn
        _close_quietly(c.raw)

    def count(self) -> int:
        """How many connections are open."""
        with self._guard:
            return len(self._all)

    def close(self) -> None:
        """Close every thread's connection; later use raises StoreError."""
        with self._guard:
            self._closed = True
            conns, self._all, self._one = self._all, [], None
            self._local = threading.local()
        for _, c in conns:
            _close_quietly(c.raw)


def _close_quietly(raw: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection: nothing more to release
        raw.close()
