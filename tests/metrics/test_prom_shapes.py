"""``*.prom`` files on the frames path: a file whose shape the store knows is stored from its
values alone, and stores what the full parse would have stored.

The contract (see :func:`signalbox.metrics.parse.promtext.prometheus_shape`): two files of
one shape -- the text without its values, comments (``# HELP``, ``# TYPE``) kept where they
stand -- parse to the same series, metadata and errors, in the same order, and the shape's
values are the parse's values. A file with a timestamp has no shape: it is parsed every pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector, PassReport
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.parse.promtext import parse_prometheus, prometheus_shape
from signalbox.metrics.samples import Labels, Matcher
from signalbox.metrics.spool import SpoolScan, scan_spool
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import MetricStore
from signalbox.storage import open_database
from tests.metrics.test_parse import label_sets, metric_names, norm, sample_values, text_value
from tests.stores import pg_schema_url, sqlite_url

NOW = 1_700_000_000.0
H = (("host", "h"),)


# -- the shape, against the parser ----------------------------------------------------------


def render(
    rows: list[tuple[str, Labels, float]], style: int, comment_at: int, meta: str = ""
) -> str:
    lines = []
    for i, (name, labels, value) in enumerate(rows):
        if i == comment_at:
            lines += [f"# HELP {name} {meta or 'Some help.'}", f"# TYPE {name} gauge", ""]
        inner = ",".join(f'{k}="{v}"' for k, v in labels)
        lab = "{" + inner + "}" if labels or style == 3 else ""
        sep = ("  ", " ")[style % 2]
        lines.append(f"{name}{lab}{sep}{text_value(value, style)}")
    return "\n".join(lines) + "\n"


ascii_labels = label_sets.map(
    lambda ls: tuple((k, "".join(c for c in v if c.isascii() and c.isalnum())) for k, v in ls)
)


@given(
    rows=st.lists(st.tuples(metric_names, ascii_labels, sample_values), max_size=8),
    other_values=st.lists(sample_values, min_size=8, max_size=8),
    style=st.integers(0, 3),
    comment_at=st.integers(-1, 8),
)
def test_files_of_one_shape_parse_alike_and_the_shape_carries_the_values(
    rows: list[tuple[str, Labels, float]],
    other_values: list[float],
    style: int,
    comment_at: int,
) -> None:
    first = render(rows, style, comment_at)
    rows2 = [(n, labels, v) for (n, labels, _), v in zip(rows, other_values, strict=False)]
    second = render(rows2, style, comment_at)
    s1, s2 = prometheus_shape(first), prometheus_shape(second)
    assert s1 is not None and s2 is not None  # rendered files have a shape
    assert s1[0] == s2[0]
    p1, p2 = parse_prometheus(first, "a.prom"), parse_prometheus(second, "a.prom")
    if p1.errors:  # e.g. a duplicate series: never registered as a layout
        return
    assert p2.errors == [] and p2.metas == p1.metas
    assert norm(p2.samples) == norm(
        [s._replace(value=v) for s, v in zip(p1.samples, s2[1], strict=True)]
    )


@given(text=st.text(st.sampled_from('ab_{}="\\ =#\n\t1.5eE+-x,HELPTYPE'), max_size=60))
def test_any_text_with_a_shape_and_a_clean_parse_has_the_parse_values(text: str) -> None:
    shape = prometheus_shape(text)
    parsed = parse_prometheus(text, "f.prom")
    if shape is None or parsed.errors:
        return
    assert len(parsed.samples) == len(shape[1])
    for s, v in zip(parsed.samples, shape[1], strict=True):
        assert s.timestamp_ms is None
        assert s.value == v or (math.isnan(s.value) and math.isnan(v))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("# HELP m One.\nm 1\n", "# HELP m Two.\nm 1\n"),  # HELP is part of the shape
        ("# TYPE m gauge\nm 1\n", "# TYPE m counter\nm 1\n"),
        ("# TYPE m gauge\nm 1\n", "m 1\n# TYPE m gauge\n"),  # where a comment stands
        ('m{a="1"} 1\n', 'm{a="2"} 1\n'),
        ("m 1\nn 2\n", "n 2\nm 1\n"),  # line order
    ],
)
def test_what_the_parser_reads_besides_values_changes_the_shape(a: str, b: str) -> None:
    sa, sb = prometheus_shape(a), prometheus_shape(b)
    assert sa is not None and sb is not None and sa[0] != sb[0]


@pytest.mark.parametrize(
    "text",
    [
        "m 1 1700000000000\n",  # a timestamp: checked against each pass's time
        'm{a="1"} 1 1700000000000\nn 2\n',
        "m\n",  # no value
        "m one\n",
        "  m 1\n",  # indented: the line parser's
        'm{a="\u00e9"} 1\n',  # non-ASCII
        "m\t1\n",
    ],
)
def test_files_parsed_every_pass_have_no_shape(text: str) -> None:
    assert prometheus_shape(text) is None


# -- through the collector: frames against the full parse ------------------------------------


class Recording(Collector):
    """A collector that keeps each pass's scan; ``frames=False`` reads every file fully (the
    reference the frames path must equal)."""

    def __init__(self, *args: object, frames: bool = True, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.frames = frames
        self.scans: list[SpoolScan] = []

    def _scan(self, now_ms: int, *, frames: bool, careful: bool = False) -> SpoolScan:
        scan = scan_spool(
            self.spool_dir,
            now_ms=now_ms,
            max_file_bytes=self.max_file_bytes,
            stale_after_s=self.stale_after_s,
            layouts=self.store.known_layouts(H) if frames and self.frames else None,
            careful=careful,
        )
        self.scans.append(scan)
        return scan


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[MetricStore, ...]]:
    """Two empty stores of one backend: one for the frames path, one for the reference."""
    clock = FrozenClock(NOW)
    if request.param == "memory":
        yield MemoryMetricStore(), MemoryMetricStore()
        return
    if request.param == "sqlite":
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = SQLMetricStore(open_database(sqlite_url(tmp_path / "a")), clock=clock)
        b = SQLMetricStore(open_database(sqlite_url(tmp_path / "b")), clock=clock)
        yield a, b
    else:
        with pg_schema_url() as ua, pg_schema_url() as ub:
            a = SQLMetricStore(open_database(ua), clock=clock)
            b = SQLMetricStore(open_database(ub), clock=clock)
            yield a, b
    a.close()
    b.close()


def contents(store: MetricStore) -> dict[tuple[str, Labels], tuple[object, ...]]:
    out: dict[tuple[str, Labels], tuple[object, ...]] = {}
    for sp in store.select([Matcher("__name__", "=~", ".+")], 0, 2**62):
        if sp.name == "signalbox_collect_duration_seconds":
            continue
        values = ["NaN" if math.isnan(v) else v for v in sp.values]
        out[(sp.name, sp.labels)] = (list(zip(sp.timestamps, values, strict=True)), sp.stale)
    return out


def problems(report: PassReport) -> list[tuple[str, int, str, str]]:
    return sorted((p.file, p.line, p.reason, p.kind) for p in report.problems)


A1 = '# HELP up Is it up.\n# TYPE up gauge\nup{job="a"} 1\nup{job="b"} 0\n# a note\nreqs_total 10\n'
B1 = '# TYPE lat summary\nlat{quantile="0.5"} 0.25\nlat_sum 5\nlat_count 50\n'
STEPS: list[dict[str, str | None]] = [
    {"a.prom": A1, "b.prom": B1},
    {
        "a.prom": A1.replace("} 1", "} 2").replace(" 10", " 12"),
        "b.prom": B1.replace("lat_sum 5", "lat_sum NaN"),
    },
    {"a.prom": A1.replace(" 10", " +Inf"), "b.prom": B1.replace("50", "51")},
    {"a.prom": A1 + 'up{job="c"} 1\n', "b.prom": B1},  # a line added
    {"a.prom": A1.replace("0\n", "1\n") + 'up{job="c"} 1\n', "b.prom": B1},
    {"a.prom": A1.replace("Is it up.", "Whether it answers."), "b.prom": B1},  # HELP changed
    {"a.prom": A1.replace("Is it up.", "Whether it answers.").replace("1\n", "3\n"), "b.prom": B1},
    {"a.prom": A1.replace('up{job="b"} 0\n', ""), "b.prom": B1},  # a line removed
    {"a.prom": A1.replace('up{job="b"} 0\n', "up{job=b} 0\n"), "b.prom": B1},  # a bad line
    {"a.prom": A1, "b.prom": B1 + "# TYPE late gauge\nlate 1\n# TYPE late gauge\n"},  # an error
    {"a.prom": A1, "b.prom": B1 + "reqs_total 99\n"},  # a duplicate of a's series
    {"a.prom": A1, "b.prom": B1 + "reqs_total 99\n"},
    {"a.prom": A1.replace(" 10", f" 10 {int(NOW * 1000) + 8 * 60_000}"), "b.prom": B1},
    {"a.prom": A1, "b.prom": None},  # a file removed
    {"a.prom": A1.replace("1\n", "5\n"), "b.prom": B1},
]


def test_prom_files_through_frames_store_what_the_full_parse_stores(
    stores: tuple[MetricStore, MetricStore], tmp_path: Path
) -> None:
    framed, reference = stores
    spool = tmp_path / "spool"
    spool.mkdir()
    clock = FrozenClock(NOW)
    kw = {"spool_dir": spool, "host": "h", "clock": clock, "stale_after_s": 3600.0}
    ours = Recording(framed, **kw)
    full = Recording(reference, frames=False, **kw)
    for i, files in enumerate(STEPS):
        clock.set(NOW + 60 * i)
        for name, text in files.items():
            if text is None:
                (spool / name).unlink()
                continue
            (spool / name).write_text(text)
            os.utime(spool / name, (clock.now(), clock.now()))
        mine, theirs = ours.run_once(), full.run_once()
        assert problems(mine) == problems(theirs), f"pass {i}"
        assert mine.stored == theirs.stored, f"pass {i}"
        assert contents(framed) == contents(reference), f"pass {i}"
        assert framed.metadata() == reference.metadata(), f"pass {i}"
        if i == 6:  # the new HELP, stored by the pass that parsed it, kept through frames
            assert framed.metadata()["up"].help == "Whether it answers."
    frames = [sum(1 for _ in s.frames) for s in ours.scans]
    assert sum(frames) >= 8  # the frames path was really taken, pass after pass
    assert frames[1] == 2 and frames[2] == 2  # both files: values changed, nothing else
    assert frames[3] == 1  # a's new line: a new shape, parsed
    assert all(not s.frames for s in full.scans)
    assert contents(framed)[("up", (("host", "h"), ("job", "b")))][1]  # ended: a marker


def newest(store: MetricStore) -> list[tuple[object, ...]]:
    """Every series' newest sample (cheaper than :func:`contents` over 20k series)."""
    rows = store.latest([Matcher("__name__", "!=", "signalbox_collect_duration_seconds")])
    return sorted((n, ls, ts, "NaN" if math.isnan(v) else v) for n, ls, ts, v in rows)


