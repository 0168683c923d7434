"""Evaluation against a MemoryMetricStore, each value checked against arithmetic done by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from signalbox.exceptions import QueryError, UsageError
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Matcher, Sample
from signalbox.metrics.store import SeriesPoints
from signalbox.query import Engine, QueryResult

T0 = 1_699_999_980_000  # a whole minute
S = 1000
M = 60_000


def store_with(
    *series: tuple[str, dict[str, str], Sequence[tuple[int, float]]],
) -> MemoryMetricStore:
    store = MemoryMetricStore()
    samples = [
        Sample(name, tuple(sorted(labels.items())), value, T0 + offset)
        for name, labels, points in series
        for offset, value in points
    ]
    store.write(samples, T0)
    return store


def vec(result: QueryResult) -> dict[tuple[tuple[str, str], ...], float]:
    """Instant vector as {sorted label pairs: value} for compact assertions."""
    assert result.result_type == "vector"
    return {tuple(sorted(s.metric.items())): s.value for s in result.vector}


def one(result: QueryResult) -> float:
    [sample] = result.vector
    return sample.value


@pytest.fixture
def gauges() -> Engine:
    return Engine(
        store_with(
            ("temp", {"room": "a"}, [(i * M, float(i)) for i in range(11)]),  # 0..10 every minute
            ("temp", {"room": "b"}, [(i * M, 10.0 - i) for i in range(11)]),  # 10..0
        )
    )


# --- selectors, staleness, offset -------------------------------------------------------


def test_instant_selector_takes_the_newest_sample_at_or_before_eval_time(gauges: Engine) -> None:
    assert vec(gauges.instant("temp", T0 + 5 * M + 30 * S)) == {
        (("__name__", "temp"), ("room", "a")): 5.0,
        (("__name__", "temp"), ("room", "b")): 5.0,
    }
    assert one(gauges.instant('temp{room="a"}', T0 + 5 * M)) == 5.0  # a sample exactly at t counts


def test_series_goes_stale_after_the_lookback_window() -> None:
    engine = Engine(store_with(("up", {}, [(0, 1.0)])))
    assert one(engine.instant("up", T0 + 299_999)) == 1.0
    assert engine.instant("up", T0 + 300_000).vector == []  # (t - 5m, t] excludes t - 5m
    assert engine.instant("up", T0 - 1).vector == []  # nothing before the first sample


def test_lookback_is_configurable() -> None:
    store = store_with(("up", {}, [(0, 1.0)]))
    assert Engine(store, lookback_ms=60_000).instant("up", T0 + 61 * S).vector == []
    assert one(Engine(store, lookback_ms=120_000).instant("up", T0 + 61 * S)) == 1.0


def test_offset_shifts_the_evaluation_time_back(gauges: Engine) -> None:
    assert one(gauges.instant('temp{room="a"} offset 3m', T0 + 5 * M)) == 2.0
    assert one(gauges.instant('temp{room="a"} offset -2m', T0 + 5 * M)) == 7.0


def test_regex_and_negative_matchers(gauges: Engine) -> None:
    assert list(vec(gauges.instant('temp{room!="a"}', T0 + 10 * M))) == [
        (("__name__", "temp"), ("room", "b"))
    ]
    assert len(gauges.instant('temp{room=~"a|b"}', T0 + 10 * M).vector) == 2
    assert gauges.instant('temp{room!~".*"}', T0 + 10 * M).vector == []
    assert len(gauges.instant('{__name__=~"te.*"}', T0 + 10 * M).vector) == 2


def test_bare_range_selector_returns_raw_samples_in_left_open_window(gauges: Engine) -> None:
    r = gauges.instant('temp{room="a"}[3m]', T0 + 10 * M)
    assert r.result_type == "matrix"
    [series] = r.matrix
    assert series.metric == {"__name__": "temp", "room": "a"}
    assert series.points == [
        (T0 + 8 * M, 8.0),
        (T0 + 9 * M, 9.0),
        (T0 + 10 * M, 10.0),
    ]  # 7m excluded


# --- *_over_time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # window (5m, 10m] holds samples 6, 7, 8, 9, 10 of room a
        ('avg_over_time(temp{room="a"}[5m])', 8.0),
        ('min_over_time(temp{room="a"}[5m])', 6.0),
        ('max_over_time(temp{room="a"}[5m])', 10.0),
        ('sum_over_time(temp{room="a"}[5m])', 40.0),
        ('count_over_time(temp{room="a"}[5m])', 5.0),
        ('last_over_time(temp{room="a"}[5m])', 10.0),
        ('quantile_over_time(0.5, temp{room="a"}[5m])', 8.0),
        ('quantile_over_time(0.9, temp{room="a"}[5m])', 9.6),  # rank 3.6 between 9 and 10
        ('quantile_over_time(0, temp{room="a"}[5m])', 6.0),
        ('quantile_over_time(1.5, temp{room="a"}[5m])', math.inf),
        ('avg_over_time(temp{room="a"}[5m] offset 5m)', 3.0),  # samples 1..5
    ],
)
def test_over_time_functions(gauges: Engine, query: str, expected: float) -> None:
    assert one(gauges.instant(query, T0 + 10 * M)) == pytest.approx(expected)


def test_over_time_drops_the_name_except_last_over_time(gauges: Engine) -> None:
    assert gauges.instant('avg_over_time(temp{room="a"}[5m])', T0).vector[0].metric == {"room": "a"}
    assert gauges.instant('last_over_time(temp{room="a"}[5m])', T0).vector[0].metric == {
        "__name__": "temp",
        "room": "a",
    }


def test_min_and_max_over_time_ignore_nan_unless_all_nan() -> None:
    engine = Engine(
        store_with(("g", {}, [(0, math.nan), (S, 3.0), (2 * S, 1.0)]), ("h", {}, [(0, math.nan)]))
    )
    assert one(engine.instant("min_over_time(g[1m])", T0 + 2 * S)) == 1.0
    assert one(engine.instant("max_over_time(g[1m])", T0 + 2 * S)) == 3.0
    assert math.isnan(one(engine.instant("max_over_time(h[1m])", T0 + 2 * S)))


def test_empty_window_gives_no_sample(gauges: Engine) -> None:
    assert gauges.instant("avg_over_time(temp[30s])", T0 + 10 * M + 45 * S).vector == []


# --- counters -------------------------------------------------------------------------------


def test_rate_and_increase_of_a_steady_counter() -> None:
    # 1 per second, sampled every 15 s: window (0, 60s] holds 15, 30, 45, 60 -> 45 over 45 s,
    # extrapolated 15 s to the window start (the zero point is exactly there) -> 60.
    engine = Engine(store_with(("c_total", {}, [(i * 15 * S, float(i * 15)) for i in range(5)])))
    assert one(engine.instant("increase(c_total[1m])", T0 + M)) == pytest.approx(60.0)
    assert one(engine.instant("rate(c_total[1m])", T0 + M)) == pytest.approx(1.0)


def test_rate_handles_a_counter_reset() -> None:
    # samples in (0, 60s]: 20, 30, 5, 15 -> (15 - 20) + 30 (value before the reset) = 25
    # sampled 45 s, 15 s gap to the window start (< 1.1 * average gap) -> extrapolate: 25 * 60/45
    engine = Engine(
        store_with(
            (
                "c_total",
                {},
                [(0, 10.0), (15 * S, 20.0), (30 * S, 30.0), (45 * S, 5.0), (60 * S, 15.0)],
            )
        )
    )
    assert one(engine.instant("increase(c_total[1m])", T0 + M)) == pytest.approx(25 * 60 / 45)
    assert one(engine.instant("rate(c_total[1m])", T0 + M)) == pytest.approx(25 * 60 / 45 / 60)


def test_rate_extrapolates_only_half_a_gap_when_the_series_starts_inside_the_window() -> None:
    # series starts at 60 s; window (0, 120s]: 1000, 1015, ..., 1060 -> 60 over 60 s;
    # 60 s to the window start is > 1.1 * 15 s, so extrapolate 7.5 s only: 60 * 67.5/60.
    engine = Engine(
        store_with(("c_total", {}, [(60 * S + i * 15 * S, 1000.0 + 15 * i) for i in range(5)]))
    )
    assert one(engine.instant("increase(c_total[2m])", T0 + 2 * M)) == pytest.approx(67.5)
    assert one(engine.instant("rate(c_total[2m])", T0 + 2 * M)) == pytest.approx(67.5 / 120)


def test_rate_does_not_extrapolate_below_zero_for_a_new_counter() -> None:
    # first sample 5 at 15 s, then 10 per 15 s; the counter would hit 0 at 7.5 s before its
    # first sample, closer than the 15 s to the window start: extrapolate 7.5 s only.
    engine = Engine(
        store_with(("c_total", {}, [(15 * S, 5.0), (30 * S, 15.0), (45 * S, 25.0), (60 * S, 35.0)]))
    )
    assert one(engine.instant("increase(c_total[1m])", T0 + M)) == pytest.approx(
        30 * (45 + 7.5) / 45
    )


def test_rate_needs_two_samples() -> None:
    engine = Engine(store_with(("c_total", {}, [(0, 1.0), (2 * M, 5.0)])))
    assert engine.instant("rate(c_total[1m])", T0 + 2 * M).vector == []


def test_delta_does_not_treat_decreases_as_resets() -> None:
    # window (0, 60s]: 9 at 30 s, 3 at 60 s -> -6 over 30 s, extrapolated to 60 s -> -12
    engine = Engine(store_with(("g", {}, [(0, 5.0), (30 * S, 9.0), (60 * S, 3.0)])))
    assert one(engine.instant("delta(g[1m])", T0 + M)) == pytest.approx(-12.0)


def test_irate_uses_the_last_two_samples_and_handles_reset() -> None:
    engine = Engine(
        store_with(("c_total", {}, [(0, 0.0), (10 * S, 50.0), (20 * S, 70.0), (30 * S, 4.0)]))
    )
    assert one(engine.instant("irate(c_total[1m])", T0 + 20 * S)) == pytest.approx(2.0)  # 20 / 10 s
    assert one(engine.instant("irate(c_total[1m])", T0 + 30 * S)) == pytest.approx(
        0.4
    )  # reset: 4 / 10 s


def test_deriv_is_the_least_squares_slope_per_second() -> None:
    engine = Engine(store_with(("g", {}, [(0, 1.0), (10 * S, 3.0), (20 * S, 5.0), (30 * S, 6.0)])))
    # x = 0, 10, 20, 30; y = 1, 3, 5, 6 -> slope = cov / var = 85 / 500
    assert one(engine.instant("deriv(g[1m])", T0 + 30 * S)) == pytest.approx(0.17)


# --- aggregation -----------------------------------------------------------------------------


@pytest.fixture
def requests() -> Engine:
    def s(
        shard: str, host: str, value: float
    ) -> tuple[str, dict[str, str], list[tuple[int, float]]]:
        return ("http_requests", {"shard": shard, "host": host}, [(0, value)])

    return Engine(
        store_with(
            s("1", "a", 1.0),
            s("1", "b", 2.0),
            s("2", "a", 4.0),
            s("2", "b", 8.0),
            s("3", "a", math.nan),
        )
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "sum by (shard) (http_requests{shard!='3'})",
            {(("shard", "1"),): 3.0, (("shard", "2"),): 12.0},
        ),
        (
            "sum(http_requests{shard!='3'}) by (shard)",
            {(("shard", "1"),): 3.0, (("shard", "2"),): 12.0},
        ),
        (
            "avg by (host) (http_requests{shard!='3'})",
            {(("host", "a"),): 2.5, (("host", "b"),): 5.0},
        ),
        (
            "min without (host) (http_requests)",
            {(("shard", "1"),): 1.0, (("shard", "2"),): 4.0, (("shard", "3"),): math.nan},
        ),
        ("max(http_requests)", {(): 8.0}),  # NaN is ignored by min/max
        ("count(http_requests)", {(): 5.0}),
        ("count by (host) (http_requests)", {(("host", "a"),): 3.0, (("host", "b"),): 2.0}),
        ("sum without (shard, host) (http_requests{shard!='3'})", {(): 15.0}),
    ],
)
def test_aggregations_group_by_and_without(
    requests: Engine, query: str, expected: dict[object, float]
) -> None:
    got = vec(requests.instant(query, T0))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == value or (math.isnan(got[key]) and math.isnan(value))  # type: ignore[index]


def test_sum_with_nan_member_is_nan(requests: Engine) -> None:
    assert math.isnan(one(requests.instant("sum(http_requests)", T0)))


def test_topk_and_bottomk_keep_full_labels(requests: Engine) -> None:
    top = requests.instant("topk(2, http_requests)", T0)
    # an instant topk answers largest first, as Prometheus
    assert [(s.metric["shard"], s.metric["host"], s.value) for s in top.vector] == [
        ("2", "b", 8.0),
        ("2", "a", 4.0),
    ]
    assert top.vector[0].metric["__name__"] == "http_requests"
    bottom = vec(requests.instant("bottomk by (shard) (1, http_requests)", T0))
    assert sorted(v for v in bottom.values() if v == v) == [1.0, 4.0]
    assert len(bottom) == 3  # shard 3 has only its NaN


# --- operators ------------------------------------------------------------------------------


def test_comparison_filters_and_keeps_the_name(gauges: Engine) -> None:
    assert vec(gauges.instant("temp > 6", T0 + 8 * M)) == {
        (("__name__", "temp"), ("room", "a")): 8.0
    }
    # scalar on the left: still filters, still keeps the vector's own value
    assert vec(gauges.instant("6 < temp", T0 + 8 * M)) == {
        (("__name__", "temp"), ("room", "a")): 8.0
    }


def test_comparison_with_bool_gives_one_or_zero_and_drops_the_name(gauges: Engine) -> None:
    assert vec(gauges.instant("temp > bool 6", T0 + 8 * M)) == {
        (("room", "a"),): 1.0,
        (("room", "b"),): 0.0,
    }


def test_scalar_comparisons_need_bool_and_give_numbers() -> None:
    engine = Engine(MemoryMetricStore())
    r = engine.instant("2 > bool 1", T0)
    assert r.result_type == "scalar" and r.scalar == 1.0
    assert engine.instant("2 == bool 1", T0).scalar == 0.0


def test_arithmetic_with_scalars_drops_the_name(gauges: Engine) -> None:
    assert vec(gauges.instant('temp{room="a"} * 2 + 1', T0 + 3 * M)) == {(("room", "a"),): 7.0}
    assert vec(gauges.instant('10 - temp{room="a"}', T0 + 3 * M)) == {(("room", "a"),): 7.0}
    assert vec(gauges.instant('temp{room="a"} % 2', T0 + 3 * M)) == {(("room", "a"),): 1.0}
    assert vec(gauges.instant('temp{room="a"} ^ 2', T0 + 3 * M)) == {(("room", "a"),): 9.0}
    assert vec(gauges.instant('-temp{room="a"}', T0 + 3 * M)) == {(("room", "a"),): -3.0}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("2 ^ 3 ^ 2", 512.0),
        ("-2 ^ 2", -4.0),
        ("7 % 3", 1.0),
        ("-7 % 3", -1.0),  # sign of the dividend, as Go's math.Mod
        ("1 / 0", math.inf),
        ("-1 / 0", -math.inf),
        ("0 / 0", math.nan),
        ("5 % 0", math.nan),
        ("0 ^ -1", math.inf),
        ("(-8) ^ 0.5", math.nan),
        ("10 ^ 400", math.inf),
        ("Inf - Inf", math.nan),
        ("NaN == bool NaN", 0.0),
    ],
)
def test_scalar_arithmetic_follows_ieee_like_prometheus(query: str, expected: float) -> None:
    r = Engine(MemoryMetricStore()).instant(query, T0)
    assert r.result_type == "scalar"
    assert r.scalar == expected or (math.isnan(r.scalar or 0.0) and math.isnan(expected))


def test_vector_division_by_zero_gives_infinities_and_nan() -> None:
    engine = Engine(
        store_with(
            ("x", {"k": "pos"}, [(0, 3.0)]),
            ("x", {"k": "neg"}, [(0, -3.0)]),
            ("x", {"k": "zero"}, [(0, 0.0)]),
        )
    )
    got = vec(engine.instant("x / 0", T0))
    assert got[(("k", "pos"),)] == math.inf and got[(("k", "neg"),)] == -math.inf
    assert math.isnan(got[(("k", "zero"),)])


def test_vector_vector_matches_identical_label_sets() -> None:
    engine = Engine(
        store_with(
            ("errors", {"job": "api"}, [(0, 5.0)]),
            ("errors", {"job": "web"}, [(0, 1.0)]),
            ("requests", {"job": "api"}, [(0, 100.0)]),
            ("requests", {"job": "db"}, [(0, 7.0)]),
        )
    )
    assert vec(engine.instant("errors / requests", T0)) == {(("job", "api"),): 0.05}
    assert vec(engine.instant("errors < requests", T0)) == {
        (("__name__", "errors"), ("job", "api")): 5.0
    }
    assert vec(engine.instant("errors > bool requests", T0)) == {(("job", "api"),): 0.0}


def test_on_and_ignoring_choose_the_matching_labels() -> None:
    engine = Engine(
        store_with(
            ("errors", {"job": "api", "code": "500"}, [(0, 5.0)]),
            ("requests", {"job": "api"}, [(0, 100.0)]),
            ("capacity", {}, [(0, 200.0)]),
        )
    )
    assert vec(engine.instant("errors / ignoring (code) requests", T0)) == {(("job", "api"),): 0.05}
    assert vec(engine.instant("errors / on (job) requests", T0)) == {(("job", "api"),): 0.05}
    assert vec(engine.instant("requests / on () capacity", T0)) == {(): 0.5}


def test_many_to_many_matching_is_an_error_not_a_guess() -> None:
    engine = Engine(
        store_with(
            ("errors", {"job": "api", "code": "500"}, [(0, 5.0)]),
            ("errors", {"job": "api", "code": "502"}, [(0, 2.0)]),
            ("requests", {"job": "api", "path": "/a"}, [(0, 100.0)]),
            ("requests", {"job": "api", "path": "/b"}, [(0, 50.0)]),
        )
    )
    with pytest.raises(QueryError, match="many-to-one matching must be explicit") as info:
        engine.instant("errors / on (job) sum by (job) (requests)", T0)
    assert info.value.position == 7
    with pytest.raises(QueryError, match="duplicate series for the match group"):
        engine.instant("sum by (job) (errors) / on (job) requests", T0)


def test_dropping_the_name_must_not_merge_two_series_at_one_step() -> None:
    engine = Engine(store_with(("a", {"k": "1"}, [(0, 1.0)]), ("b", {"k": "1"}, [(0, 2.0)])))
    with pytest.raises(
        QueryError, match=r'vector cannot contain metrics with the same labelset \{k="1"\}'
    ):
        engine.instant('abs({__name__=~"a|b"})', T0)
    # with the name kept they are two distinct series
    assert len(engine.instant('{__name__=~"a|b"} > 0', T0).vector) == 2


# --- functions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("abs(x)", 2.5),
        ("ceil(x)", -2.0),
        ("floor(x)", -3.0),
        ("round(x)", -2.0),  # ties round up
        ("round(x, 2)", -2.0),
        ("round(x * 10, 4)", -24.0),
        ("clamp_min(x, 0)", 0.0),
        ("clamp_max(x, -3)", -3.0),
        ("clamp(x, -1, 1)", -1.0),
        ("sgn(x)", -1.0),
        ("sqrt(abs(x) * 10)", 5.0),
        ("ln(x)", math.nan),
        ("exp(x - x)", 1.0),
        ("log10(abs(x) * 40)", 2.0),
        ("log2(abs(x) - 2.5)", -math.inf),
    ],
)
def test_elementwise_functions(query: str, expected: float) -> None:
    engine = Engine(store_with(("x", {"k": "v"}, [(0, -2.5)])))
    [sample] = engine.instant(query, T0).vector
    assert sample.metric == {"k": "v"}
    assert sample.value == pytest.approx(expected, nan_ok=True)


def test_clamp_with_min_above_max_gives_nothing() -> None:
    engine = Engine(store_with(("x", {}, [(0, 1.0)])))
    assert engine.instant("clamp(x, 2, 1)", T0).vector == []


def test_time_vector_and_scalar() -> None:
    engine = Engine(
        store_with(
            ("x", {"k": "1"}, [(0, 3.0)]),
            ("y", {"k": "1"}, [(0, 1.0)]),
            ("y", {"k": "2"}, [(0, 2.0)]),
        )
    )
    assert engine.instant("time()", T0 + 1500).scalar == (T0 + 1500) / 1000
    assert engine.instant("vector(time())", T0).vector[0].metric == {}
    assert engine.instant("scalar(x) * 2", T0).scalar == 6.0
    assert math.isnan(engine.instant("scalar(y)", T0).scalar or 0.0)  # two elements -> NaN
    assert math.isnan(engine.instant("scalar(nothing)", T0).scalar or 0.0)
    assert vec(engine.instant("y * scalar(x)", T0)) == {(("k", "1"),): 3.0, (("k", "2"),): 6.0}


def test_absent_reports_labels_pinned_by_equality_matchers() -> None:
    engine = Engine(store_with(("up", {"job": "api"}, [(0, 1.0)])))
    assert engine.instant('absent(up{job="api"})', T0).vector == []
    assert vec(engine.instant('absent(up{job="db", instance=~".*"})', T0)) == {
        (("job", "db"),): 1.0
    }
    assert vec(engine.instant('absent(nope{job="a", job="b"})', T0)) == {(): 1.0}
    assert vec(engine.instant("absent(sum(nope))", T0)) == {(): 1.0}
    assert vec(engine.instant('absent_over_time(up{job="api"}[1m])', T0 + 2 * M)) == {
        (("job", "api"),): 1.0
    }
    assert engine.instant('absent_over_time(up{job="api"}[5m])', T0 + 2 * M).vector == []


# --- range queries --------------------------------------------------------------------------


class CountingStore(MemoryMetricStore):
    """A real memory store that also records every select."""

    def __init__(self) -> None:
        super().__init__()
        self.selects: list[tuple[tuple[Matcher, ...], int, int, int]] = []

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
        self.selects.append((tuple(matchers), start_ms, end_ms, step_ms))
        return super().select(
            matchers, start_ms, end_ms, step_ms=step_ms, aggregates=aggregates, align_ms=align_ms
        )


def test_range_query_evaluates_every_step() -> None:
    store = CountingStore()
    store.write([Sample("temp", (("room", "a"),), float(i), T0 + i * M) for i in range(11)], T0)
    r = Engine(store).range("avg_over_time(temp[2m]) * 10", T0 + 5 * M, T0 + 7 * M, M)
    assert r.result_type == "matrix"
    [series] = r.matrix
    assert series.metric == {"room": "a"}
    assert series.points == [(T0 + 5 * M, 45.0), (T0 + 6 * M, 55.0), (T0 + 7 * M, 65.0)]


def test_range_query_fetches_each_selector_once_for_the_whole_window() -> None:
    store = CountingStore()
    store.write([Sample(n, (), float(i), T0 + i * M) for i in range(100) for n in ("x", "y")], T0)
    Engine(store).range(
        "rate(x[5m]) + x - x offset 1h + avg_over_time(y[10m])", T0 + 60 * M, T0 + 90 * M, M
    )
    by_name = {sel[0][0].value: sel for sel in store.selects}
    assert len(store.selects) == 2
    _, start, end, step = by_name["x"]
    assert (start, end, step) == (T0 - 5 * M, T0 + 90 * M, M)  # 60m - 1h offset - 5m lookback
    _, start, end, _ = by_name["y"]
    assert (start, end) == (T0 + 50 * M, T0 + 90 * M)


def test_series_appear_and_disappear_within_a_range_query() -> None:
    store = store_with(("up", {}, [(0, 1.0), (M, 1.0)]))
    r = Engine(store, lookback_ms=2 * M).range("up", T0, T0 + 5 * M, M)
    assert r.matrix[0].points == [(T0, 1.0), (T0 + M, 1.0), (T0 + 2 * M, 1.0)]


def test_scalar_range_query_is_one_series_without_labels() -> None:
    r = Engine(MemoryMetricStore()).range("time() * 2", T0, T0 + 2 * M, M)
    assert r.matrix == [({}, [(T0 + i * M, (T0 + i * M) / 500) for i in range(3)])]


def test_range_query_refuses_bad_arguments() -> None:
    engine = Engine(MemoryMetricStore(), max_points=100)
    with pytest.raises(
        QueryError, match="a range query needs a scalar or instant vector expression"
    ):
        engine.range("x[5m]", T0, T0 + M, M)
    with pytest.raises(UsageError, match="step must be positive"):
        engine.range("x", T0, T0 + M, 0)
    with pytest.raises(UsageError, match="before start"):
        engine.range("x", T0, T0 - 1, M)
    with pytest.raises(UsageError, match="101 points per series"):
        engine.range("x", T0, T0 + 100 * M, M)


def test_empty_store_gives_empty_results() -> None:
    engine = Engine(MemoryMetricStore())
    assert engine.instant("sum(rate(x[5m]))", T0).vector == []
    assert engine.range("x", T0, T0 + M, M).matrix == []


def test_a_selector_without_data_in_its_window_is_probed_once_further_back() -> None:
    store = CountingStore()
    Engine(store, coarsest_resolution_s=3600).instant("x", T0)
    assert [(start, end) for _, start, end, _ in store.selects] == [
        (T0 - 5 * M, T0),
        (T0 - 5 * M - 2 * 60 * M, T0),
    ]


def test_parsed_expressions_and_text_are_both_accepted(gauges: Engine) -> None:
    from signalbox.query import parse_expr

    assert gauges.instant(parse_expr("temp"), T0).vector == gauges.instant("temp", T0).vector


def labels_of(d: dict[str, str]) -> Labels:
    return tuple(sorted(d.items()))
