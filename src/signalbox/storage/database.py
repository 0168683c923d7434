"""A thin connection wrapper: the connection policy, transactions, savepoints, migrations.

Not an ORM: stores write their own SQL (through :class:`~signalbox.storage.dialect.Dialect`)
because the hot paths need ``executemany`` and exact control of transactions.

The policy, in one place (see :mod:`signalbox.storage.connections`): each thread has its own
connection (on PostgreSQL a request thread's is closed once idle, and reopened on its next
use); outside :meth:`Database.transaction` every statement commits on its own (a read
never leaves a transaction open); a transaction belongs to the thread that began it, and
nested calls join it; :meth:`Database.savepoint` undoes part of one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from signalbox.exceptions import StoreError
from signalbox.storage.connections import (
    IDLE_CLOSE_S,
    Conn,
    ThreadConnections,
    pg_connector,
    redact_url,
    sqlite_connector,
)
from signalbox.storage.dialect import POSTGRESQL, SQLITE, Dialect
from signalbox.storage.failures import translate
from signalbox.storage.integrity import check_at_open
from signalbox.storage.ownership import check_postgresql, claim_sqlite

__all__ = ["Database", "Migration", "open_database", "redact_url"]

Migration = tuple[int, str, Sequence[str]]
"""(version, what it does, statements) — statements are portable SQL with ``{blob}``,
``{without_rowid}``, ``{pk}`` and ``{serial}`` (a key never reused) placeholders filled in per dialect."""

_SQLITE_BUSY_MS = 30_000  # how long a SQLite writer waits for another by default
_PG_INERROR = 3  # psycopg.pq.TransactionStatus.INERROR: a statement failed, COMMIT would roll back
_MIGRATE_LOCK = 0x5369_676E  # pg_advisory_xact_lock's first key; the schema's hash the second
_EXCLUSIVE_LOCK = 0x5369_6758  # Database.exclusive's first key; schema and name hashed the second


class Database:
    """Statements and transactions over a connection per thread (see the module docstring).

    Attributes:
        dialect: what differs between SQLite and PostgreSQL.
        url: the store URL with any password replaced (for messages only).
        lock: serialises the threads sharing an in-memory SQLite connection.
    """

    def __init__(self, connections: ThreadConnections, dialect: Dialect, url: str) -> None:
        self._conns = connections
        self._shared = connections.shared
        self.dialect = dialect
        self.url = redact_url(url)  # only ever shown to people
        self.path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else self.url
        """The SQLite file, or the redacted URL: what a message about the store names."""
        self.lock = threading.RLock()

    @property
    def conn(self) -> Any:
        """The calling thread's raw connection (prefer the methods: they keep the policy)."""
        return self._conns.get().raw

    def dedicated_connection(self) -> Any:
        """A new raw connection of this store that no thread uses (e.g. a LISTEN loop);
        the caller closes it."""
        return self._conns.connect()

    # -- statements -------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return its cursor (``rowcount``, ``fetchone()``...)."""
        c = self._conns.get()
        c.busy += 1  # not closed as idle meanwhile (connections.ThreadConnections)
        try:
            if self._shared:
                with self.lock:
                    return c.raw.execute(self.dialect.sql(sql), params)
            return c.raw.execute(self.dialect.sql(sql), params)
        except Exception as e:
            self._after_error(c, e, sql)
            raise
        finally:
            c.busy -= 1
            c.used = time.monotonic()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement per row (the batch write of the hot paths)."""
        c = self._conns.get()
        c.busy += 1
        try:
            if self._shared:
                with self.lock:
                    c.raw.executemany(self.dialect.sql(sql), rows)
            elif self.dialect.name == "sqlite":
                c.raw.executemany(self.dialect.sql(sql), rows)
            else:
                with c.raw.cursor() as cur:
                    cur.executemany(self.dialect.sql(sql), list(rows))
        except Exception as e:
            self._after_error(c, e, sql)
            raise
        finally:
            c.busy -= 1
            c.used = time.monotonic()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of one statement (outside a transaction: nothing is left open)."""
        c = self._conns.get()
        c.busy += 1
        try:
            if self._shared:
                with self.lock:
                    rows: list[tuple[Any, ...]] = c.raw.execute(
                        self.dialect.sql(sql), params
                    ).fetchall()
                    return rows
            rows = c.raw.execute(self.dialect.sql(sql), params).fetchall()
            return rows
        except Exception as e:
            self._after_error(c, e, sql)
            raise
        finally:
            c.busy -= 1
            c.used = time.monotonic()

    def is_undefined_table(self, exc: BaseException) -> bool:
        """``exc`` says a table does not exist (see :meth:`Dialect.is_undefined_table`)."""
        return self.dialect.is_undefined_table(exc)

    def _after_error(self, c: Conn, e: Exception, sql: str) -> None:
        """Name a lock timeout, a full disk and a damaged database as such; forget a
        connection the server has dropped."""
        named = translate(e, self.dialect.name, self.path)
        if named is not None:
            if getattr(c.raw, "broken", False) and c.depth == 0:
                self._conns.discard(c)
            raise named from e
        if self.dialect.is_lock_timeout(e):
            raise StoreError(
                f"{self.url}: gave up waiting for a lock (another connection holds it) "
                f"while running: {_short(sql)}"
            ) from e
        if getattr(c.raw, "broken", False) and c.depth == 0:
            self._conns.discard(c)  # the next call reconnects

    # -- transactions -----------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside :meth:`transaction`."""
        return self._conns.get().depth > 0

    @contextmanager
    def transaction(self, *, lock_timeout_s: float | None = None) -> Iterator[Database]:
        """One atomic unit on the calling thread's connection; nested calls join the outer one.

        ``lock_timeout_s`` bounds how long any statement of it (DDL above all: ``DROP TABLE``
        waits for every reader of the table) waits for a lock; past it the statement fails
        with a :class:`StoreError` instead of hanging. Asked of a nested call on PostgreSQL,
        it applies to the rest of the outer transaction.
        """
        if self._shared:
            with self.lock:
                yield from self._transaction(lock_timeout_s)
        else:
            yield from self._transaction(lock_timeout_s)

    def _transaction(self, lock_timeout_s: float | None) -> Iterator[Database]:
        c = self._conns.get()
        if c.depth:
            if lock_timeout_s is not None and self.dialect.name == "postgresql":
                c.raw.execute(f"SET LOCAL lock_timeout = {_ms(lock_timeout_s)}")
            c.depth += 1
            try:
                yield self
            finally:
                c.depth -= 1
            return
        self._begin(c, lock_timeout_s)
        c.depth = 1
        try:
            yield self
        except BaseException:
            c.depth = 0
            self._rollback(c)
            raise
        else:
            c.depth = 0
            self._commit(c)
        finally:
            c.depth, c.savepoints = 0, 0

    def _begin(self, c: Conn, lock_timeout_s: float | None) -> None:
        try:
            if self.dialect.name == "postgresql":
                if lock_timeout_s is None:
                    c.raw.execute("BEGIN")
                else:  # one round trip (no parameters: psycopg sends both statements)
                    c.raw.execute(f"BEGIN; SET LOCAL lock_timeout = {_ms(lock_timeout_s)}")
            elif lock_timeout_s is None:
                c.raw.execute("BEGIN IMMEDIATE")
            else:  # SQLite's lock is the writer lock BEGIN IMMEDIATE takes
                c.raw.execute(f"PRAGMA busy_timeout = {_ms(lock_timeout_s)}")
                try:
                    c.raw.execute("BEGIN IMMEDIATE")
                finally:
                    c.raw.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        except Exception as e:
            self._after_error(c, e, "BEGIN")
            raise

    def _commit(self, c: Conn) -> None:
        if self.dialect.name == "postgresql" and c.raw.info.transaction_status == _PG_INERROR:
            # a statement failed and its error was caught without a savepoint: PostgreSQL
            # would answer COMMIT with a silent ROLLBACK, losing every write of the block
            self._rollback(c)
            raise StoreError(
                f"{self.url}: the transaction was rolled back: a statement in it failed and "
                "the error was caught without a savepoint (wrap it in db.savepoint())"
            )
        try:
            c.raw.execute("COMMIT")
        except Exception as e:
            self._after_error(c, e, "COMMIT")
            raise

    def _rollback(self, c: Conn) -> None:
        try:
            c.raw.execute("ROLLBACK")
        except Exception:  # the connection broke mid-transaction: start afresh next time
            self._conns.discard(c)

    @contextmanager
    def savepoint(self) -> Iterator[Database]:
        """Inside a transaction: undo only this block's writes if it raises (the error still
        propagates), keeping the transaction usable. Outside one: a transaction of its own.

        Use it around a statement whose failure you catch: on PostgreSQL any failed statement
        aborts the whole transaction otherwise.
        """
        if self._shared:
            with self.lock:
                yield from self._savepoint()
        else:
            yield from self._savepoint()

    def _savepoint(self) -> Iterator[Database]:
        c = self._conns.get()
        if not c.depth:
            yield from self._transaction(None)
            return
        c.savepoints += 1
        name = f"sp_{c.savepoints}"
        c.raw.execute(f"SAVEPOINT {name}")
        c.depth += 1
        try:
            yield self
        except BaseException:
            c.raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
            c.raw.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            c.raw.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            c.depth -= 1
            c.savepoints -= 1

    def reclaim_space(self, *, min_free: float = 0.25) -> int:
        """Give the file back the space of dropped tables (an import's raw partitions past
        retention) when at least ``min_free`` of it is free: SQLite keeps freed pages in the
        file until ``VACUUM``. Returns the bytes reclaimed; PostgreSQL frees a dropped table's
        files itself, so there it does nothing."""
        if self.dialect.name != "sqlite" or self.in_transaction:
            return 0
        (free,) = self.query("PRAGMA freelist_count")[0]
        (pages,) = self.query("PRAGMA page_count")[0]
        (size,) = self.query("PRAGMA page_size")[0]
        if not pages or free < pages * min_free:
            return 0
        self.execute("VACUUM")
        (after,) = self.query("PRAGMA page_count")[0]
        return int((pages - after) * size)

    # -- schema -----------------------------------------------------------------------
    def table_names(self) -> set[str]:
        return {r[0] for r in self.query(self.dialect.table_names_sql)}

    def create_table_if_missing(self, ddl: str) -> None:
        """Run ``CREATE TABLE IF NOT EXISTS ...`` (or ``CREATE INDEX IF NOT EXISTS``) even
        while another connection creates the same table: PostgreSQL then fails the loser
        with a unique violation on its catalog instead of seeing the table, which is taken
        here as what it means (the table exists). Joins the caller's transaction."""
        if self.dialect.name == "sqlite":  # one writer at a time: IF NOT EXISTS is enough
            self.execute(ddl)
            return
        try:
            with self.savepoint():
                self.execute(ddl)
        except Exception as e:
            if not self.dialect.is_duplicate_create(e):
                raise

    def fill(self, statement: str) -> str:
        d = self.dialect
        return statement.format(
            blob=d.blob_type,
            without_rowid=d.without_rowid,
            pk=d.autoincrement_pk,
            serial=d.serial_pk,
        )

    @contextmanager
    def exclusive(self, name: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the store-wide lock ``name`` for the block (PostgreSQL: a session advisory
        lock on this thread's connection, keyed by the schema and ``name``); yields whether
        it is held (False only with ``wait=False`` when another process holds it). For work
        made of many transactions that two processes must not interleave (compaction: two
        ``collect --once`` at once deadlocked on its tables). SQLite's one writer already
        serialises each transaction: there it holds nothing and yields True."""
        if self.dialect.name != "postgresql":
            yield True
            return
        key = (_EXCLUSIVE_LOCK, name)
        if wait:
            self.query("SELECT pg_advisory_lock(?, hashtext(current_schema() || ?))", key)
            held = True
        else:
            rows = self.query(
                "SELECT pg_try_advisory_lock(?, hashtext(current_schema() || ?))", key
            )
            held = bool(rows[0][0])
        c = self._conns.get()  # the session that took it (just used: not closed since)
        c.sessions += 1  # the lock lives in this session: never closed as idle while held
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(Exception):  # a lost session has released it
                    self.query("SELECT pg_advisory_unlock(?, hashtext(current_schema() || ?))", key)
            c.sessions -= 1

    def lock_migrations(self, *, shared: bool = False) -> None:
        """PostgreSQL, inside a transaction: hold this schema's migration lock until it ends.

        :meth:`migrate` holds it exclusively; a reader that must not see half of the
        schema's first migrations (the ownership guard at open, whose two catalog reads
        could straddle another process's commit) holds it ``shared``, so readers do not
        wait for each other. On PostgreSQL a lock waiter sees the holder's commit. On
        SQLite it does nothing: its one writer at a time already serialises migrations.
        """
        if self.dialect.name != "postgresql":
            return
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self.execute(f"SELECT {fn}(?, hashtext(current_schema()))", (_MIGRATE_LOCK,))

    def schema_version(self, component: str) -> int:
        """The applied schema version of ``component``; 0 for none (a new database)."""
        if "schema_version" not in self.table_names():
            return 0
        rows = self.query("SELECT version FROM schema_version WHERE component = ?", (component,))
        return int(rows[0][0]) if rows else 0

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the migrations of ``component`` not applied yet; return the schema version.

        Each component (metrics, monitors, tasks, flags...) versions its own tables, so an
        area can evolve without renumbering the others. Processes starting together migrate
        one at a time (SQLite's writer lock; on PostgreSQL a transaction-scoped advisory lock
        keyed by the schema, so stores in other schemas of the database do not wait), so the
        second finds the work done instead of failing on a table the first created. A
        component already at its newest version is read, not locked: opening a store never
        waits behind another process's write transaction (a collection pass on SQLite).
        """
        newest = max((m[0] for m in migrations), default=0)
        if newest and self.schema_version(component) == newest:
            return newest  # committed by whoever migrated it: nothing to wait for
        with self.transaction():
            if self.dialect.name == "postgresql":
                self.lock_migrations()
            elif self.path != ":memory:":
                claim_sqlite(self)  # the file is signalbox's from its first table on
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            rows = self.query(
                "SELECT version FROM schema_version WHERE component = ?", (component,)
            )
            current = rows[0][0] if rows else 0
            if current > newest:
                raise StoreError(
                    f"{self.url}: the {component} schema is version {current}, newer than this "
                    f"signalbox understands ({newest}); upgrade signalbox"
                )
            for version, _what, statements in sorted(migrations):
                if version <= current:
                    continue
                for st in statements:
                    self.execute(self.fill(st))
                current = version
            if rows:
                self.execute(
                    "UPDATE schema_version SET version = ? WHERE component = ?",
                    (current, component),
                )
            else:
                self.execute(
                    "INSERT INTO schema_version (component, version) VALUES (?, ?)",
                    (component, current),
                )
        return int(current)

    def connections(self) -> int:
        """How many connections this database has open (one per thread that used it)."""
        return self._conns.count()

    def close(self) -> None:
        """Close every thread's connection; using the database afterwards is an error."""
        with self.lock:
            self._conns.close()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _short(sql: str) -> str:
    one_line = " ".join(sql.split())
    return one_line if len(one_line) <= 200 else one_line[:197] + "..."


def open_database(url: str, *, page_size: int = 16384, synchronous: str = "NORMAL") -> Database:
    """Open ``sqlite:///PATH`` or ``postgresql://...`` (the calling thread's connection now,
    so a bad URL fails here; other threads' when they first use it).

    ``page_size`` (at the file's creation) and ``synchronous`` are SQLite's, see
    :func:`~signalbox.storage.connections.sqlite_connector`; PostgreSQL ignores them.

    Raises:
        ForeignDatabaseError: the database is another application's
            (:mod:`~signalbox.storage.ownership`).
        CorruptDatabaseError: a small SQLite file fails ``quick_check``
            (:mod:`~signalbox.storage.integrity`).
        StoreError: it cannot be opened.
    """
    if url.startswith("sqlite:///"):
        conns = ThreadConnections(
            sqlite_connector(url, page_size=page_size, synchronous=synchronous),
            shared=url == "sqlite:///:memory:",
        )
        dialect = SQLITE
    elif url.startswith(("postgresql://", "postgres://")):
        conns = ThreadConnections(pg_connector(url), shared=False, idle_close_s=IDLE_CLOSE_S)
        dialect = POSTGRESQL
    else:
        raise StoreError(
            f"unsupported store URL {url!r}: expected sqlite:///PATH or postgresql://..."
        )
    conns.get()  # on SQLite, refuses another application's file (ownership.check_sqlite)
    db = Database(conns, dialect, url)
    try:
        if dialect is POSTGRESQL:
            check_postgresql(db)
        else:
            check_at_open(db)
    except BaseException:
        db.close()
        raise
    return db
