"""Whose database is this? Signalbox adds tables only to a database that is its own.

A store URL that points at another application's SQLite file (a typo, a shared folder)
used to get signalbox's tables added to it. SQLite has a header field for exactly this,
``PRAGMA application_id`` (4 bytes at offset 68, read with the header that every open reads
anyway: one pragma, no table scan, a few microseconds). Signalbox sets it in the
transaction of its first migration, and at every open:

* our id: ours;
* 0 and no tables: a new or empty file, ours: the id is set now (and by the first
  migration's transaction, should the file have been read-only here);
* 0 and signalbox's ``schema_version`` table: a file an earlier signalbox made (before the
  id existed); adopted, the id is set once;
* 0 and other tables only, or any other id: someone else's,
  :class:`~signalbox.exceptions.ForeignDatabaseError`, and the file is left exactly as it
  was (the check runs before the WAL switch, which would rewrite the header);
* not a SQLite file at all (no ``SQLite format 3`` magic): someone else's too. SQLite keeps
  the magic of a file it wrote even when pages are damaged, so a file without it is almost
  always a wrong path (a log, a config), and ``.recover`` advice would mislead. A file
  with the magic that SQLite still cannot read is damaged
  (:class:`~signalbox.exceptions.CorruptDatabaseError`, see
  :mod:`~signalbox.storage.failures`).

PostgreSQL has no such field, and a PostgreSQL database (or schema) is often shared with
other applications, so other tables are fine there; what is refused is a database that
has tables named like signalbox's without signalbox's ``schema_version`` table, which
migrating would mix with (or fail on half-way).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from signalbox.exceptions import ForeignDatabaseError, StoreError

if TYPE_CHECKING:
    from signalbox.storage.database import Database

__all__ = [
    "APPLICATION_ID",
    "MIGRATION_WAIT_S",
    "SIGNALBOX_TABLES",
    "check_postgresql",
    "check_sqlite",
    "claim_sqlite",
    "is_signalbox_table",
]

APPLICATION_ID = 0x53424F58
"""``PRAGMA application_id`` of every SQLite file signalbox creates ("SBOX" in ASCII)."""

SQLITE_MAGIC = b"SQLite format 3\x00"

SIGNALBOX_TABLES = frozenset(
    {
        "schema_version",
        "series",
        "metric_meta",
        "metric_partitions",
        "metric_rollups",
        "metric_sealed",
        "series_ids_snapshot",
        "metric_stamps",
        "metric_raw_versions",
        "metric_layouts",
        "metric_layout_series",
        "storage_events",
        "storage_leases",
        "monitor_outbox",
        "metric_stale",
        "metric_spool_files",
        "metric_data_version",
        "monitor_series",
        "monitor_history",
        "monitor_silences",
        "monitor_acks",
        "api_tokens",
        "dashboard_users",
        "dashboard_sessions",
        "task_jobs",
        "task_queues",
        "task_outcomes",
        "task_gate_closures",
        "task_schedules",
        "task_audit",
        "flag_state",
        "flag_audit",
        "flag_evaluations",
        "gate_decisions",
    }
)
"""The tables signalbox's migrations create (a test keeps this list complete), besides the
time partitions named by :data:`_PARTITION_PREFIXES`."""

_PARTITION_PREFIXES = (
    "samples_raw_",
    "frames_raw_",
    "samples_r",
    "buckets_r",
    "fbuckets_r",
    "sbuckets_r",
    "pbuckets_r",
)


def is_signalbox_table(name: str) -> bool:
    """Whether signalbox creates a table of this name (partitions included)."""
    return name in SIGNALBOX_TABLES or (
        name.startswith(_PARTITION_PREFIXES) and name.rsplit("_", 1)[-1].isdigit()
    )


def check_sqlite(conn: sqlite3.Connection, path: str) -> None:
    """Raise :class:`ForeignDatabaseError` unless ``conn``'s file is signalbox's; claim a new
    or empty file and adopt one an earlier signalbox made. Runs first on a new connection
    (after ``PRAGMA page_size``: claiming a new file writes its first page).

    Raises:
        ForeignDatabaseError: the file belongs to another application.
        sqlite3.DatabaseError: the driver's own error (a damaged file, a lock held too long).
    """
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as e:
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_NOTADB:
            _refuse_if_not_sqlite(path)
        raise
    if app_id == APPLICATION_ID:
        return
    if app_id != 0:
        raise ForeignDatabaseError(
            path,
            f"its application_id is 0x{app_id & 0xFFFFFFFF:08X}, signalbox's is "
            f"0x{APPLICATION_ID:08X}",
        )
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
            "ESCAPE '\\' ORDER BY name"
        )
    ]
    if not tables or ("schema_version" in tables and _has_signalbox_versions(conn)):
        # new or empty: ours from now on, for every connection (the first migration would
        # set it too); or made by a signalbox from before application_id: adopted. Once
        # per file; a read-only file stays as it is and is claimed by the next writer.
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        return
    raise ForeignDatabaseError(
        path, f"it holds other tables ({_some(tables)}) and none of signalbox's"
    )


def claim_sqlite(db: Database) -> None:
    """Set the id on a file that has none, inside a migration's transaction: a file with
    signalbox's tables has the id (the open claims it already, unless it was read-only)."""
    if db.execute("PRAGMA application_id").fetchone()[0] == 0:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def check_postgresql(db: Database) -> None:
    """Raise :class:`ForeignDatabaseError` when the current schema has tables named like
    signalbox's but no signalbox ``schema_version`` table (or one of another shape).

    One catalog query (0.06 ms here) when the schema is signalbox's. Otherwise (new, foreign,
    or being migrated by another process right now) it looks again, the table list included,
    in one transaction holding the schema's migration lock shared: each statement outside a
    transaction sees the commits made before it, so the two reads could straddle another
    process's first migration (no ``schema_version`` yet, then its tables: two processes
    started together, one refused the schema as foreign). Under the lock no migration of the
    schema is half-way, and the first one commits its tables with ``schema_version``.

    Raises:
        StoreError: another process has been migrating the schema for longer than
            :data:`MIGRATION_WAIT_S`.
    """
    if {"component", "version"} <= _schema_version_columns(db):
        return
    try:
        with db.transaction(lock_timeout_s=MIGRATION_WAIT_S):
            db.lock_migrations(shared=True)
            columns = _schema_version_columns(db)
            tables = set() if columns else db.table_names()
    except StoreError as e:
        if db.dialect.is_lock_timeout(e.__cause__ or e):
            raise StoreError(
                f"{db.url}: another process has been migrating this schema for more than "
                f"{MIGRATION_WAIT_S:g} s (its migration lock is held); gave up waiting to "
                "check whose the schema is"
            ) from e
        raise
    if {"component", "version"} <= columns:
        return
    if columns:
        raise ForeignDatabaseError(
            db.url,
            f"its schema_version table has columns ({_some(sorted(columns))}), not "
            "signalbox's (component, version)",
        )
    clashes = sorted(t for t in tables if is_signalbox_table(t))
    if clashes:
        raise ForeignDatabaseError(
            db.url,
            f"it has tables named like signalbox's ({_some(clashes)}) but no signalbox "
            "schema_version table; use a database or schema of its own",
        )


MIGRATION_WAIT_S = 60.0
"""How long opening a new PostgreSQL schema waits for another process's migration of it
(the first migrations of an empty schema take well under a second)."""


def _schema_version_columns(db: Database) -> set[str]:
    return {
        r[0]
        for r in db.query(
            # the catalog, not information_schema (a view: several times slower)
            "SELECT attname FROM pg_attribute WHERE attrelid = "
            "to_regclass(quote_ident(current_schema()) || '.schema_version') "
            "AND attnum > 0 AND NOT attisdropped"
        )
    }


_SQLITE_NOTADB = 26


def _has_signalbox_versions(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT component, version FROM schema_version LIMIT 1").fetchall()
    except sqlite3.OperationalError:  # a table of that name but another shape
        return False
    return True


def _refuse_if_not_sqlite(path: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError:
        return  # let the driver's error speak
    if head != SQLITE_MAGIC:
        raise ForeignDatabaseError(path, f"not a SQLite file: it begins with {head!r}")


def _some(names: Iterable[str], n: int = 5) -> str:
    names = list(names)
    more = f", ... {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more
