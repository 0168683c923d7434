"""sort, sort_desc, timestamp, the date functions, trig and pi(): Prometheus' semantics
(promql/functions.go, promqltest/testdata/functions.test and trig_functions.test) through
the Engine over a memory store, and the instant sort order through the HTTP API."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from signalbox.exceptions import QueryError
from signalbox.metrics.samples import Sample
from signalbox.query import Engine
from tests.query.test_query_eval import T0, M, S, one, store_with, vec
from tests.server.conftest import NOW, open_site

NAN = math.nan
INF = math.inf


@pytest.fixture
def hosts() -> Engine:
    """Four gauges with distinct values, one NaN, written at different times."""
    return Engine(
        store_with(
            ("load", {"host": "a"}, [(0, 3.0)]),
            ("load", {"host": "b"}, [(10 * S, NAN)]),
            ("load", {"host": "c"}, [(20 * S, 1.0)]),
            ("load", {"host": "d"}, [(5 * S, 5.0)]),
            ("load", {"host": "e"}, [(15 * S, 3.0)]),
        )
    )


def order(engine: Engine, query: str, at_ms: int) -> list[tuple[str, float]]:
    return [(s.metric["host"], s.value) for s in engine.instant(query, at_ms).vector]


def same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and (x[1] == y[1] or (x[1] != x[1] and y[1] != y[1]))
        for x, y in zip(a, b, strict=True)
    )


# --- sort / sort_desc -------------------------------------------------------------------


def test_sort_orders_an_instant_vector_ascending_with_nan_last(hosts: Engine) -> None:
    got = order(hosts, "sort(load)", T0 + M)
    assert same(got, [("c", 1.0), ("a", 3.0), ("e", 3.0), ("d", 5.0), ("b", NAN)])


def test_sort_desc_orders_descending_and_still_puts_nan_last(hosts: Engine) -> None:
    got = order(hosts, "sort_desc(load)", T0 + M)
    assert same(got, [("d", 5.0), ("a", 3.0), ("e", 3.0), ("c", 1.0), ("b", NAN)])


def test_sort_keeps_the_metric_name_and_the_values(hosts: Engine) -> None:
    result = hosts.instant("sort(load)", T0 + M)
    assert {s.metric["__name__"] for s in result.vector} == {"load"}
    assert len(result.vector) == 5


def test_sort_of_an_expression_sorts_its_result(hosts: Engine) -> None:
    got = order(hosts, "sort_desc(load * -1)", T0 + M)
    assert same(got, [("c", -1.0), ("a", -3.0), ("e", -3.0), ("d", -5.0), ("b", NAN)])


def test_a_range_query_ignores_sort_as_prometheus_does(hosts: Engine) -> None:
    plain = hosts.range("load", T0 + M, T0 + 2 * M, M)
    for q in ("sort(load)", "sort_desc(load)"):
        got = hosts.range(q, T0 + M, T0 + 2 * M, M)
        assert [m.metric for m in got.matrix] == [m.metric for m in plain.matrix]
        assert [m.metric["host"] for m in got.matrix] == ["a", "b", "c", "d", "e"]


def test_sort_takes_exactly_one_instant_vector() -> None:
    engine = Engine(store_with())
    with pytest.raises(QueryError, match="sort"):
        engine.instant("sort()", T0)
    with pytest.raises(QueryError, match="instant vector"):
        engine.instant("sort_desc(load[5m])", T0)


# --- timestamp --------------------------------------------------------------------------


def test_timestamp_is_the_picked_samples_own_time_in_seconds(hosts: Engine) -> None:
    got = vec(hosts.instant("timestamp(load)", T0 + M))
    assert got == {
        (("host", "a"),): T0 / 1000,
        (("host", "b"),): (T0 + 10 * S) / 1000,
        (("host", "c"),): (T0 + 20 * S) / 1000,
        (("host", "d"),): (T0 + 5 * S) / 1000,
        (("host", "e"),): (T0 + 15 * S) / 1000,
    }


def test_timestamp_follows_the_sample_across_a_range_query() -> None:
    engine = Engine(store_with(("up", {}, [(0, 1.0), (90 * S, 1.0), (150 * S, 1.0)])))
    [series] = engine.range("timestamp(up)", T0, T0 + 3 * M, M).matrix
    assert series.metric == {}
    assert series.points == [
        (T0, T0 / 1000),
        (T0 + M, T0 / 1000),
        (T0 + 2 * M, (T0 + 90 * S) / 1000),
        (T0 + 3 * M, (T0 + 150 * S) / 1000),
    ]


def test_timestamp_with_offset_is_the_real_time_of_the_older_sample() -> None:
    engine = Engine(store_with(("up", {}, [(0, 1.0), (2 * M, 1.0)])))
    assert one(engine.instant("timestamp(up offset 1m)", T0 + 2 * M)) == T0 / 1000


def test_timestamp_of_a_stale_selector_is_absent() -> None:
    engine = Engine(store_with(("up", {}, [(0, 1.0)])), lookback_ms=5 * M)
    assert engine.instant("timestamp(up)", T0 + 6 * M).vector == []


def test_timestamp_of_a_non_selector_is_the_step_time() -> None:
    engine = Engine(store_with(("up", {"j": "x"}, [(0, 4.0)])))
    got = vec(engine.instant("timestamp(up * 2)", T0 + 2 * M))
    assert got == {(("j", "x"),): (T0 + 2 * M) / 1000}
    assert one(engine.instant("timestamp(vector(1))", T0 + M)) == (T0 + M) / 1000


# --- date functions -----------------------------------------------------------------------

# 2024-02-29 23:59:58 UTC (a Thursday, day 60 of a leap year)
LEAP_DAY = 1_709_251_198


@pytest.mark.parametrize(
    ("func", "want"),
    [
        ("year", 2024.0),
        ("month", 2.0),
        ("day_of_month", 29.0),
        ("day_of_week", 4.0),
        ("day_of_year", 60.0),
        ("days_in_month", 29.0),
        ("hour", 23.0),
        ("minute", 59.0),
    ],
)
def test_date_functions_read_the_value_as_unix_seconds_utc(func: str, want: float) -> None:
    engine = Engine(store_with(("boot", {"host": "a"}, [(0, float(LEAP_DAY))])))
    result = engine.instant(f"{func}(boot)", T0)
    assert vec(result) == {(("host", "a"),): want}  # metric name dropped


def test_date_functions_truncate_fractional_seconds_toward_zero() -> None:
    engine = Engine(store_with())
    # 1969-12-31 23:59:59.5 is second -0.5 -> int64 0 -> 1970-01-01 00:00
    assert one(engine.instant("year(vector(-0.5))", T0)) == 1970.0
    assert one(engine.instant("minute(vector(-60.5))", T0)) == 59.0  # second -60 = 23:59:00
    assert one(engine.instant("day_of_week(vector(-86400))", T0)) == 3.0  # a Wednesday


def test_date_functions_without_argument_use_the_step_time() -> None:
    engine = Engine(store_with())
    at = LEAP_DAY * 1000
    assert vec(engine.instant("day_of_month()", at)) == {(): 29.0}
    assert vec(engine.instant("days_in_month()", at + 2 * 1000)) == {(): 31.0}  # March 1st
    [series] = engine.range("hour()", at - 3600_000, at, 1800_000).matrix
    assert series.metric == {}
    assert [v for _, v in series.points] == [22.0, 23.0, 23.0]


def test_date_functions_beyond_python_datetime_and_non_finite_values() -> None:
    engine = Engine(store_with())
    # 1e12 seconds: year 33658 (Go's time handles it; Python's datetime would not)
    assert one(engine.instant("year(vector(1e12))", T0)) == 33658.0
    assert one(engine.instant("year(vector(-1e11))", T0)) == -1199.0
    # int64(NaN) is 0 (1970) and +Inf saturates at int64 max: Go's year 292277026596
    assert one(engine.instant("year(vector(NaN))", T0)) == 1970.0
    assert one(engine.instant("year(vector(Inf))", T0)) == 292277026596.0


def test_days_in_month_across_a_year_and_century_leap_rules() -> None:
    engine = Engine(store_with())
    feb_1900, feb_2000 = -2_206_310_400, 949_363_200  # both 1 February, 00:00 UTC
    assert one(engine.instant(f"days_in_month(vector({feb_1900}))", T0)) == 28.0
    assert one(engine.instant(f"days_in_month(vector({feb_2000}))", T0)) == 29.0


def test_date_functions_take_at_most_one_instant_vector() -> None:
    engine = Engine(store_with())
    with pytest.raises(QueryError, match="hour"):
        engine.instant("hour(vector(1), vector(2))", T0)
    with pytest.raises(QueryError, match="instant vector"):
        engine.instant("month(1)", T0)


# --- trig, angles and pi ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("sin(vector(0.5))", math.sin(0.5)),
        ("cos(vector(0.5))", math.cos(0.5)),
        ("tan(vector(0.5))", math.tan(0.5)),
        ("asin(vector(0.5))", math.asin(0.5)),
        ("acos(vector(0.5))", math.acos(0.5)),
        ("atan(vector(0.5))", math.atan(0.5)),
        ("sinh(vector(0.5))", math.sinh(0.5)),
        ("cosh(vector(0.5))", math.cosh(0.5)),
        ("tanh(vector(0.5))", math.tanh(0.5)),
        ("asinh(vector(0.5))", math.asinh(0.5)),
        ("acosh(vector(1.5))", math.acosh(1.5)),
        ("atanh(vector(0.5))", math.atanh(0.5)),
        ("deg(vector(1))", 180 / math.pi),
        ("rad(vector(180))", math.pi),
        ("deg(vector(pi()))", 180.0),
        # Go's math where Python raises
        ("sin(vector(Inf))", NAN),
        ("cos(vector(-Inf))", NAN),
        ("tan(vector(Inf))", NAN),
        ("asin(vector(2))", NAN),
        ("acos(vector(-1.5))", NAN),
        ("acosh(vector(0.5))", NAN),
        ("atanh(vector(1))", INF),
        ("atanh(vector(-1))", -INF),
        ("atanh(vector(2))", NAN),
        ("sinh(vector(1000))", INF),
        ("sinh(vector(-1000))", -INF),
        ("cosh(vector(-1000))", INF),
        ("atan(vector(Inf))", math.pi / 2),
        ("tanh(vector(-Inf))", -1.0),
        ("asinh(vector(-Inf))", -INF),
        ("sin(vector(NaN))", NAN),
        ("deg(vector(Inf))", INF),
    ],
)
def test_trig_functions_follow_go_math(query: str, want: float) -> None:
    got = one(Engine(store_with()).instant(query, T0))
    assert got == want or (math.isnan(got) and math.isnan(want)), (query, got)


def test_trig_functions_drop_the_metric_name_and_keep_labels() -> None:
    engine = Engine(
        store_with(("angle", {"k": "x"}, [(0, 0.0)]), ("angle", {"k": "y"}, [(0, 1.0)]))
    )
    assert vec(engine.instant("cos(angle)", T0)) == {(("k", "x"),): 1.0, (("k", "y"),): math.cos(1)}


def test_pi_is_a_scalar_at_every_step() -> None:
    engine = Engine(store_with())
    result = engine.instant("pi()", T0)
    assert result.result_type == "scalar"
    assert result.scalar == math.pi
    [series] = engine.range("pi() * 2", T0, T0 + 2 * M, M).matrix
    assert [v for _, v in series.points] == [2 * math.pi] * 3
    with pytest.raises(QueryError, match="pi"):
        engine.instant("pi(1)", T0)


# --- through the HTTP API -----------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with open_site("memory", tmp_path) as site:
        t0 = int(NOW * 1000)
        values = {"a": 2.0, "b": 9.0, "c": -1.0, "d": 4.0}
        site.store.write(
            [Sample("disk_used", (("host", h),), v, t0 - 10_000) for h, v in values.items()], t0
        )
        with site.client() as c:
            yield c


def _hosts(body: dict[str, object]) -> list[str]:
    data = body["data"]
    assert isinstance(data, dict)
    return [item["metric"]["host"] for item in data["result"]]


def test_instant_sort_order_survives_into_the_json(api: TestClient) -> None:
    r = api.get("/api/v1/query", params={"query": "sort_desc(disk_used)", "time": str(NOW)})
    assert r.status_code == 200
    assert _hosts(r.json()) == ["b", "d", "a", "c"]
    r = api.get("/api/v1/query", params={"query": "sort(disk_used)", "time": str(NOW)})
    assert _hosts(r.json()) == ["c", "a", "d", "b"]
    assert [item["value"][1] for item in r.json()["data"]["result"]] == ["-1", "2", "4", "9"]


def test_timestamp_and_date_functions_over_http(api: TestClient) -> None:
    r = api.get(
        "/api/v1/query", params={"query": 'timestamp(disk_used{host="a"})', "time": str(NOW)}
    )
    [item] = r.json()["data"]["result"]
    assert item["metric"] == {"host": "a"}
    assert float(item["value"][1]) == NOW - 10
    r = api.get("/api/v1/query", params={"query": "year()", "time": str(NOW)})
    [item] = r.json()["data"]["result"]
    assert item == {"metric": {}, "value": [NOW, "2023"]}
