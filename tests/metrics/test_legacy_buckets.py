"""A store written by schema 4 (buckets keyed by their start, min/max/sum/count/last only)
opens under schema 5: old buckets are converted and still answer, with a warning that
they are estimates; where raw samples are still kept they are rebuilt exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql.store import MIGRATIONS, SQLMetricStore
from signalbox.metrics.store import SeriesPoints
from signalbox.query import Engine
from signalbox.storage import open_database
from tests.metrics.test_rollup_buckets import assert_buckets
from tests.query.bucketing import bucketize
from tests.stores import pg_schema_url

NOW = 1_700_006_400_000  # a whole hour
TIERS = (Tier(60, 8 * 86400), Tier(300, 35 * 86400), Tier(3600, 400 * 86400))
HOUR = 3600_000
RAW_KEPT = 3 * HOUR
START = NOW - 9 * HOUR


def _open(url: str) -> SQLMetricStore:
    return SQLMetricStore(
        open_database(url),
        raw_retention_s=RAW_KEPT // 1000,
        tiers=TIERS,
        clock=FrozenClock(NOW / 1000),
    )


def _as_schema_4(store: SQLMetricStore) -> None:
    """Turn this store's buckets into what schema 4 wrote."""
    db = store.db
    with db.transaction():
        for tier, start in db.query("SELECT tier, start_ms FROM metric_partitions WHERE tier > 0"):
            lv = next(x for x in store.levels if x.tier == tier)
            new, old, res = lv.table(start), lv.legacy_table(start), tier * 1000
            db.execute(
                f"CREATE TABLE {old} (series_id BIGINT NOT NULL, ts BIGINT NOT NULL, "
                "min DOUBLE PRECISION, max DOUBLE PRECISION, sum DOUBLE PRECISION, "
                "count BIGINT NOT NULL, last DOUBLE PRECISION, PRIMARY KEY (series_id, ts))"
            )
            db.execute(
                f"INSERT INTO {old} SELECT series_id, ts - {res}, min, max, sum, count, last "
                f"FROM {new}"
            )
            db.execute(f"DROP TABLE {new}")
        db.execute("ALTER TABLE metric_partitions DROP COLUMN exact")
        db.execute("UPDATE schema_version SET version = 4 WHERE component = 'metrics'")


def check(url: str) -> None:
    n = 9 * 60  # one sample a minute for nine hours
    values = [float(i % 17) for i in range(n)]  # a counter reset every 17 minutes
    stamps = [START + i * 60_000 for i in range(n)]
    store = _open(url)
    store.write([Sample("c", (), v, t) for t, v in zip(stamps, values, strict=True)], NOW)
    store.compact(NOW)
    _as_schema_4(store)
    store.close()

    store = _open(url)  # converts, then rebuilds what raw samples still cover
    try:
        assert store.db.schema_version("metrics") == MIGRATIONS[-1][0]
        tables = store.db.table_names()
        assert not any(
            t.startswith(("samples_r60_", "samples_r300_", "samples_r3600_")) for t in tables
        )
        engine = Engine(store)
        old_end = START + 4 * HOUR  # beyond raw retention: converted buckets only
        got = engine.range("increase(c[1h])", old_end - 2 * HOUR, old_end, HOUR)
        assert got.matrix and got.warnings  # an answer, and a warning that it is an estimate
        assert "before buckets kept exact statistics" in got.warnings[0]
        # within raw retention the 1m buckets were rebuilt exactly from the samples
        (sid,) = store._series.matching_ids([Matcher("__name__", "=", "c")])
        out: dict[int, SeriesPoints] = {}
        recent = NOW - RAW_KEPT + HOUR
        store._select_tier(store.levels[1], [sid], recent, NOW - HOUR, out)
        keep = [i for i, t in enumerate(stamps) if recent <= t <= NOW - HOUR]
        raw = SeriesPoints("c", (), [stamps[i] for i in keep], [values[i] for i in keep])
        assert_buckets(out[sid].slice(0, len(keep)), bucketize(raw, 60))
    finally:
        store.close()


def test_a_schema_4_sqlite_store_converts(tmp_path: Path) -> None:
    check(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.mark.service("postgresql")
def test_a_schema_4_postgresql_store_converts() -> None:
    with pg_schema_url() as url:
        check(url)
