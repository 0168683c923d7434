"""The ``@`` modifier: selectors and subqueries read at one time, whatever the step.

Cases follow Prometheus' ``at_modifier.test`` (its data, its expected values), written
here as our own tests; times are seconds from the epoch as there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.query import Engine, QueryResult, parse_expr

S = 1000
M = 60 * S


def load(
    interval_s: float, series: Iterable[tuple[str, dict[str, str], Sequence[float | None]]]
) -> Engine:
    """A store like promqltest's ``load <interval>``: value ``i`` at ``i * interval``
    from time 0 (None: no sample there)."""
    store = MemoryMetricStore()
    samples = [
        Sample(name, tuple(sorted(labels.items())), v, round(i * interval_s * 1000))
        for name, labels, values in series
        for i, v in enumerate(values)
        if v is not None
    ]
    store.write(samples, 0)
    return Engine(store)


def counting(start: float, step: float, n: int) -> list[float | None]:
    """promqltest's ``start+stepxN``: N + 1 values."""
    return [start + step * i for i in range(n + 1)]


def vec(result: QueryResult) -> dict[tuple[tuple[str, str], ...], float]:
    assert result.result_type == "vector"
    return {tuple(sorted(s.metric.items())): s.value for s in result.vector}


def job(n: str, name: str | None = None) -> tuple[tuple[str, str], ...]:
    labels = {"job": n} if name is None else {"__name__": name, "job": n}
    return tuple(sorted(labels.items()))


@pytest.fixture(scope="module")
def metric() -> Engine:
    return load(
        10,
        [
            ("metric", {"job": "1"}, counting(0, 1, 1000)),
            ("metric", {"job": "2"}, counting(0, 2, 1000)),
        ],
    )


@pytest.mark.parametrize(
    "query",
    [
        "metric @ 100",
        "metric @ 100s",
        "metric @ 1m40s",
        "metric @ 100.000",
    ],
)
def test_a_selector_at_a_time_reads_that_time_not_the_evaluation_time(
    metric: Engine, query: str
) -> None:
    assert vec(metric.instant(query, 10 * S)) == {
        job("1", "metric"): 10.0,
        job("2", "metric"): 20.0,
    }


@pytest.mark.parametrize(
    "query",
    [
        "metric @ 100 offset 50s",
        "metric offset 50s @ 100",
        "metric @ 0 offset -50s",
        "metric offset -50s @ 0",
    ],
)
def test_offset_and_at_combine_in_either_order(metric: Engine, query: str) -> None:
    assert vec(metric.instant(query, 10 * S)) == {job("1", "metric"): 5.0, job("2", "metric"): 10.0}


def test_negation_of_a_pinned_selector_drops_the_name(metric: Engine) -> None:
    for query in ("-metric @ 100", "---metric @ 100"):
        assert vec(metric.instant(query, 10 * S)) == {job("1"): -10.0, job("2"): -20.0}


def test_at_has_millisecond_precision() -> None:
    engine = load(0.001, [("metric_ms", {}, counting(0, 1, 10000))])
    assert vec(engine.instant("metric_ms @ 1.234", 100 * S)) == {
        (("__name__", "metric_ms"),): 1234.0
    }


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ('sum_over_time(metric{job="1"}[100s] @ 100)', 55.0),  # 1 + ... + 10
        ('sum_over_time(metric{job="1"}[100s] @ 100 offset 50s)', 15.0),  # 0 + ... + 5
        ('sum_over_time(metric{job="1"}[100s] offset 50s @ 100)', 15.0),
        ('metric{job="1"} @ 50 + metric{job="1"} @ 100', 15.0),
        (
            'sum_over_time(metric{job="1"}[100s] @ 100) + label_replace('
            'sum_over_time(metric{job="2"}[100s] @ 100), "job", "1", "", "")',
            165.0,
        ),
    ],
)
def test_range_selectors_under_at(metric: Engine, query: str, want: float) -> None:
    assert vec(metric.instant(query, 25 * S)) == {job("1"): want}


@pytest.mark.parametrize(
    ("query", "at_s", "want"),
    [
        # 10 * (1 + ... + 9) + 10: each 10s sample seen ten times at the 1s inner steps
        ('sum_over_time(metric{job="1"}[100s:1s] @ 100)', 25, 460.0),
        ('sum_over_time(metric{job="1"}[100s:1s] @ 100 offset 20s)', 25, 288.0),
        ('sum_over_time(metric{job="1"}[100s:1s] offset 20s @ 100)', 25, 288.0),
        # the selector is pinned: 55 at each of the four inner steps in (-50s, 50s]
        ('sum_over_time(sum_over_time(metric{job="1"}[100s] @ 100)[100s:25s] @ 50)', 100, 220.0),
        (
            'sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[100s] @ 100)'
            "[100s:25s] @ 50)[3s:1s] @ 3000)",
            0,
            660.0,
        ),
        # inner steps -25s, 0, 25s, 50s see 0, 0, 2, 5: 7, three times
        (
            'sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[10s])[100s:25s] @ 50)'
            "[3s:1s] @ 200)",
            0,
            21.0,
        ),
        (
            'sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[10s])[100s:25s] @ 200)'
            "[3s:1s] @ 50)",
            0,
            192.0,
        ),
        (
            'sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[20s])[20s:10s] offset 10s)'
            "[100s:25s] @ 1000)",
            0,
            1504.0,
        ),
    ],
)
def test_subqueries_under_at(metric: Engine, query: str, at_s: int, want: float) -> None:
    assert vec(metric.instant(query, at_s * S)) == {job("1"): want}


