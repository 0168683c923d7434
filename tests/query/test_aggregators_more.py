"""quantile, stddev, stdvar, group and count_values as Prometheus answers them (cases read
from its promql/promqltest/testdata/aggregators.test, values worked out by hand), through the
Engine over a memory store and once through the HTTP API on every backend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from signalbox.exceptions import QueryError
from signalbox.metrics.samples import Sample
from signalbox.query import Engine, parse_expr
from tests.query.test_query_eval import T0, M, store_with, vec
from tests.server.conftest import BACKENDS, NOW, open_site

AT = T0 + 5 * M
# The classic example: mean 5, population variance 4, standard deviation 2.
VALUES = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]


def engine_of(values: Sequence[float], name: str = "x") -> Engine:
    """One series per value, label i, in group g=a (first half) or g=b."""
    half = len(values) // 2
    return Engine(
        store_with(
            *(
                (name, {"i": str(i), "g": "a" if i < half else "b"}, [(0, v), (5 * M, v)])
                for i, v in enumerate(values)
            )
        )
    )


def only(engine: Engine, q: str) -> float:
    [sample] = engine.instant(q, AT).vector
    assert sample.metric == {}
    return sample.value


def test_stddev_and_stdvar_are_the_population_figures() -> None:
    e = engine_of(VALUES)
    assert only(e, "stdvar(x)") == 4.0
    assert only(e, "stddev(x)") == 2.0
    # by g: a = 2,4,4,4 (mean 3.5, var 0.75); b = 5,5,7,9 (mean 6.5, var 2.75)
    # (Welford's rounding, as Prometheus': 2.7499999999999996 for b)
    got = vec(e.instant("stdvar by (g) (x)", AT))
    assert got == {(("g", "a"),): 0.75, (("g", "b"),): pytest.approx(2.75, rel=1e-15)}
    got = vec(e.instant("stddev without (i) (x)", AT))
    assert got == pytest.approx({(("g", "a"),): math.sqrt(0.75), (("g", "b"),): math.sqrt(2.75)})


def test_stddev_of_one_series_is_zero_and_nan_or_inf_poisons_it() -> None:
    assert only(engine_of([42.0]), "stddev(x)") == 0.0
    assert math.isnan(only(engine_of([math.nan]), "stdvar(x)"))
    assert math.isnan(only(engine_of([math.inf]), "stdvar(x)"))
    assert math.isnan(only(engine_of([1.0, math.nan]), "stddev(x)"))
    assert math.isnan(only(engine_of([1.0, math.inf]), "stdvar(x)"))


def test_stddev_keeps_precision_on_large_offsets() -> None:
    # a naive sum-of-squares formula loses everything here; Welford's running mean does not
    big = [1e9 + v for v in VALUES]
    assert only(engine_of(big), "stdvar(x)") == pytest.approx(4.0, rel=1e-7)  # naive: ~100s off


def test_quantile_interpolates_between_closest_ranks() -> None:
    e = engine_of(VALUES)
    assert only(e, "quantile(0.5, x)") == 4.5  # rank 3.5: between 4 and 5
    assert only(e, "quantile(0.25, x)") == 4.0
    assert only(e, "quantile(0, x)") == 2.0
    assert only(e, "quantile(1, x)") == 9.0
    assert only(e, "quantile(0.9, x)") == pytest.approx(7.6)  # 7*0.7 + 9*0.3
    assert vec(e.instant("quantile by (g) (0.5, x)", AT)) == {
        (("g", "a"),): 4.0,
        (("g", "b"),): 6.0,
    }


def test_quantile_outside_zero_one_is_infinite_and_nan_phi_is_nan() -> None:
    e = engine_of(VALUES)
    assert only(e, "quantile(-0.5, x)") == -math.inf
    assert only(e, "quantile(1.5, x)") == math.inf
    assert math.isnan(only(e, "quantile(NaN, x)"))


def test_quantile_ranks_nan_first() -> None:
    e = engine_of([math.nan, 1.0, 2.0])
    assert math.isnan(only(e, "quantile(0, x)"))
    assert only(e, "quantile(1, x)") == 2.0
    assert only(e, "quantile(0.75, x)") == 1.5


def test_quantile_parameter_may_vary_per_step() -> None:
    e = engine_of(VALUES)
    r = e.range("quantile(time() - time() + 0.5, x)", AT - M, AT, M)
    [series] = r.matrix
    assert [v for _t, v in series.points] == [4.5, 4.5]


def test_group_is_one_per_group() -> None:
    e = engine_of(VALUES)
    assert only(e, "group(x)") == 1.0
    assert vec(e.instant("group by (g) (x)", AT)) == {(("g", "a"),): 1.0, (("g", "b"),): 1.0}
    assert vec(engine_of([math.nan]).instant("group(x)", AT)) == {(): 1.0}


def test_count_values_counts_series_per_value() -> None:
    e = engine_of(VALUES)
    assert vec(e.instant('count_values("v", x)', AT)) == {
        (("v", "2"),): 1.0,
        (("v", "4"),): 3.0,
        (("v", "5"),): 2.0,
        (("v", "7"),): 1.0,
        (("v", "9"),): 1.0,
    }
    assert vec(e.instant('count_values by (g) ("v", x)', AT)) == {
        (("g", "a"), ("v", "2")): 1.0,
        (("g", "a"), ("v", "4")): 3.0,
        (("g", "b"), ("v", "5")): 2.0,
        (("g", "b"), ("v", "7")): 1.0,
        (("g", "b"), ("v", "9")): 1.0,
    }


def test_count_values_without_keeps_the_rest_and_drops_the_name() -> None:
    e = engine_of([1.0, 1.0, 1.0, 2.0])
    assert vec(e.instant('count_values without (i) ("v", x)', AT)) == {
        (("g", "a"), ("v", "1")): 2.0,
        (("g", "b"), ("v", "1")): 1.0,
        (("g", "b"), ("v", "2")): 1.0,
    }


def test_count_values_overwrites_a_label_of_the_same_name() -> None:
    e = engine_of([1.0, 1.0, 2.0, 2.0])  # g=a holds 1, 1; g=b holds 2, 2
    assert vec(e.instant('count_values("g", x)', AT)) == {(("g", "1"),): 2.0, (("g", "2"),): 2.0}
    assert vec(e.instant('count_values by (g) ("g", x)', AT)) == {
        (("g", "1"),): 2.0,
        (("g", "2"),): 2.0,
    }


def test_count_values_formats_values_as_go_does() -> None:
    values = [0.1, 1e21, -0.0, math.inf, -math.inf, math.nan, 1.5e-7, 100.0]
    got = {k[0][1] for k in vec(engine_of(values).instant('count_values("v", x)', AT))}
    assert got == {
        "0.1",
        "1000000000000000000000",
        "-0",
        "+Inf",
        "-Inf",
        "NaN",
        "0.00000015",
        "100",
    }


def test_count_values_over_a_range_has_a_series_per_value_seen() -> None:
    e = Engine(
        store_with(
            ("x", {"i": "1"}, [(0, 1.0), (M, 2.0)]),
            ("x", {"i": "2"}, [(0, 1.0), (M, 1.0)]),
        )
    )
    r = e.range('count_values("v", x)', T0, T0 + M, M)
    got = {s.metric["v"]: s.points for s in r.matrix}
    assert got == {"1": [(T0, 2.0), (T0 + M, 1.0)], "2": [(T0 + M, 1.0)]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("count_values(1, x)", "aggregation 'count_values' expects a string parameter, got scalar"),
        (
            'count_values("1v", x)',
            "aggregation 'count_values' needs a valid label name, got \"1v\"",
        ),
        ("count_values(x)", "aggregation 'count_values' takes 2 arguments, got 1"),
        ('quantile("v", x)', "aggregation 'quantile' expects a scalar parameter, got string"),
        ("quantile(x)", "aggregation 'quantile' takes 2 arguments, got 1"),
        ("stddev(1, x)", "aggregation 'stddev' takes 1 argument, got 2"),
        (
            'count_values("v" + 1, x)',
            "operator '+' needs scalar or instant vector operands, got a string",
        ),
        (
            'count_values(x, "v")',
            "aggregation 'count_values' expects an instant vector, got string",
        ),
    ],
)
def test_bad_parameters_are_refused_naming_them(query: str, message: str) -> None:
    with pytest.raises(QueryError) as err:
        parse_expr(query)
    assert message in str(err.value)


def test_limitk_is_still_refused_by_name() -> None:
    with pytest.raises(QueryError, match="aggregation 'limitk' is not supported"):
        parse_expr("limitk(1, x)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_http_api_answers_the_new_aggregators(backend: str, tmp_path: Path) -> None:
    with open_site(backend, tmp_path) as site:
        t0 = int(NOW * 1000)
        site.store.write(
            [
                Sample("load", (("host", f"h{i}"),), v, t0 - 15_000)
                for i, v in enumerate([1.0, 2.0, 2.0, 3.0])
            ],
            t0,
        )
        with site.client() as c:

            def query(q: str) -> list[dict[str, object]]:
                r = c.get("/api/v1/query", params={"query": q, "time": str(NOW)})
                assert r.status_code == 200, r.text
                result: list[dict[str, object]] = r.json()["data"]["result"]
                return result

            assert query("quantile(0.5, load)") == [{"metric": {}, "value": [NOW, "2"]}]
            assert query("stdvar(load)") == [{"metric": {}, "value": [NOW, "0.5"]}]
            assert query("group(load)") == [{"metric": {}, "value": [NOW, "1"]}]
            got = {
                s["metric"]["n"]: s["value"][1]  # type: ignore[index]
                for s in query('count_values("n", load)')
            }
            assert got == {"1": "1", "2": "2", "3": "1"}
            r = c.get("/api/v1/query", params={"query": "count_values(2, load)"})
            assert r.status_code == 400
            assert "expects a string parameter" in r.json()["error"]


@pytest.mark.parametrize(
    "query",
    [
        'count_values("v", x)',
        'count_values by (a, b) ("v", sum by (a, b) (x))',
        "count_values without (i) ('v', x)",
        'count_values("v", quantile(0.5, x))',
        "stddev without (i) (x) / quantile by (g) (-0.5, x) + group(x) - stdvar(x)",
    ],
)
def test_printing_parses_back_to_the_same_tree(query: str) -> None:
    tree = parse_expr(query)
    assert parse_expr(str(tree)) == tree
    assert str(parse_expr(str(tree))) == str(tree)


def test_count_values_label_prints_double_quoted() -> None:
    assert str(parse_expr("count_values without (i) ('v', x)")) == (
        'count_values without (i) ("v", x)'
    )
