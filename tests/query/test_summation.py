"""sum, avg, sum_over_time and avg_over_time sum as Prometheus does (Kahan-Neumaier), do not
overflow near the float limit, and mix NaN and infinities as Prometheus does; through the
Engine over a memory store and SQLite. A NaN sample makes the 5-minute tier's average NaN,
as the 1-minute tier's and raw data's, on SQLite and PostgreSQL.

Expected values are those of Prometheus' own aggregators.test / functions.test cases."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import MetricStore
from signalbox.query import Engine
from signalbox.query.kahan import kahan_mean, kahan_sum, weighted_mean
from signalbox.storage import open_database
from tests.stores import pg_schema_url, sqlite_url

T0 = 1_700_000_000_000
BIG = 9.988465674311579e307  # two of them overflow a float
MAX = 1.7976931348623157e308
INF, NAN = math.inf, math.nan

# data{test=...}: one series per point, labels sorted as Prometheus orders them
INSTANT = {
    "ten": [2.0, 8.0, 1e100, -1e100],
    "big": [BIG] * 4,
    "-big": [-BIG] * 4,
    "bigzero": [-BIG, -BIG, BIG, BIG],
    "inf": [0.0, INF, INF, 0.0],
    "-inf": [-INF, -INF, 0.0, 0.0],
    "inf_inf": [INF, -INF],
    "nan": [NAN, 2.0],
    "max": [MAX, MAX, MAX],
}

# series sampled every 10 s: over_time functions
OVER_TIME = {
    "kahan": [1.0, 1e100, 1.0, -1e100],
    "kahan2": [1e100, 10.0, -1e100, 5.0],
    "big": [BIG, BIG, BIG],
    "bigzero": [BIG, BIG, -BIG, -BIG],
    "max": [MAX, MAX, MAX / 2],
    "nan": [1.0, NAN, 3.0],
    "inf": [1.0, INF, 3.0],
    "inf_inf": [INF, 1.0, -INF],
}


def _fill(store: MetricStore) -> MetricStore:
    samples = [
        Sample("data", (("point", chr(ord("a") + i)), ("test", test)), v, T0)
        for test, vs in INSTANT.items()
        for i, v in enumerate(vs)
    ]
    samples += [
        Sample(f"series_{name.replace('-', '_')}", (), v, T0 + 10_000 * (i + 1))
        for name, vs in OVER_TIME.items()
        for i, v in enumerate(vs)
    ]
    store.write(samples, T0)
    return store


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "memory":
        yield Engine(_fill(MemoryMetricStore()))
        return
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    yield Engine(_fill(store))
    store.close()


def value(engine: Engine, query: str, at: int = T0) -> float:
    [sample] = engine.instant(query, at).vector
    return sample.value


def same(got: float, want: float) -> bool:
    """Equal as Prometheus' test files compare: NaN matches NaN, finite values to 1e-15."""
    if math.isnan(want) or math.isinf(want):
        return got == want or (math.isnan(got) and math.isnan(want))
    return math.isclose(got, want, rel_tol=1e-15)


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ('sum(data{test="ten"})', 10.0),  # plain summation: 0
        ('avg(data{test="ten"})', 2.5),
        ('avg(data{test="big"})', BIG),  # the sum overflows: incremental mean
        ('avg(data{test="-big"})', -BIG),
        ('avg(data{test="bigzero"})', 0.0),
        ('sum(data{test="big"})', INF),  # sum overflows as in Prometheus
        ('avg(data{test="max"})', MAX),
        ('avg(data{test="inf"})', INF),
        ('sum(data{test="inf"})', INF),
        ('avg(data{test="-inf"})', -INF),
        ('avg(data{test="inf_inf"})', NAN),
        ('sum(data{test="inf_inf"})', NAN),
        ('avg(data{test="nan"})', NAN),
        ('sum(data{test="nan"})', NAN),
    ],
)
def test_aggregations_sum_and_average_as_prometheus(
    engine: Engine, query: str, want: float
) -> None:
    got = value(engine, query)
    assert same(got, want), (query, got, want)


