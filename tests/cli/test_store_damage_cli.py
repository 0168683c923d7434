"""Know your database, through the real ``signalbox`` executable on real files (issue 8).

Another application's database is refused with exit 2 and left exactly as it was; a file an
earlier signalbox made (no application_id) is adopted; a damaged store is named with what to
do, exit 2, never a traceback, in every command that opens it; a missing spool dir is a
warning and ``init`` creates it.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from signalbox.storage.integrity import QUICK_CHECK_MAX_BYTES, database_bytes
from tests.cli.helpers import SIGNALBOX, free_port, run
from tests.damage import (
    SIGNALBOX_APP_ID,
    app_id,
    corrupt_table,
    digest,
    integrity,
    other_app_db,
    pad,
    schema,
)
from tests.serving import fetch, serve_process, wait_for

# the commands that open the store: each must refuse, one line, exit 2
OPENING = [("collect", "--once"), ("query", "up"), ("monitors", "status"), ("compact",)]


def _project(tmp_path: Path, db: Path, extra: str = "") -> Path:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "spool").mkdir(exist_ok=True)
    (root / "signalbox.toml").write_text(
        f'store = "sqlite:///{db}"\n[collect]\nspool_dir = "spool"\n{extra}'
    )
    return root


def _collected(tmp_path: Path, n_series: int = 1500) -> tuple[Path, Path]:
    """A project whose store holds ``n_series`` series from one collect --once."""
    db = tmp_path / "store.db"
    root = _project(tmp_path, db)
    (root / "spool" / "app.metrics").write_text(
        "".join(f'requests{{path="/p{i}"}}={i}\n' for i in range(n_series))
    )
    r = run("collect", "--once", cwd=root)
    assert r.returncode == 0, r.stderr
    return root, db


def _one_clean_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("signalbox: ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


# -- another application's file --------------------------------------------------------


def _text_file(path: Path) -> None:
    path.write_text("2026-01-01 12:00:00 INFO app started\n" * 50)


FOREIGN: dict[str, tuple[Callable[[Path], None], str]] = {
    "other tables": (other_app_db, "it holds other tables (customers, orders)"),
    "another application_id": (
        lambda p: other_app_db(p, app_id=0x47504B47),
        "its application_id is 0x47504B47, signalbox's is 0x53424F58",
    ),
    "a text file": (_text_file, "not a SQLite file: it begins with b'2026-01-01 12:00'"),
}


@pytest.mark.parametrize("kind", list(FOREIGN))
@pytest.mark.parametrize("command", OPENING, ids=" ".join)
def test_another_applications_file_is_refused_and_left_as_it_was(
    tmp_path: Path, kind: str, command: tuple[str, ...]
) -> None:
    make, reason = FOREIGN[kind]
    db = tmp_path / "theirs.db"
    make(db)
    before, tables = digest(db), (schema(db) if kind != "a text file" else None)
    root = _project(tmp_path, db)
    (root / "spool" / "app.metrics").write_text("requests=1\n")

    r = run(*command, cwd=root)

    assert r.returncode == 2, (r.stdout, r.stderr)
    line = _one_clean_line(r)
    assert f"{db} is not a signalbox database ({reason}" in line, line
    assert "refusing to add tables to it" in line
    assert digest(db) == before  # not a byte changed: no tables, no WAL switch, no id
    if tables is not None:
        assert schema(db) == tables
    assert not Path(f"{db}-wal").exists()


def test_serve_refuses_another_applications_file_at_start(tmp_path: Path) -> None:
    db = tmp_path / "theirs.db"
    other_app_db(db)
    before = digest(db)
    root = _project(tmp_path, db, f"[server]\nport = {free_port()}\n[statsd]\nenabled = false\n")
    r = run("serve", cwd=root)
    assert r.returncode == 2, r.stderr
    assert "is not a signalbox database" in _one_clean_line(r)
    assert digest(db) == before


def test_a_store_of_an_earlier_signalbox_is_adopted(tmp_path: Path) -> None:
    root, db = _collected(tmp_path, n_series=3)
    with sqlite3.connect(db) as c:  # as a signalbox from before application_id left it
        c.execute("PRAGMA application_id = 0")
    c.close()
    assert app_id(db) == 0

    r = run("query", "count(requests)", cwd=root)

    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "3"
    assert app_id(db) == SIGNALBOX_APP_ID


def test_a_new_store_carries_signalboxs_application_id(tmp_path: Path) -> None:
    _, db = _collected(tmp_path, n_series=3)
    assert app_id(db) == SIGNALBOX_APP_ID


@pytest.mark.service("postgresql")
def test_postgresql_tables_named_like_ours_are_not_migrated_into(
    tmp_path: Path,
) -> None:
    import psycopg

    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE series (id SERIAL PRIMARY KEY, title TEXT, season INT)")
            c.execute("CREATE TABLE samples (id SERIAL PRIMARY KEY, what TEXT)")
        root = tmp_path / "project"
        root.mkdir()
        (root / "signalbox.toml").write_text(f'store = "{url}"\n')
        for command in OPENING:
            r = run(*command, cwd=root)
            assert r.returncode == 2, (command, r.stderr)
            line = _one_clean_line(r)
            assert "is not a signalbox database" in line, line
            assert "tables named like signalbox's (series)" in line, line
        with psycopg.connect(url, autocommit=True) as c:
            tables = {
                r[0]
                for r in c.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            }
        assert tables == {"series", "samples"}  # nothing added


# -- a damaged store -------------------------------------------------------------------


ADVICE = ".recover | sqlite3"


@pytest.fixture
def damaged_small(tmp_path: Path) -> tuple[Path, Path]:
    """A store of 1,000 series whose series table was overwritten on disk (small enough
    to be quick_checked at open: each rollup partition's empty tables take pages too)."""
    root, db = _collected(tmp_path, n_series=1000)
    assert database_bytes(str(db)) <= QUICK_CHECK_MAX_BYTES
    corrupt_table(db, "series")
    assert integrity(db) != "ok"
    return root, db


@pytest.mark.parametrize("command", OPENING, ids=" ".join)
def test_a_damaged_store_is_named_with_what_to_do(
    damaged_small: tuple[Path, Path], command: tuple[str, ...]
) -> None:
    root, db = damaged_small
    r = run(*command, cwd=root)
    assert r.returncode == 2, (r.stdout, r.stderr)
    line = _one_clean_line(r)
    assert line.startswith(f"signalbox: {db} is damaged (quick_check: "), line
    assert ADVICE in line and f"sqlite3 {db} .recover" in line, line


def test_serve_refuses_a_damaged_store_at_start(damaged_small: tuple[Path, Path]) -> None:
    root, db = damaged_small
    with (root / "signalbox.toml").open("a") as f:
        f.write(f"[server]\nport = {free_port()}\n[statsd]\nenabled = false\n")
    r = run("serve", cwd=root)
    assert r.returncode == 2, r.stderr
    assert f"{db} is damaged" in _one_clean_line(r)


@pytest.fixture
def damaged_big(tmp_path: Path) -> tuple[Path, Path]:
    """A damaged store too big to be checked at open (found at the first error instead)."""
    root, db = _collected(tmp_path)
    pad(db, 3 << 20)
    corrupt_table(db, "series")
    assert integrity(db) != "ok"
    return root, db


def test_a_big_damaged_store_is_named_at_the_first_error(
    damaged_big: tuple[Path, Path],
) -> None:
    root, db = damaged_big
    r = run("query", "requests", cwd=root)
    assert r.returncode == 2, (r.stdout, r.stderr)
    line = _one_clean_line(r)
    assert line.startswith(f"signalbox: {db} is damaged (database disk image is malformed)"), line
    assert ADVICE in line


def test_the_query_api_answers_503_naming_the_damage(damaged_big: tuple[Path, Path]) -> None:
    root, db = damaged_big
    (root / "spool" / "app.metrics").unlink()
    port = free_port()
    with (root / "signalbox.toml").open("a") as f:
        f.write(f"[server]\nport = {port}\n[statsd]\nenabled = false\n")
    with serve_process(root, port) as base:
        status, body = fetch(base + "/api/v1/query?query=requests")
        assert status == 503, body
        assert f"{db} is damaged" in body and ADVICE in body, body
        assert "Traceback" not in body


def test_serve_on_a_big_damaged_store_starts_and_is_not_ready(tmp_path: Path) -> None:
    """Damage in pages no pass reads: only serve's background quick_check can tell."""
    root, db = _collected(tmp_path)
    pad(db, 3 << 20)
    corrupt_table(db, "padding")
    assert integrity(db) != "ok"
    port = free_port()
    with (root / "signalbox.toml").open("a") as f:
        f.write(f"[server]\nport = {port}\n[statsd]\nenabled = false\n")
    out: list[str] = []
    with serve_process(root, port, out) as base:

        def not_ready() -> str | None:
            status, body = fetch(base + "/-/ready")
            return body if status == 503 else None

        body = wait_for(not_ready)
        assert "store integrity" in body and f"{db} is damaged" in body, body
        assert fetch(base + "/-/healthy")[0] == 200  # restarting would not help
        status, body = fetch(base + "/api/v1/query?query=requests")
        assert status == 200 and '"/p1499"' in body, body  # the undamaged part still reads
    log = out[0]  # one line from the check, one when readiness changed: not one per probe
    assert log.count(f"ERROR signalbox.storage: {db} is damaged (quick_check: ") == 1, log
    assert log.count(f"not ready: store integrity: {db} is damaged") == 1, log


# -- the spool dir ---------------------------------------------------------------------


def test_serve_creates_a_missing_spool_dir_and_says_so_once(tmp_path: Path) -> None:
    root = _project(tmp_path, tmp_path / "store.db")
    spool = root / "spool"
    spool.rmdir()
    port = free_port()
    with (root / "signalbox.toml").open("a") as f:
        f.write(f'interval = "1s"\n[server]\nport = {port}\n[statsd]\nenabled = false\n')
    out: list[str] = []
    with serve_process(root, port, out) as base:
        assert spool.is_dir()
        (spool / "app.metrics").write_text("requests=5\n")
        wait_for(lambda: "requests" in fetch(base + "/api/v1/query?query=requests")[1])
    assert out[0].count(f"spool dir {spool} did not exist: created it") == 1, out[0]


def test_init_creates_the_spool_dir_the_config_names(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text('[collect]\nspool_dir = "var/drop"\n')
    r = run("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "var" / "drop").is_dir()
    assert "created: var/drop" in r.stdout
    assert not (tmp_path / ".signalbox" / "spool").exists()  # not the default's


def test_init_creates_the_default_spool_dir(tmp_path: Path) -> None:
    r = subprocess.run(
        [SIGNALBOX, "init", "proj"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "proj" / ".signalbox" / "spool").is_dir()
    assert "created: proj/.signalbox/spool" in r.stdout


def test_a_driver_error_no_store_named_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A hand-edited store (a table dropped) fails in the driver's words, on one line; -vv
    shows where."""
    root, db = _collected(tmp_path, n_series=3)
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE series")
    c.close()
    r = run("query", "requests", cwd=root)
    assert r.returncode == 2, r.stderr
    assert _one_clean_line(r) == "signalbox: store error: no such table: series (-vv shows where)"
    verbose = run("-vv", "query", "requests", cwd=root)
    assert "Traceback" in verbose.stderr and verbose.returncode == 2


@pytest.mark.parametrize(
    "form", [(), ("--json",), ("--no-compact",)], ids=["plain", "json", "no-compact"]
)
def test_collect_once_warns_of_a_missing_spool_dir_and_exits_0(
    tmp_path: Path, form: tuple[str, ...]
) -> None:
    root = _project(tmp_path, tmp_path / "store.db")
    spool = root / "spool"
    spool.rmdir()
    r = run("collect", "--once", *form, cwd=root)
    assert r.returncode == 0, r.stderr  # nothing failed
    assert "Traceback" not in r.stderr
    warning = f"signalbox: warning: spool dir {spool} does not exist: no spool files are collected"
    assert r.stderr.count(warning) == 1, r.stderr
    assert f"mkdir -p {spool}" in r.stderr and "signalbox init" in r.stderr
    assert not spool.exists()  # collect --once only reads: it does not create it
    spool.mkdir()
    r = run("collect", "--once", *form, cwd=root)
    assert r.returncode == 0 and "spool dir" not in r.stderr, r.stderr


def test_collect_once_names_a_driver_error_in_one_line(tmp_path: Path) -> None:
    root, db = _collected(tmp_path, n_series=3)
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE series")
    c.close()
    r = run("collect", "--once", cwd=root)  # the fast path, without click
    assert r.returncode == 2, r.stderr
    assert _one_clean_line(r) == "signalbox: store error: no such table: series (-vv shows where)"
