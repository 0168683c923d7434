"""Is the SQLite file damaged? Checked at open where that is cheap, otherwise found at the
first statement that reads a damaged page (:mod:`~signalbox.storage.failures`).

``PRAGMA quick_check`` reads and checks every page of the file, with the file in the page
cache: a signalbox store of 0.95 MB takes 2.6 ms, of 5.4 MB 67 ms (its many small cells
cost more than a plain table's: 26 MB of blobs take 48 ms), more from a cold disk. Cron runs
``collect --once`` every 15 s with a whole pass of ~150 ms, so the rule is:

* at every open, when the file and its WAL hold at most :data:`QUICK_CHECK_MAX_BYTES`
  (a check of a few ms: a new or small store);
* on ``serve`` start for a bigger file, in a background thread on its own connection
  (:func:`check_in_background`): the server starts at once and a damaged file is logged
  and fails ``/-/ready``;
* always, at the first error: SQLITE_CORRUPT / SQLITE_NOTADB from any statement is a
  :class:`~signalbox.exceptions.CorruptDatabaseError` with what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from signalbox.exceptions import CorruptDatabaseError, StoreError
from signalbox.storage.failures import SQLITE_ADVICE, translate

if TYPE_CHECKING:
    from signalbox.storage.database import Database

__all__ = [
    "QUICK_CHECK_MAX_BYTES",
    "check_at_open",
    "check_in_background",
    "checked_at_open",
    "database_bytes",
    "quick_check",
]

QUICK_CHECK_MAX_BYTES = 2 << 20
"""Files (with their WAL) up to this size get ``PRAGMA quick_check`` at every open: 2 MB,
since a new store is ~1 MB already (16 KB pages, and each rollup partition's row, frame,
sealed and packed tables with their indexes take a page or two even when empty)."""

log = logging.getLogger("signalbox.storage")


def database_bytes(path: str) -> int:
    """The file's size plus its WAL's (what ``quick_check`` reads); 0 when it does not exist."""
    total = 0
    for p in (path, path + "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(p).st_size
    return total


def checked_at_open(db: Database) -> bool:
    """Whether :func:`check_at_open` checks ``db`` (a SQLite file small enough); the others
    are left to the first error, or to :func:`check_in_background`."""
    return (
        db.dialect.name == "sqlite"
        and db.path != ":memory:"
        and database_bytes(db.path) <= QUICK_CHECK_MAX_BYTES
    )


def check_at_open(db: Database) -> bool:
    """``quick_check`` a small SQLite file now (see the module docstring); whether it ran.

    Raises:
        CorruptDatabaseError: the file is damaged.
    """
    if not checked_at_open(db):
        return False
    try:
        problems = [r[0] for r in db.query("PRAGMA quick_check")]
    except CorruptDatabaseError as e:  # too damaged for the check to finish
        raise CorruptDatabaseError(e.path, f"quick_check: {e.detail}", e.advice) from e
    _raise_if_damaged(problems, db.path)
    return True


def quick_check(conn: sqlite3.Connection, path: str) -> None:
    """Run ``PRAGMA quick_check`` on a raw connection of the file at ``path``.

    Raises:
        CorruptDatabaseError: the file is damaged.
        StoreError: the check could not run.
    """
    try:
        problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as e:
        named = translate(e, "sqlite", path)
        if isinstance(named, CorruptDatabaseError):  # too damaged for the check to finish
            raise CorruptDatabaseError(path, f"quick_check: {e}", named.advice) from e
        raise (named or StoreError(f"{path}: quick_check failed: {e}")) from e
    _raise_if_damaged(problems, path)


def check_in_background(
    db: Database, on_damage: Callable[[CorruptDatabaseError], None]
) -> threading.Thread:
    """``quick_check`` ``db``'s file on a thread and connection of its own; call
    ``on_damage`` (and log one error line) when it is damaged. For ``serve``, whose start
    should not wait an O(size) read of a big file."""

    def run() -> None:
        try:
            conn = db.dedicated_connection()
        except CorruptDatabaseError as e:
            _report(e, on_damage)
            return
        except StoreError as e:
            log.warning("store integrity check not run: %s", e)
            return
        try:
            quick_check(conn, db.path)
        except CorruptDatabaseError as e:
            _report(e, on_damage)
        except StoreError as e:
            log.warning("store integrity check not run: %s", e)
        else:
            log.info("store integrity check: %s is ok", db.path)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    t = threading.Thread(target=run, name="signalbox-integrity", daemon=True)
    t.start()
    return t


def _report(e: CorruptDatabaseError, on_damage: Callable[[CorruptDatabaseError], None]) -> None:
    log.error("%s", e)
    on_damage(e)


def _raise_if_damaged(problems: list[str], path: str) -> None:
    if problems == ["ok"]:
        return
    lines = [line for p in problems for line in str(p).splitlines()]  # one row, many lines
    found = [p for p in lines if p.strip() and not p.startswith("*** in database")]
    detail = "quick_check: " + (found[0] if found else "; ".join(lines))
    if len(found) > 1:  # quick_check stops listing at 100
        more = f"{len(found) - 1}+" if len(found) >= 100 else str(len(found) - 1)
        detail += f" (and {more} more problems)"
    raise CorruptDatabaseError(path, detail, SQLITE_ADVICE.format(path=path))
