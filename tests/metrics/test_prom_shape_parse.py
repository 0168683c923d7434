"""A ``*.prom`` file with a shape is parsed from that shape (its lines split and its values
read once, for the shape and the parse both): the same answer as the line parser on any
text, and the shape text exactly as it was defined (stored layouts keep their digests)."""

from __future__ import annotations

import math
from itertools import accumulate, compress, repeat
from operator import lt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.parse.columns import float_column
from signalbox.metrics.parse.lex import Parsed, has_control_chars
from signalbox.metrics.parse.promtext import (
    _batch_of_shape,
    _prometheus_lines,
    _split_values,
    parse_prometheus,
    prometheus_shape,
    prometheus_shape_of,
)


def reference_shape(text: str) -> tuple[str, list[float]] | None:
    """The shape as it was first defined (the digest of stored layouts is of this text)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if has_control_chars(text) or not text.isascii():
        return None
    if text.startswith((" ", "\t")) or "\n " in text or "\n\t" in text:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    comments: list[str] = []
    where = ""
    if "#" in text or "" in lines:
        is_comment = list(map(str.startswith, lines, repeat("#")))
        is_sample = list(map(lt, is_comment, map(bool, lines)))
        comments = list(compress(lines, is_comment))
        where = ",".join(map(str, compress(accumulate(is_sample, initial=0), is_comment)))
        lines = list(compress(lines, is_sample))
    split = _split_values(lines)
    if split is None:
        return None
    lefts, texts = split
    joined = "".join(texts)
    if "" in texts or " " in joined or "\t" in joined:
        return None
    values = float_column(texts)
    if values is None:
        return None
    return "\n".join(lefts) + "\0" + where + "\0" + "\n".join(comments), values


def norm_values(values: list[float]) -> list[object]:
    return ["nan" if math.isnan(v) else (v, math.copysign(1, v)) for v in values]


def norm(p: Parsed) -> tuple[object, ...]:
    samples = [(s.name, s.labels, *norm_values([s.value]), s.timestamp_ms) for s in p.samples]
    return samples, p.metas, p.errors


line = st.one_of(
    st.sampled_from(
        [
            "# HELP m Help.",
            "# TYPE m counter",
            "# TYPE h histogram",
            "# TYPE s summary",
            "# TYPE m gauge",
            "# just a comment",
            "",
            "m 1",
            "m 2",
            "m_total 3",
            'h_bucket{le="1"} 2',
            'h_bucket{le="+Inf"} 3',
            'h_bucket{le="x"} 3',
            "h_bucket 1",
            "h_sum 4",
            "h_count 3",
            's{quantile="0.5"} 1',
            "s 1",
            "s_sum 2",
            'm{a="1"} 1',
            'm{a="1",b="2"} 2',
            'm{b="2",a="1"} 3',
            'm{a=""} 4',
            "m{} 5",
            'm{a="1"} 1 1700000000000',
            "m 1 2",
            "9m 1",
            "m\t1",
            "m  1",
            "m 1_0",
            "m NaN",
            "m -0",
            " m 1",
            'm{a="x y"} 1',
            'm{a="\\n"} 1',
            "m x",
            "m",
            "m{a=1} 2",
        ]
    ),
    st.text(st.sampled_from('m{}"=, #\t1a\\'), max_size=12),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(line, max_size=12), crlf=st.booleans())
def test_a_file_parsed_from_its_shape_reads_as_line_by_line(lines: list[str], crlf: bool) -> None:
    text = ("\r\n" if crlf else "\n").join(lines)
    want = norm(_prometheus_lines(text, "f.prom"))
    assert norm(parse_prometheus(text, "f.prom")) == want
    shape = prometheus_shape_of(text)
    ref = reference_shape(text)
    if shape is None:
        assert ref is None
        return
    assert ref is not None
    assert shape.text() == ref[0]
    assert norm_values(shape.values) == norm_values(ref[1])
    got = prometheus_shape(text)
    assert got is not None and got[0] == ref[0]
    assert norm(parse_prometheus(text, "f.prom", shape=shape)) == want
    fast = _batch_of_shape(shape)
    if fast is not None:
        assert norm(fast) == want


def test_clean_files_with_and_without_labels_take_the_shape_path() -> None:
    files = [
        "".join(f"app_metric_{i} {i}.5\n" for i in range(50)),
        "# HELP r Requests.\n# TYPE r counter\n"
        + "".join(f'r{{code="{i}",dc="x"}} {i}\n' for i in range(50)),
        '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\nu 7\n',
    ]
    for text in files:
        shape = prometheus_shape_of(text)
        assert shape is not None
        fast = _batch_of_shape(shape)
        assert fast is not None
        assert norm(fast) == norm(_prometheus_lines(text, "f.prom"))
