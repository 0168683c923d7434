"""The SQL that differs between SQLite and PostgreSQL, in one place.

Everything else in signalbox writes portable SQL with ``?`` placeholders and asks the
dialect by name for what differs (an upsert, a serial key, ``SKIP LOCKED``, which error
means "no such table"), so no caller ever tests ``dialect.name``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from signalbox.storage.placeholders import qmark_to_format

# SQLSTATEs (PostgreSQL appendix A) the storage layer tells apart
_UNDEFINED_TABLE = "42P01"
_LOCK_NOT_AVAILABLE = "55P03"
_UNIQUE_VIOLATION = "23505"  # CREATE TABLE IF NOT EXISTS racing another: pg_type's index
_DUPLICATE_TABLE = "42P07"


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" | "postgresql"
    placeholder: str  # "?" | "%s"
    blob_type: str
    without_rowid: str  # table suffix for clustered primary keys
    autoincrement_pk: str
    serial_pk: str = ""  # a key never reused, even after the newest row is deleted
    skip_locked: str = ""  # suffix of a SELECT that claims rows other workers have not locked
    native_notify: bool = False  # LISTEN/NOTIFY (else storage.notify polls a table)

    def sql(self, text: str) -> str:
        """Translate portable ``?`` placeholders to this dialect's (literals left alone)."""
        return text if self.placeholder == "?" else qmark_to_format(text)

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT that replaces the non-key columns when the key already exists (portable
        ``?`` SQL: pass it to :class:`~signalbox.storage.database.Database`, which translates)."""
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return (
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) {action}"
        )

    # -- errors by meaning (the one place that reads SQLite's messages) ------------------
    def is_undefined_table(self, exc: BaseException) -> bool:
        """``exc`` says a table does not exist (e.g. a partition retention just dropped)."""
        if self.name == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(
                "no such table"
            )
        return getattr(exc, "sqlstate", None) == _UNDEFINED_TABLE

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """``exc`` says a lock was not granted in time (``lock_timeout`` / busy timeout)."""
        if self.name == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        return getattr(exc, "sqlstate", None) == _LOCK_NOT_AVAILABLE

    def is_duplicate_create(self, exc: BaseException) -> bool:
        """``exc`` is PostgreSQL's answer to two concurrent ``CREATE TABLE IF NOT EXISTS``
        of one table (the loser violates a catalog index instead of seeing the table)."""
        return self.name != "sqlite" and getattr(exc, "sqlstate", None) in (
            _UNIQUE_VIOLATION,
            _DUPLICATE_TABLE,
        )

    @property
    def table_names_sql(self) -> str:
        """SELECT of the names of the tables in the current schema."""
        if self.name == "sqlite":
            return "SELECT name FROM sqlite_master WHERE type = 'table'"
        return "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"

    @property
    def ordered_join(self) -> str:
        """A join whose left side drives (SQLite's planner takes CROSS JOIN as that order)."""
        return "CROSS JOIN" if self.name == "sqlite" else "JOIN"


SQLITE = Dialect(
    "sqlite",
    "?",
    "BLOB",
    " WITHOUT ROWID",
    "INTEGER PRIMARY KEY",
    serial_pk="INTEGER PRIMARY KEY AUTOINCREMENT",
    skip_locked="",  # BEGIN IMMEDIATE: one writer at a time, nothing to skip
)
POSTGRESQL = Dialect(
    "postgresql",
    "%s",
    "BYTEA",
    "",
    "BIGSERIAL PRIMARY KEY",
    serial_pk="BIGSERIAL PRIMARY KEY",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    native_notify=True,
)
