"""promtool's expanding notation: documented examples, its quirks, errors, properties, the peer."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.monitors.testing.notation import (
    MAX_SAMPLES,
    STALE,
    NotationError,
    Value,
    parse_series,
    parse_values,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-2+4x3", [-2.0, 2.0, 6.0, 10.0]),  # promtool docs, example 1
        (" 1-2x4", [1.0, -1.0, -3.0, -5.0, -7.0]),  # example 2
        (" 1x4", [1.0] * 5),  # example 3
        (" 1 _x3 stale", [1.0, None, None, None, STALE]),  # example 4
        ("1+2x3", [1.0, 3.0, 5.0, 7.0]),
        ("5x3", [5.0] * 4),
        ("_", [None]),
        ("_x0 1", [1.0]),
        ("1x0 2", [1.0, 2.0]),
        ("", []),
        ("1\t2\n3", [1.0, 2.0, 3.0]),
        ("1e3x2", [1000.0] * 3),
        ("1.5+.5x2 5. .25 -.5 1E+2 1e-3", [1.5, 2.0, 2.5, 5.0, 0.25, -0.5, 100.0, 0.001]),
        ("+5", [5.0]),
    ],
)
def test_expands_promtool_examples(text: str, expected: list[Value]) -> None:
    assert parse_values(text) == expected


def test_increments_accumulate_by_repeated_addition_like_promtool() -> None:
    assert parse_values("0.1+0.2x3") == [0.1, 0.1 + 0.2, 0.1 + 0.2 + 0.2, 0.1 + 0.2 + 0.2 + 0.2]
    assert parse_values("0.1+0.2x3")[-1] == 0.7  # not 0.1 + 3 * 0.2 == 0.7000000000000001


def test_leading_zero_integers_are_octal_and_repeat_counts_are_decimal() -> None:
    assert parse_values("010 -010 09 00012 0") == [8.0, -8.0, 9.0, 10.0, 0.0]
    assert parse_values("010+010x1") == [8.0, 16.0]
    assert len(parse_values("1x010")) == 11
    assert parse_values("0x3") == [0.0] * 4  # "0x3" is zero four times, not hexadecimal


def test_inf_and_nan_in_any_case_and_as_the_start_of_an_expansion() -> None:
    got = parse_values("Inf -inf +INF Inf+1x2")
    assert got[:3] == [math.inf, -math.inf, math.inf] and got[3:] == [math.inf] * 3
    nans = parse_values("NaN nan NaN+1x1")
    assert all(isinstance(v, float) and math.isnan(v) for v in nans) and len(nans) == 4


@pytest.mark.parametrize(
    ("text", "token", "position", "reason"),
    [
        ("1 2 3x", "3x", 4, "repeat count after 'x'"),
        ("1,2", "1,2", 0, "separated by spaces"),
        ("Infx2", "Infx2", 0, "write Inf+0x2"),
        ("NaNx2", "NaNx2", 0, "write NaN+0x2"),
        ("1 stalex2", "stalex2", 2, "'stale' stands alone"),
        ("1x2.5", "1x2.5", 0, "whole number"),
        ("1+2", "1+2", 0, "needs a repeat count"),
        ("1 - 2", "-", 2, "sign must be written next to its number"),
        ("1e400", "1e400", 0, "out of range"),
        ("_+1x3", "_+1x3", 0, "'_' (missing sample)"),
        ("1+2X3", "1+2X3", 0, "lowercase x"),
        ("1_000", "1_000", 0, "expected a number"),
        ("0b11", "0b11", 0, "expected a number"),
        ("1+Infx2", "1+Infx2", 0, "must be a finite number"),
        ("  abc", "abc", 2, "expected a number, _, stale"),
        ("STALE", "STALE", 0, "lowercase"),
        ("1x-3", "1x-3", 0, "whole number"),
    ],
)
def test_errors_name_the_token_and_its_position(
    text: str, token: str, position: int, reason: str
) -> None:
    with pytest.raises(NotationError) as err:
        parse_values(text)
    assert err.value.token == token and err.value.position == position
    assert reason in str(err.value) and repr(token) in str(err.value)


def test_refuses_expansions_past_the_sample_limit_instead_of_hanging() -> None:
    with pytest.raises(NotationError, match="more than 1,000,000 samples"):
        parse_values("1x18446744073709551616")
    with pytest.raises(NotationError, match="more than"):
        parse_values(f"1x{MAX_SAMPLES // 2} 2x{MAX_SAMPLES // 2}")
    assert len(parse_values(f"_x{MAX_SAMPLES}")) == MAX_SAMPLES


def test_series_descriptions_give_name_and_sorted_labels() -> None:
    assert parse_series('image_processing_time{shard="7", host="web1"}') == (
        "image_processing_time",
        (("host", "web1"), ("shard", "7")),
    )
    assert parse_series("up") == ("up", ())
    assert parse_series('{__name__="up", job="x"}') == ("up", (("job", "x"),))
    assert parse_series('up{job=""}') == ("up", ())  # empty value: no such label


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('up{job=~"x"}', "uses '=~'"),
        ("sum(up)", "expected a metric name with labels"),
        ('{job="x"}', "needs a metric name"),
        ("up[5m]", "expected a metric name with labels"),
        ('up{job="a", job="b"}', "given twice"),
        ("up{", "bad series"),
        ("up @ 100", "bad series"),
    ],
)
def test_bad_series_descriptions_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(NotationError, match=reason.replace("(", r"\(")):
        parse_series(text)


# -- properties -----------------------------------------------------------------------------

_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_counts = st.integers(min_value=0, max_value=6)
_item = st.one_of(
    st.tuples(st.just("value"), st.one_of(_finite, st.sampled_from([math.inf, -math.inf]))),
    st.tuples(st.just("repeat"), _finite, _counts),
    st.tuples(st.just("step"), _finite, _finite, _counts),
    st.tuples(st.just("blank"), st.one_of(st.none(), _counts)),
    st.tuples(st.just("stale")),
)


def _render(item: tuple[object, ...]) -> tuple[str, list[Value]]:
    """The notation for one item, and its expansion computed independently of the parser."""
    kind = item[0]
    if kind == "value":
        v = float(item[1])  # type: ignore[arg-type]
        return repr(v), [v]
    if kind == "repeat":
        v, n = float(item[1]), int(item[2])  # type: ignore[call-overload]
        return f"{v!r}x{n}", [v] * (n + 1)
    if kind == "step":
        a, b, n = float(item[1]), float(item[2]), int(item[3])  # type: ignore[call-overload]
        out: list[Value] = [a]
        for _ in range(n):
            a = a + b
            out.append(a)
        sign = "-" if math.copysign(1.0, b) < 0 else "+"
        return f"{float(item[1])!r}{sign}{abs(b)!r}x{n}", out
    if kind == "blank":
        n = item[1]
        return ("_", [None]) if n is None else (f"_x{n}", [None] * int(n))  # type: ignore[call-overload]
    return "stale", [STALE]


@given(
    st.lists(_item, max_size=8),
    st.lists(st.sampled_from([" ", "  ", "\t", "\n"]), min_size=9, max_size=9),
)
def test_any_sequence_of_forms_expands_to_its_model(
    items: list[tuple[object, ...]], gaps: list[str]
) -> None:
    rendered = [_render(i) for i in items]
    text = gaps[0] + "".join(t + gap for (t, _), gap in zip(rendered, gaps[1:], strict=False))
    expected = [v for _, vs in rendered for v in vs]
    got = parse_values(text)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g == e or (
            isinstance(g, float) and isinstance(e, float) and math.isnan(g) and math.isnan(e)
        )


@given(st.text(alphabet=st.sampled_from(list("0123456789.+-xeE_ stalInfNa,")), max_size=30))
def test_any_text_either_parses_or_raises_a_notation_error_pointing_into_it(text: str) -> None:
    try:
        values = parse_values(text)
    except NotationError as e:
        assert text[e.position : e.position + len(e.token)] == e.token and e.token.strip()
    else:
        assert all(v is None or v == STALE or isinstance(v, float) for v in values)


# -- the peer: promtool itself ----------------------------------------------------------------

PEER_CASES = [
    "-2+4x3",
    "1-2x4",
    "1x4",
    "1 _x3 stale 4",
    "0.1+0.2x3",
    "010 09 00012",
    "1x010",
    "_x0 5 1e3x2",
    "Inf -Inf Inf+1x1",
    "1.5+.5x2 5. .25 -.5 1E+2",
    "0x3",
]


def _yaml_number(v: float) -> str:
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    return repr(v)


@pytest.mark.peer("promtool")
def test_promtool_reads_every_case_exactly_as_we_do(tmp_path: Path) -> None:
    expanded = {f"c{i}": parse_values(text) for i, text in enumerate(PEER_CASES)}
    (tmp_path / "rules.yml").write_text("groups: []\n")
    lines = [
        "rule_files: [rules.yml]",
        "evaluation_interval: 1m",
        "tests:",
        "  - interval: 1m",
        "    input_series:",
    ]
    for i, text in enumerate(PEER_CASES):
        lines += [f"      - series: 'x{{case=\"c{i}\"}}'", f"        values: '{text}'"]
    lines.append("    promql_expr_test:")
    for k in range(max(len(v) for v in expanded.values()) + 1):
        lines += [
            "      - expr: sum by (case) (last_over_time(x[59s]))",
            f"        eval_time: {k}m",
            "        exp_samples:",
        ]
        present = [
            (c, vs[k]) for c, vs in expanded.items() if k < len(vs) and isinstance(vs[k], float)
        ]
        if not present:
            lines[-1] += " []"
        for case, v in sorted(present):
            assert isinstance(v, float)
            lines += [
                f"          - labels: '{{case=\"{case}\"}}'",
                f"            value: {_yaml_number(v)}",
            ]
    (tmp_path / "t.yml").write_text("\n".join(lines) + "\n")
    r = subprocess.run(
        ["promtool", "test", "rules", "t.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
