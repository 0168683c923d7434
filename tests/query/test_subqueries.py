"""Subqueries ``expr[range:step]``: inner steps aligned to absolute multiples of the step.

Cases follow Prometheus 3's ``subquery.test`` (left-open windows), written as our own tests.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from signalbox.exceptions import QueryError, UsageError
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.store import SeriesPoints
from signalbox.query import Engine, parse_expr
from signalbox.query.ast import Subquery
from signalbox.query.subquery import DEFAULT_STEP_MS, Grid, inner_grid
from tests.query.test_at_modifier import S, counting, load, vec
from tests.query.test_query_promtool_parity import assert_promtool_accepts_printed

M = 60 * S


def only(engine: Engine, query: str, at_ms: int) -> float:
    [sample] = engine.instant(query, at_ms).vector
    return sample.value


@pytest.fixture(scope="module")
def two_samples() -> Engine:
    return load(10, [("metric_total", {}, [1.0, 2.0])])


@pytest.mark.parametrize(
    ("query", "at_s", "want"),
    [
        ("sum_over_time(metric_total[50s:10s])", 10, 3.0),  # steps before 0s see nothing
        ("sum_over_time(metric_total[50s:5s])", 10, 4.0),
        ("sum_over_time(metric_total[50s:10s])", 300, 10.0),  # the last value, five times
        # the series goes stale 5m after its last sample: only the 5m10s step sees it
        ("sum_over_time(metric_total[60s:10s])", 359, 2.0),
        ("rate(metric_total[20s:10s])", 10, 0.1),
        ("rate(metric_total[20s:5s])", 20, 0.06666666666666667),
    ],
)
def test_subquery_over_a_short_series(
    two_samples: Engine, query: str, at_s: int, want: float
) -> None:
    assert only(two_samples, query, at_s * S) == pytest.approx(want)


@pytest.fixture(scope="module")
def counters() -> Engine:
    return load(
        10,
        [
            ("metric1_total", {}, counting(0, 1, 1000)),
            ("metric2_total", {}, counting(0, 2, 1000)),
            ("metric3_total", {}, counting(0, 3, 1000)),
        ],
    )


@pytest.mark.parametrize(
    ("query", "at_s", "want"),
    [
        ("sum_over_time(metric1_total[30s:10s])", 1000, 297.0),  # 98 + 99 + 100
        ("sum_over_time(metric1_total[30s:5s])", 1000, 591.0),  # 97 + 98*2 + 99*2 + 100
        # the inner steps are multiples of 10s whatever the offset: 980s, 990s, 1000s
        ("sum_over_time(metric1_total[30s:10s] offset 10s)", 1010, 297.0),
        ("sum_over_time(metric1_total[30s:10s] offset 9s)", 1010, 297.0),
        ("sum_over_time(metric1_total[30s:10s] offset 7s)", 1010, 297.0),
        ("sum_over_time(metric1_total[30s:10s] offset 3s)", 1010, 297.0),
        ("sum_over_time((metric1_total)[30s:10s] offset 3s)", 1010, 297.0),
        ("rate(sum_over_time(metric1_total[30s:10s])[50s:10s])", 1000, 0.30000000000000004),
        ("rate(sum_over_time(metric2_total[30s:10s])[50s:10s])", 1000, 0.6000000000000001),
        ("rate(sum_over_time(metric3_total[30s:10s])[50s:10s])", 1000, 0.9),
        (
            "rate(sum_over_time((metric1_total+metric2_total+metric3_total)[30s:10s])[30s:10s])",
            1000,
            1.8,
        ),
    ],
)
def test_subquery_steps_and_nesting(counters: Engine, query: str, at_s: int, want: float) -> None:
    assert only(counters, query, at_s * S) == pytest.approx(want, rel=1e-12)


def test_rate_of_a_subquery_keeps_each_series() -> None:
    def two_phases(a: float, b: float, c: float) -> list[float | None]:
        return [*counting(0, a, 1000), *counting(b, c, 1000)]

    engine = load(
        10,
        [
            (
                "http_requests_total",
                {"job": "api-server", "instance": "1", "group": "production"},
                two_phases(20, 200, 30),
            ),
            (
                "http_requests_total",
                {"job": "api-server", "instance": "0", "group": "production"},
                two_phases(10, 100, 30),
            ),
            (
                "http_requests_total",
                {"job": "api-server", "instance": "0", "group": "canary"},
                two_phases(30, 300, 80),
            ),
            (
                "http_requests_total",
                {"job": "api-server", "instance": "1", "group": "canary"},
                counting(0, 40, 2000),
            ),
        ],
    )

    def labels(instance: str, group: str) -> tuple[tuple[str, str], ...]:
        return (("group", group), ("instance", instance), ("job", "api-server"))

    got = vec(engine.instant('rate(http_requests_total{group=~"pro.*"}[1m:10s])', 8000 * S))
    assert got == {labels("0", "production"): 1.0, labels("1", "production"): 2.0}
    got = vec(engine.instant("avg_over_time(rate(http_requests_total[1m])[1m:1s])", 20000 * S))
    assert got == {
        labels("0", "canary"): pytest.approx(8.0),
        labels("1", "canary"): pytest.approx(4.0),
        labels("0", "production"): pytest.approx(3.0),
        labels("1", "production"): pytest.approx(3.0),
    }


def fibonacci(n: int) -> list[float | None]:
    out: list[float | None] = []
    a, b = 1, 1
    for _ in range(n):
        out.append(float(a))
        a, b = b, a + b
    return out


@pytest.mark.parametrize(
    ("query", "at_s", "want"),
    [
        ("rate(metric_total[1m])", 80, 2.517857143),  # [3@21s, 144@77s], extrapolated
        # inner points 2@20s .. 144@80s; extrapolated to the range start
        ("rate(metric_total[1m500ms:10s])", 80, 2.3666666666666667),
        # ... and to a zero value for the counter
        ("rate(metric_total[1m1s:10s])", 80, 2.360655737704918),
        ("min_over_time(metric_total[10s])", 20, 2.0),
        ("min_over_time(metric_total[15s:10s])", 20, 1.0),  # inner steps 10s and 20s
        ("min_over_time(rate(metric_total[5m])[20m:1m])", 1200, 0.12119047619047618),
    ],
)
def test_subqueries_over_a_series_whose_rate_is_not_constant(
    query: str, at_s: int, want: float
) -> None:
    engine = load(7, [("metric_total", {}, fibonacci(200))])
    assert only(engine, query, at_s * S) == pytest.approx(want, rel=1e-9)


def test_inner_steps_are_absolute_multiples_of_the_step() -> None:
    sq = parse_expr("x[1h:5m]")
    assert isinstance(sq, Subquery)
    grid = inner_grid(sq, Grid(7 * M + 3 * S, 7 * M + 3 * S, 0, 0, 0))
    assert grid is not None
    # (7m3s - 1h, 7m3s]: first multiple of 5m at or after -52m57s is -50m; last is 5m
    assert (grid.first, grid.last, grid.step) == (-50 * M, 5 * M, 5 * M)
    sq = parse_expr("x[10s:1m]")
    assert isinstance(sq, Subquery)
    assert inner_grid(sq, Grid(110 * S, 110 * S, 0, 0, 0)) is None  # (100s, 110s]: no minute


def test_a_range_query_of_a_subquery_equals_instant_queries_at_each_step(
    counters: Engine,
) -> None:
    """Outer steps not aligned to the inner step: the inner grid stays absolute."""
    for query in (
        "max_over_time(rate(metric1_total[30s])[2m:20s])",
        "sum_over_time((metric1_total + metric2_total)[1m:15s] offset 7s)",
        "count_over_time(metric3_total[45s:])",
    ):
        got = counters.range(query, 503 * S, 803 * S, 37 * S)
        [series] = got.matrix
        for t, v in series.points:
            assert v == pytest.approx(only(counters, query, t)), (query, t)
        # a 45s window holds a whole minute only at some steps; the others hold values
        want = 9 if "45s" not in query else 8
        assert len(series.points) == want


def test_the_default_step_is_one_minute_for_instant_and_range_queries(counters: Engine) -> None:
    assert DEFAULT_STEP_MS == M
    at = 9000 * S + 13 * S
    assert only(counters, "count_over_time(metric1_total[10m:])", at) == 10.0
    assert only(counters, "sum_over_time(metric1_total[10m:])", at) == only(
        counters, "sum_over_time(metric1_total[10m:1m])", at
    )
    wide = counters.range("sum_over_time(metric1_total[10m:])", at, at + 10 * M, 20 * S)
    exact = counters.range("sum_over_time(metric1_total[10m:1m])", at, at + 10 * M, 20 * S)
    assert wide.matrix == exact.matrix


def test_last_over_time_of_a_subquery_keeps_the_name_and_others_drop_it(counters: Engine) -> None:
    got = vec(counters.instant("last_over_time(metric1_total[1m:10s])", 500 * S))
    assert got == {(("__name__", "metric1_total"),): 50.0}
    got = vec(counters.instant("max_over_time(metric1_total[1m:10s])", 500 * S))
    assert got == {(): 50.0}


def test_a_bare_subquery_is_a_range_vector_of_its_inner_points(counters: Engine) -> None:
    got = counters.instant("metric1_total[30s:10s]", 1000 * S)
    assert got.result_type == "matrix"
    [series] = got.matrix
    assert series.metric == {"__name__": "metric1_total"}
    # (970s, 1000s]: the inner step at 970s is outside the left-open window
    assert series.points == [(980 * S, 98.0), (990 * S, 99.0), (1000 * S, 100.0)]
    with pytest.raises(QueryError, match="range query needs a scalar or instant vector"):
        counters.range("metric1_total[30s:10s]", 0, 60 * S, 10 * S)


def test_absent_over_time_of_a_subquery(counters: Engine) -> None:
    assert vec(counters.instant("absent_over_time(nope[1m:10s])", 500 * S)) == {(): 1.0}
    assert vec(counters.instant("absent_over_time(metric1_total[1m:10s])", 500 * S)) == {}


def test_a_subquery_with_too_many_inner_steps_is_refused() -> None:
    engine = Engine(load(10, [("m", {}, [1.0])]).store, max_points=100)
    with pytest.raises(UsageError, match=r"subquery .* would compute 3601 points per series"):
        engine.instant("max_over_time(m[1h:1s])", 3600 * S)


def test_nan_values_at_inner_steps_are_points_too() -> None:
    engine = load(10, [("g", {}, [1.0, math.nan, 3.0])])
    assert math.isnan(only(engine, "sum_over_time(g[30s:10s])", 20 * S))
    assert only(engine, "count_over_time(g[30s:10s])", 20 * S) == 3.0


@pytest.mark.parametrize(
    "text",
    [
        "x[5m:1m]",
        "x[5m:]",
        "rate(x[5m])[30m:1m]",
        "max_over_time(rate(x[5m])[1h:])",
        "max_over_time((a + b)[1h:5m] offset 1h)",
        "max_over_time((-a)[1h:5m])",
        "max_over_time(max_over_time(rate(x[1m])[10m:1m])[1h:10m])",
        "sum_over_time(x offset 5m[10m:1m])",
        "avg_over_time(sum by (job) (x)[5m:30s] @ 100)",
    ],
)
def test_subqueries_print_back_to_the_same_tree(text: str) -> None:
    tree = parse_expr(text)
    assert parse_expr(str(tree)) == tree


def test_subquery_parse_errors_name_the_problem() -> None:
    with pytest.raises(QueryError, match="subquery is only allowed on instant vector") as e:
        parse_expr("x[5m][10m:1m]")
    assert e.value.construct in ("subquery", "syntax")
    with pytest.raises(QueryError, match="subquery is only allowed on instant vector"):
        parse_expr("(1 + 2)[10m:1m]")
    with pytest.raises(QueryError, match="offset may not be set multiple times"):
        parse_expr("x[5m:1m] offset 1m offset 2m")
    with pytest.raises(QueryError, match="operator '\\+' needs scalar or instant vector"):
        parse_expr("x[5m:1m] + 1")


def test_monitor_batches_answer_new_constructs_as_the_engine_does() -> None:
    """``instant_many`` reads once for many queries and shares evaluations of one shape;
    subqueries, ``@``, group modifiers and histogram_quantile must come out the same."""
    from signalbox.query.batch import instant_many

    hosts = [f"h{i}" for i in range(4)]
    series: list[tuple[str, dict[str, str], list[float | None]]] = [
        ("load", {"host": h}, counting(i, i + 1, 600)) for i, h in enumerate(hosts)
    ]
    series += [("info", {"host": h, "rack": f"r{i % 2}"}, [1.0] * 601) for i, h in enumerate(hosts)]
    series += [
        ("lat_bucket", {"host": h, "le": le}, counting(0, k, 600))
        for h in hosts
        for le, k in (("0.1", 1), ("1", 3), ("+Inf", 4))
    ]
    engine = load(10, series)
    at = 5000 * S
    queries = [
        *(f'max_over_time(rate(load{{host="{h}"}}[1m])[10m:1m])' for h in hosts),
        *(f'load{{host="{h}"}} @ 100' for h in hosts),
        *(f'max_over_time(load{{host="{h}"}}[5m] @ 4000)' for h in hosts),
        *(f'load{{host="{h}"}} * on (host) group_left (rack) info' for h in hosts),
        "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m])))",
        "load and on (host) info",
        "sum_over_time(load[1h:5m] offset 30m)",
    ]
    got = instant_many(engine, queries, at)
    for q, r in zip(queries, got, strict=True):
        assert not isinstance(r, Exception), (q, r)
        assert r == engine.instant(q, at), q


class _Recording(MemoryMetricStore):
    """A memory store that remembers the windows it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[int, int, int]] = []

    def select(  # type: ignore[override]
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, **kw: int
    ) -> list[SeriesPoints]:
        self.reads.append((start_ms, end_ms, kw.get("align_ms", 0)))
        return super().select(matchers, start_ms, end_ms, **kw)  # type: ignore[arg-type]


