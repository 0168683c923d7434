"""A layout's positions (``metric_layout_series``) are its series ids in order, whether the
ids are consecutive (counted out in SQL) or not (sent as an array), on SQLite and
PostgreSQL; reads by series find them either way."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from signalbox.metrics.sql.layouts import Layouts, _first_of_run
from signalbox.storage import Database, open_database
from tests.stores import pg_schema_url, sqlite_url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    from signalbox.metrics.sql.store import SQLMetricStore

    if request.param == "sqlite":
        store = SQLMetricStore(open_database(sqlite_url(tmp_path)))
        yield store.db
        store.close()
        return
    with pg_schema_url() as url:
        store = SQLMetricStore(open_database(url))
        yield store.db
        store.close()


@pytest.mark.parametrize(
    ("ids", "first"),
    [
        (range(5, 9), 5),
        ([5, 6, 7, 8], 5),
        ([7], 7),
        (range(3, 3), None),
        ([], None),
        ([5, 7, 6, 8], None),  # the ends of a run, not one
        ([5, 6, 6, 8], None),
        ([8, 7, 6, 5], None),
        (range(8, 4, -1), None),
    ],
)
def test_a_run_is_consecutive_ascending_ids(ids: Sequence[int], first: int | None) -> None:
    assert _first_of_run(ids) == first


def _rows(db: Database, lid: int) -> list[int]:
    got = db.query(
        "SELECT pos, series_id FROM metric_layout_series WHERE layout_id = ? ORDER BY pos", (lid,)
    )
    assert [pos for pos, _ in got] == list(range(len(got)))
    return [sid for _, sid in got]


@pytest.mark.parametrize(
    "ids",
    [
        range(1, 501),
        list(range(1001, 1301)),
        [42],
        [9, 3, 700, 4, 5],
        [2**40 + i for i in range(3)],
    ],
    ids=["range", "consecutive-list", "one", "scattered", "big-ids"],
)
def test_positions_are_the_ids_in_order(db: Database, ids: Sequence[int]) -> None:
    layouts = Layouts(db)
    with db.transaction():
        lid = layouts.register(b"digest-" + str(ids[0]).encode(), "", ids, 0)
    assert _rows(db, lid) == list(ids)
    fresh = Layouts(db)
    assert list(fresh.series_of([lid])[lid]) == list(ids)
    assert fresh.positions([ids[-1]]) == {lid: [(len(ids) - 1, ids[-1])]}


def test_a_rolled_back_layout_leaves_no_positions(db: Database) -> None:
    layouts = Layouts(db)
    with pytest.raises(RuntimeError), db.transaction():
        layouts.register(b"gone", "", range(1, 101), 0)
        raise RuntimeError("the pass failed after its layouts")
    layouts.forget()
    assert db.query("SELECT count(*) FROM metric_layout_series")[0][0] == 0
    with db.transaction():
        lid = layouts.register(b"gone", "", range(1, 101), 0)
    assert _rows(db, lid) == list(range(1, 101))
