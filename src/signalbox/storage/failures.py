"""Name the store failures a person must act on: a full disk and a damaged database.

A driver says these in its own words (SQLite: "database or disk is full", "disk I/O error",
"database disk image is malformed"; PostgreSQL: SQLSTATE 53100, XX001). Every statement's
error passes through :func:`translate` (from :class:`~signalbox.storage.database.Database`),
so each caller sees one :class:`~signalbox.exceptions.DiskFullError` or
:class:`~signalbox.exceptions.CorruptDatabaseError` naming the path, whatever the driver.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys

from signalbox.exceptions import CorruptDatabaseError, DiskFullError, StoreError

__all__ = ["LOW_SPACE_BYTES", "is_driver_error", "translate"]

LOW_SPACE_BYTES = 1 << 20
"""Below this much free space a SQLite "disk I/O error" on a write is read as a full disk
(SQLite reports ENOSPC as SQLITE_FULL on the main file but as an I/O error on the WAL)."""

_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_PG_DISK_FULL = "53100"
_PG_CORRUPT = ("XX001", "XX002")

SQLITE_ADVICE = (
    "stop signalbox, keep a copy of the file, then `sqlite3 {path} .recover | sqlite3 {path}.recovered` "
    "and point store.url at the recovered file (or move the damaged one away to start afresh)"
)
PG_ADVICE = "PostgreSQL reports damaged data: see its log and REINDEX or restore from backup"


def translate(exc: BaseException, dialect: str, path: str) -> StoreError | None:
    """The :class:`StoreError` ``exc`` means, or None when it is not one of these.

    Args:
        exc: what the driver raised.
        dialect: ``"sqlite"`` or ``"postgresql"``.
        path: the database file (SQLite) or redacted URL (PostgreSQL), for the message.
    """
    if dialect == "sqlite":
        if not isinstance(exc, sqlite3.Error):
            return None
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == _SQLITE_FULL or (code == _SQLITE_IOERR and _low_space(path)):
            return DiskFullError(path, str(exc))
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return CorruptDatabaseError(path, str(exc), SQLITE_ADVICE.format(path=path))
        return None
    state = getattr(exc, "sqlstate", None)
    if state == _PG_DISK_FULL:
        return DiskFullError(path, _first_line(exc))
    if state in _PG_CORRUPT:
        return CorruptDatabaseError(path, _first_line(exc), PG_ADVICE)
    return None


def _low_space(path: str) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < LOW_SPACE_BYTES
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def is_driver_error(exc: BaseException) -> bool:
    """An error of a database driver (sqlite3, psycopg) that no store named: entry points
    show it as one line rather than a traceback."""
    if isinstance(exc, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")  # imported only once a PostgreSQL store was opened
    return psycopg is not None and isinstance(exc, psycopg.Error)
