"""Rollups of series stored as frames (frame buckets) answer exactly what rollups of the same
samples stored as rows answer, and what the reference (:mod:`tests.query.bucketing`) computes,
in the 1m, 5m and 1h tiers, on SQLite and PostgreSQL.

Every sample is written twice in one store: once as a spool file's frames (metric ``f<x>``,
through registered layouts) and once as plain rows (metric ``r<x>``, the same labels and
times), as the collector's passes write them. The history holds several passes a minute and
minutes of one pass, NaN (single and in runs), counter resets, a file whose shape changes
mid-minute and mid-5m and changes back (one series in two layouts of a bucket: rows and
``absent``), plain samples of frame series in the same buckets as their frames, files of
different pass times and sizes, buckets on both sides of a partition boundary, an import over
history already rolled up (``rebuild``), and raw retention dropping the frames while buckets
still refer to their layouts. Each tier is read as a query stepping by its resolution reads it
(the clock beyond raw retention), a few positions of a layout (their bytes cut out in SQL) and
many (whole rows); 5m and 1h buckets are also built a few layouts at a time (the chunks of
``rollup._tier_bucket``), and PromQL range queries over the tiers answer as over the rows and
as over the raw samples.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import pytest

from signalbox.metrics.importer import import_openmetrics
from signalbox.metrics.labelcodec import encode_labels
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Matcher, Sample
from signalbox.metrics.sealed import Header
from signalbox.metrics.sql import rollup, sealing
from signalbox.metrics.store import POINT_COLUMNS, Frame, NewLayout, SeriesPoints
from signalbox.query import Engine
from tests.contracts.conftest import T0
from tests.query.bucketing import bucketize, merge

HOST = (("host", "web1"),)
S, M, H, DAY = 1000, 60_000, 3_600_000, 86_400_000
B = T0 - T0 % H  # a whole hour
END = B + 3 * H  # every read is of (B, END]: three 1h buckets
COMPACT_AT = B + 4 * H  # every tier built past END; raw kept (1 day)
READ_AT = B + 2 * DAY  # beyond raw retention: selects are answered by the tiers
TIERS = (60, 300, 3600)
NAN, INF = math.nan, math.inf

Key = tuple[str, Labels]


@dataclass(frozen=True)
class File:
    """A spool file's shape: metric ``f<base>`` (its twin of rows: ``r<base>``), one series
    per member, label ``label="<member>"``, in line order."""

    base: str
    label: str
    digest: bytes
    members: tuple[int, ...]

    def labels(self, member: int) -> Labels:
        return tuple(sorted((*HOST, (self.label, str(member)))))


A1 = File("a", "i", b"file-a-shape-one", (0, 1, 2, 3, 4, 5))
# the shape after a change: two series gone, two new, the rest at other positions
A2 = File("a", "i", b"file-a-shape-two", (6, 0, 1, 2, 3, 7))
FB = File("b", "j", b"file-b-----shape", (0, 1, 2))
FC = File("c", "k", b"file-c-----shape", (0,))
FD = File("d", "l", b"file-d-----shape", (0, 1, 2, 3, 4))  # another writer's pass times
SHAPE_TWO = (B + 12 * M + 30 * S, B + 37 * M + 40 * S)  # file a has shape two in between


def value(f: File, member: int, ts: int) -> float:
    """A counter reset every 17 steps, a gauge with a NaN now and then, a constant, a gauge of
    fractions, a counter with runs of NaN: by member."""
    n = (ts - B) // S
    offset = 100.0 * (ord(f.base) - ord("a"))
    kind = member % 5
    if kind == 0:
        return offset + float(n * 3 % 51)
    if kind == 1:
        return NAN if n % 7 == 3 else round(math.sin(n) * 100, 3) + offset
    if kind == 2:
        return 5.0
    if kind == 3:
        return 1e3 + (n * 37 % 101) / 8
    return NAN if (n // 10) % 4 == 1 else float(n % 13)


def passes() -> list[tuple[int, list[File]]]:
    """(time, files) of every collection pass: over the first 70 minutes one pass a minute
    (one-frame buckets), four (one on the minute edge: the previous bucket's, from the next
    raw partition every 5 minutes), or two; file d by another writer, every other minute at
    :33. Then a few around B + 2h, where the 1m tier's day-long partitions change: file a in
    shape two 40 s before (the pass exactly at 2h, in shape one, is the same bucket's) and
    one in the next 5 minutes."""
    out: list[tuple[int, list[File]]] = []
    for m in range(70):
        for s in {0: (20,), 1: (0, 15, 30, 45), 2: (10, 40)}[m % 3]:
            ts = B + m * M + s * S
            a = A2 if SHAPE_TWO[0] <= ts < SHAPE_TWO[1] else A1
            out.append((ts, [a, FB, FC]))
        if m % 2 == 0:
            out.append((B + m * M + 33 * S, [FD]))
    late = B + 2 * H
    out += [(late - 40 * S, [A2, FB, FC]), (late - 7 * S, [FD])]
    out += [(late + s * S, [A1, FB, FC]) for s in (0, 20, 310)] + [(late + 61 * S, [FD])]
    return sorted(out, key=lambda p: p[0])


# plain (stamped) samples of frame series between their passes: in the bucket of their frames
# (the first in the minute file a changes shape, the third a NaN)
PLAIN = [
    (B + 12 * M + 55 * S, FB, 1, 7.0),
    (B + 20 * M + 5 * S, A1, 2, 42.0),
    (B + 50 * M + 50 * S, A1, 3, NAN),
    (B + 51 * M + 1 * S, FD, 4, 3.5),
]
# imported later, over history already rolled up
IMPORTED = [
    (B + 5 * M + 7 * S, A1, 2, 11.0),
    (B + 30 * M + 30 * S, FD, 4, 12.0),
    (B + 44 * M + 59 * S, A1, 1, NAN),
    (B + 61 * M + 1 * S, FC, 0, -4.0),
]


class Raw:
    """Every sample written, per series, to compute the reference from."""

    def __init__(self) -> None:
        self.samples: dict[Key, list[tuple[int, float]]] = {}

    def add(self, name: str, labels: Labels, ts: int, v: float) -> None:
        self.samples.setdefault((name, labels), []).append((ts, v))

    def series(self, key: Key) -> SeriesPoints:
        got = sorted(self.samples[key])
        return SeriesPoints(key[0], key[1], [t for t, _ in got], [v for _, v in got])


def write_history(store: Any, compacting: bool = False) -> Raw:
    """Every pass and plain sample, frames and rows alike, as the collector writes them
    (``compacting``: and compacts, at the first write of a minute after its :31)."""
    raw = Raw()
    events: list[tuple[int, Any]] = [(ts, files) for ts, files in passes()]
    events += [(ts, (f, member, v)) for ts, f, member, v in PLAIN]
    last = B
    for ts, what in sorted(events, key=lambda e: e[0]):
        if compacting and (ts - 31 * S) // M > (last - 31 * S) // M:
            store.compact(ts)
        last = ts
        if isinstance(what, tuple):  # a stamped sample of a frame series and its twin
            f, member, v = what
            labels = f.labels(member)
            store.write(
                [Sample("f" + f.base, labels, v, ts), Sample("r" + f.base, labels, v, ts)],
                ts,
                add_labels=HOST,
            )
            raw.add("f" + f.base, labels, ts, v)
            raw.add("r" + f.base, labels, ts, v)
            continue
        known = store.known_layouts(HOST)
        samples: list[Sample] = []
        layouts, frames, rows = [], [], []
        for f in what:
            values = [value(f, m, ts) for m in f.members]
            for m, v in zip(f.members, values, strict=True):
                raw.add("f" + f.base, f.labels(m), ts, v)
                raw.add("r" + f.base, f.labels(m), ts, v)
                rows.append(Sample("r" + f.base, f.labels(m), v))
            if f.digest in known:
                frames.append(Frame(f.digest, values))
            else:
                layouts.append(NewLayout(f.digest, len(samples), len(values)))
                samples += [
                    Sample("f" + f.base, f.labels(m), v)
                    for m, v in zip(f.members, values, strict=True)
                ]
        store.write(samples + rows, ts, add_labels=HOST, frames=frames, layouts=layouts)
    assert store.known_layouts(HOST) == {A1.digest, A2.digest, FB.digest, FC.digest, FD.digest}
    return raw


# -- comparing --------------------------------------------------------------------------------
def _same(a: Any, b: Any, rel: float = 1e-9, abs_: float = 1e-9) -> bool:
    if a == b:  # the common case, and what isclose says of it (NaN is never equal)
        return True
    if (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return bool(math.isclose(a, b, rel_tol=rel, abs_tol=abs_))


def assert_same_points(got: SeriesPoints, want: SeriesPoints, what: str) -> None:
    """Every per-bucket list equal: times and counts exactly, floats within 1e-9 (the rows
    are summed in SQL, the frames with numpy), NaN where NaN."""
    assert (got.resolution, got.approximate) == (want.resolution, want.approximate), what
    assert got.columns() == want.columns(), what
    for name in got.columns():
        g, w = getattr(got, name), getattr(want, name)
        assert len(g) == len(w), f"{what}: {name} has {len(g)} buckets, not {len(w)}"
        for i, (x, y) in enumerate(zip(g, w, strict=True)):
            if name in ("timestamps", "first_ts", "prev_ts", "counts", "resets", "changes"):
                ok = x == y
            else:
                ok = _same(float(x), float(y))
            assert ok, f"{what}: {name}[{i}] (bucket of {w_ts(want, i)}): {x} != {y}"


def w_ts(sp: SeriesPoints, i: int) -> str:
    return f"{(sp.timestamps[i] - B) / 1000:g} s after B"


_REFERENCES: dict[tuple[Any, ...], list[SeriesPoints]] = {}


def _references(raw: SeriesPoints, res: int) -> list[SeriesPoints]:
    """The reference's buckets of ``raw`` (and its merges of the finer tiers), computed once
    per samples and resolution: every test and backend checks the same history again."""
    n = len(raw.values)
    key = (raw.name, raw.labels, res, tuple(raw.timestamps), struct.pack(f"<{n}d", *raw.values))
    refs = _REFERENCES.get(key)
    if refs is None:
        refs = [bucketize(raw, res)]
        if res == 300:
            refs.append(merge(bucketize(raw, 60), 300))
        if res == 3600:
            refs.append(merge(merge(bucketize(raw, 60), 300), 3600))
        _REFERENCES[key] = refs
    return refs


def assert_reference(got: SeriesPoints, raw: SeriesPoints, res: int, what: str) -> None:
    """``got`` holds the reference's buckets of the samples (and its merge of the finer tier
    it was built from); ``prevs`` only where there is a previous sample."""
    for want in _references(raw, res):
        for name in POINT_COLUMNS:
            if name == "prevs":
                continue
            g, w = getattr(got, name), getattr(want, name)
            assert g is not None and len(g) == len(w), f"{what}: {name}"
            for i, (x, y) in enumerate(zip(g, w, strict=True)):
                ok = _same(float(x), float(y), 1e-9, 1e-6)
                assert ok, f"{what}: {name}[{i}] (bucket of {w_ts(want, i)}): {x} != {y}"
        assert got.prevs is not None and want.prevs is not None
        for i, t in enumerate(want.prev_ts or []):
            if t:
                assert _same(got.prevs[i], want.prevs[i], 1e-9, 1e-6), f"{what}: prevs[{i}]"


def select(store: Any, res: int, matchers: list[Matcher]) -> dict[Key, SeriesPoints]:
    """The series matching, read as a select of a query stepping by ``res`` would (the clock
    beyond raw retention): from that tier only."""
    got = store.select(matchers, B, END, step_ms=res * S, align_ms=res * S)
    for sp in got:
        assert sp.resolution == res, (sp.name, sp.labels, sp.resolution)
        assert sp.timestamps[-1] <= END  # never the raw samples after a watermark
    return {(sp.name, sp.labels): sp for sp in got}


def check_tiers(store: Any, raw: Raw) -> dict[int, dict[Key, SeriesPoints]]:
    """In every tier: each frame series equals its twin of rows and the reference, read with
    the others (many positions of a layout: whole rows) and alone (a few: their bytes)."""
    store.clock.set(READ_AT / 1000)
    every = [Matcher("__name__", "=~", "[fr][a-d]")]
    out = {}
    for res in TIERS:
        got = select(store, res, every)
        assert set(got) == set(raw.samples), res
        for (name, labels), sp in got.items():
            if name.startswith("r"):
                continue
            what = f"{res}s tier, {name}{dict(labels)}"
            assert_same_points(sp, got[("r" + name[1:], labels)], f"{what} vs rows")
            assert_reference(sp, raw.series((name, labels)), res, what)
        for f, member in [(A1, m) for m in range(8)] + [(FD, 4), (FB, 1)]:
            key = ("f" + f.base, f.labels(member))
            (alone,) = select(
                store, res, [Matcher("__name__", "=", key[0]), Matcher(f.label, "=", str(member))]
            ).values()
            assert_same_points(alone, got[key], f"{res}s tier, {key} alone vs with the others")
        # fewer statistics asked for: those, the same
        for wanted in (frozenset[str](), frozenset({"counts", "prevs", "m2"})):
            part = store.select(
                every, B, END, step_ms=res * S, align_ms=res * S, aggregates=wanted or False
            )
            assert len(part) == len(got)
            for sp in part:
                full = got[(sp.name, sp.labels)]
                asked = wanted.union({"timestamps", "values", "first_ts"})
                assert sp.columns() == [n for n in POINT_COLUMNS if n in asked]
                for name in sp.columns():
                    g, w = getattr(sp, name), getattr(full, name)
                    assert len(g) == len(w) and all(map(_same, g, w)), (res, sp.name, name)
        out[res] = got
    return out


def assert_same_tiers(
    got: dict[int, dict[Key, SeriesPoints]], want: dict[int, dict[Key, SeriesPoints]], what: str
) -> None:
    assert got.keys() == want.keys()
    for res in got:
        assert got[res].keys() == want[res].keys()
        for key, sp in got[res].items():
            assert_same_points(sp, want[res][key], f"{what}: {res}s tier, {key}")


# -- the tests --------------------------------------------------------------------------------
def test_frame_buckets_equal_row_buckets_and_the_reference(sql_store: Any) -> None:
    """The history compacted at once: every tier as its rows and the reference; the series
    whose bucket had two sources are in the row tables, their positions ``absent``."""
    raw = write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    check_tiers(sql_store, raw)
    # the overlaps went to the row tables, absent from the frame buckets: a series of file a
    # in both shapes' bucket (12:30 and 37:40 are mid-minute and mid-5m), and a plain sample
    # beside frames
    overlaps: dict[tuple[File, int], dict[int, list[int]]] = {
        (A1, 1): {60: [13, 38, 120], 300: [15, 40, 120], 3600: [60, 120]},
        (FB, 1): {60: [13], 300: [15], 3600: [60]},
        (A1, 5): {60: [], 300: [], 3600: []},  # in shape one only
    }
    for (f, member), ends in overlaps.items():
        (sid,) = sql_store._series.matching_ids(
            [Matcher("__name__", "=", "f" + f.base), Matcher(f.label, "=", str(member))]
        )
        for level in sql_store.levels[1:]:
            tables = [t for _, t in sql_store._partitions.between(level, B, END)]
            assert len(tables) == (2 if level.tier == 60 else 1)  # B + 2h starts a day
            rows: list[int] = []
            for table in tables:
                # the row buckets, packed ones included (closed units: metrics.rowsealed)
                got = sql_store._partitions.rows_for(table, "count", [sid], 0, 2**62)
                rows += sorted(r[1] for r in got)
                absent = sql_store.db.query(f"SELECT 1 FROM f{table} WHERE absent IS NOT NULL")
                headers = sql_store.db.query(f"SELECT data FROM s{table} WHERE chunk = -1")
                assert absent or any(len(Header.decode(h).absent) for (h,) in headers)
            assert rows == [B + m * M for m in ends[level.tier]], (f, level)


def test_compacting_every_minute_as_the_collector_does(sql_store: Any) -> None:
    """Compaction between the passes (each tier's buckets built as soon as they close, the
    5m and 1h ones from finer buckets built minutes apart): the same as all at once."""
    raw = write_history(sql_store, compacting=True)
    assert rollup.watermark(sql_store.db, 60) == B + 2 * H + 4 * M  # built as it went
    sql_store.compact(COMPACT_AT)
    check_tiers(sql_store, raw)


def test_rebuild_after_an_import_over_rolled_up_history(sql_store: Any) -> None:
    """Samples imported into frame series (and their twins) inside buckets already built:
    the rebuilt buckets combine frames and rows, as compaction would have."""
    raw = write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    check_tiers(sql_store, raw)
    lines = []
    for ts, f, member, v in sorted(IMPORTED, key=lambda e: (e[1].base, e[2], e[0])):
        for name in ("f" + f.base, "r" + f.base):
            text = ",".join(f'{k}="{val}"' for k, val in f.labels(member))
            lines.append(f"{name}{{{text}}} {'NaN' if math.isnan(v) else v} {ts / 1000}\n")
            raw.add(name, f.labels(member), ts, v)
    lines.append("# EOF\n")
    report = import_openmetrics(sql_store, lines, "history.om")
    assert report.samples == 2 * len(IMPORTED) and not report.errors
    check_tiers(sql_store, raw)


def test_buckets_keep_their_layouts_past_raw_retention(sql_store: Any) -> None:
    """Raw retention drops every frame; the layouts stay while frame buckets refer to them,
    and the tiers read the same as before."""
    raw = write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    before = check_tiers(sql_store, raw)
    sql_store.compact(READ_AT)
    assert not sql_store._partitions.starts[0]  # every raw partition is gone
    assert sql_store.known_layouts(HOST) == {A1.digest, A2.digest, FB.digest, FC.digest, FD.digest}
    sql_store._layouts.forget()  # read them back from the database, not the cache
    after = check_tiers(sql_store, raw)
    assert_same_tiers(after, before, "after raw retention")


@pytest.mark.parametrize(("positions", "layouts"), [(2, 1), (7, 2)])
def test_chunked_tier_rollups_are_unchanged(
    sql_store: Any, monkeypatch: pytest.MonkeyPatch, positions: int, layouts: int
) -> None:
    """5m and 1h buckets combined from finer frame buckets a few layouts at a time (layouts
    of one pass split across chunks, and several in one) equal those built in one go."""
    monkeypatch.setattr(rollup, "CHUNK_POSITIONS", positions)
    monkeypatch.setattr(rollup, "_CHUNK_LAYOUTS", layouts)
    raw = write_history(sql_store)
    extra = encode_labels(HOST)
    lids = [sql_store._layouts.resolve(f.digest, extra) for f in (A1, A2, FB, FC, FD)]
    chunks = rollup._chunks(sql_store._layouts.series_of(lids))
    assert sorted(lid for c in chunks for lid in c) == sorted(lids)
    assert 2 < len(chunks) < len(lids) or (layouts == 1 and len(chunks) == len(lids))
    sql_store.compact(COMPACT_AT)
    chunked = check_tiers(sql_store, raw)
    monkeypatch.undo()
    sql_store.rebuild_rollups(B, END)
    whole = check_tiers(sql_store, raw)
    assert_same_tiers(chunked, whole, "chunked vs whole")


# PromQL over the tiers, the windows whole buckets (exact): (query, step)
QUERIES = [
    ("rate({x}[5m])", 300),
    ("increase({x}[15m])", 300),
    ("resets({x}[15m])", 300),
    ("changes({x}[10m])", 300),
    ("deriv({x}[15m])", 300),
    ("predict_linear({x}[10m], 600)", 300),
    ("stddev_over_time({x}[10m])", 300),
    ("irate({x}[5m])", 300),
    ("idelta({x}[5m])", 300),
    ("avg_over_time({x}[1h])", 3600),
    ("max_over_time({x}[1h])", 3600),
    ("count_over_time({x}[1h])", 3600),
    ("sum_over_time({x}[1m])", 60),
    ("last_over_time({x}[2m])", 60),
    ('rate({x}{{i="1"}}[5m])', 300),  # one series of a layout: the few-positions read
    ('avg_over_time({x}{{i="2"}}[1h])', 3600),
]


Answer = dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]


def _answer(engine: Engine, query: str, step_s: int) -> tuple[tuple[str, ...], Answer]:
    """Warnings and the points of each series (by its labels but the name)."""
    step = step_s * S
    got = engine.range(query, B + max(step, 15 * M), END, step)
    out: Answer = {}
    for series in got.matrix:
        labels = tuple(sorted((k, v) for k, v in series.metric.items() if k != "__name__"))
        out[labels] = series.points
    return got.warnings, out


def test_promql_over_frame_rollups_answers_as_over_rows(sql_store: Any) -> None:
    """Range queries stepping by a tier's resolution, beyond raw retention: over the frame
    series the same answer as over their twins of rows, and as Prometheus' from every raw
    sample (a memory store); no estimate warned of."""
    raw = write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    sql_store.clock.set(READ_AT / 1000)
    memory = MemoryMetricStore()
    memory.write(
        [Sample(n, labels, v, t) for (n, labels), pts in raw.samples.items() for t, v in pts], 0
    )
    engine, exact = Engine(sql_store), Engine(memory)
    for template, step in QUERIES:
        warned, frames = _answer(engine, template.format(x="fa"), step)
        warned_rows, rows = _answer(engine, template.format(x="ra"), step)
        _, want = _answer(exact, template.format(x="fa"), step)
        assert warned == warned_rows == (), template
        assert frames.keys() == rows.keys() == want.keys() and frames, template
        for key, points in frames.items():
            for other, what in ((rows[key], "rows"), (want[key], "raw samples")):
                assert [t for t, _ in points] == [t for t, _ in other], (template, key, what)
                for (t, a), (_, b) in zip(points, other, strict=True):
                    assert _same(a, b), f"{template} {key} at {t}: {a}, over {what} {b}"


def test_an_import_beyond_raw_retention_keeps_the_buckets_it_does_not_touch(
    sql_store: Any,
) -> None:
    """An import into history whose raw samples retention has dropped: the series it does
    not touch keep their buckets in every tier (frames and rows alike); the series it
    writes have the touched 1m bucket replaced by what the import brought, and keep every
    other bucket. (Rebuilding cleared every series' buckets of the range and built them
    again from raw partitions holding only the imported samples.)"""
    write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    sql_store.compact(READ_AT)
    assert not sql_store._partitions.starts[0]
    sql_store.clock.set(READ_AT / 1000)
    untouched = [Matcher("__name__", "=~", "[fr]a"), Matcher("i", "=", "0")]
    before = {res: select(sql_store, res, untouched) for res in TIERS}
    ts = B + 30 * M + 30 * S
    lines = [f'{n}{{host="web1",i="2"}} 99 {ts / 1000}\n' for n in ("fa", "ra")] + ["# EOF\n"]
    imported = [Matcher("__name__", "=~", "[fr]a"), Matcher("i", "=", "2")]
    had = {res: select(sql_store, res, imported) for res in TIERS}
    import_openmetrics(sql_store, lines, "history.om")
    after = {res: select(sql_store, res, untouched) for res in TIERS}
    assert_same_tiers(after, before, "after an import of another series")
    now = select(sql_store, 60, imported)
    end = B + 31 * M
    for key, sp in now.items():
        old = had[60][key]
        assert len(sp.timestamps) == len(old.timestamps), key  # no bucket lost, none added
        [at] = [j for j, t in enumerate(old.timestamps) if end - M < t <= end]
        # a bucket's time is its last sample's: the imported one's now
        assert sp.timestamps[at] == ts and sp.values[at] == 99.0, (key, sp.values)
        assert sp.counts is not None and sp.counts[at] == 1, (key, sp.counts)
        others = [j for j in range(len(sp.timestamps)) if j != at]
        for got, was in ((sp.timestamps, old.timestamps), (sp.values, old.values)):
            assert [got[j] for j in others] == [was[j] for j in others], key


FE = File("e", "i", b"file-e-----shape", (0,))
INFINITIES = [1.0, INF, 2.0, 3.0, 4.0, -INF, 5.0, 6.0, INF, INF, 1.0, 2.0, 7.0, -INF, -INF, 3.0]


def _infinities(store: Any) -> dict[int, dict[Key, SeriesPoints]]:
    """A series of infinities among finite values, a pass every 25 s, as a frame series and
    as rows; its tiers as :func:`select` reads them."""
    labels = FE.labels(0)
    for k, v in enumerate(INFINITIES):
        ts = B + k * 25 * S
        rows = [Sample("re", labels, v)]
        if k == 0:
            store.write(
                [Sample("fe", labels, v), *rows],
                ts,
                add_labels=HOST,
                layouts=[NewLayout(FE.digest, 0, 1)],
            )
        else:
            store.write(rows, ts, add_labels=HOST, frames=[Frame(FE.digest, [v])])
    store.compact(COMPACT_AT)
    store.clock.set(READ_AT / 1000)
    return {res: select(store, res, [Matcher("__name__", "=~", "[fr]e")]) for res in TIERS}


def test_infinities_in_frame_buckets_are_the_reference(sql_store: Any) -> None:
    """+-Inf in frames: sums, sxy and m2 NaN or infinite as the reference has them."""
    tiers = _infinities(sql_store)
    raw = SeriesPoints(
        "fe", FE.labels(0), [B + k * 25 * S for k in range(len(INFINITIES))], INFINITIES
    )
    for res, got in tiers.items():
        assert_reference(got[("fe", FE.labels(0))], raw, res, f"{res}s tier")


def test_infinities_in_row_buckets_are_as_in_frame_buckets(sql_store: Any) -> None:
    """The same series of infinities stored as rows rolls up as the frames do (on SQLite a
    NaN product, ``0 * inf``, was NULL and left out of the sum: sxy and m2 came out finite
    or infinite instead of NaN)."""
    tiers = _infinities(sql_store)
    for res, got in tiers.items():
        assert_same_points(got[("re", FE.labels(0))], got[("fe", FE.labels(0))], f"{res}s tier")


def test_a_select_of_more_series_than_an_in_list_reads_frame_buckets(sql_store: Any) -> None:
    """700 series of one file (their layout positions found in bulk, not by an IN list),
    NaN among them: frame buckets read as their twins' row buckets in every tier."""
    n, wide = 700, File("w", "i", b"file-w-----shape", tuple(range(700)))
    for k in range(1, 25):
        ts = B + k * 20 * S
        values = [float(i * k % 17) if (i + k) % 11 else NAN for i in range(n)]
        rows = [Sample("rw", wide.labels(i), v) for i, v in enumerate(values)]
        if k == 1:
            frames = [Sample("fw", wide.labels(i), v) for i, v in enumerate(values)]
            sql_store.write(
                frames + rows, ts, add_labels=HOST, layouts=[NewLayout(wide.digest, 0, n)]
            )
        else:
            sql_store.write(rows, ts, add_labels=HOST, frames=[Frame(wide.digest, values)])
    sql_store.compact(COMPACT_AT)
    sql_store.clock.set(READ_AT / 1000)
    for res in TIERS:
        got = select(sql_store, res, [Matcher("__name__", "=~", "[fr]w")])
        assert len(got) == 2 * n
        for i in range(n):
            key = ("fw", wide.labels(i))
            assert_same_points(got[key], got[("rw", key[1])], f"{res}s tier, {key}")


