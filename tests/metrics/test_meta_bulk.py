"""Metadata written in bulk (a first pass over a million ``.prom`` names): compared in SQL,
a name given twice keeps its last record, unchanged rows are left alone, nothing is cached;
a write refused half-way (a full disk, a full tablespace) stores none of it and the next
call stores all of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.exceptions import DiskFullError
from signalbox.metrics.samples import MetricMeta
from signalbox.metrics.sql import meta as sqlmeta
from signalbox.metrics.sql import store as sqlstore
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.diskfull import pg_disk_full, small_disk
from tests.stores import pg_schema_url, sqlite_url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLMetricStore]:
    if request.param == "sqlite":
        s = SQLMetricStore(open_database(sqlite_url(tmp_path)))
        yield s
        s.close()
        return
    with pg_schema_url() as url:
        s = SQLMetricStore(open_database(url))
        yield s
        s.close()


@pytest.fixture
def bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlstore, "_META_BULK_MIN", 3)
    monkeypatch.setattr(sqlmeta, "CHUNK", 4)  # several statements, one name across two


def _metas(n: int, help_: str = "h") -> list[MetricMeta]:
    return [
        MetricMeta(f"m{i:03d}", "counter" if i % 2 else "gauge", f'{help_} "{i}"\\')
        for i in range(n)
    ]


@pytest.mark.usefixtures("bulk")
def test_bulk_metadata_is_stored_last_record_first_and_nothing_is_cached(
    store: SQLMetricStore,
) -> None:
    metas = _metas(10)
    twice = [*metas[:3], MetricMeta("m001", "histogram", "again", "seconds"), *metas[3:]]
    store.write_metadata(twice)
    want = {m.name: m for m in metas} | {
        "m001": MetricMeta("m001", "histogram", "again", "seconds")
    }
    assert store.metadata() == want
    assert store._meta is None
    changed = [MetricMeta("m004", "gauge", "new help"), MetricMeta("m099", "gauge", "")]
    with store.db.transaction():  # only the changed and the new rows are written
        assert sqlmeta.upsert(store.db, [*metas[5:], *changed, metas[0]]) == 2
    assert store.metadata() == want | {m.name: m for m in changed}


@pytest.mark.usefixtures("bulk")
def test_bulk_metadata_beside_records_read_by_name(store: SQLMetricStore) -> None:
    """A small write after a bulk one compares by name against what the bulk one stored."""
    store.write_metadata(_metas(6))
    store.write_metadata([MetricMeta("m002", "gauge", "changed")])
    got = store.metadata()
    assert got["m002"] == MetricMeta("m002", "gauge", "changed")
    assert {n: m for n, m in got.items() if n != "m002"} == {
        m.name: m for m in _metas(6) if m.name != "m002"
    }


def test_a_refused_bulk_write_stores_nothing_and_the_next_stores_all_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlstore, "_META_BULK_MIN", 3)
    with small_disk(tmp_path / "disk") as disk:
        store = SQLMetricStore(open_database(f"sqlite:///{disk.path / 'm.db'}"))
        try:
            store.write_metadata([MetricMeta("before", "gauge", "stored")])
            metas = _metas(30_000, "x" * 200)  # ~7 MB: more than the room left
            disk.fill()
            disk.leave(192 * 1024)
            with pytest.raises(DiskFullError):
                store.write_metadata(metas)
            disk.free()
            assert store.metadata() == {"before": MetricMeta("before", "gauge", "stored")}
            store.write_metadata(metas)
            assert len(store.metadata()) == 30_001
        finally:
            store.close()


@pytest.mark.service("postgresql")
def test_a_refused_bulk_write_stores_nothing_and_the_next_stores_all_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlstore, "_META_BULK_MIN", 3)
    with pg_schema_url() as url:
        store = SQLMetricStore(open_database(url))
        outage = pg_disk_full(url)
        outage.install()
        try:
            store.write_metadata([MetricMeta("before", "gauge", "stored")])
            outage.fill()
            with pytest.raises(DiskFullError):
                store.write_metadata(_metas(10))
            outage.free()
            assert list(store.metadata()) == ["before"]
            store.write_metadata(_metas(10))
            assert store.metadata() == {"before": MetricMeta("before", "gauge", "stored")} | {
                m.name: m for m in _metas(10)
            }
        finally:
            store.close()