def test_functions_of_a_pinned_selector_read_its_values(metric: Engine) -> None:
    # minute() of the value read as Unix seconds: 150s and 300s
    assert vec(metric.instant("minute(metric @ 1500)", 10 * S)) == {job("1"): 2.0, job("2"): 5.0}
    assert vec(metric.instant('timestamp(metric{job="1"} @ 10)', 10 * M)) == {job("1"): 10.0}
    # the outer timestamp() is of an expression, so of the evaluation time
    for at_s in (600, 900):
        got = metric.instant('timestamp(timestamp(metric{job="1"} @ 10))', at_s * S)
        assert vec(got) == {job("1"): float(at_s)}


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("sum_over_time(minute(metric @ 1500)[100s:10s])", {job("1"): 20.0, job("2"): 50.0}),
        ("sum_over_time(minute()[50m:1m] @ 6000)", {(): 1315.0}),
        ("sum_over_time(minute()[50m:1m] @ 6000 offset 5m)", {(): 1365.0}),
        ("sum_over_time(vector(time())[100s:1s] @ 3000)", {(): 295050.0}),
        ("sum_over_time(vector(time())[100s:1s] @ 3000 offset 600s)", {(): 235050.0}),
        ('sum_over_time(timestamp(metric{job="1"} @ 10)[100s:10s] @ 3000)', {job("1"): 100.0}),
        (
            'sum_over_time(timestamp(timestamp(metric{job="1"} @ 999))[10s:1s] @ 10)',
            {job("1"): 55.0},
        ),
    ],
)
def test_time_inside_a_pinned_subquery_is_the_inner_step_time(
    metric: Engine, query: str, want: dict[tuple[tuple[str, str], ...], float]
) -> None:
    assert vec(metric.instant(query, 0)) == want


def test_a_range_query_repeats_the_pinned_value_at_every_step(metric: Engine) -> None:
    got = metric.range('metric{job="1"} @ 100', 0, 60 * S, 10 * S)
    [series] = got.matrix
    assert series.points == [(t * S, 10.0) for t in range(0, 61, 10)]
    got = metric.range('rate(metric{job="2"}[1m] @ 100)', 500 * S, 530 * S, 10 * S)
    [series] = got.matrix
    assert [v for _, v in series.points] == [pytest.approx(0.2)] * 4


def test_start_and_end_name_the_range_query_bounds(metric: Engine) -> None:
    start = metric.range('metric{job="1"} @ start()', 100 * S, 200 * S, 50 * S).matrix[0]
    end = metric.range('metric{job="1"} @ end()', 100 * S, 200 * S, 50 * S).matrix[0]
    assert [v for _, v in start.points] == [10.0, 10.0, 10.0]
    assert [v for _, v in end.points] == [20.0, 20.0, 20.0]
    # end() is the end asked for, also when it is not a step (steps 100s, 150s; end 195s)
    end = metric.range('metric{job="1"} @ end()', 100 * S, 195 * S, 50 * S).matrix[0]
    assert end.points == [(100 * S, 19.0), (150 * S, 19.0)]
    # an instant query starts and ends at its one time
    assert vec(metric.instant('metric{job="1"} @ end()', 70 * S)) == {job("1", "metric"): 7.0}
    # inside a subquery, start() and end() are still the query's
    got = metric.instant('sum_over_time((metric{job="1"} @ start())[1m:10s])', 70 * S)
    assert vec(got) == {job("1"): 42.0}  # 7 at each inner step in (10s, 70s]


def test_a_bare_range_selector_under_at_returns_the_samples_there(metric: Engine) -> None:
    got = metric.instant('metric{job="1"}[30s] @ 100', 0)
    assert got.result_type == "matrix"
    assert got.matrix[0].points == [(80 * S, 8.0), (90 * S, 9.0), (100 * S, 10.0)]


def test_a_pinned_selector_far_from_the_query_time_is_fetched() -> None:
    # the data lies a day before the query: the fetch must read around the @ time
    engine = load(60, [("m", {}, counting(0, 1, 100))])
    day = 86_400 * S
    assert vec(engine.instant("m @ 3000", day)) == {(("__name__", "m"),): 50.0}
    assert vec(engine.instant("m @ 3000", -day)) == {(("__name__", "m"),): 50.0}
    got = engine.range("max_over_time(m[10m] @ 3000)", day, day + 10 * M, M)
    assert [v for _, v in got.matrix[0].points] == [50.0] * 11


@pytest.mark.parametrize(
    "text",
    [
        "x @ 100",
        "x @ -1.5",
        "x @ start()",
        "x @ end() offset 5m",
        "rate(x[5m] @ 1700000000.123 offset -1m)",
        "max_over_time(rate(x[5m])[1h:5m] @ end() offset 1h)",
        "sum(x @ 0)",
    ],
)
def test_at_prints_back_to_text_that_parses_to_the_same_tree(text: str) -> None:
    tree = parse_expr(text)
    assert parse_expr(str(tree)) == tree
    assert " @ " in str(tree)


def test_at_prints_seconds_with_three_decimals_like_prometheus() -> None:
    assert str(parse_expr("x @ 100")) == "x @ 100.000"
    assert str(parse_expr("x offset 1m @ 1.5")) == "x @ 1.500 offset 1m"
    assert str(parse_expr("x[5m] @ start()")) == "x[5m] @ start()"
    assert str(parse_expr("x @ -0.001")) == "x @ -0.001"