# -- sealed units (signalbox.metrics.sealed) ------------------------------------------------------
def _unit_rows(store: Any) -> tuple[int, int]:
    """(frame-bucket rows, sealed rows) of the 1m tier over the history."""
    level = store.levels[1]
    fbs = sbs = 0
    for _, table in store._partitions.between(level, B, END):
        fbs += store.db.query(f"SELECT count(*) FROM f{table}")[0][0]
        sbs += store.db.query(f"SELECT count(*) FROM s{table}")[0][0]
    return fbs, sbs


def seal_all(store: Any) -> None:
    """Compact until no unit is left to seal (each compaction seals a few)."""
    for _ in range(50):
        before = _unit_rows(store)
        store.compact(COMPACT_AT)
        if _unit_rows(store) == before:
            return
    raise AssertionError("sealing never finished")


def test_sealed_units_read_as_the_frame_buckets_they_replace(
    sql_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction seals a bounded number of series positions of the closed hours of the 1m
    tier (oldest first, a layout at a time here), the next ones the rest; every tier reads
    the same, many positions (unsealed whole) and a few (their chunk alone), with an hour
    partly sealed, hours sealed and not, and all sealed."""
    monkeypatch.setattr(sealing, "POSITIONS_PER_PASS", 12)
    monkeypatch.setattr(sealing, "_CHUNK_POSITIONS", 1)  # one layout a chunk
    raw = write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    assert sealing.sealed_until(sql_store.db, 60) == B  # the first hour partly sealed
    level = sql_store.levels[1]
    (table,) = [t for _, t in sql_store._partitions.between(level, B, B + H - M)]
    q = "SELECT count(DISTINCT layout_id) FROM {} WHERE ts >= ? AND ts < ?"
    assert sql_store.db.query(q.format("s" + table), (B, B + H))[0][0]  # some layouts sealed
    assert sql_store.db.query(q.format("f" + table), (B, B + H))[0][0]  # others not yet
    first = check_tiers(sql_store, raw)
    sql_store.compact(COMPACT_AT)
    sql_store.compact(COMPACT_AT)
    sealed_to = sealing.sealed_until(sql_store.db, 60)
    assert sealed_to is not None and B < sealed_to < B + 3 * H  # whole hours, the rest not yet
    assert_same_tiers(check_tiers(sql_store, raw), first, "some hours sealed")
    seal_all(sql_store)
    # every hour the 5m and 1h tiers were built past is sealed; the rows of the minutes after
    # it stay frame buckets until their hour is
    assert sealing.sealed_until(sql_store.db, 60) == B + 3 * H
    for _, table in sql_store._partitions.between(sql_store.levels[1], B, END):
        left = sql_store.db.query(f"SELECT min(ts) FROM f{table}")[0][0]
        assert left is None or left >= B + 3 * H
    assert_same_tiers(check_tiers(sql_store, raw), first, "all sealed")


def test_rebuild_after_an_import_into_sealed_hours(sql_store: Any) -> None:
    """An import into hours already sealed unseals them, rebuilds, and a later compaction
    seals them again: the tiers are the reference throughout."""
    raw = write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    seal_all(sql_store)
    lines = []
    for ts, f, member, v in sorted(IMPORTED, key=lambda e: (e[1].base, e[2], e[0])):
        for name in ("f" + f.base, "r" + f.base):
            text = ",".join(f'{k}="{val}"' for k, val in f.labels(member))
            lines.append(f"{name}{{{text}}} {'NaN' if math.isnan(v) else v} {ts / 1000}\n")
            raw.add(name, f.labels(member), ts, v)
    lines.append("# EOF\n")
    report = import_openmetrics(sql_store, lines, "history.om")
    assert report.samples == 2 * len(IMPORTED) and not report.errors
    assert sealing.sealed_until(sql_store.db, 60) == B  # the imported hours are open again
    check_tiers(sql_store, raw)
    seal_all(sql_store)
    assert sealing.sealed_until(sql_store.db, 60) == B + 3 * H
    check_tiers(sql_store, raw)


def test_a_tier_added_later_is_built_from_sealed_hours(sql_store: Any) -> None:
    """A store run with 1m and 1h tiers seals its hours; opened with a 5m tier added, the
    5m buckets are built from those sealed hours (unsealed for it, sealed again after)."""
    from signalbox.durations import Tier
    from signalbox.metrics.sql.store import SQLMetricStore

    before = SQLMetricStore(
        sql_store.db, tiers=(Tier(60, 8 * 86400), Tier(3600, 400 * 86400)), clock=sql_store.clock
    )
    raw = write_history(before)
    before.compact(COMPACT_AT)
    seal_all(before)
    assert sealing.sealed_until(sql_store.db, 60) == B + 3 * H
    assert rollup.watermark(sql_store.db, 300) is None
    seal_all(sql_store)  # the default tiers, 5m included
    assert rollup.watermark(sql_store.db, 300) is not None
    assert sealing.sealed_until(sql_store.db, 60) == B + 3 * H
    check_tiers(sql_store, raw)


def test_sealing_crosses_a_gap_of_weeks_in_a_few_transactions(
    sql_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written again after weeks away (the old partitions dropped by retention, or
    never there) seals past the gap with one mark, not one transaction per empty hour (a
    compaction after a long gap ran 13,509 of them), and seals the new hours as before."""
    write_history(sql_store)
    sql_store.compact(COMPACT_AT)
    seal_all(sql_store)
    marks: list[tuple[int, int]] = []
    set_sealed = sealing._set_sealed
    monkeypatch.setattr(
        sealing, "_set_sealed", lambda p, t, u: (marks.append((t, u)), set_sealed(p, t, u))[1]
    )
    later = B + 40 * DAY
    known = sql_store.known_layouts(HOST)
    assert A1.digest in known
    for minute in range(3 * 60):
        ts = later + minute * M
        values = [value(A1, m, ts) for m in A1.members]
        sql_store.write([], ts, add_labels=HOST, frames=[Frame(A1.digest, values)])
    sql_store.compact(later + 4 * H)
    seal_all_at = later + 4 * H
    for _ in range(50):
        n = len(marks)
        sql_store.compact(seal_all_at)
        if len(marks) == n:
            break
    assert sealing.sealed_until(sql_store.db, 60) == later + 3 * H
    # per tier, the gap takes one mark (the 1h tier's 60-hour unit holding the old history
    # closes only now: one more); the 1m tier then one per sealed hour of the new history
    assert [u for t, u in marks if t == 60] == [later, later + H, later + 2 * H, later + 3 * H]
    for tier in (300, 3600):
        assert len([u for t, u in marks if t == tier and u <= later]) <= 2, (tier, marks)
