"""The parser accepts the supported PromQL subset and refuses the rest by name and position."""

from __future__ import annotations

import math

import pytest

from signalbox.exceptions import QueryError
from signalbox.metrics.samples import Matcher
from signalbox.query import (
    Aggregation,
    BinaryExpr,
    Call,
    Matching,
    MatrixSelector,
    NumberLiteral,
    UnaryExpr,
    VectorSelector,
    parse_expr,
    selectors,
)


def sel(name: str | None, *matchers: tuple[str, str, str], offset_ms: int = 0) -> VectorSelector:
    return VectorSelector(
        name, tuple(Matcher(label, op, value) for label, op, value in matchers), offset_ms
    )  # type: ignore[arg-type]


def test_selector_with_all_four_matcher_kinds() -> None:
    e = parse_expr(
        'http_requests_total{code="200", method!="GET", path=~"/api/.*", host!~"test.*"}'
    )
    assert e == sel(
        "http_requests_total",
        ("code", "=", "200"),
        ("method", "!=", "GET"),
        ("path", "=~", "/api/.*"),
        ("host", "!~", "test.*"),
    )


def test_name_only_by_matcher_selects_by_regex_on_name() -> None:
    e = parse_expr('{__name__=~"job:.*", env="prod"}')
    assert e == sel(None, ("__name__", "=~", "job:.*"), ("env", "=", "prod"))


def test_range_selector_with_offset_after_the_range() -> None:
    e = parse_expr("rate(x[5m] offset 1h)")
    assert e == Call("rate", (MatrixSelector(sel("x", offset_ms=3_600_000), 300_000),))


def test_compound_durations_and_negative_offset() -> None:
    e = parse_expr("x[1h30m] offset -90s")
    assert isinstance(e, MatrixSelector)
    assert e.range_ms == 5_400_000 and e.selector.offset_ms == -90_000


def test_aggregation_clause_before_and_after_the_arguments_mean_the_same() -> None:
    before = parse_expr("sum by (shard, host) (rate(http_requests_total[5m]))")
    after = parse_expr("sum(rate(http_requests_total[5m])) by (shard, host)")
    assert before == after
    assert (
        isinstance(before, Aggregation)
        and before.grouping == ("shard", "host")
        and not before.without
    )


def test_without_with_empty_list_differs_from_no_clause() -> None:
    assert parse_expr("sum without () (x)") == Aggregation("sum", sel("x"), None, (), True)
    assert parse_expr("sum by () (x)") == parse_expr("sum(x)")


def test_topk_takes_a_scalar_parameter() -> None:
    assert parse_expr("topk(3, x)") == Aggregation("topk", sel("x"), NumberLiteral(3.0))


def test_precedence_follows_prometheus() -> None:
    # * binds tighter than +, comparisons are loosest, ^ is right-associative
    e = parse_expr("a + b * c > 2 ^ 3 ^ 2")
    assert e == BinaryExpr(
        ">",
        BinaryExpr("+", sel("a"), BinaryExpr("*", sel("b"), sel("c"))),
        BinaryExpr("^", NumberLiteral(2), BinaryExpr("^", NumberLiteral(3), NumberLiteral(2))),
    )


def test_unary_minus_binds_looser_than_power_but_tighter_than_multiplication() -> None:
    assert parse_expr("-2 ^ 2") == UnaryExpr(
        "-", BinaryExpr("^", NumberLiteral(2), NumberLiteral(2))
    )
    assert parse_expr("-x * 2") == BinaryExpr("*", UnaryExpr("-", sel("x")), NumberLiteral(2))
    assert parse_expr("-5") == NumberLiteral(-5.0)
    assert parse_expr("+x") == sel("x")


def test_parentheses_override_precedence() -> None:
    assert parse_expr("(a + b) * c") == BinaryExpr(
        "*", BinaryExpr("+", sel("a"), sel("b")), sel("c")
    )


def test_bool_and_vector_matching_modifiers() -> None:
    e = parse_expr("a > bool on (job) b")
    assert e == BinaryExpr(">", sel("a"), sel("b"), True, Matching(True, ("job",)))
    e = parse_expr("a / ignoring (code) b")
    assert e == BinaryExpr("/", sel("a"), sel("b"), False, Matching(False, ("code",)))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("0x1F", 31.0),
        ("Inf", math.inf),
        ("-inf", -math.inf),
    ],
)
def test_number_literals(text: str, value: float) -> None:
    assert parse_expr(text) == NumberLiteral(value)


def test_nan_literal() -> None:
    e = parse_expr("NaN")
    assert isinstance(e, NumberLiteral) and math.isnan(e.value)


def test_string_escapes_in_matcher_values() -> None:
    e = parse_expr(r'x{a="q\"uote\\ \n\u00e9", b=' + "'single', c=`raw\\n`}")
    assert isinstance(e, VectorSelector)
    assert [m.value for m in e.matchers] == ['q"uote\\ \n\u00e9', "single", "raw\\n"]


