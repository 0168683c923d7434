"""Stable PromQL that Prometheus 3 accepts and we used to refuse or answer differently:
plain numbers as durations, durations as numbers, string literals (as a result and in
parentheses), the ``atan2`` operator, and the order of an instant ``topk``/``bottomk``.

Cases are modelled on Prometheus' promqltest files (at_modifier, subquery, literals,
operators, aggregators); the data and expected values are our own, worked out by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from signalbox.exceptions import QueryError
from signalbox.metrics.samples import Sample
from signalbox.query import Engine, parse_expr
from signalbox.query.ast import MatrixSelector, NumberLiteral, StringLiteral, Subquery
from tests.query.test_query_eval import T0, M, S, store_with, vec
from tests.server.conftest import NOW, open_site

# --- plain numbers as durations (seconds) ---------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "with_units"),
    [
        ("x[100]", "x[100s]"),
        ("x[1.5]", "x[1500ms]"),
        ("x[0x10]", "x[16s]"),
        ("x[1e2]", "x[100s]"),
        ("x[30:10]", "x[30s:10s]"),
        ("x[30:10s]", "x[30s:10s]"),
        ("x[30:]", "x[30s:]"),
        ("(x)[30:10] offset 3", "x[30s:10s] offset 3s"),
        ("x offset 50", "x offset 50s"),
        ("x offset -50", "x offset -50s"),
        ("x offset 1.5", "x offset 1500ms"),
        ("x @ 100 offset 50", "x @ 100 offset 50s"),
        ("x offset 50 @ 100", "x offset 50s @ 100"),
        ("x[100] @ 100 offset 50", "x[100s] @ 100 offset 50s"),
        ("x[100:1] offset 20 @ 100", "x[100s:1s] offset 20s @ 100"),
        # Go's time.Duration(seconds * 1000) * time.Millisecond truncates below a millisecond
        ("x[1.0009]", "x[1s]"),
    ],
)
def test_a_plain_number_is_read_as_seconds(plain: str, with_units: str) -> None:
    tree = parse_expr(plain)
    assert tree == parse_expr(with_units)
    assert parse_expr(str(tree)) == tree  # prints back with units, same tree


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x[0]", "range must be greater than zero"),
        ("x[0.0001]", "range must be greater than zero"),
        ("x[-5]", "expected a duration like 5m or a number of seconds inside [..], got '-'"),
        ("x[Inf]", "duration 'Inf' seconds is out of range"),
        ("x[NaN]", "duration 'NaN' seconds is out of range"),
        ("x offset 1e30", "duration '1e30' seconds is out of range"),
        ("x[5m:1e300]", "duration '1e300' seconds is out of range"),
        ("x offset y", "expected a duration after offset, like offset 1h or offset 3600, got 'y'"),
    ],
)
def test_numbers_that_are_no_duration_are_refused(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=re_escape(message)):
        parse_expr(text)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def counter() -> Engine:
    """``c`` grows by 1 every 10 s from T0 (0 at T0); ``c{job="2"}`` by 2."""
    points = [(i * 10 * S, float(i)) for i in range(31)]
    double = [(t, 2 * v) for t, v in points]
    return Engine(store_with(("c", {"job": "1"}, points), ("c", {"job": "2"}, double)))


def test_numbers_as_durations_evaluate_like_their_spelled_out_form() -> None:
    e = counter()
    at = T0 + 5 * M
    at_s = (T0 + 200 * S) / 1000
    for plain, spelled in [
        ('sum_over_time(c{job="1"}[100])', 'sum_over_time(c{job="1"}[100s])'),
        (f'sum_over_time(c{{job="1"}}[100] @ {at_s} offset 50)', f'sum_over_time(c{{job="1"}}[100s] @ {at_s} offset 50s)'),
        ('sum_over_time(c{job="1"}[30:10] offset 3)', 'sum_over_time(c{job="1"}[30s:10s] offset 3s)'),
        ('c offset -50', 'c offset -50s'),
    ]:  # fmt: skip
        assert vec(e.instant(plain, at)) == vec(e.instant(spelled, at))
    # (t-100s, t] at T0+5m holds the samples of 210..300 s: 21 + ... + 30
    assert vec(e.instant('sum_over_time(c{job="1"}[100])', at)) == {(("job", "1"),): 255.0}
    # at T0+200s, 50 s back: (50, 150] s -> 6 + ... + 15
    got = e.instant(f'sum_over_time(c{{job="1"}}[100] @ {at_s} offset 50)', at)
    assert vec(got) == {(("job", "1"),): 105.0}


# --- durations where a number is expected ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600.0), ("5m", 300.0), ("1m30s", 90.0), ("1500ms", 1.5), ("-1m", -60.0)],
)
def test_a_duration_is_its_number_of_seconds(text: str, seconds: float) -> None:
    assert parse_expr(text) == NumberLiteral(seconds)
    e = counter()
    result = e.instant(text, T0)
    assert result.result_type == "scalar" and result.scalar == seconds


def test_a_duration_stands_wherever_a_scalar_does() -> None:
    e = counter()
    at = T0 + 5 * M
    assert e.instant("1h + 1", at).scalar == 3601.0
    assert e.instant("vector(5m)", at).vector[0].value == 300.0
    assert vec(e.instant("predict_linear(c[1m], 1h)", at)) == vec(
        e.instant("predict_linear(c[1m], 3600)", at)
    )
    # c{job="1"} grows 0.1/s: in an hour from 30 it reaches 30 + 360
    assert vec(e.instant('predict_linear(c{job="1"}[1m], 1h)', at)) == pytest.approx(
        {(("job", "1"),): 390.0}
    )
    assert str(parse_expr("predict_linear(c[10m], 1h)")) == "predict_linear(c[10m], 3600)"
    assert parse_expr("clamp_max(c, 1m)") == parse_expr("clamp_max(c, 60)")


def test_a_duration_is_still_not_a_range_or_a_selector() -> None:
    with pytest.raises(QueryError, match="ranges are only allowed on vector selectors"):
        parse_expr("5m[1m]")
    with pytest.raises(QueryError, match="offset must follow a selector"):
        parse_expr("5m offset 1m")


# --- string literals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [('"Foo"', "Foo"), ('("Foo")', "Foo"), ('""', ""), ("((``))", "")]
)
def test_a_string_literal_is_an_instant_querys_string_result(text: str, value: str) -> None:
    tree = parse_expr(text)
    assert tree == StringLiteral(value)
    assert parse_expr(str(tree)) == tree
    result = counter().instant(text, T0 + 50 * M)
    assert (result.result_type, result.string) == ("string", value)
    assert result.vector == [] and result.scalar is None
    seconds = (T0 + 50 * M) // 1000
    assert result.to_prometheus() == {"resultType": "string", "result": [seconds, value]}


def test_a_range_query_refuses_a_string() -> None:
    with pytest.raises(
        QueryError, match="a range query needs a scalar or instant vector expression, got a string"
    ):
        counter().range('"Foo"', T0, T0 + M, 10 * S)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"a" + 1', "operator '+' needs scalar or instant vector operands, got a string"),
        ('c == bool "a"', "operator '==' needs scalar or instant vector operands, got a string"),
        ('-"a"', "unary '-' needs a scalar or instant vector, got a string"),
        ('sum("a")', "aggregation 'sum' expects an instant vector, got string"),
        ('topk("a", c)', "aggregation 'topk' expects a scalar parameter, got string"),
        ('rate("a")', "function 'rate' expects a range vector as argument 1, got string"),
        ('"a"[5m]', "ranges are only allowed on vector selectors"),
        ('"a"[5m:1m]', "subquery is only allowed on instant vector, got string"),
        ('"a" offset 5m', "offset must follow a selector"),
        ('"a" @ 100', "@ modifier must be preceded by an instant vector selector"),
    ],
)
def test_a_string_is_refused_where_a_number_or_vector_belongs(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=re_escape(message)):
        parse_expr(text)


def versions() -> Engine:
    return Engine(
        store_with(
            *(("version", {"i": str(i)}, [(0, v)]) for i, v in enumerate([6.0, 6.0, 6.0, 8.0, 7.0]))
        )
    )


def test_parenthesized_string_arguments_are_the_string() -> None:
    e = versions()
    at = T0 + M
    plain = vec(e.instant('count_values("version", version)', at))
    assert plain == {(("version", "6"),): 3.0, (("version", "7"),): 1.0, (("version", "8"),): 1.0}
    assert vec(e.instant('count_values(((("version"))), version)', at)) == plain
    assert str(parse_expr('count_values((("v")), x)')) == 'count_values("v", x)'
    got = vec(
        e.instant('label_replace((((version))), (("dst")), (("v$1")), (("i")), (("(.*)")))', at)
    )
    assert got[(("__name__", "version"), ("dst", "v3"), ("i", "3"))] == 8.0
    assert len(got) == 5


# --- atan2 -----------------------------------------------------------------------------------


def trig() -> Engine:
    return Engine(
        store_with(
            ("y", {"p": "a"}, [(0, 10.0)]),
            ("x", {"p": "a"}, [(0, 20.0)]),
            ("nan", {"p": "a"}, [(0, math.nan)]),
        )
    )


def test_atan2_between_scalars_vectors_and_both() -> None:
    e = trig()
    at = T0 + M
    assert e.instant("10 atan2 20", at).scalar == math.atan2(10, 20)
    assert math.isnan(e.instant("10 atan2 NaN", at).scalar or 0.0)
    assert vec(e.instant("y atan2 x", at)) == {(("p", "a"),): math.atan2(10, 20)}  # name dropped
    assert vec(e.instant("y atan2 20", at)) == {(("p", "a"),): math.atan2(10, 20)}
    assert vec(e.instant("10 atan2 x", at)) == {(("p", "a"),): math.atan2(10, 20)}
    [nan] = e.instant("y atan2 nan", at).vector
    assert math.isnan(nan.value)
    assert vec(e.instant("y atan2 on(p) x", at)) == {(("p", "a"),): math.atan2(10, 20)}
    assert vec(e.instant("y ATAN2 x", at)) == vec(e.instant("y atan2 x", at))


def test_atan2_binds_like_multiplication_and_refuses_bool() -> None:
    e = trig()
    at = T0 + M
    assert e.instant("1 + 2 atan2 3", at).scalar == 1 + math.atan2(2, 3)
    assert e.instant("2 atan2 3 * 4", at).scalar == math.atan2(2, 3) * 4  # left to right
    assert e.instant("2 * 3 atan2 4", at).scalar == math.atan2(6, 4)
    assert e.instant("2 ^ 2 atan2 3", at).scalar == math.atan2(4, 3)  # ^ binds tighter
    for text in ("(1 + 2) atan2 3", "1 atan2 (2 atan2 3)", "y atan2 ignoring (q) x"):
        tree = parse_expr(text)
        assert parse_expr(str(tree)) == tree
    assert e.instant(str(parse_expr("1 atan2 (2 atan2 3)")), at).scalar == math.atan2(
        1, math.atan2(2, 3)
    )
    with pytest.raises(QueryError, match="bool modifier can only be used on comparison operators"):
        parse_expr("y atan2 bool x")


# --- topk / bottomk order --------------------------------------------------------------------


def ranked() -> Engine:
    values = {
        ("a", "0"): 1.0,
        ("a", "1"): 3.0,
        ("a", "2"): math.nan,
        ("b", "0"): 5.0,
        ("b", "1"): 2.0,
    }
    return Engine(store_with(*(("r", {"g": g, "i": i}, [(0, v)]) for (g, i), v in values.items())))


def order(engine: Engine, text: str) -> list[tuple[str, str, float]]:
    result = engine.instant(text, T0 + M)
    return [(s.metric["g"], s.metric["i"], s.value) for s in result.vector]


def test_an_instant_topk_answers_largest_first_and_bottomk_smallest_first() -> None:
    e = ranked()
    assert order(e, "topk(3, r)") == [("b", "0", 5.0), ("a", "1", 3.0), ("b", "1", 2.0)]
    assert order(e, "bottomk(3, r)") == [("a", "0", 1.0), ("b", "1", 2.0), ("a", "1", 3.0)]
    assert order(e, "topk((3), (r))") == order(e, "topk(3, r)")
    assert order(e, "topk(scalar(vector(2)), r)") == [("b", "0", 5.0), ("a", "1", 3.0)]


def test_nan_ranks_last_but_is_kept_when_k_reaches_it() -> None:
    e = ranked()
    top = order(e, 'topk(9999999999, r{g="a"})')
    assert [x[:2] for x in top] == [("a", "1"), ("a", "0"), ("a", "2")]
    assert math.isnan(top[-1][2])
    bottom = order(e, 'bottomk(3, r{g="a"})')
    assert [x[:2] for x in bottom] == [("a", "0"), ("a", "1"), ("a", "2")]
    assert [x[:2] for x in order(e, 'topk(2, r{g="a"})')] == [("a", "1"), ("a", "0")]


def test_grouped_topk_answers_group_by_group_each_in_value_order() -> None:
    e = ranked()
    assert [x[:2] for x in order(e, "topk by (g) (2, r)")] == [
        ("a", "1"),
        ("a", "0"),
        ("b", "0"),
        ("b", "1"),
    ]
    assert [x[:2] for x in order(e, "bottomk without (i) (1, r)")] == [("a", "0"), ("b", "1")]


def test_only_a_top_level_topk_is_reordered() -> None:
    e = ranked()
    # inside an expression the order is the engine's usual one (by labels)
    assert [x[:2] for x in order(e, "topk(2, r) + 0")] == [("a", "1"), ("b", "0")]
    matrix = e.range("topk(2, r)", T0, T0 + M, 30 * S).matrix
    assert [(m.metric["g"], m.metric["i"]) for m in matrix] == [("a", "1"), ("b", "0")]


# --- through the HTTP API --------------------------------------------------------------------


def test_http_api_answers_a_string_a_duration_and_atan2(tmp_path: Path) -> None:
    with open_site("memory", tmp_path) as site:
        t0 = int(NOW * 1000)
        site.store.write([Sample("load", (("host", "h"),), 1.0, t0 - 15_000)], t0)
        with site.client() as c:

            def data(q: str) -> object:
                r = c.get("/api/v1/query", params={"query": q, "time": str(NOW)})
                assert r.status_code == 200, r.text
                return r.json()["data"]

            assert data('"Foo"') == {"resultType": "string", "result": [NOW, "Foo"]}
            assert data("1h") == {"resultType": "scalar", "result": [NOW, "3600"]}
            assert data("load atan2 0") == {
                "resultType": "vector",
                "result": [{"metric": {"host": "h"}, "value": [NOW, str(math.atan2(1, 0))]}],
            }
            assert data("count_over_time(load[60])") == data("count_over_time(load[1m])")
            r = c.get(
                "/api/v1/query_range",
                params={"query": '"Foo"', "start": str(NOW - 60), "end": str(NOW), "step": "15"},
            )
            assert r.status_code == 400, r.text


def test_subquery_and_matrix_nodes_carry_the_seconds() -> None:
    sq = parse_expr("x[30:10]")
    assert isinstance(sq, Subquery) and (sq.range_ms, sq.step_ms) == (30_000, 10_000)
    ms = parse_expr("x[1.5]")
    assert isinstance(ms, MatrixSelector) and ms.range_ms == 1500


# --- duplicate matches are found before a comparison filters ---------------------------------


def many_and_one() -> Engine:
    return Engine(
        store_with(
            ("many", {"label": "foo", "job": "t"}, [(0, 0.0)]),
            ("many", {"label": "bar", "job": "t"}, [(0, 1.0)]),
            ("one", {"job": "t"}, [(0, 1.0)]),
        )
    )


@pytest.mark.parametrize("op", [">", ">=", "<=", "==", "!=", "<"])
def test_many_to_one_without_group_left_fails_even_if_the_filter_keeps_none(op: str) -> None:
    # "> 1" keeps no series, ">= 1" one, "<= 1" both: all are many-to-one, as Prometheus says
    with pytest.raises(QueryError, match="many-to-one matching must be explicit"):
        many_and_one().instant(f"many {op} on(job) one", T0)


def test_group_left_comparison_still_filters() -> None:
    got = vec(many_and_one().instant("many >= on(job) group_left one", T0))
    assert got == {(("__name__", "many"), ("job", "t"), ("label", "bar")): 1.0}
    assert vec(many_and_one().instant("many > on(job) group_left one", T0)) == {}
