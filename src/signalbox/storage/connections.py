"""Opening raw connections, and which one each thread uses.

A :class:`~signalbox.storage.database.Database` gives every thread its own connection,
opened lazily from the URL: a slow read on one thread never waits for another, and a read
never shares (or leaves open) another thread's transaction. In-memory SQLite is the one
exception: each connection to ``:memory:`` would be a separate empty database, so all
threads share one connection there, serialised by the database's lock.

On PostgreSQL every connection is named ``signalbox-<command>-<thread>`` (its
``application_name``, unless the URL or ``PGAPPNAME`` names it), so ``pg_stat_activity``
says which process and thread holds each one; and a request thread's connection is closed
once idle (:data:`IDLE_CLOSE_S`): a ``serve`` does not keep one per thread of its pool.

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
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signalbox.exceptions import StoreError
from signalbox.storage.failures import translate
from signalbox.storage.ownership import check_sqlite

__all__ = [
    "Connector",
    "ThreadConnections",
    "application_name",
    "pg_connector",
    "redact_url",
    "release_thread",
    "sqlite_connector",
]

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
    named = _names_itself(url)

    def connect() -> Any:
        kw = extra if named else {**extra, "application_name": application_name()}
        try:
            return psycopg.connect(url, autocommit=True, **kw)
        except psycopg.errors.ConnectionTimeout:
            within = "" if timeout_s is None else f" within {timeout_s}s"
            raise StoreError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: no answer{within} "
                "(connect_timeout in the store URL sets how long to wait)"
            ) from None
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {e}") from None

    return connect


_APP_NAME_MAX = 63  # PostgreSQL keeps NAMEDATALEN - 1 bytes of it


def process_kind() -> str:
    """What this process is, for connection names: the ``signalbox`` command's subcommand
    (``serve``, ``worker``, ``agent``...), else the program's name (a library user's app)."""
    import os
    import sys

    argv = sys.argv or [""]
    prog = os.path.basename(argv[0])
    if prog in ("signalbox", "__main__.py"):
        sub = next((a for a in argv[1:] if not a.startswith("-")), None)
        return sub or "signalbox"
    prog = prog.removesuffix(".py")
    return prog if prog and not prog.startswith("-") else "python"  # "-c": no script


def application_name() -> str:
    """``signalbox-<kind>-<thread name>``: what an operator reads in ``pg_stat_activity``
    to tell which process, and which of its threads, holds each connection."""
    thread = threading.current_thread().name.removeprefix("signalbox-")
    name = f"signalbox-{process_kind()}-{thread}"
    raw = name.encode("ascii", "replace")[:_APP_NAME_MAX]  # the server turns non-ASCII to ?
    return raw.decode("ascii")


def _names_itself(url: str) -> bool:
    """The URL (or PGAPPNAME) sets application_name: the user's name wins."""
    import os

    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if os.environ.get("PGAPPNAME"):
        return True
    try:
        return "application_name" in conninfo_to_dict(url)
    except psycopg.Error:  # connecting says what is wrong with it
        return True


@dataclass(slots=True)
class Conn:
    """One raw connection and where its caller is in a transaction."""

    raw: Any
    depth: int = 0  # nesting of transaction()/savepoint() blocks; 0: autocommit
    savepoints: int = 0  # savepoints open, naming the next one
    busy: int = 0  # statements of its thread running on it now (Database's methods)
    sessions: int = 0  # session-level state held on it (Database.exclusive's lock)
    used: float = 0.0  # monotonic time its thread last used it
    reapable: bool = False  # closed after idle_close_s idle (a request thread's)
    closed: bool = False  # closed idle by another thread: its own opens a new one


SWEEP_S = 2.0
"""How often a store looks for connections to close (on its next use, and from a sweeping
thread once a request thread has had one): those of ended threads, and those of request
threads idle for :attr:`ThreadConnections.idle_close_s`."""

IDLE_CLOSE_S = 10.0
"""How long a request thread's PostgreSQL connection may stay idle before it is closed:
anyio's own idle time for its worker threads. A burst of API requests runs on up to ~50
threads; once it is over their connections go, instead of staying open for as long as the
threads (anyio only ends idle threads when it is handed more work)."""


QUERY_THREAD_NAME = "signalbox query thread"
"""The name of ``serve``'s query threads (:mod:`signalbox.server.querythreads`)."""


def anyio_worker(thread: threading.Thread) -> bool:
    """A thread of anyio's pool or a query thread: what runs ``serve``'s requests."""
    return thread.name in ("AnyIO worker thread", QUERY_THREAD_NAME)


