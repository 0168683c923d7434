"""Spool file shapes: a file read before is stored by its values alone, with the same result.

The contract: two ``*.metrics`` files with the same shape (the text left of each ``=``)
parse to the same series in the same order, so a pass that sends only the values of a file
of a known shape stores exactly what a full parse would have stored.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.parse.keyvalue import keyvalue_shape, parse_keyvalue
from signalbox.metrics.samples import Labels, Matcher, SeriesColumns
from signalbox.metrics.spool import scan_spool, shape_digest
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.metrics.test_parse import (
    graphite_names,
    label_sets,
    norm,
    sample_values,
    text_labels,
    text_value,
)

NOW = 1_700_000_000.0


def render(rows: list[tuple[str, Labels, float]], style: int, comment_at: int) -> str:
    lines = []
    for i, (name, labels, value) in enumerate(rows):
        if i == comment_at:
            lines += ["# a comment with = and {braces}", ""]
        eq = (" = ", "=", "\t=  ")[style % 3]
        lab = text_labels(labels, spaced=style == 4, trailing_comma=style == 5)
        lines.append(f"{name}{lab}{eq}{text_value(value, style)}")
    return "\n".join(lines) + "\n"


@given(
    rows=st.lists(st.tuples(graphite_names, label_sets, sample_values), max_size=10),
    other_values=st.lists(sample_values, min_size=10, max_size=10),
    style=st.integers(0, 5),
    comment_at=st.integers(-1, 10),
)
def test_files_of_one_shape_parse_to_the_same_series_and_the_shape_carries_the_values(
    rows: list[tuple[str, Labels, float]],
    other_values: list[float],
    style: int,
    comment_at: int,
) -> None:
    first = render(rows, style, comment_at)
    rows2 = [(n, labels, v) for (n, labels, _), v in zip(rows, other_values, strict=False)]
    second = render(rows2, style, -1)
    s1, s2 = keyvalue_shape(first), keyvalue_shape(second)
    assert s1 is not None and s2 is not None  # rendered files are always clean
    assert s1[0] == s2[0]  # comments and values are not part of the shape
    p1, p2 = parse_keyvalue(first, "a.metrics"), parse_keyvalue(second, "b.metrics")
    if p1.errors:  # e.g. two keys that sanitize to one name: never registered as a layout
        return
    assert p2.errors == []
    assert [(s.name, s.labels) for s in p2.samples] == [(s.name, s.labels) for s in p1.samples]
    assert norm(p2.samples) == norm(
        [s._replace(value=v) for s, v in zip(p1.samples, s2[1], strict=True)]
    )


@given(text=st.text(st.sampled_from('ab_.{}="\\ =#\n\t1.5eE+-x,'), max_size=60))
def test_any_text_with_a_shape_and_a_clean_parse_has_the_parse_values(text: str) -> None:
    shape = keyvalue_shape(text)
    parsed = parse_keyvalue(text, "f.metrics")
    if shape is None or parsed.errors:
        return
    assert len(parsed.samples) == len(shape[1])
    for s, v in zip(parsed.samples, shape[1], strict=True):
        assert s.value == v or (math.isnan(s.value) and math.isnan(v))


def write(path: Path, text: str) -> None:
    path.write_text(text)
    os.utime(path, (NOW, NOW))


def test_a_known_shape_becomes_a_frame_and_a_new_clean_one_a_layout(tmp_path: Path) -> None:
    write(tmp_path / "a.metrics", 'jobs=1\nlag{shard="1"}=2\n')
    write(tmp_path / "b.metrics", "# comment\nq = 7\n")
    write(tmp_path / "c.metrics", "bad line\nok=1\n")  # an error: never a layout
    kw = {"now_ms": int(NOW * 1000), "max_file_bytes": 1 << 20, "stale_after_s": 300.0}
    first = scan_spool(tmp_path, layouts=frozenset(), **kw)
    assert first.frames == []
    assert [n.size for n in first.new_layouts] == [2, 1]
    # names with and without labels: samples; lines of one kind: columns, no sample made
    assert first.new_layouts[0][1:] == (0, 2, None)
    assert first.new_layouts[1].columns == SeriesColumns(["q"], (), [], [7.0])
    assert len(first.samples) == 3
    known = frozenset(n.layout for n in first.new_layouts)
    write(tmp_path / "a.metrics", 'jobs=3\nlag{shard="1"}=4\n')
    again = scan_spool(tmp_path, layouts=known, **kw)
    assert [f.values for f in again.frames] == [[3.0, 4.0], [7.0]]
    assert [(s.name, s.value) for s in again.samples] == [("ok", 1.0)]
    assert again.sample_count == 4
    assert scan_spool(tmp_path, layouts=None, **kw).frames == []
    assert shape_digest('jobs\nlag{shard="1"}') == first.new_layouts[0].layout


def snapshot(store: object) -> dict[tuple[str, Labels], list[tuple[int, object]]]:
    out = {}
    for sp in store.select([Matcher("__name__", "=~", ".+")], 0, 2**62):  # type: ignore[attr-defined]
        if sp.name.startswith("signalbox_collect_duration"):
            continue
        values = ["NaN" if math.isnan(v) else v for v in sp.values]  # NaN != NaN
        out[(sp.name, sp.labels)] = list(zip(sp.timestamps, values, strict=True))
    return out


def test_passes_with_frames_store_what_passes_without_them_store(
    tmp_path: Path, store_url: str
) -> None:
    """Files that keep, change and lose their shape; a duplicate across files; NaN and Inf."""
    spool = tmp_path / "spool"
    spool.mkdir()
    clock = FrozenClock(NOW)
    sql = SQLMetricStore(open_database(store_url), clock=clock)
    mem = MemoryMetricStore()
    steps = [
        {"a.metrics": 'x=1\ny{k="1"}=2\n', "b.metrics": "z=5\n"},
        {"a.metrics": 'x=2\ny{k="1"}=3\n', "b.metrics": "z=6\n"},
        {"a.metrics": 'x=3\ny{k="1"}=4\nnew=1\n', "b.metrics": "z=nan\n"},
        {"a.metrics": 'x=3\ny{k="1"}=4\nnew=2\n', "b.metrics": "z=+Inf\nx=99\n"},  # dup of a's x
        {"a.metrics": 'x=4\ny{k="1"}=5\nnew=3\n', "b.metrics": "z=1\n"},
    ]
    reports = []
    for i, files in enumerate(steps):
        for name, text in files.items():
            write(spool / name, text)
            os.utime(spool / name, (NOW + 60 * i, NOW + 60 * i))
        clock.set(NOW + 60 * i)
        reports.append(Collector(sql, spool_dir=spool, host="h", clock=clock).run_once())
        Collector(mem, spool_dir=spool, host="h", clock=clock).run_once()
    assert snapshot(sql) == snapshot(mem)
    dup = [p for p in reports[3].problems if p.kind == "duplicate"]
    assert len(dup) == 1 and "also in a.metrics" in dup[0].reason
    assert snapshot(sql)[("x", (("host", "h"),))][3][1] == 3.0  # the first file wins
    assert sql.known_layouts((("host", "h"),))  # frames were really used
    sql.close()
