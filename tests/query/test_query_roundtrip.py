"""Printing an expression and parsing it back gives the same tree; no text crashes the parser."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.exceptions import QueryError
from signalbox.metrics.samples import Matcher
from signalbox.query import (
    Aggregation,
    BinaryExpr,
    Call,
    Expr,
    Matching,
    MatrixSelector,
    NumberLiteral,
    UnaryExpr,
    VectorSelector,
    parse_expr,
)

# Words the grammar gives a meaning wherever a metric name could stand; Prometheus has the
# same ambiguity, and users spell such metrics {__name__="by"}.
KEYWORDS = {
    "sum", "avg", "min", "max", "count", "topk", "bottomk", "count_values", "quantile", "stddev",
    "stdvar", "group", "limitk", "limit_ratio", "bool", "on", "ignoring", "group_left",
    "group_right", "by", "without", "offset", "and", "or", "unless", "atan2", "inf", "nan",
}  # fmt: skip

metric_names = st.from_regex(r"[a-z_][a-z0-9_:]{0,8}", fullmatch=True).filter(
    lambda s: s.lower() not in KEYWORDS
)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s != "__name__"
)
regexes = st.sampled_from([".*", "a|b", "[0-9]+", r"\d+\.\d*", "x{2,3}", "é+"])


@st.composite
def matchers(draw: st.DrawFn) -> Matcher:
    label = draw(label_names)
    op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
    value = draw(regexes) if op in ("=~", "!~") else draw(st.text(max_size=8))
    return Matcher(label, op, value)


@st.composite
def vector_selectors(draw: st.DrawFn) -> VectorSelector:
    name = draw(st.none() | metric_names)
    ms = draw(st.lists(matchers(), max_size=3))
    if name is None:
        ms.append(Matcher(draw(label_names), "=", draw(st.text(min_size=1, max_size=5))))
    offset = draw(st.sampled_from([0, 0, 60_000, -1500, 86_400_000 * 8 + 1]))
    return VectorSelector(name, tuple(ms), offset)


matrix_selectors = st.builds(
    MatrixSelector, vector_selectors(), st.integers(min_value=1, max_value=400 * 86_400_000)
)
numbers = st.builds(NumberLiteral, st.floats(allow_nan=False))
ARITH = ["+", "-", "*", "/", "%", "^"]
CMP = ["==", "!=", ">", "<", ">=", "<="]

scalars: st.SearchStrategy[Expr] = st.deferred(
    lambda: st.one_of(
        numbers,
        st.builds(Call, st.just("time"), st.just(())),
        st.builds(UnaryExpr, st.just("-"), scalars),
        st.builds(BinaryExpr, st.sampled_from(ARITH), scalars, scalars),
        st.builds(BinaryExpr, st.sampled_from(CMP), scalars, scalars, st.just(True)),
        st.builds(lambda v: Call("scalar", (v,)), vectors),
    )
)


@st.composite
def vector_binaries(draw: st.DrawFn) -> BinaryExpr:
    op = draw(st.sampled_from(ARITH + CMP))
    is_cmp = op in CMP
    shape = draw(st.sampled_from(["vv", "vs", "sv"]))
    lhs = draw(vectors if shape[0] == "v" else scalars)
    rhs = draw(vectors if shape[1] == "v" else scalars)
    return_bool = is_cmp and draw(st.booleans())
    matching = None
    if shape == "vv" and draw(st.booleans()):
        matching = Matching(draw(st.booleans()), tuple(draw(st.lists(label_names, max_size=3))))
    return BinaryExpr(op, lhs, rhs, return_bool, matching)


@st.composite
def aggregations(draw: st.DrawFn) -> Aggregation:
    op = draw(st.sampled_from(["sum", "avg", "min", "max", "count", "topk", "bottomk"]))
    param = draw(scalars) if op in ("topk", "bottomk") else None
    without = draw(st.booleans())
    grouping = tuple(draw(st.lists(label_names, max_size=3)))
    return Aggregation(op, draw(vectors), param, grouping, without)


RANGE_FUNCS = ["rate", "irate", "increase", "delta", "deriv", "avg_over_time", "min_over_time",
               "max_over_time", "sum_over_time", "count_over_time", "last_over_time", "absent_over_time"]  # fmt: skip
ELEMENTWISE = ["abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn", "absent"]

vectors: st.SearchStrategy[Expr] = st.deferred(
    lambda: st.one_of(
        vector_selectors(),
        st.builds(lambda f, m: Call(f, (m,)), st.sampled_from(RANGE_FUNCS), matrix_selectors),
        st.builds(lambda q, m: Call("quantile_over_time", (q, m)), scalars, matrix_selectors),
        st.builds(lambda f, v: Call(f, (v,)), st.sampled_from(ELEMENTWISE), vectors),
        st.builds(lambda v, s: Call("clamp_min", (v, s)), vectors, scalars),
        st.builds(lambda v, a, b: Call("clamp", (v, a, b)), vectors, scalars, scalars),
        st.builds(lambda v: Call("round", (v,)), vectors),
        st.builds(lambda s: Call("vector", (s,)), scalars),
        st.builds(UnaryExpr, st.just("-"), vectors),
        aggregations(),
        vector_binaries(),
    )
)

expressions = st.one_of(scalars, vectors, matrix_selectors)


@settings(max_examples=100)
@given(expressions)
def test_printing_then_parsing_gives_the_same_tree(expr: Expr) -> None:
    text = str(expr)
    again = parse_expr(text)
    assert again == expr, text
    assert str(again) == text


PROMQL_ALPHABET = st.sampled_from(
    [
        *"abcxyz_:019.e ()[]{},=!~<>+-*/%^@\"'`#\n",
        "5m",
        "rate",
        "sum",
        " by ",
        "offset",
        "bool",
        "on",
        "Inf",
    ]
)


@settings(max_examples=300)
@given(st.lists(PROMQL_ALPHABET, max_size=25).map("".join))
def test_any_text_parses_or_raises_query_error_with_a_position(text: str) -> None:
    try:
        expr = parse_expr(text)
    except QueryError as exc:
        assert exc.position is not None and 0 <= exc.position <= len(text)
        assert re.search(r"at position \d+$", str(exc))
        return
    assert parse_expr(str(expr)) == expr or "NaN" in str(expr)
