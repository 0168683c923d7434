"""Row buckets computed in numpy (:mod:`signalbox.metrics.rowbuckets`) a few rows at a time:
a batch boundary inside a bucket (the rows of its last bucket wait for the next batch) leaves
every tier equal to the reference (tests/query/bucketing.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics import rowbuckets
from signalbox.metrics.sql import rollup
from tests.metrics.test_rollup_buckets import check, samples_st
from tests.stores import pg_schema_url


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=samples_st, batch=st.integers(1, 6))
def test_sqlite_buckets_built_a_few_rows_at_a_time_equal_the_reference(
    tmp_path_factory: pytest.TempPathFactory, values: list[tuple[int, float]], batch: int
) -> None:
    tmp = tmp_path_factory.mktemp("batches")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rollup, "_BATCH_ROWS", batch)
        check(f"sqlite:///{tmp / 'db.sqlite'}", values, frames=False)


@pytest.mark.service("postgresql")
@settings(max_examples=6, deadline=None)
@given(values=samples_st, batch=st.integers(1, 6))
def test_postgresql_buckets_built_a_few_rows_at_a_time_equal_the_reference(
    values: list[tuple[int, float]], batch: int
) -> None:
    with pytest.MonkeyPatch.context() as mp, pg_schema_url() as url:
        mp.setattr(rollup, "_BATCH_ROWS", batch)
        check(url, values, frames=False)


def test_series_are_bucketed_apart_and_nan_is_null() -> None:
    """Two series' samples in one bucket span stay two buckets; a NaN sample makes the sum,
    sxy and m2 NULL and is left out of min and max; a drop is a reset."""
    sids = np.array([1, 1, 1, 2, 2], dtype=np.int64)
    ts = np.array([1_000, 30_000, 60_000, 10_000, 20_000], dtype=np.int64)
    values = np.array([5.0, math.nan, 2.0, 7.0, 7.0])
    rows = rowbuckets.rows(rowbuckets.from_samples(sids, ts, values, 60_000))
    got = [dict(zip(rowbuckets.FINER, r, strict=True)) for r in rows]
    assert [(r["series_id"], r["ts"], r["count"]) for r in got] == [(1, 60_000, 3), (2, 60_000, 2)]
    one, two = got
    assert one["sum"] is None and one["sxy"] is None and one["m2"] is None
    assert (one["min"], one["max"], one["first"], one["last"]) == (2.0, 5.0, 5.0, 2.0)
    assert (one["prev_ts"], one["prev"]) == (30_000, None)
    assert (one["resets"], one["drops"], one["changes"]) == (0, 0.0, 2)  # NaN compares false
    assert (two["sum"], two["m2"], two["changes"], two["prev_ts"]) == (14.0, 0.0, 0, 10_000)
