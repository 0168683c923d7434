"""Real damage to real SQLite files, and other applications' files, for the storage tests.

Nothing here mocks the driver: a damaged store is a store signalbox wrote whose b-tree
pages are then overwritten on disk, as a bad disk or a copy taken mid-write would leave it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

SIGNALBOX_APP_ID = 0x53424F58


def checkpoint(path: Path) -> None:
    """Fold the WAL into the file, so every page is where :func:`corrupt_table` writes."""
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def corrupt_table(path: Path, table: str) -> list[int]:
    """Overwrite every b-tree page of ``table`` and of its indexes (past each page's 8-byte
    header: the cell pointers and cells) with 0xFF; return the page numbers."""
    checkpoint(path)
    with sqlite3.connect(path) as c:
        names = [
            r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE tbl_name = ?", (table,))
        ]
        pages = sorted(
            {
                r[0]
                for name in names
                for r in c.execute("SELECT pageno FROM dbstat WHERE name = ?", (name,))
            }
        )
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
    c.close()
    assert pages and min(pages) > 1, (table, pages)
    with open(path, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * page_size + 8)
            f.write(b"\xff" * (page_size - 8))
    return pages


def integrity(path: Path) -> str:
    """What ``PRAGMA integrity_check`` says (first line), from a plain sqlite3 connection."""
    c = sqlite3.connect(path)
    try:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0]).splitlines()[0]
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        c.close()


def pad(path: Path, n_bytes: int) -> None:
    """Grow a store by ``n_bytes`` (a table of its own), past the size checked at open."""
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE padding (b BLOB)")
        c.execute("INSERT INTO padding VALUES (zeroblob(?))", (n_bytes,))
    c.close()
    checkpoint(path)


def other_app_db(path: Path, app_id: int = 0) -> None:
    """Another application's SQLite file: its own tables and rows, its own id (or none)."""
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER)")
        c.execute("INSERT INTO customers (name) VALUES ('ada')")
        if app_id:
            c.execute(f"PRAGMA application_id = {app_id}")
    c.close()


def schema(path: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(path) as c:
        rows = c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    c.close()
    return rows


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def app_id(path: Path) -> int:
    with sqlite3.connect(path) as c:
        got = int(c.execute("PRAGMA application_id").fetchone()[0])
    c.close()
    return got
