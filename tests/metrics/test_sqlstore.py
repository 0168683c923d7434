"""Rollup tiers, resolution choice and retention of the SQL store (SQLite; PostgreSQL in contracts)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.exceptions import StoreError
from signalbox.metrics.partitions import levels, segments
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql.store import MIGRATIONS, SQLMetricStore
from signalbox.storage import open_database
from tests.stores import pg_schema_url

T0 = 1_700_000_040_000  # a whole minute
NAME = [Matcher("__name__", "=", "a")]
TIERS = (Tier(60, 8 * 86400), Tier(300, 35 * 86400), Tier(3600, 400 * 86400))


def make(
    tmp_path: Path, clock: FrozenClock | None = None, url: str | None = None
) -> SQLMetricStore:
    return SQLMetricStore(
        open_database(url or f"sqlite:///{tmp_path / 'db.sqlite'}"),
        raw_retention_s=86400,
        tiers=TIERS,
        clock=clock or FrozenClock(T0 / 1000),
    )


def test_partition_spans_align_with_the_next_tier() -> None:
    lv = levels(86400, TIERS)
    assert [x.tier for x in lv] == [0, 60, 300, 3600]
    for a, b in itertools.pairwise(lv):
        assert a.span_ms % (b.tier * 1000) == 0


def test_segments_split_at_every_boundary() -> None:
    assert segments(0, 10, (4,)) == [(0, 4), (4, 8), (8, 10)]
    assert segments(3, 13, (4, 6)) == [(3, 4), (4, 6), (6, 8), (8, 12), (12, 13)]


# What each bucket holds: tests/metrics/test_rollup_buckets.py (every statistic, every tier).


def test_long_windows_read_a_tier_and_recent_windows_read_raw(tmp_path: Path) -> None:
    clock = FrozenClock(T0 / 1000)
    store = make(tmp_path, clock)
    day = 86400_000
    # 3 days of one sample a minute
    start = T0 - 3 * day
    store.write([Sample("a", (), float(i), start + i * 60_000) for i in range(3 * 1440)], T0)
    store.compact(T0)
    assert store.choose_level(T0 - 3600_000, 15_000).tier == 0
    assert store.choose_level(T0 - 3600_000, 600_000).tier == 0  # within raw retention: exact
    assert store.choose_level(T0 - 3 * day, 60_000).tier == 60
    assert store.choose_level(T0 - 20 * day, 300_000).tier == 300
    assert store.choose_level(T0 - 3 * day, 3600_000).tier == 3600
    [sp] = store.select(NAME, T0 - 3 * day, T0, step_ms=60_000)
    assert sp.resolution == 60
    assert len(sp.timestamps) == 3 * 1440
    assert sp.timestamps == sorted(sp.timestamps)
    assert sp.values[-1] == float(
        3 * 1440 - 1
    )  # newest minute present (raw appended past the watermark)
    [raw] = store.select(NAME, T0 - 3600_000, T0, step_ms=15_000)
    assert raw.resolution == 0 and len(raw.timestamps) == 60
    store.close()


def test_recent_points_past_the_watermark_come_from_raw(tmp_path: Path) -> None:
    clock = FrozenClock(T0 / 1000)
    store = make(tmp_path, clock)
    store.write([Sample("a", (), float(i), T0 - 7200_000 + i * 15_000) for i in range(480)], T0)
    store.compact(T0 - 600_000)  # rollups end 10 minutes ago
    [sp] = store.select(NAME, T0 - 2 * 86400_000 + 1, T0, step_ms=60_000)
    assert sp.resolution == 60
    assert sp.timestamps[-1] == T0 - 15_000  # the raw tail
    assert sp.counts is not None and sp.counts[-1] == 1.0
    store.close()


def test_retention_drops_whole_partitions(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.write([Sample("a", (), 1.0, T0)], T0)
    store.compact(T0 + 600_000)
    tables = store.db.table_names()
    assert any(t.startswith("samples_raw_") for t in tables)
    assert any(t.startswith("buckets_r60_") for t in tables)
    store.compact(T0 + 10 * 86400_000)  # past raw (1d) and 1m (8d) retention
    tables = store.db.table_names()
    assert not any(t.startswith("samples_raw_") for t in tables)
    assert not any(t.startswith("buckets_r60_") for t in tables)
    assert any(t.startswith("buckets_r300_") for t in tables)
    store.close()


def test_rebuild_rollups_covers_imported_history_before_the_watermark(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.compact(T0)  # nothing yet
    store.write([Sample("a", (), 5.0, T0)], T0)
    store.compact(T0 + 600_000)  # watermark set
    old = T0 - 2 * 86400_000
    store.write([Sample("a", (), float(i), old + i * 60_000) for i in range(10)], T0)
    store.rebuild_rollups(old, old + 10 * 60_000)
    store.clock = FrozenClock((T0 + 600_000) / 1000)
    [sp] = store.select(NAME, old, old + 20 * 60_000, step_ms=60_000)
    assert sp.resolution == 60 and sp.values[:10] == [float(i) for i in range(10)]
    store.close()


def test_reopening_keeps_series_ids_and_data(tmp_path: Path) -> None:
    s1 = make(tmp_path)
    s1.write([Sample("a", (("k", "v"),), 1.0)], T0)
    s1.close()
    s2 = make(tmp_path)
    r = s2.write([Sample("a", (("k", "v"),), 2.0)], T0 + 1000)
    assert r.new_series == 0
    [sp] = s2.select(NAME, T0, T0 + 1000)
    assert sp.values == [1.0, 2.0]
    s2.close()


def test_a_second_connection_sees_new_series(tmp_path: Path) -> None:
    writer, reader = make(tmp_path), make(tmp_path)
    assert reader.series() == []
    writer.write([Sample("a", (), 1.0)], T0)
    assert reader.series() == [("a", ())]
    writer.close()
    reader.close()


def test_schema_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    s = make(tmp_path)
    s.db.execute("UPDATE schema_version SET version = 99 WHERE component = 'metrics'")
    s.close()
    with pytest.raises(StoreError, match="newer than this signalbox understands"):
        make(tmp_path)


@pytest.mark.service("postgresql")
def test_rollups_work_on_postgresql(tmp_path: Path) -> None:
    with pg_schema_url() as url:
        store = make(tmp_path, url=url)
        store.write([Sample("a", (), float(i), T0 + i * 15_000) for i in range(8)], T0)
        store.clock = FrozenClock((T0 + 3 * 86400_000) / 1000)
        store.compact(T0 + 600_000)
        [sp] = store.select(NAME, T0 - 1, T0 + 120_000, step_ms=60_000)
        assert sp.resolution == 60  # buckets (T0 - 1m, T0], (T0, T0 + 1m], (T0 + 1m, T0 + 2m]
        assert sp.values == [0.0, 4.0, 7.0] and sp.counts == [1, 4, 3]
        assert sp.sums == [0.0, 10.0, 18.0] and sp.first_ts == [T0, T0 + 15_000, T0 + 75_000]
        store.close()


def test_without_aggregates_a_tier_read_gives_the_same_values_and_no_bucket_stats(
    tmp_path: Path,
) -> None:
    clock = FrozenClock(T0 / 1000)
    store = make(tmp_path, clock)
    start = T0 - 3 * 86400_000
    store.write([Sample("a", (), float(i % 7), start + i * 60_000) for i in range(3 * 1440)], T0)
    store.compact(T0)
    [full] = store.select(NAME, start, T0, step_ms=60_000)
    [lean] = store.select(NAME, start, T0, step_ms=60_000, aggregates=False)
    assert lean.resolution == full.resolution == 60
    assert lean.timestamps == full.timestamps and lean.values == full.values
    assert lean.mins is None and lean.counts is None and full.counts is not None
    store.close()


def test_a_schema_3_database_gets_frames_beside_its_raw_partitions(tmp_path: Path) -> None:
    """Upgrading keeps the samples and lets the next pass write frames into old partitions."""
    from signalbox.metrics.store import Frame, NewLayout

    s = make(tmp_path, FrozenClock(T0 / 1000))
    s.write([Sample("a", (), 1.0)], T0)
    for table in s.db.table_names():
        if table.startswith(("frames_", "metric_layout")):
            s.db.execute(f"DROP TABLE {table}")
    s.db.execute("ALTER TABLE metric_partitions DROP COLUMN exact")  # added by schema 5
    s.db.execute("UPDATE schema_version SET version = 3 WHERE component = 'metrics'")
    s.close()
    s = make(tmp_path, FrozenClock(T0 / 1000))
    assert s.db.schema_version("metrics") == MIGRATIONS[-1][0]
    s.write([Sample("b", (), 2.0)], T0 + 1000, layouts=[NewLayout(b"d" * 16, 0, 1)])
    s.write([], T0 + 2000, frames=[Frame(b"d" * 16, [3.0])])
    assert [(n, v) for n, _, _, v in s.latest()] == [("a", 1.0), ("b", 3.0)]
    s.close()


def test_a_new_store_object_compares_a_few_metadata_records_by_name(store_url: str) -> None:
    """A ``collect --once`` process whose files all went as frames writes only the
    self-metrics' metadata: it reads those names, not a table of a million, and still
    writes a change and leaves the rest alone."""
    from signalbox.metrics.samples import MetricMeta

    first = SQLMetricStore(open_database(store_url))
    many = [MetricMeta(f"m{i}", "counter", f"help {i}") for i in range(2500)]
    first.write_metadata(many)
    first.close()
    second = SQLMetricStore(open_database(store_url))
    second.write_metadata([MetricMeta("m1", "counter", "help 1"), MetricMeta("m2", "gauge")])
    second.write_metadata([MetricMeta("m3", "counter", "new help 3")])
    got = second.metadata()
    assert len(got) == 2500
    assert got["m1"] == many[1] and got["m2"] == MetricMeta("m2", "gauge")
    assert got["m3"].help == "new help 3" and got["m4"] == many[4]
    second.write_metadata(many)  # more than a lookup by name: compared with the whole table
    assert second.metadata() == {m.name: m for m in many}
    second.close()


def test_a_first_pass_of_new_series_saves_the_id_map_snapshot_of_the_table(
    store_url: str,
) -> None:
    """The first pass gives the series ids one after another and writes the id map's
    snapshot without building the map; it must decode to what the table says, so the
    next process needs no million-row read. A key written twice in one write is one series."""
    import msgspec

    store = SQLMetricStore(open_database(store_url))
    samples = [Sample(f"m{i % 997}", (("i", str(i)),), float(i)) for i in range(45_000)]
    got = store.write(samples + samples[:3], 1_000, add_labels=(("host", "h"),))
    assert got.new_series == 45_000
    table = dict(store.db.query("SELECT name || '{' || labels, id FROM series"))
    assert len(table) == 45_000
    if store.db.dialect.name == "sqlite":  # PostgreSQL's writers look their keys up instead
        rows = store.db.query("SELECT data FROM series_ids_snapshot WHERE id = 1")
        snap = msgspec.msgpack.decode(bytes(rows[0][0]), type=dict[str, int])
        assert snap == table
    store.close()
    again = SQLMetricStore(open_database(store_url))
    more = [Sample("m1", (("i", "new"),), 1.0), *samples[:10]]
    assert again.write(more, 2_000, add_labels=(("host", "h"),)).new_series == 1
    assert len(again.series([Matcher("__name__", "=", "m1")])) == 45_000 // 997 + 2
    again.close()