def test_comments_are_ignored() -> None:
    assert parse_expr("x # the metric\n + 1") == BinaryExpr("+", sel("x"), NumberLiteral(1))


def test_keywords_can_be_metric_names_where_unambiguous() -> None:
    assert parse_expr("rate") == sel("rate")
    assert parse_expr("offset offset 5m") == sel("offset", offset_ms=300_000)


def test_keywords_are_case_insensitive_like_prometheus() -> None:
    assert parse_expr("SUM BY (a) (x) > BOOL on (a) y OFFSET 5m") == parse_expr(
        "sum by (a) (x) > bool on (a) y offset 5m"
    )
    with pytest.raises(QueryError, match="unknown function 'RATE'"):
        parse_expr("RATE(x[5m])")  # function names are case-sensitive, as in Prometheus


def test_numbers_with_harmless_leading_zeros_are_read_as_decimal() -> None:
    assert parse_expr("089") == NumberLiteral(89.0)
    assert parse_expr("00") == NumberLiteral(0.0)
    assert parse_expr("0.5") == NumberLiteral(0.5)


def test_expression_types() -> None:
    assert parse_expr("1 + 2").type == "scalar"
    assert parse_expr("x + 2").type == "vector"
    assert parse_expr("x[5m]").type == "matrix"
    assert parse_expr("scalar(x)").type == "scalar"
    assert parse_expr("time()").type == "scalar"


def test_selectors_lists_every_vector_selector_including_inside_ranges() -> None:
    e = parse_expr('sum(rate(a{job="x"}[5m])) / on() b + scalar(c)')
    assert [s.metric_name for s in selectors(e)] == ["a", "b", "c"]
    assert [s.metric_name for s in e.selectors()] == ["a", "b", "c"]
    assert selectors(parse_expr('{__name__="d"}'))[0].metric_name == "d"
    assert selectors(parse_expr('{__name__=~"d|e"}'))[0].metric_name is None