def test_the_fetch_covers_inner_windows_and_aligns_to_the_inner_grid() -> None:
    store = _Recording()
    store.write([Sample("x", (), float(i), i * M) for i in range(300)], 0)
    engine = Engine(store, lookback_ms=5 * M)
    start = 200 * M + 3 * S
    engine.range("max_over_time(x[1h:5m])", start, start + 10 * M, M)
    [(lo, hi, align)] = store.reads
    first_inner = 145 * M  # the first multiple of 5m at or after start - 1h
    assert lo == first_inner - 5 * M and hi == 210 * M and align == 5 * M  # last inner step
    store.reads.clear()
    engine.range("rate(x[5m] @ 3600) + max_over_time(x[10m] offset 1h)", start, start + 10 * M, M)
    [(lo, hi, align)] = store.reads
    # @ reads (55m, 60m]; the offset windows (start - 1h10m, start + 10m - 1h]: one read
    assert lo == 55 * M and hi == start + 10 * M - 60 * M
    assert align == 3 * S  # start - 1h is 3s past a minute


# --- against Prometheus itself (promtool 2.x: closed windows, so no window edge below
# falls on a sample or an inner step) ---------------------------------------------------

PARITY_EXPRESSIONS = [
    "max_over_time(temp[3m:10s])",
    # (expr[2m:] is left out: promtool's default step is its evaluation interval, here 1s)
    "avg_over_time(temp[2m:1m])",
    "sum_over_time(http_requests_total[1m:20s] offset 37s)",
    "max_over_time(rate(http_requests_total[67s])[3m:10s])",
    "min_over_time(max_over_time(temp[67s])[2m:20s])",
    "max_over_time(min_over_time(temp[2m:10s])[3m:30s])",
    "temp @ 500",
    "temp offset 1m @ 600",
    "rate(http_requests_total[1m] @ 500)",
    "max_over_time(temp[2m:10s] @ 400)",
    "temp - temp @ 400",
    "errors_total * on (job, instance) group_left (code) http_requests_total",
    "http_requests_total / ignoring (code) group_right errors_total",
    "temp * on () group_left temp{room='b'}",
    "http_requests_total > on (job, instance) group_left (code) errors_total * 30",
    "temp and temp > 15",
    "temp unless on (room) temp > 15",
    "temp or on () vector(1)",
    "http_requests_total or errors_total",
    "errors_total and ignoring (code) http_requests_total",
    "histogram_quantile(0.9, latency_bucket)",
    "histogram_quantile(0.5, rate(latency_bucket[2m]))",
    "histogram_quantile(0.99, sum by (le) (rate(latency_bucket[2m])))",
]


