"""The storage layer: migrations per component, transactions, and secrets kept out of messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.exceptions import StoreError
from signalbox.storage import open_database
from signalbox.storage.database import redact_url
from tests.stores import pg_schema_url

MIGRATIONS = [
    (1, "t", ["CREATE TABLE t (id {pk}, v TEXT)"]),
    (2, "u", ["CREATE TABLE u (k TEXT PRIMARY KEY, b {blob})"]),
]


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def test_migrations_apply_once_and_per_component(tmp_path: Path, kind: str) -> None:
    def check(url: str) -> None:
        db = open_database(url)
        assert db.migrate("demo", MIGRATIONS[:1]) == 1
        assert db.migrate("demo", MIGRATIONS) == 2  # only the new one runs
        assert db.migrate("demo", MIGRATIONS) == 2
        assert db.migrate("other", []) == 0
        assert {"t", "u", "schema_version"} <= db.table_names()
        db.close()

    if kind == "sqlite":
        check(f"sqlite:///{tmp_path / 'db.sqlite'}")
    else:
        with pg_schema_url() as url:
            check(url)


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate("demo", MIGRATIONS)
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO t (v) VALUES (?)", ("x",))
        with db.transaction():  # nested joins the outer one
            db.execute("INSERT INTO t (v) VALUES (?)", ("y",))
        raise RuntimeError("boom")
    assert db.query("SELECT count(*) FROM t") == [(0,)]
    db.close()


def test_passwords_never_appear_in_urls_shown_to_people() -> None:
    assert (
        redact_url("postgresql://app:s3cret@db.internal:5432/metrics")
        == "postgresql://app:***@db.internal:5432/metrics"
    )
    assert redact_url("postgresql://db/metrics") == "postgresql://db/metrics"
    assert redact_url("sqlite:////var/lib/x.db") == "sqlite:////var/lib/x.db"


@pytest.mark.service("postgresql")
def test_connection_errors_do_not_leak_the_password() -> None:
    with pytest.raises(StoreError) as info:
        open_database("postgresql://nobody:hunter2@127.0.0.1:5432/no_such_db_here")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def test_unknown_store_url_is_refused() -> None:
    with pytest.raises(StoreError, match="expected sqlite:///PATH or postgresql"):
        open_database("mysql://x")
