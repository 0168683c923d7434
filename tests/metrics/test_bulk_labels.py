"""The bulk path for labelled ``*.metrics`` files of one name (every line cut at the first
line's ``NAME{`` and its label values split into columns at once) answers exactly what the
line parser answers -- samples, metadata, errors with their lines -- on any text, hostile
text included, and is the path clean labelled files take."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.parse.columns import PairCache
from signalbox.metrics.parse.keyvalue import (
    _batch_of_columns,
    _columns,
    _keyvalue_lines,
    _one_name,
    keyvalue_shape,
    parse_keyvalue,
)
from signalbox.metrics.parse.lex import Parsed


def norm(p: Parsed) -> tuple[object, ...]:
    """Comparable form: NaN values as a marker (NaN != NaN), -0.0 told from 0.0."""
    samples = [
        (s.name, s.labels, "nan" if math.isnan(s.value) else (s.value, math.copysign(1, s.value)))
        for s in p.samples
    ]
    return samples, p.metas, p.errors


def line_shape(text: str) -> str | None:
    """The shape as the line-wise columns give it: each kept line's text left of its last
    ``=``, blanks stripped, comments and blank lines left out."""
    lines = [
        ln.strip(" \t") for ln in text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    ]
    return "\n".join(ln.rpartition("=")[0].rstrip(" \t") for ln in lines if ln and ln[0] != "#")


def agree(text: str) -> Parsed:
    """Both paths on ``text``: the same answer; the shape, when there is one, the lines'."""
    got = parse_keyvalue(text, "f.metrics")
    assert norm(got) == norm(_keyvalue_lines(text, "f.metrics"))
    shape = keyvalue_shape(text)
    if shape is not None:
        assert shape[0] == line_shape(text)
    return got


benign = st.sampled_from(["1", "2", "x", "a b", "inf", "é", "1.5", "a=b", "{}", "#"])
hostile = st.text(
    st.sampled_from(['"', "\\", "\n", "{", "}", "=", ",", " ", "#", "a", "1", "é", "\t", "\r"]),
    max_size=3,
)
metric = st.sampled_from(["m", "m.x", "m-x", "inf", "nan", "a:b"])
bad_metric = st.sampled_from(["m_x", "9m", " m", "m ", "#m", "", "other"])
value = st.sampled_from(["1", "2.5", "-0", "NaN", "+Inf", "1e3", " 2", "3 "])
bad_value = st.sampled_from(["1_0", "x", "", "4=5", "1}", "--1"])


@st.composite
def one_name_files(draw: st.DrawFn) -> str:
    """Files of one name and one label order (those the bulk path takes), bent in a few
    places: another name or label order, a duplicate, an empty or hostile label value, a
    bad value, a comment, a blank line, a broken line."""
    name = draw(metric)
    names = draw(st.lists(st.sampled_from(["a", "b", "shard", "le"]), min_size=1, max_size=3))
    names = list(dict.fromkeys(names))
    rows = [[draw(benign) for _ in names] for _ in range(draw(st.integers(1, 8)))]
    lines = [
        name
        + "{"
        + ",".join(f'{k}="{v}"' for k, v in zip(names, row, strict=True))
        + "}="
        + draw(value)
        for row in rows
    ]
    for _ in range(draw(st.integers(0, 2))):  # bends
        at = draw(st.integers(0, len(rows) - 1))
        row = list(rows[at])
        head, order, val = name, list(names), draw(value)
        what = draw(st.integers(0, 9))
        if what == 0:
            head = draw(bad_metric)
        elif what == 1:
            order.reverse()
            row.reverse()
        elif what == 2:
            row[0] = ""
        elif what == 3:
            row[-1] = draw(hostile)
        elif what == 4:
            val = draw(bad_value)
        elif what == 5:
            order[0] = draw(st.sampled_from(["__x", "9x", "a b", "b", "a"]))
        text = (
            head
            + "{"
            + ",".join(f'{k}="{v}"' for k, v in zip(order, row, strict=True))
            + "}="
            + val
        )
        if what == 6:
            text = draw(st.sampled_from(["# c", "", "  ", text[:-1], text + "}", " " + text]))
        elif what == 7:
            lines.append(lines[at])  # a duplicate series
            continue
        lines[at] = text
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n"]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(one_name_files())
def test_one_name_files_parse_as_line_by_line(text: str) -> None:
    agree(text)


fragments = st.sampled_from(
    [
        *["m", "inf", "nan", "{", "}", '"', "=", ",", "a=", 'a="', '"}=', "1", "1.5", "\n"],
        *[" ", "#", "\\", '""', 'm{a="', '",b="', "}=1\n", "\r\n", "\ufeff", "\x00", "é"],
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fragments, max_size=40))
def test_hostile_text_parses_as_line_by_line(pieces: list[str]) -> None:
    agree("".join(pieces))


@given(
    n=st.integers(1, 40),
    k=st.integers(1, 3),
    dot=st.booleans(),
    blanks=st.booleans(),
)
def test_clean_one_name_files_take_the_bulk_path(n: int, k: int, dot: bool, blanks: bool) -> None:
    """What the bulk path exists for takes it (that is the first pass's budget), and its
    samples share one name and one pair per repeated label value."""
    name = "app.req" if dot else "app_req"
    space = " " if blanks else ""
    labels = ["shard", "file", "line"][:k]
    text = "".join(
        name
        + "{"
        + ",".join(f'{lb}="{(i * (j + 1)) % 7 if j else i} x{j}"' for j, lb in enumerate(labels))
        + f"}}{space}={space}{i}.5\n"
        for i in range(n)
    )
    cols = _columns(text)
    assert cols is not None
    lefts, floats = cols
    pairs: PairCache = {}
    fast = _one_name(lefts, "\n".join(lefts), floats, False, pairs)
    assert fast is not None
    assert _batch_of_columns(cols, False, pairs) is not None
    assert norm(agree(text))[0] == norm(fast)[0]
    assert {s.name for s in fast.samples} == {"app_req"}
    assert len({id(s.name) for s in fast.samples}) == 1
    if k > 1:  # file="<i*2 % 7> x1": at most 7 distinct values, one pair object each
        assert len({id(dict(s.labels)["file"]) for s in fast.samples}) <= 7
        assert len({id(p) for s in fast.samples for p in s.labels if p[0] == "file"}) <= 7


def test_duplicates_and_bad_lines_keep_their_line_numbers() -> None:
    text = 'm{a="1"}=1\nm{a="2"}=2\nm{a="1"}=3\nm{a="3"}=x\n'
    got = agree(text)
    assert [(e.line, e.reason.split(":")[0]) for e in got.errors] == [
        (1, 'duplicate series m{a="1"}'),
        (4, "value 'x' is not a number"),
    ]
    assert [s.value for s in got.samples] == [2.0, 3.0]