def _latency() -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for le, k in (("0.05", 1), ("0.1", 3), ("0.5", 4), ("+Inf", 5)):
        for job, shift in (("api", 0), ("web", 2)):
            out[f'latency_bucket{{job="{job}", le="{le}"}}'] = [
                float(i * (k + shift) + (i % 4) * k) for i in range(48)
            ]
    return out


@pytest.mark.peer("promtool")
def test_new_constructs_agree_with_promtool(tmp_path: Path) -> None:
    from tests.query import test_query_promtool_parity as parity

    series = {**parity._series(), **_latency()}
    store = MemoryMetricStore()
    store.write(
        [
            Sample(*parity._parse_series(spec), v, i * parity.INTERVAL_S * 1000)
            for spec, values in series.items()
            for i, v in enumerate(values)
            if v is not None
        ],
        0,
    )
    engine = Engine(store)
    tests = [
        {"expr": e, "eval_time": f"{at}s", "exp_samples": parity._expected(engine, e, at * 1000)}
        for e in PARITY_EXPRESSIONS
        for at in (307, 502, 613)
    ]
    doc = {
        "rule_files": [],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": f"{parity.INTERVAL_S}s",
                "input_series": [
                    {"series": s, "values": " ".join("_" if v is None else repr(v) for v in vs)}
                    for s, vs in series.items()
                ],
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "parity.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
    promtool = shutil.which("promtool")
    assert promtool is not None
    proc = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        failures = parity.FAILURE.findall(output)
        assert failures, output
        real = [
            f"{expr} at {at}: ours {exp} / promtool {got}"
            for expr, at, exp, got in failures
            if not parity._same(parity._samples(exp), parity._samples(got))
        ]
        assert not real, "\n".join(real)
    assert sum(1 for t in tests if t["exp_samples"]) > len(tests) * 3 // 4


@pytest.mark.peer("promtool")
def test_printed_new_constructs_are_valid_prometheus(tmp_path: Path) -> None:
    texts = [
        *PARITY_EXPRESSIONS,
        "x @ start()",
        "x[5m] @ end() offset -1m",
        "rate(x[5m])[30m:]",
        "max_over_time((a + b)[1h:5m] @ 1.5 offset 1h)",
        "sum_over_time(x offset 5m[10m:1m])",
        "a * ignoring (b) group_right b",
        "a * on (b) group_left () c",
    ]
    assert_promtool_accepts_printed(texts, tmp_path)