def test_a_first_pass_of_20k_new_series_stores_what_the_full_parse_stores(
    stores: tuple[MetricStore, MetricStore], tmp_path: Path
) -> None:
    """A realistic first pass: 40 files of 500 series (with and without labels, one file
    with a duplicate of another's series and a bad line), ``.metrics`` and ``.prom``."""
    framed, reference = stores
    spool = tmp_path / "spool"
    spool.mkdir()
    for f in range(40):
        if f % 2:
            lines = [f'app_{f % 4}_latency{{shard="{j}",dc="x{f}"}} {j / 7}' for j in range(500)]
            text = f"# TYPE app_{f % 4}_latency gauge\n" + "\n".join(lines) + "\n"
            (spool / f"app{f:02d}.prom").write_text(text)
        else:
            lines = [f"app{f}.metric-{j}={j * 3}" for j in range(500)]
            if f == 10:
                lines += ["app0.metric-7=1", "not a line"]  # a duplicate of app00's, a bad line
            (spool / f"app{f:02d}.metrics").write_text("\n".join(lines) + "\n")
    clock = FrozenClock(NOW)
    for p in spool.iterdir():
        os.utime(p, (NOW, NOW))
    kw = {"spool_dir": spool, "host": "h", "clock": clock}
    mine = Recording(framed, **kw).run_once()
    theirs = Recording(reference, frames=False, **kw).run_once()
    assert mine.new_series == theirs.new_series >= 20_000
    assert mine.stored == theirs.stored
    assert len(framed.known_layouts(H)) == 39  # every file but the one with the duplicate
    assert problems(mine) == problems(theirs)
    assert any(p.kind == "duplicate" for p in mine.problems)
    assert newest(framed) == newest(reference)
    assert framed.metadata() == reference.metadata()
    clock.set(NOW + 60)
    for p in spool.iterdir():
        os.utime(p, (NOW + 60, NOW + 60))
    ours = Recording(framed, **kw)
    second = ours.run_once()
    Recording(reference, frames=False, **kw).run_once()
    assert second.new_series == 0 and len(ours.scans[-1].frames) >= 38
    assert newest(framed) == newest(reference)