AT = T0 + 60_000  # every over_time series lies inside (AT - 1m, AT]


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("sum_over_time(series_kahan[1m])", 2.0),  # plain summation: 0
        ("avg_over_time(series_kahan[1m])", 0.5),
        ("sum_over_time(series_kahan2[1m])", 15.0),
        ("avg_over_time(series_kahan2[1m])", 3.75),
        ("avg_over_time(series_big[1m])", BIG),  # the sum overflows: incremental mean
        ("sum_over_time(series_big[1m])", INF),
        ("avg_over_time(series_bigzero[1m])", 0.0),
        ("avg_over_time(series_max[1m])", MAX / 6 * 5),
        ("avg_over_time(series_nan[1m])", NAN),
        ("sum_over_time(series_nan[1m])", NAN),
        ("avg_over_time(series_inf[1m])", INF),
        ("sum_over_time(series_inf[1m])", INF),
        ("avg_over_time(series_inf_inf[1m])", NAN),
        ("sum_over_time(series_inf_inf[1m])", NAN),
    ],
)
def test_over_time_sums_and_averages_as_prometheus(engine: Engine, query: str, want: float) -> None:
    got = value(engine, query, AT)
    assert same(got, want), (query, got, want)


def test_range_query_sums_every_step_compensated(engine: Engine) -> None:
    [series] = engine.range("sum_over_time(series_kahan[1m])", AT, AT + 10_000, 10_000).matrix
    assert [v for _, v in series.points] == [2.0, 1.0]  # the window lost the first 1.0


def test_kahan_helpers_match_prometheus_on_edge_cases() -> None:
    assert kahan_sum([]) == 0.0
    assert kahan_sum([1e100, 1.0, -1e100, 1.0]) == 2.0
    assert kahan_sum([MAX, MAX, -MAX]) == INF  # once infinite, stays infinite (no NaN)
    assert kahan_mean([5.0]) == 5.0
    assert kahan_mean([MAX, MAX]) == MAX
    assert math.isnan(kahan_mean([INF, NAN]))
    # rollup buckets: sums and counts; an overflowing sum falls back to a weighted mean
    assert weighted_mean([6.0, 4.0], [3.0, 1.0]) == 2.5
    assert weighted_mean([MAX, MAX], [2.0, 2.0]) == MAX / 2
    assert weighted_mean([INF, 1.0], [1.0, 1.0]) == INF
    assert math.isnan(weighted_mean([NAN, 1.0], [1.0, 1.0]))


# --- NaN in rollup tiers ------------------------------------------------------------------

NOW = 1_700_006_400_000  # a whole hour
MIN = 60_000


def _nan_in_five_minute_tier(url: str) -> None:
    """Five hours at one sample a minute, one NaN four hours back; raw data kept one hour,
    the 1-minute tier two, so the NaN is only in the 5-minute tier when queried."""
    store = SQLMetricStore(
        open_database(url),
        raw_retention_s=3600,
        tiers=(Tier(60, 7200), Tier(300, 8 * 86400)),
        clock=FrozenClock(NOW / 1000),
    )
    try:
        start = NOW - 5 * 3600_000
        values = [float(i % 7) for i in range(300)]
        values[60] = NAN
        store.write([Sample("g", (), v, start + i * MIN) for i, v in enumerate(values)], NOW)
        store.compact(NOW)
        engine = Engine(store)
        nan_bucket_end = start + 60 * MIN  # the 5m bucket (55, 60] minutes holds the NaN
        assert math.isnan(value(engine, "avg_over_time(g[5m])", nan_bucket_end))
        assert math.isnan(value(engine, "sum_over_time(g[5m])", nan_bucket_end))
        assert math.isnan(value(engine, "avg_over_time(g[1h])", nan_bucket_end + 30 * MIN))
        # the bucket still counts its 5 samples; min and max leave the NaN out
        assert value(engine, "count_over_time(g[5m])", nan_bucket_end) == 5.0
        assert value(engine, "max_over_time(g[5m])", nan_bucket_end) == 3.0  # 0, 1, 2, 3, NaN
        assert value(engine, "min_over_time(g[5m])", nan_bucket_end) == 0.0
        # the next bucket has no NaN: exact (samples 61..65 are 5, 6, 0, 1, 2)
        assert value(engine, "avg_over_time(g[5m])", nan_bucket_end + 5 * MIN) == 2.8
    finally:
        store.close()


def test_nan_makes_the_five_minute_tier_average_nan_on_sqlite(tmp_path: Path) -> None:
    _nan_in_five_minute_tier(sqlite_url(tmp_path))


@pytest.mark.service("postgresql")
def test_nan_makes_the_five_minute_tier_average_nan_on_postgresql() -> None:
    with pg_schema_url() as url:
        _nan_in_five_minute_tier(url)