class _Sweeper:
    """One daemon thread per process sweeping every store with idle-closing connections
    each :data:`SWEEP_S`: a store only request threads use (the sessions of ``serve``'s
    logins) would otherwise keep their idle connections until its next request."""

    def __init__(self) -> None:
        self._stores: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, store: ThreadConnections) -> None:
        with self.lock:
            self._stores.add(store)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="signalbox-connections-sweep", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(SWEEP_S)
            with self.lock:
                stores = list(self._stores)
            for store in stores:
                store.sweep()


_SWEEPER = _Sweeper()
_OPEN: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()  # every store that may idle-close


def release_thread() -> int:
    """Close the calling thread's connection to every PostgreSQL store of the process (see
    :meth:`ThreadConnections.release`); how many it closed. For a main thread that opened
    the stores and from then on only waits, or runs an event loop."""
    with _SWEEPER.lock:
        stores = list(_OPEN)
    return sum(1 for store in stores if store.holds_one() and store.release())


@dataclass(eq=False)
class ThreadConnections:
    """A connection per thread (or one shared by all, for in-memory SQLite).

    Connections of threads that have ended are closed when the next thread opens one. With
    ``idle_close_s`` (PostgreSQL) they also go at the next sweep (each :data:`SWEEP_S`),
    and so does the connection of a thread ``transient`` calls a pool thread once idle
    that long, unless it is in a transaction, running a statement or holds a session lock;
    the thread's next use opens a new one. A server's pool of request threads (anyio's, up
    to ~50) then does not keep a connection per thread once a burst of requests is over.
    """

    connect: Connector
    shared: bool
    idle_close_s: float | None = None
    transient: Callable[[threading.Thread], bool] = anyio_worker
    _local: threading.local = field(default_factory=threading.local)
    _all: list[tuple[threading.Thread, Conn]] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False
    _one: Conn | None = None
    _next_sweep: float = 0.0  # monotonic time of the next look for connections to close

    def get(self) -> Conn:
        """The calling thread's connection, opened on first use (or after it was closed
        idle)."""
        if self.shared:
            if self._one is None:
                return self._open()
            return self._one
        try:
            c: Conn = self._local.conn
        except AttributeError:
            return self._open()
        idle = self.idle_close_s
        if idle is None:  # SQLite: ended threads' connections go at the next open, as ever
            return c
        now = time.monotonic()
        if c.reapable:
            # A sweep closes it only after idle_close_s unused: used within half of that,
            # no sweep can be closing it now (no lock on this path).
            if now - c.used >= idle / 2:
                with self._guard:  # marked used under the guard: no sweep closes it after
                    gone = c.closed
                    if not gone:
                        c.used = now
                if gone:
                    del self._local.conn
                    return self._open()
            c.used = now
        if now >= self._next_sweep:
            with self._guard:
                self._sweep(now)
        return c

    def _open(self) -> Conn:
        with self._guard:
            if self._closed:
                raise StoreError("the database was closed")
            if self.shared and self._one is not None:
                return self._one
            self._sweep(time.monotonic())
        c = Conn(self.connect())
        thread = threading.current_thread()
        c.reapable = self.idle_close_s is not None and not self.shared and self.transient(thread)
        c.used = time.monotonic()
        with self._guard:
            if self._closed:  # closed while we connected
                c.raw.close()
                raise StoreError("the database was closed")
            self._all.append((thread, c))
            if c.reapable:
                _SWEEPER.watch(self)
            if self.shared:
                self._one = c
            else:
                self._local.conn = c
        return c

    def __post_init__(self) -> None:
        if self.idle_close_s is not None and not self.shared:
            with _SWEEPER.lock:
                _OPEN.add(self)

    def holds_one(self) -> bool:
        """Whether the calling thread has a connection open."""
        return getattr(self._local, "conn", None) is not None

    def release(self) -> bool:
        """Close the calling thread's connection unless it is in a transaction or holds a
        session lock (then keep it: False); its next use opens another."""
        if self.shared:
            return False
        c: Conn | None = getattr(self._local, "conn", None)
        if c is None:
            return True
        if c.depth or c.busy or c.sessions:
            return False
        with self._guard:
            self._all = [(t, x) for t, x in self._all if x is not c]
            del self._local.conn
        _close_quietly(c.raw)
        return True

    def sweep(self) -> None:
        """Close the connections of ended threads and idle request threads now."""
        with self._guard:
            self._sweep(time.monotonic())

    def _sweep(self, now: float) -> None:
        """Close the connections of ended threads and idle request threads (guard held)."""
        self._next_sweep = now + SWEEP_S
        if self.shared:
            return
        idle = self.idle_close_s
        keep, drop = [], []
        for t, c in self._all:
            if not t.is_alive():
                drop.append(c)
            elif (
                c.reapable
                and idle is not None
                and now - c.used > idle
                and not (c.depth or c.busy or c.sessions)
            ):
                c.closed = True  # its thread sees this and opens another
                drop.append(c)
            else:
                keep.append((t, c))
        if not drop:
            return
        self._all = keep
        for c in drop:
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
