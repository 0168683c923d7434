"""Database.exclusive: one process at a time in work made of many transactions (compaction),
per store; a try that finds it held says so instead of waiting."""

from __future__ import annotations

import threading

import pytest

from signalbox.storage import open_database
from tests.stores import pg_schema_url, sqlite_url


@pytest.mark.service("postgresql")
def test_a_second_connection_waits_or_is_told_it_is_held() -> None:
    with pg_schema_url() as url:
        a, b = open_database(url), open_database(url)
        try:
            with a.exclusive("compact") as held:
                assert held
                with b.exclusive("compact", wait=False) as other:
                    assert not other  # held by a: b is told, not kept waiting
                with b.exclusive("rebuild", wait=False) as other_name:
                    assert other_name  # another name is another lock
                got: list[float] = []
                t = threading.Thread(target=lambda: got.append(_hold(b)))
                t.start()
                t.join(0.3)
                assert t.is_alive()  # waiting for a
            t.join(10)
            assert got == [1.0]  # took it once a let go
            with b.exclusive("compact", wait=False) as free:
                assert free
        finally:
            a.close()
            b.close()


@pytest.mark.service("postgresql")
def test_stores_in_other_schemas_do_not_share_the_lock() -> None:
    with pg_schema_url() as u1, pg_schema_url() as u2:
        a, b = open_database(u1), open_database(u2)
        try:
            with a.exclusive("compact"), b.exclusive("compact", wait=False) as held:
                assert held
        finally:
            a.close()
            b.close()


def test_on_sqlite_it_holds_nothing(tmp_path: object) -> None:
    db = open_database(sqlite_url(tmp_path))  # type: ignore[arg-type]
    try:
        with db.exclusive("compact") as a, db.exclusive("compact", wait=False) as b:
            assert a and b
    finally:
        db.close()


def _hold(db: object) -> float:
    with db.exclusive("compact") as held:  # type: ignore[attr-defined]
        return 1.0 if held else 0.0
