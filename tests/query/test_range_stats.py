"""changes, resets, idelta, deriv, predict_linear, stddev/stdvar/mad_over_time and
quantile_over_time with Prometheus' semantics (cases after promqltest/testdata/functions.test:
``load 5m`` there is a sample every 5 minutes from T0 here), through the Engine over a memory
store; and the same functions over rollup buckets answering what the raw samples answer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Matcher, Sample, series_matches
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import SeriesPoints
from signalbox.query import Engine
from signalbox.storage import open_database
from tests.query.bucketing import bucketize
from tests.query.test_query_eval import T0, M, S, store_with, vec

NAN = math.nan
INF = math.inf


def every(step_ms: int, values: Sequence[float]) -> list[tuple[int, float]]:
    return [(i * step_ms, v) for i, v in enumerate(values)]


def values_of(engine: Engine, query: str, at_ms: int) -> dict[str, float]:
    """``{path or "": value}`` of an instant query."""
    return {dict(k).get("path", ""): v for k, v in vec(engine.instant(query, at_ms)).items()}


# --- changes, resets ----------------------------------------------------------------------


@pytest.fixture
def requests() -> Engine:
    return Engine(
        store_with(
            ("http_requests", {"path": "/foo"}, every(5 * M, [1, 2, 3, 0, 1, 0, 0, 1, 2, 0])),
            ("http_requests", {"path": "/bar"}, every(5 * M, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5])),
            ("http_requests", {"path": "/biz"}, every(5 * M, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])),
        )
    )


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("10m", {"/foo": 0, "/bar": 0, "/biz": 0}),
        ("20m", {"/foo": 1, "/bar": 0, "/biz": 0}),
        ("30m", {"/foo": 1, "/bar": 0, "/biz": 0}),
        ("32m", {"/foo": 2, "/bar": 1, "/biz": 0}),
        ("50m", {"/foo": 3, "/bar": 1, "/biz": 0}),
    ],
)
def test_resets_counts_drops_in_the_window(
    requests: Engine, window: str, expected: dict[str, float]
) -> None:
    assert values_of(requests, f"resets(http_requests[{window}])", T0 + 50 * M) == expected


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("6m", {"/foo": 0, "/bar": 0, "/biz": 0}),  # one sample: 0, not nothing
        ("20m", {"/foo": 2, "/bar": 2, "/biz": 0}),
        ("30m", {"/foo": 3, "/bar": 4, "/biz": 0}),
        ("50m", {"/foo": 7, "/bar": 8, "/biz": 1}),
    ],
)
def test_changes_counts_value_changes_in_the_window(
    requests: Engine, window: str, expected: dict[str, float]
) -> None:
    assert values_of(requests, f"changes(http_requests[{window}])", T0 + 50 * M) == expected


def test_changes_and_resets_of_an_empty_window_give_nothing(requests: Engine) -> None:
    assert values_of(requests, "changes(http_requests[5m])", T0 + 50 * M) == {}
    assert values_of(requests, "resets(http_requests[5m])", T0 + 50 * M) == {}


def test_nan_after_nan_is_no_change() -> None:
    engine = Engine(
        store_with(
            ("x", {"path": "b"}, every(5 * M, [NAN, NAN, NAN])),
            ("x", {"path": "c"}, every(5 * M, [0, NAN, 0])),
        )
    )
    assert values_of(engine, "changes(x[20m])", T0 + 10 * M) == {"b": 0, "c": 2}


# --- idelta ---------------------------------------------------------------------------------


def test_idelta_is_the_difference_of_the_last_two_samples_even_when_it_drops() -> None:
    engine = Engine(
        store_with(
            ("http_requests", {"path": "/foo"}, every(5 * M, [0, 50, 100, 150])),
            ("http_requests", {"path": "/bar"}, every(5 * M, [0, 50, 100, 50])),
        )
    )
    got = values_of(engine, "idelta(http_requests[20m])", T0 + 15 * M)
    assert got == {"/foo": 50, "/bar": -50}


def test_idelta_and_irate_over_nan_samples() -> None:
    engine = Engine(store_with(("x", {}, every(5 * M, [1, NAN, NAN, 5, 11]))))
    [idelta] = engine.range("idelta(x[15m1s])", T0, T0 + 20 * M, 5 * M).matrix
    [irate] = engine.range("irate(x[15m1s])", T0, T0 + 20 * M, 5 * M).matrix
    assert [t for t, _ in idelta.points] == [T0 + k * 5 * M for k in (1, 2, 3, 4)]
    assert all(math.isnan(v) for _, v in idelta.points[:3]) and idelta.points[3][1] == 6
    assert all(math.isnan(v) for _, v in irate.points[:3]) and irate.points[3][1] == 0.02


# --- deriv, predict_linear --------------------------------------------------------------------


@pytest.fixture
def linear() -> Engine:
    return Engine(
        store_with(
            ("reset_middle", {}, every(5 * M, [0, 10, 20, 30, 40, 0, 10, 20, 30, 40, 50])),
            ("requests", {}, every(5 * M, [80.0 * k for k in range(11)])),
            ("with_inf", {}, every(5 * M, [-INF, *(80.0 * k for k in range(11)), INF])),
            ("flat", {}, every(10 * S, [1.5990505637277868] * 3)),
        )
    )


def test_deriv_of_a_steady_counter_equals_its_rate(linear: Engine) -> None:
    assert values_of(linear, "deriv(requests[50m])", T0 + 50 * M)[""] == pytest.approx(
        0.26666666666666666, rel=1e-12
    )


def test_deriv_is_the_least_squares_slope(linear: Engine) -> None:
    # slope of (0..3000 s, 0 10 20 30 40 0 10 20 30 40 50): covXY / varX = 105000 / 9900000
    got = values_of(linear, "deriv(reset_middle[100m])", T0 + 50 * M)[""]
    assert got == pytest.approx(0.010606060606060607, rel=1e-12)


def test_deriv_and_predict_linear_of_a_range_with_inf_are_nan(linear: Engine) -> None:
    assert math.isnan(values_of(linear, "deriv(with_inf[100m])", T0 + 100 * M)[""])
    assert math.isnan(values_of(linear, "predict_linear(with_inf[100m], 6000)", T0 + 100 * M)[""])


def test_predict_linear_takes_the_intercept_at_the_evaluation_time(linear: Engine) -> None:
    # 10 samples 300 s apart in the window: the line through them at t + 3600 s
    assert values_of(linear, "predict_linear(reset_middle[50m], 3600)", T0 + 50 * M)[
        ""
    ] == pytest.approx(70, rel=1e-12)


@pytest.mark.parametrize(
    ("at_minute", "expected"), [(10, 51.36363636363637), (70, 89.54545454545455)]
)
def test_predict_linear_under_at_takes_the_intercept_at_the_step_time(
    linear: Engine, at_minute: int, expected: float
) -> None:
    at = (T0 + 50 * M) // 1000  # the window ends at 50m whatever the step
    query = f"predict_linear(reset_middle[55m] @ {at}, 3600)"
    assert values_of(linear, query, T0 + at_minute * M)[""] == pytest.approx(expected, rel=1e-12)


def test_predict_linear_under_offset_takes_the_intercept_at_the_step_time(linear: Engine) -> None:
    slope = values_of(linear, "deriv(reset_middle[50m])", T0 + 50 * M)[""]
    got = values_of(linear, "predict_linear(reset_middle[50m] offset 5m, 3600)", T0 + 55 * M)
    assert got[""] == pytest.approx(70 + 300 * slope, rel=1e-12)


def test_predict_linear_on_a_line_continues_it(linear: Engine) -> None:
    query = "predict_linear(requests[50m], 3600) - (requests + deriv(requests[50m]) * 3600)"
    assert values_of(linear, query, T0 + 50 * M)[""] == pytest.approx(0, abs=1e-9)


def test_a_constant_range_has_slope_zero_and_predicts_its_value(linear: Engine) -> None:
    assert values_of(linear, "deriv(flat[1m])", T0 + 55 * S) == {"": 0.0}
    assert values_of(linear, "predict_linear(flat[1m], 600)", T0 + 55 * S) == {
        "": 1.5990505637277868
    }


def test_slopes_need_two_samples(linear: Engine) -> None:
    assert values_of(linear, "deriv(requests[5m])", T0 + 50 * M) == {}
    assert values_of(linear, "predict_linear(requests[5m], 60)", T0 + 50 * M) == {}


# --- stddev, stdvar, mad, quantile ---------------------------------------------------------


def test_stdvar_and_stddev_over_time_are_the_population_variance_and_deviation() -> None:
    engine = Engine(store_with(("metric", {}, every(10 * S, [0, 8, 8, 2, 3]))))
    assert values_of(engine, "stdvar_over_time(metric[2m])", T0 + M)[""] == pytest.approx(10.56)
    assert values_of(engine, "stddev_over_time(metric[2m])", T0 + M)[""] == pytest.approx(
        3.249615, rel=1e-6
    )


def test_stdvar_of_equal_values_is_exactly_zero(linear: Engine) -> None:
    # Welford with a compensated mean, as Prometheus (issue #4927): not a rounding residue
    assert values_of(linear, "stdvar_over_time(flat[1m])", T0 + 55 * S) == {"": 0.0}
    assert values_of(linear, "stddev_over_time(flat[1m])", T0 + 55 * S) == {"": 0.0}


def test_stdvar_of_a_range_with_nan_or_inf_is_nan(linear: Engine) -> None:
    engine = Engine(store_with(("x", {}, every(10 * S, [1, NAN, 3])), ("y", {}, [(0, INF)])))
    assert math.isnan(values_of(engine, "stdvar_over_time(x[1m])", T0 + 30 * S)[""])
    assert math.isnan(values_of(engine, "stddev_over_time(y[1m])", T0 + 30 * S)[""])


def test_mad_over_time_is_the_median_absolute_deviation() -> None:
    engine = Engine(store_with(("metric", {}, every(10 * S, [4, 6, 2, 1, 999, 1, 2]))))
    assert values_of(engine, "mad_over_time(metric[70s])", T0 + 70 * S) == {"": 1.0}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("0", {"two": 0, "three": 0, "uneven": 0}),
        ("0.5", {"two": 0.5, "three": 1, "uneven": 1}),
        ("0.75", {"two": 0.75, "three": 1.5, "uneven": 2.5}),
        ("0.8", {"two": 0.8, "three": 1.6, "uneven": 2.8}),
        ("1", {"two": 1, "three": 2, "uneven": 4}),
        ("-1", {"two": -INF, "three": -INF, "uneven": -INF}),
        ("2", {"two": INF, "three": INF, "uneven": INF}),
    ],
)
def test_quantile_over_time_interpolates_between_ranks(q: str, expected: dict[str, float]) -> None:
    engine = Engine(
        store_with(
            ("data", {"path": "two"}, every(10 * S, [0, 1])),
            ("data", {"path": "three"}, every(10 * S, [0, 1, 2])),
            ("data", {"path": "uneven"}, every(10 * S, [0, 1, 4])),
        )
    )
    got = values_of(engine, f"quantile_over_time({q}, data[2m])", T0 + M)
    assert got == pytest.approx(expected)


# --- over rollup buckets ----------------------------------------------------------------------


class BucketStore:
    """Serves one series' buckets (every statistic) through ``select``, the engine's only call."""

    def __init__(self, sp: SeriesPoints) -> None:
        self.sp = sp

    def select(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool = True,
        align_ms: int = 0,
    ) -> list[SeriesPoints]:
        if not series_matches(self.sp.name, self.sp.labels, tuple(matchers)):
            return []
        ts = self.sp.timestamps
        keep = [i for i, t in enumerate(ts) if start_ms <= t <= end_ms]
        return [self.sp.slice(keep[0], keep[-1] + 1)] if keep else []


H0 = 1_700_002_800_000  # a whole hour


def jittery_counter() -> SeriesPoints:
    """Three hours of a counter scraped every ~15 s (jittered), reset every 37 samples, with
    a NaN now and then: raw samples."""
    ts, vs = [], []
    for i in range(720):
        ts.append(H0 + i * 15_000 + (i * 7919) % 4000)
        vs.append(NAN if i % 101 == 50 else float((i % 37) * 3 + (i % 5)))
    return SeriesPoints("jobs_total", (), ts, vs)


@pytest.mark.parametrize(
    "query",
    [
        "increase(jobs_total[15m])",
        "rate(jobs_total[5m])",
        "delta(jobs_total[10m])",
        "irate(jobs_total[5m])",
        "idelta(jobs_total[5m])",
        "deriv(jobs_total[30m])",
        "predict_linear(jobs_total[30m], 600)",
        "changes(jobs_total[10m])",
        "resets(jobs_total[1h])",
        "stddev_over_time(jobs_total[15m])",
        "stdvar_over_time(jobs_total[15m])",
        "avg_over_time(jobs_total[5m])",
    ],
)
def test_aligned_queries_over_minute_buckets_answer_what_raw_samples_answer(query: str) -> None:
    raw = jittery_counter()
    from_raw = Engine(BucketStore(raw)).range(query, H0, H0 + 3 * 3600_000, 5 * M)
    from_buckets = Engine(BucketStore(bucketize(raw, 60))).range(
        query, H0, H0 + 3 * 3600_000, 5 * M
    )
    assert from_buckets.warnings == ()
    [a], [b] = from_raw.matrix, from_buckets.matrix
    assert [t for t, _ in a.points] == [t for t, _ in b.points]
    for (_, x), (_, y) in zip(a.points, b.points, strict=True):
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-9)


def test_a_window_that_splits_buckets_is_answered_with_a_warning() -> None:
    engine = Engine(BucketStore(bucketize(jittery_counter(), 60)))
    result = engine.instant("increase(jobs_total[15m])", H0 + 90 * M + 30 * S)
    assert result.vector and any("estimate" in w for w in result.warnings)


def test_quantile_and_mad_over_buckets_of_many_samples_warn() -> None:
    engine = Engine(BucketStore(bucketize(jittery_counter(), 60)))
    for query in ("quantile_over_time(0.9, jobs_total[15m])", "mad_over_time(jobs_total[15m])"):
        result = engine.instant(query, H0 + 90 * M)
        assert result.vector and result.warnings, query


# --- through the SQL store's minute tier --------------------------------------------------

NOW = 1_700_006_400_000  # a whole hour


@pytest.fixture(scope="module")
def sql_and_raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Engine]:
    """Three hours of a jittered counter with resets: a SQLite store that keeps raw samples
    one hour (older ones only in its 1m tier) and a memory store with every raw sample."""
    path = tmp_path_factory.mktemp("rollups") / "db.sqlite"
    store = SQLMetricStore(
        open_database(f"sqlite:///{path}"),
        raw_retention_s=3600,
        tiers=(Tier(60, 8 * 86400),),
        clock=FrozenClock(NOW / 1000),
    )
    start = NOW - 3 * 3600_000
    samples = [
        Sample(
            "jobs_total", (), float((i % 27) * 10 + (i * 7) % 3), start + i * 15_000 + i * 37 % 5000
        )
        for i in range(720)
    ]
    store.write(samples, NOW)
    store.compact(NOW)
    raw = MemoryMetricStore()
    raw.write(samples, NOW)
    return Engine(store), Engine(raw)


def assert_rollups_answer_as_raw(engines: tuple[Engine, Engine], query: str) -> None:
    rollups, raw = engines
    at = NOW - 90 * M  # older than raw retention: answered from the 1m tier
    a = rollups.range(query, at - 3600_000, at, 5 * M)
    b = raw.range(query, at - 3600_000, at, 5 * M)
    assert a.warnings == ()
    [x], [y] = a.matrix, b.matrix
    assert [t for t, _ in x.points] == [t for t, _ in y.points]
    assert [v for _, v in x.points] == pytest.approx([v for _, v in y.points], rel=1e-9)


@pytest.mark.parametrize(
    "query",
    ["increase(jobs_total[15m])", "rate(jobs_total[5m])", "irate(jobs_total[5m])"],
)
def test_counters_over_the_sql_minute_tier_answer_what_raw_samples_answer(
    sql_and_raw: tuple[Engine, Engine], query: str
) -> None:
    assert_rollups_answer_as_raw(sql_and_raw, query)


@pytest.mark.parametrize(
    "query",
    [
        "delta(jobs_total[15m])",
        "idelta(jobs_total[5m])",
        "deriv(jobs_total[15m])",
        "predict_linear(jobs_total[15m], 60)",
        "changes(jobs_total[15m])",
        "resets(jobs_total[15m])",
        "stddev_over_time(jobs_total[15m])",
    ],
)
def test_statistics_over_the_sql_minute_tier_answer_what_raw_samples_answer(
    sql_and_raw: tuple[Engine, Engine], query: str
) -> None:
    assert_rollups_answer_as_raw(sql_and_raw, query)
