"""Know your database (issue 8): whose file it is, and whether it is damaged.

The CLI side (exit codes, messages, files left untouched) is in
tests/cli/test_store_damage_cli.py; here the storage layer's rules, on real files and a
real PostgreSQL.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

import signalbox
from signalbox.exceptions import CorruptDatabaseError, ForeignDatabaseError
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from signalbox.storage.integrity import QUICK_CHECK_MAX_BYTES, check_in_background
from signalbox.storage.ownership import (
    APPLICATION_ID,
    SIGNALBOX_TABLES,
    check_sqlite,
    is_signalbox_table,
)
from tests.damage import app_id, corrupt_table, digest, integrity, other_app_db, pad, schema
from tests.stores import pg_schema_url

MIGRATIONS = [(1, "t", ["CREATE TABLE t (id {pk}, v TEXT)"])]


def _store(path: Path, n: int = 2000) -> None:
    """A signalbox store with ``n`` series, written and closed."""
    store = SQLMetricStore(open_database(f"sqlite:///{path}"))
    store.write([Sample("requests", (("path", f"/p{i}"),), 1.0) for i in range(n)], 1_000)
    store.close()


def test_the_id_spells_sbox() -> None:
    assert APPLICATION_ID.to_bytes(4, "big") == b"SBOX"


def test_a_new_file_is_marked_as_signalboxs_and_keeps_its_page_size(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'new.db'}")
    db.migrate("demo", MIGRATIONS)
    assert db.query("PRAGMA page_size") == [(16384,)]
    db.close()
    assert app_id(tmp_path / "new.db") == APPLICATION_ID


def test_an_open_of_our_own_file_reads_one_pragma_and_no_table(tmp_path: Path) -> None:
    """Cron's collect --once opens the store every 15 s: the check must stay a header read."""
    _store(tmp_path / "s.db", n=10)
    conn = sqlite3.connect(tmp_path / "s.db")
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    check_sqlite(conn, str(tmp_path / "s.db"))
    conn.close()
    assert seen == ["PRAGMA application_id"]


def test_another_applications_file_is_refused_before_any_write(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    other_app_db(path)
    before, tables = digest(path), schema(path)
    with pytest.raises(ForeignDatabaseError) as e:
        open_database(f"sqlite:///{path}")
    assert e.value.path == str(path)
    assert "customers, orders" in e.value.reason
    assert digest(path) == before and schema(path) == tables


def test_a_table_named_schema_version_of_another_shape_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "flyway.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE schema_version (installed_rank INT, script TEXT)")
    c.close()
    with pytest.raises(ForeignDatabaseError, match=r"other tables \(schema_version\)"):
        open_database(f"sqlite:///{path}")


def test_every_table_signalbox_creates_is_known_as_ours(tmp_path: Path) -> None:
    """SIGNALBOX_TABLES is what tells a half-ours PostgreSQL schema from a foreign one: every
    CREATE TABLE statement in the source names a table in it (f-string names are the time
    partitions, checked on a real store)."""
    src = Path(signalbox.__file__).parent
    created = {
        m.group(1)
        for f in src.rglob("*.py")
        for m in re.finditer(
            r"[\"']CREATE TABLE (?:IF NOT EXISTS )?(?!IF )([A-Za-z_]\w*)\b", f.read_text()
        )
    }
    assert "series" in created and "monitor_outbox" in created  # the scan finds them
    assert created <= SIGNALBOX_TABLES
    # and the partitions a store makes as it writes and compacts
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 's.db'}"))
    day = 86_400_000
    store.write([Sample("x", (), 1.0)], 3 * day)
    store.compact(3 * day + 7_200_000)
    names = store.db.table_names()
    store.close()
    assert any(n.startswith("samples_raw_") for n in names), sorted(names)
    assert any(n.startswith("buckets_r60_") for n in names), sorted(names)
    assert all(is_signalbox_table(n) for n in names if not n.startswith("sqlite_")), names
    assert not is_signalbox_table("samples") and not is_signalbox_table("series_backup")


# -- PostgreSQL: no application_id, so tables named like ours without our schema_version ----


@pytest.mark.service("postgresql")
@pytest.mark.parametrize(
    ("ddl", "reason"),
    [
        (
            "CREATE TABLE series (id SERIAL PRIMARY KEY, title TEXT)",
            "it has tables named like signalbox's (series) but no signalbox schema_version",
        ),
        (
            "CREATE TABLE schema_version (installed_rank INT, script TEXT)",
            "its schema_version table has columns (installed_rank, script)",
        ),
    ],
)
def test_postgresql_tables_named_like_ours_are_refused_untouched(ddl: str, reason: str) -> None:
    import psycopg

    with pg_schema_url() as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(ddl)
        with pytest.raises(ForeignDatabaseError) as e:
            SQLMetricStore(open_database(url))
        assert reason in str(e.value)
        assert "***" not in url and e.value.path.startswith("postgresql://")
        with psycopg.connect(url, autocommit=True) as c:
            tables = c.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchone()
        assert tables == (1,)  # nothing was added


@pytest.mark.service("postgresql")
def test_postgresql_database_shared_with_other_tables_is_fine() -> None:
    """A PostgreSQL database is often shared: tables of other names are not a reason."""
    import psycopg

    with pg_schema_url() as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE customers (id SERIAL PRIMARY KEY)")
            c.execute("CREATE TABLE samples (id SERIAL PRIMARY KEY)")  # not a name we use
        store = SQLMetricStore(open_database(url))
        store.write([Sample("x", (), 1.0)], 1_000)
        store.close()
        db = open_database(url)  # and it opens again, now with our tables beside theirs
        assert db.schema_version("metrics") > 0
        db.close()


# -- damage -----------------------------------------------------------------------------


def test_a_small_damaged_file_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _store(path)
    corrupt_table(path, "series")
    assert integrity(path) != "ok" and path.stat().st_size <= QUICK_CHECK_MAX_BYTES
    with pytest.raises(CorruptDatabaseError) as e:
        open_database(f"sqlite:///{path}")
    assert e.value.path == str(path)
    assert e.value.detail.startswith("quick_check: ")
    assert f"sqlite3 {path} .recover" in e.value.advice


def test_a_big_damaged_file_opens_and_fails_at_the_first_damaged_read(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _store(path)
    pad(path, QUICK_CHECK_MAX_BYTES + (1 << 20))
    corrupt_table(path, "series")
    db = open_database(f"sqlite:///{path}")  # not checked: O(size) on every open is too dear
    try:
        with pytest.raises(CorruptDatabaseError, match="database disk image is malformed"):
            db.query("SELECT count(*) FROM series")
    finally:
        db.close()


@pytest.mark.parametrize("damaged", [True, False])
def test_the_background_check_reports_damage_once(tmp_path: Path, damaged: bool) -> None:
    path = tmp_path / "s.db"
    _store(path, n=10)
    pad(path, QUICK_CHECK_MAX_BYTES + (1 << 20))
    if damaged:
        corrupt_table(path, "padding")
    db = open_database(f"sqlite:///{path}")
    found: list[CorruptDatabaseError] = []
    t = check_in_background(db, found.append)
    assert isinstance(t, threading.Thread)
    t.join(30)
    assert not t.is_alive()
    db.close()
    if damaged:
        assert len(found) == 1 and found[0].detail.startswith("quick_check: On tree page")
    else:
        assert found == []