@pytest.mark.parametrize(
    ("text", "message", "position", "construct"),
    [
        ("x[:5m]", "a subquery needs a range before ':'", 2, "subquery"),
        ("(a + b)[5m]", "ranges are only allowed on vector selectors", 7, "subquery"),
        ("x[5m:1m][10m:1m]", "subquery is only allowed on instant vector", 8, "subquery"),
        ("x @ 1 @ 2", "@ <timestamp> may not be set multiple times", 6, "@ modifier"),
        (
            "sum(x) @ 100",
            "@ modifier must be preceded by an instant vector selector",
            7,
            "@ modifier",
        ),
        ("@ 100", "@ modifier must be preceded by an instant vector selector", 0, "@ modifier"),
        ("x @ 100[5m]", "no @ modifiers allowed before range", 7, "@ modifier"),
        (
            "x @ foo",
            "expected a timestamp (Unix seconds), start() or end() after @",
            4,
            "@ modifier",
        ),
        ("x @ Inf", "timestamp out of bounds for @ modifier", 4, "@ modifier"),
        ("a * group_right b", "group_right needs on(...) or ignoring(...) before it", 4, "syntax"),
        (
            "a and on(x) group_left b",
            'no grouping allowed for "and" operation',
            12,
            "vector matching",
        ),
        (
            "a * on(x) group_left(x) b",
            'label "x" must not occur in ON and GROUP clause at once',
            10,
            "vector matching",
        ),
        ("1 and x", 'set operator "and" not allowed in binary scalar expression', 2, "type"),
        (
            'sort_by_label(x, "a")',
            "function 'sort_by_label' is not supported",
            0,
            "function",
        ),
        ("1 + frobnicate(x)", "unknown function 'frobnicate'", 4, "function"),
        ("limitk(1, x)", "aggregation 'limitk' is not supported", 0, "aggregation"),
        (
            "limit_ratio by (a) (0.5, x)",
            "aggregation 'limit_ratio' is not supported",
            0,
            "aggregation",
        ),
    ],
)
def test_unsupported_constructs_are_refused_by_name_and_position(
    text: str, message: str, position: int, construct: str
) -> None:
    with pytest.raises(QueryError) as info:
        parse_expr(text)
    assert str(info.value).startswith(message)
    assert info.value.position == position
    assert info.value.construct == construct
    assert str(info.value).endswith(f"at position {position}")


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "empty expression", 0),
        ("rate(x)", "function 'rate' expects a range vector as argument 1, got instant vector", 5),
        (
            "abs(x[5m])",
            "function 'abs' expects an instant vector as argument 1, got range vector",
            4,
        ),
        ("sum(x[5m])", "aggregation 'sum' expects an instant vector, got range vector", 4),
        ("topk(x, y)", "aggregation 'topk' expects a scalar parameter, got instant vector", 5),
        ("topk(y)", "aggregation 'topk' takes 2 arguments, got 1", 0),
        ("sum(a, b)", "aggregation 'sum' takes 1 argument, got 2", 0),
        ("clamp_min(x)", "function 'clamp_min' takes 2 arguments, got 1", 0),
        ("round(x, 1, 2)", "function 'round' takes 1 or 2 arguments, got 3", 0),
        ("time(1)", "function 'time' takes 0 arguments, got 1", 0),
        (
            "x[5m] * 2",
            "operator '*' needs scalar or instant vector operands, got a range vector",
            0,
        ),
        ("-x[5m]", "unary '-' needs a scalar or instant vector, got a range vector", 0),
        ("1 > 2", "comparisons between scalars must use the bool modifier", 2),
        ("x + bool 1", "bool modifier can only be used on comparison operators", 4),
        ("x + on(a) 1", "vector matching (on/ignoring) is only allowed between instant vectors", 2),
        ("x = 1", "unexpected '=': use '==' to compare", 2),
        ("x{a=1}", "expected a quoted string value for label 'a', got '1'", 4),
        ("x{a~'b'}", "unexpected character '~'", 3),
        ('x{a="b" c="d"}', "expected ',' or '}' in label matchers, got 'c'", 8),
        ('x{a="b}', "unterminated string literal", 4),
        (
            '{a=~".*"}',
            "vector selector must contain at least one matcher that does not match the empty string",
            0,
        ),
        ("{}", "vector selector must contain at least one matcher", 0),
        ('x{__name__="y"}', "metric name must not be set twice", 0),
        ('x{a=~"("}', "invalid regular expression '(' for label 'a'", 5),
        ("x[-5]", "expected a duration like 5m or a number of seconds inside [..], got '-'", 2),
        ("x[0s]", "range must be greater than zero", 2),
        ("x[30m1h]", "bad number or duration '30m1h'", 2),
        ("x offset 5m [5m]", "offset must come after the range: x[5m] offset 1h", 12),
        ("x offset 1m offset 2m", "offset may not be set multiple times", 12),
        ("sum(x) offset 5m", "offset must follow a selector", 7),
        ("x[5m][5m]", "a range selector cannot take a second range", 5),
        ("5m[1m]", "ranges are only allowed on vector selectors", 2),
        ("x y", "unexpected 'y': expected an operator or end of input", 2),
        ("(x", "expected ')', got end of input", 2),
        ("x +", "unexpected end of input: expected an expression", 3),
        ("sum", "aggregation 'sum' needs its argument in parentheses", 0),
        ("sum by (a)", "expected '(' after aggregation 'sum', got end of input", 10),
        ("sum by (a-b) (x)", "expected ',' or ')' in 'by' (...), got '-'", 9),
        ('x{a:b="c"}', "invalid label name 'a:b'", 2),
        (
            '{"quoted.name"}',
            "quoted metric or label names (Prometheus 3 UTF-8 syntax) are not supported",
            1,
        ),
        (
            "x > 010",
            "ambiguous number '010': Prometheus reads a leading zero as octal (8); write 8 or 10",
            4,
        ),
        (  # RE2 syntax as Prometheus: a lookahead is Python-only (POSIX classes now work)
            'x{a=~"(?=b)b"}',
            "invalid regular expression '(?=b)b' for label 'a' (RE2 syntax): invalid perl operator: (?=",
            5,
        ),
        ("0b101", "bad number or duration '0b101'", 0),
        ("1_000", "bad number or duration '1_000'", 0),
    ],
)
def test_malformed_expressions_name_the_problem_and_position(
    text: str, message: str, position: int
) -> None:
    with pytest.raises(QueryError) as info:
        parse_expr(text)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.position == position


@pytest.mark.parametrize(
    "text",
    [
        "sum by (shard) (rate(http_requests_total[5m]))",
        'avg_over_time(image_processing_time{host="a"}[5m]) > 4',
        "x offset 1h",
        "topk by (a) (3, x)",
        "a > bool on (job) b",
        "-(1) + -2 * -x ^ 2",
        "clamp(x, 0, 1) / ignoring (code) y",
        "sum without () (x)",
        "quantile_over_time(0.99, x[1d])",
    ],
)
def test_printed_expressions_are_canonical_and_reparse_identically(text: str) -> None:
    e = parse_expr(text)
    assert str(e) == text
    assert parse_expr(str(e)) == e


def test_operator_modifiers_are_not_bare_metric_names() -> None:
    # found by Hypothesis: `a++bool` parsed, but printed back as `a + +bool`, which does not
    for text in ("a++bool", "a<+on", "ignoring", "x * -group_left"):
        with pytest.raises(QueryError, match="is a keyword"):
            parse_expr(text)
    assert parse_expr('{__name__="bool"}').selectors()[0].metric_name == "bool"
