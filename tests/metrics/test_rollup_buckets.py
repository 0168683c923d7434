"""The SQL store's rollup buckets hold exactly what the reference (tests/query/bucketing.py)
computes from the samples, in every tier, on SQLite and PostgreSQL: counter resets, gaps,
NaN, samples on bucket edges, and spool-file frames as well as rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import SeriesPoints
from signalbox.storage import open_database
from tests.query.bucketing import bucketize, merge
from tests.stores import pg_schema_url

T0 = 1_700_000_100_000  # a whole 5 minutes
TIERS = (Tier(60, 8 * 86400), Tier(300, 35 * 86400), Tier(3600, 400 * 86400))
FIELDS = (
    "timestamps", "values", "first_ts", "firsts", "counts", "sums", "mins", "maxs",
    "drops", "resets", "changes", "sx", "sxx", "sxy", "m2",
)  # fmt: skip

# seconds after T0 (some on bucket edges: multiples of 60) and a value: NaN, drops (resets)
samples_st = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 2 * 3600), st.integers(0, 120).map(lambda m: m * 60)),
        st.one_of(st.floats(-1e3, 1e6, allow_nan=False, allow_infinity=False), st.just(math.nan)),
    ),
    min_size=1,
    max_size=80,
    unique_by=lambda t: t[0],
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def assert_buckets(got: SeriesPoints, want: SeriesPoints) -> None:
    for name in FIELDS:
        g, w = getattr(got, name), getattr(want, name)
        assert g is not None and len(g) == len(w), name
        for i, (x, y) in enumerate(zip(g, w, strict=True)):
            assert _same(x, y), f"{name}[{i}] (bucket ending by {want.timestamps[i]}): {x} != {y}"
    assert want.prev_ts is not None and want.prevs is not None
    assert got.prev_ts == want.prev_ts
    for i, t in enumerate(want.prev_ts):
        if t:
            assert got.prevs is not None and _same(got.prevs[i], want.prevs[i]), f"prevs[{i}]"


def check(url: str, values: list[tuple[int, float]], frames: bool) -> None:
    """Write the samples (as rows, or as passes of a spool file whose frames the rollup
    copies), compact, and compare every tier with the reference."""
    end = T0 + 3 * 3600_000
    store = SQLMetricStore(
        open_database(url), raw_retention_s=86400, tiers=TIERS, clock=FrozenClock(end / 1000)
    )
    try:
        ordered = sorted(values)
        if frames:  # one write per pass, all at the pass time, as the collector writes
            for s, v in ordered:
                store.write([Sample("m", (("job", "a"),), v, None)], T0 + s * 1000)
        else:
            store.write([Sample("m", (("job", "a"),), v, T0 + s * 1000) for s, v in ordered], T0)
        store.compact(end)
        raw = SeriesPoints(
            "m", (("job", "a"),), [T0 + s * 1000 for s, _ in ordered], [v for _, v in ordered]
        )
        (sid,) = store._series.matching_ids([Matcher("__name__", "=", "m")])
        for level in store.levels[1:]:
            out: dict[int, SeriesPoints] = {}
            store._select_tier(level, [sid], T0 - 3600_000, end, out)
            assert_buckets(out[sid], bucketize(raw, level.tier))
        # the 5m tier was built from the 1m tier: the same as merging the reference's 1m
        out = {}
        store._select_tier(store.levels[2], [sid], T0 - 3600_000, end, out)
        assert_buckets(out[sid], merge(bucketize(raw, 60), 300))
    finally:
        store.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=samples_st, frames=st.booleans())
def test_sqlite_buckets_equal_the_reference(
    tmp_path_factory: pytest.TempPathFactory, values: list[tuple[int, float]], frames: bool
) -> None:
    tmp = tmp_path_factory.mktemp("buckets")
    check(f"sqlite:///{tmp / 'db.sqlite'}", values, frames)


@pytest.mark.service("postgresql")
@settings(max_examples=12, deadline=None)
@given(values=samples_st, frames=st.booleans())
def test_postgresql_buckets_equal_the_reference(
    values: list[tuple[int, float]], frames: bool
) -> None:
    with pg_schema_url() as url:
        check(url, values, frames)


def test_counter_with_resets_on_bucket_edges(tmp_path: Path) -> None:
    """A counter sampled every 30 s on the minute edges, reset twice (once exactly on an
    edge): every tier's drops and resets are the samples'."""
    values = [(i * 30, float(i % 7 if i < 40 else i % 11)) for i in range(0, 200)]
    check(f"sqlite:///{tmp_path / 'db.sqlite'}", values, frames=False)
