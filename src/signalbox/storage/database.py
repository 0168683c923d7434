"""A thin connection wrapper: one transaction per batch, migrations with a version table.

Not an ORM: stores write their own SQL (through :class:`~signalbox.storage.dialect.Dialect`)
because the hot paths need ``executemany`` and exact control of transactions.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from signalbox.exceptions import StoreError
from signalbox.storage.dialect import POSTGRESQL, SQLITE, Dialect

Migration = tuple[int, str, Sequence[str]]
"""(version, what it does, statements) — statements are portable SQL with ``{blob}``,
``{without_rowid}``, ``{pk}`` and ``{serial}`` (a key never reused) placeholders filled in per dialect."""


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


class Database:
    """One connection, safe to share between threads (calls are serialised by a lock)."""

    def __init__(self, conn: Any, dialect: Dialect, url: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.url = redact_url(url)  # only ever shown to people
        self.lock = threading.RLock()
        self._depth = 0

    # -- statements -------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.lock:
            return self.conn.execute(self.dialect.sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.lock:
            if self.dialect.name == "sqlite":
                self.conn.executemany(self.dialect.sql(sql), rows)
            else:
                with self.conn.cursor() as cur:
                    cur.executemany(self.dialect.sql(sql), list(rows))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            cur = self.conn.execute(self.dialect.sql(sql), params)
            rows: list[tuple[Any, ...]] = cur.fetchall()
            return rows

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One atomic unit; nested calls join the outer transaction."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            self._begin()
            try:
                yield self
            except BaseException:
                self.conn.rollback()
                raise
            else:
                self.conn.commit()
            finally:
                self._depth = 0

    def _begin(self) -> None:
        if self.dialect.name == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")

    # -- schema -----------------------------------------------------------------------
    def table_names(self) -> set[str]:
        if self.dialect.name == "sqlite":
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in rows}

    def fill(self, statement: str) -> str:
        d = self.dialect
        serial = (
            "BIGSERIAL PRIMARY KEY"
            if d.name == "postgresql"
            else "INTEGER PRIMARY KEY AUTOINCREMENT"
        )
        return statement.format(
            blob=d.blob_type, without_rowid=d.without_rowid, pk=d.autoincrement_pk, serial=serial
        )

    def schema_version(self, component: str) -> int:
        """The applied schema version of ``component``; 0 for none (a new database)."""
        if "schema_version" not in self.table_names():
            return 0
        rows = self.query("SELECT version FROM schema_version WHERE component = ?", (component,))
        return int(rows[0][0]) if rows else 0

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the migrations of ``component`` not applied yet; return the schema version.

        Each component (metrics, monitors, tasks, flags...) versions its own tables, so an
        area can evolve without renumbering the others.
        """
        with self.transaction():
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            rows = self.query(
                "SELECT version FROM schema_version WHERE component = ?", (component,)
            )
            current = rows[0][0] if rows else 0
            newest = max((m[0] for m in migrations), default=0)
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

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _open_sqlite(url: str) -> Database:
    path = url[len("sqlite:///") :]
    if path != ":memory:":
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{url}: cannot create {p.parent}: {e.strerror}") from None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        if path != ":memory:":
            # 16 KiB pages (only takes effect when the file is created): fewer, fuller pages
            # for the append-mostly sample tables; measurably cheaper passes than 4 KiB.
            conn.execute("PRAGMA page_size = 16384")
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: the working set of a pass
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as e:
        raise StoreError(f"{url}: {e}") from None
    # isolation_level=None: we issue BEGIN ourselves; commit/rollback still work.
    return Database(conn, SQLITE, url)


def _open_postgresql(url: str) -> Database:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "PostgreSQL support needs the extra: pip install 'signalbox[postgresql]'"
        ) from None
    try:
        conn = psycopg.connect(url, autocommit=False)
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {e}") from None
    return Database(conn, POSTGRESQL, url)


def open_database(url: str) -> Database:
    """Open ``sqlite:///PATH`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return _open_sqlite(url)
    if url.startswith(("postgresql://", "postgres://")):
        return _open_postgresql(url)
    raise StoreError(f"unsupported store URL {url!r}: expected sqlite:///PATH or postgresql://...")
