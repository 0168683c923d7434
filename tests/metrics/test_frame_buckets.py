"""Frame buckets (:mod:`signalbox.metrics.framebuckets`) hold, position by position, what the
plain-Python reference (:mod:`tests.query.bucketing`) computes for each series on its own:
from the frames of a bucket (:func:`from_frames`), from finer buckets (:func:`combine`, the
way a 5m and an 1h tier are built), for many layouts at once (``*_many``), and through the
stored row (:func:`encode`/:func:`decode`, :func:`stat_offsets`).

Values: NaN, +Inf and -Inf, counters with resets, constants, and one frame per bucket as well
as many. Per-position statistics that are copied (min, max, first, last, prev, resets,
changes) and the per-layout times must be equal; sums are compared with a relative tolerance
of 1e-12 of the magnitude they are summed from (numpy and ``math.fsum`` round differently).
"""

from __future__ import annotations

import math
import struct
from itertools import groupby
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics import framebuckets as fb
from signalbox.metrics.framebuckets import FIELDS, FrameBucket
from signalbox.metrics.store import SeriesPoints
from tests.query.bucketing import bucketize, merge

NAN, INF = math.nan, math.inf
E0 = 1_700_002_800_000  # a whole hour (and so a whole minute and 5 minutes)
TOL = 1e-12
TINY = 1e-300  # below this, products of subnormal values round to whatever they round to

# FrameBucket statistic -> the SeriesPoints list of the reference holding it
_POINT_OF = {
    "sum": "sums", "min": "mins", "max": "maxs", "first": "firsts", "last": "values",
    "prev": "prevs", "drops": "drops", "resets": "resets", "changes": "changes",
    "sxy": "sxy", "m2": "m2",
}  # fmt: skip
_COPIED = frozenset({"min", "max", "first", "last", "prev", "resets", "changes"})


# -- comparing with the reference ---------------------------------------------------------------
def _same(got: float, want: float, abs_tol: float = 0.0) -> bool:
    """NaN equals NaN; infinities exactly; finite values within ``TOL`` (and ``abs_tol``)."""
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return math.isclose(got, want, rel_tol=TOL, abs_tol=max(abs_tol, TINY))


def _magnitudes(stamps: list[int], values: list[float]) -> dict[str, float]:
    """What each summed statistic is summed from (finite terms only): the scale of the
    rounding a different summation order may give it."""
    xs = [(t - stamps[0]) / 1000 for t in stamps]
    finite = [v for v in values if math.isfinite(v)]
    xv = [abs(x * v) for x, v in zip(xs, values, strict=True) if math.isfinite(v)]
    return {
        "sum": TOL * math.fsum(map(abs, finite)),
        "drops": TOL * math.fsum(map(abs, finite)),
        "sxy": TOL * math.fsum(xv),
        "m2": TOL * len(values) * math.fsum(v * v for v in finite),
        "sx": TOL * math.fsum(xs),
        "sxx": TOL * math.fsum(x * x for x in xs),
    }


def assert_position(
    b: FrameBucket,
    pos: int,
    wants: SeriesPoints | list[SeriesPoints],
    i: int,
    stamps: list[int],
    values: list[float],
) -> None:
    """Position ``pos`` of bucket ``b`` is bucket ``i`` of the reference (each of ``wants``:
    from the samples, merged from a finer tier), whose samples were ``stamps``/``values``.

    One exception: ``sxy`` of a bucket holding an infinite sample need only match one of
    them. The reference disagrees with itself there: a one-sample finer bucket of ``inf`` has
    ``sxy = 0 * inf = NaN``, which its merge carries on, while ``x * inf`` with ``x > 0`` of
    the coarser bucket straight from the samples is ``inf``."""
    wants = wants if isinstance(wants, list) else [wants]
    for want in wants:
        _assert_one(b, pos, want, i, stamps, values)
    if any(math.isinf(v) for v in values):
        tol = _magnitudes(stamps, values)["sxy"]
        got = float(b.field("sxy")[pos])
        refs = [float(w.sxy[i]) for w in wants if w.sxy is not None]
        assert any(_same(got, r, tol) for r in refs), f"sxy {got} is none of {refs}"


def _assert_one(
    b: FrameBucket, pos: int, want: SeriesPoints, i: int, stamps: list[int], values: list[float]
) -> None:
    assert want.first_ts is not None and want.counts is not None and want.prev_ts is not None
    assert want.sx is not None and want.sxx is not None
    where = (
        f"position {pos}, bucket ending {b.end}: samples {list(zip(stamps, values, strict=True))}"
    )
    assert (b.count, b.first_ts, b.last_ts, b.prev_ts) == (
        int(want.counts[i]),
        want.first_ts[i],
        want.timestamps[i],
        want.prev_ts[i],
    ), where
    tol = _magnitudes(stamps, values)
    assert _same(b.sx, want.sx[i], tol["sx"]), f"sx {b.sx} != {want.sx[i]}; {where}"
    assert _same(b.sxx, want.sxx[i], tol["sxx"]), f"sxx {b.sxx} != {want.sxx[i]}; {where}"
    for name in FIELDS:
        got = float(b.field(name)[pos])
        if name == "prev" and b.count == 1:
            # a bucket of one sample has no previous one: NaN here, 0.0 in the reference,
            # what readers never look at (prev_ts is 0)
            assert math.isnan(got), where
            continue
        ref = float(getattr(want, _POINT_OF[name])[i])
        if name == "sxy" and any(math.isinf(v) for v in values):
            continue  # see assert_position
        if name in _COPIED:
            ok = got == ref or (math.isnan(got) and math.isnan(ref))
        else:
            ok = _same(got, ref, tol[name])
        assert ok, f"{name}: {got} != {ref}; {where}"


def _raw(stamps: list[int], values: list[float]) -> SeriesPoints:
    return SeriesPoints("m", (), list(stamps), list(values))


def _end(ts: int, res_ms: int) -> int:
    return -(-ts // res_ms) * res_ms


# -- strategies ---------------------------------------------------------------------------------
_FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
_SPECIAL = st.sampled_from([NAN, INF, -INF, 0.0, -0.0])


@st.composite
def _column(draw: st.DrawFn, k: int) -> list[float]:
    """``k`` samples of one series: a gauge with NaN and infinities, a counter with resets,
    or a constant (NaN and the infinities among the constants)."""
    kind = draw(st.sampled_from(["gauge", "counter", "constant"]))
    if kind == "constant":
        v = draw(st.one_of(_FINITE, _SPECIAL))
        return [v] * k
    if kind == "counter":
        out, v = [], draw(st.integers(0, 1000)) / 4
        for _ in range(k):
            if draw(st.integers(0, 4)) == 0:
                v = draw(st.integers(0, 50)) / 4  # a reset (or not, when it lands higher)
            else:
                v += draw(st.integers(0, 400)) / 8
            out.append(v)
        return out
    return draw(st.lists(st.one_of(_FINITE, _FINITE, _SPECIAL), min_size=k, max_size=k))


@st.composite
def _frames(draw: st.DrawFn, lo: int, hi: int, max_k: int = 8) -> tuple[list[int], np.ndarray]:
    """Ascending stamps in ``(lo, hi]`` (ms; the end itself now and then) and their values,
    one column per position."""
    k = draw(st.integers(1, max_k))
    inside = st.one_of(st.integers(lo + 1, hi), st.just(hi), st.just(lo + 1))
    stamps = sorted(draw(st.sets(inside, min_size=k, max_size=k)))
    n = draw(st.integers(1, 6))
    cols = [draw(_column(len(stamps))) for _ in range(n)]
    return stamps, np.array(cols, dtype=np.float64).T.reshape(len(stamps), n)


@st.composite
def _hour(draw: st.DrawFn) -> tuple[list[int], np.ndarray]:
    """Frames of one layout over the hour ``(E0 - 1h, E0]``: in a few chosen minutes (some
    on 5-minute edges, some not), one to four passes each, so the minute buckets are of one
    frame and of several, with gaps between them."""
    minutes = sorted(draw(st.sets(st.integers(0, 59), min_size=1, max_size=14)))
    stamps: list[int] = []
    for m in minutes:
        lo = E0 - 3600_000 + m * 60_000
        k = draw(st.integers(1, 4))
        inside = st.one_of(st.integers(lo + 1, lo + 60_000), st.just(lo + 60_000))
        stamps += sorted(draw(st.sets(inside, min_size=k, max_size=k)))
    n = draw(st.integers(1, 5))
    cols = [draw(_column(len(stamps))) for _ in range(n)]
    return stamps, np.array(cols, dtype=np.float64).T.reshape(len(stamps), n)


# -- from_frames ---------------------------------------------------------------------------------
@settings(max_examples=100)
@given(data=st.data(), res=st.sampled_from([60, 300, 3600]))
def test_from_frames_is_the_reference_of_each_position(data: st.DataObject, res: int) -> None:
    end = E0
    stamps, values = data.draw(_frames(end - res * 1000, end))
    b = fb.from_frames(end, stamps, values)
    assert b.end == end and b.size == values.shape[1]
    assert b.stats.shape == ((values.shape[1],) if len(stamps) == 1 else (len(FIELDS), b.size))
    for pos in range(b.size):
        column = values[:, pos].tolist()
        want = bucketize(_raw(stamps, column), res)
        assert len(want.timestamps) == 1
        assert_position(b, pos, want, 0, stamps, column)


def test_from_frames_of_the_edge_cases() -> None:
    """The cases by name: NaN after NaN is no change, a drop next to a NaN is none, a reset
    counts its value, infinities make m2 (and with -Inf the sum) NaN, one frame is its values."""
    stamps = [E0 - 50_000, E0 - 30_000, E0 - 10_000, E0]
    cols = [
        [NAN, NAN, 1.0, NAN],
        [5.0, 7.0, 2.0, 3.0],
        [1.0, INF, 2.0, -INF],
        [4.0, 4.0, 4.0, 4.0],
        [INF, INF, INF, INF],
    ]
    values = np.array(cols).T
    b = fb.from_frames(E0, stamps, values)
    assert b.field("changes").tolist() == [2.0, 3.0, 3.0, 0.0, 0.0]
    assert b.field("resets").tolist() == [0.0, 1.0, 2.0, 0.0, 0.0]
    assert b.field("drops").tolist()[:4] == [0.0, 7.0, INF, 0.0]
    assert [math.isnan(x) for x in b.field("m2")] == [True, False, True, False, True]
    assert math.isnan(b.field("sum")[2]) and b.field("sum")[4] == INF
    for pos, col in enumerate(cols):
        assert_position(b, pos, bucketize(_raw(stamps, col), 60), 0, stamps, col)
    one = fb.from_frames(E0, stamps[:1], values[:1])
    assert one.count == 1 and one.prev_ts == 0 and one.stats.shape == (5,)
    for pos, col in enumerate(cols):
        assert_position(one, pos, bucketize(_raw(stamps[:1], col[:1]), 60), 0, stamps[:1], col[:1])


# -- combine -------------------------------------------------------------------------------------
def _tier(stamps: list[int], values: np.ndarray, res: int) -> list[FrameBucket]:
    """Buckets of ``res`` straight from the frames (one per bucket holding any)."""
    out = []
    for end, group in groupby(range(len(stamps)), key=lambda i: _end(stamps[i], res * 1000)):
        ix = list(group)
        out.append(fb.from_frames(end, [stamps[i] for i in ix], values[ix]))
    return out


def _coarser(finer: list[FrameBucket], res: int) -> list[FrameBucket]:
    """Buckets of ``res`` combined from finer ones, as the rollup builds a tier."""
    return [
        fb.combine(end, list(parts))
        for end, parts in groupby(finer, key=lambda b: _end(b.end, res * 1000))
    ]


def _assert_tier(
    got: list[FrameBucket],
    stamps: list[int],
    values: np.ndarray,
    res: int,
    via: tuple[int, ...] = (),
) -> None:
    """``got`` equals the reference of every position: straight from the samples, and (when
    ``via`` names the finer tiers it was built through, finest first) merged from them."""
    for pos in range(values.shape[1]):
        column = values[:, pos].tolist()
        raw = _raw(stamps, column)
        refs = [bucketize(raw, res)]
        if via:
            finer = bucketize(raw, via[0])
            for r in via[1:]:
                finer = merge(finer, r)
            refs.append(merge(finer, res))
        for want in refs:
            assert [b.end for b in got] == [_end(t, res * 1000) for t in want.timestamps]
        for i, b in enumerate(got):
            lo = b.end - res * 1000
            keep = [j for j, t in enumerate(stamps) if lo < t <= b.end]
            assert_position(b, pos, refs, i, [stamps[j] for j in keep], [column[j] for j in keep])


@settings(max_examples=60)
@given(hour=_hour())
def test_combined_tiers_are_the_reference(hour: tuple[list[int], np.ndarray]) -> None:
    """1m buckets from frames, 5m combined from them, 1h from the 5m: every tier equals the
    reference's buckets of the samples, and its merge of the finer tier."""
    stamps, values = hour
    minute = _tier(stamps, values, 60)
    five = _coarser(minute, 300)
    hour_b = _coarser(five, 3600)
    _assert_tier(minute, stamps, values, 60)
    _assert_tier(five, stamps, values, 300, via=(60,))
    _assert_tier(hour_b, stamps, values, 3600, via=(60, 300))
    assert len(hour_b) == 1
    # the 1h bucket combined straight from the minute buckets is the same bucket
    _assert_tier(_coarser(minute, 3600), stamps, values, 3600, via=(60,))


def test_combine_mixes_one_frame_and_many_frame_parts() -> None:
    """The general path by name: a one-frame part last (prev from the part before), first,
    and between parts of several frames; NaN and a reset across parts."""
    base = E0 - 300_000
    stamps = [base + 10_000, base + 70_000, base + 80_000, base + 110_000, base + 250_000]
    cols = [[1.0, 5.0, 3.0, 4.0, 2.0], [NAN, 1.0, NAN, 2.0, NAN], [7.0, 7.0, 7.0, 7.0, 7.0]]
    values = np.array(cols).T
    minute = _tier(stamps, values, 60)
    assert [p.count for p in minute] == [1, 3, 1]
    [five] = _coarser(minute, 300)
    assert five.count == 5 and five.prev_ts == base + 110_000
    assert five.field("resets").tolist() == [2.0, 0.0, 0.0]
    _assert_tier([five], stamps, values, 300, via=(60,))
    # all parts of one frame: the frames themselves; one part: itself at the new end
    singles = _tier([stamps[0], stamps[4]], values[[0, 4]], 60)
    [both] = _coarser(singles, 300)
    _assert_tier([both], [stamps[0], stamps[4]], values[[0, 4]], 300, via=(60,))
    [alone] = _coarser(minute[1:2], 300)
    assert alone.end == E0 and alone.count == 3
    _assert_tier([alone], stamps[1:4], values[1:4], 300, via=(60,))


# -- many layouts at once ----------------------------------------------------------------------
def _rounding(b: FrameBucket) -> np.ndarray:
    """Per statistic and position, the absolute rounding a different order of the same sums
    may give (``TOL`` of what is summed); 0 for the statistics that are copied or counted."""
    with np.errstate(invalid="ignore", over="ignore"):
        big = np.fmax(np.abs(b.field("min")), np.abs(b.field("max")))
        big = np.where(np.isfinite(big), big, 0.0)
        span = (b.last_ts - b.first_ts) / 1000
        out = np.zeros((len(FIELDS), b.size))
        for name, scale in (
            ("sum", big), ("drops", big), ("sxy", big * span), ("m2", big * big),
        ):  # fmt: skip
            out[FIELDS.index(name)] = TOL * b.count * scale
    return out


def assert_same_bucket(got: FrameBucket, want: FrameBucket) -> None:
    """Two buckets of one layout: the per-layout numbers equal, the arrays within ``TOL`` of
    the magnitudes summed (m2 of a constant may be 0 or a rounding residue)."""
    assert fb.timing([got]) == fb.timing([want])
    assert got.stats.shape == want.stats.shape
    a, b = got.full(), want.full()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.array_equal(np.isinf(a), np.isinf(b))
    finite = np.isfinite(a)
    assert np.array_equal(a[~finite & ~np.isnan(a)], b[~finite & ~np.isnan(b)])
    diff = np.abs(np.where(finite, a, 0.0) - np.where(finite, b, 0.0))
    allowed = TOL * np.abs(np.where(finite, b, 0.0)) + _rounding(want) + TINY
    assert (diff <= allowed).all(), (a, b)


@st.composite
def _blocks(draw: st.DrawFn, k: int) -> list[np.ndarray]:
    """Several layouts' values at the same ``k`` stamps, one to five positions each."""
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    out = []
    for n in sizes:
        cols = [draw(_column(k)) for _ in range(n)]
        out.append(np.array(cols, dtype=np.float64).T.reshape(k, n))
    return out


@settings(max_examples=50)
@given(data=st.data())
def test_from_frames_many_is_from_frames_of_each_layout(data: st.DataObject) -> None:
    stamps, _ = data.draw(_frames(E0 - 60_000, E0))
    blocks = data.draw(_blocks(len(stamps)))
    many = fb.from_frames_many(E0, stamps, blocks)
    assert len(many) == len(blocks)
    for got, block in zip(many, blocks, strict=True):
        assert got.size == block.shape[1]
        assert_same_bucket(got, fb.from_frames(E0, stamps, block))


@settings(max_examples=40)
@given(hour=_hour(), data=st.data())
def test_combine_many_is_combine_of_each_layout(
    hour: tuple[list[int], np.ndarray], data: st.DataObject
) -> None:
    """Layouts whose minute buckets share their timing (files of one collector's passes),
    combined into 5m and 1h buckets together and one by one."""
    stamps, _ = hour
    blocks = data.draw(_blocks(len(stamps)))
    minutes = [_tier(stamps, block, 60) for block in blocks]
    for res in (300, 3600):
        for end, _ in groupby(minutes[0], key=lambda b: _end(b.end, res * 1000)):
            parts = [[b for b in layout if _end(b.end, res * 1000) == end] for layout in minutes]
            assert len({fb.timing(p) for p in parts}) == 1
            together = fb.combine_many(end, parts)
            assert len(together) == len(parts)
            for got, own in zip(together, parts, strict=True):
                assert got.size == own[0].size
                assert_same_bucket(got, fb.combine(end, own))


# -- the stored row ------------------------------------------------------------------------------
@st.composite
def _bucket(draw: st.DrawFn) -> FrameBucket:
    """A bucket of one frame, of several, or combined; with or without absent positions."""
    stamps, values = draw(_hour())
    if draw(st.booleans()):
        b = _tier(stamps, values, 60)[-1]
    else:
        b = _coarser(_tier(stamps, values, 60), 3600)[0]
    gone = draw(st.one_of(st.none(), st.sets(st.integers(0, b.size - 1))))
    if gone is not None:
        b.absent = np.array(sorted(gone), dtype=np.int64)
    return b


@settings(max_examples=50)
@given(b=_bucket(), lid=st.integers(1, 2**40), blob=st.sampled_from([bytes, memoryview]))
def test_encode_decode_round_trip(b: FrameBucket, lid: int, blob: Any) -> None:
    """What a database gives back (bytes, or a memoryview) decodes to the same bucket; a
    bucket without absent positions stores NULL, a one-frame bucket no ``prev_ts``."""
    row = fb.encode(lid, b)
    assert len(row) == len(fb.COLUMNS.split(", "))
    stored = tuple(blob(x) if isinstance(x, bytes) else x for x in row)
    assert (stored[5] is None) == (b.prev_ts == 0)
    got_lid, got = fb.decode(stored)
    assert got_lid == lid
    assert fb.timing([got]) == fb.timing([b])
    assert got.stats.shape == b.stats.shape
    assert got.stats.tobytes() == np.ascontiguousarray(b.stats).tobytes()  # NaN bits and all
    if b.absent is None or not len(b.absent):
        assert row[9] is None and got.absent is None
    else:
        assert got.absent is not None and got.absent.tolist() == b.absent.tolist()
    for name in FIELDS:
        assert got.field(name).tobytes() == b.field(name).tobytes(), name


@settings(max_examples=50)
@given(b=_bucket())
def test_stat_offsets_point_at_the_statistics_of_a_position(b: FrameBucket) -> None:
    blob = fb.encode(7, b)[8]
    assert len(blob) == 8 * b.stats.size
    for pos in range(b.size):
        offsets = fb.stat_offsets(b.count, b.size, pos)
        got = [struct.unpack_from("<d", blob, off)[0] for off in offsets]
        if b.count == 1:
            want = [float(b.stats[pos])]
        else:
            want = [float(b.field(name)[pos]) for name in FIELDS]
        assert len(got) == len(want)
        assert struct.pack(f"<{len(got)}d", *got) == struct.pack(f"<{len(want)}d", *want)


@pytest.mark.parametrize(("count", "size"), [(1, 1), (1, 5), (2, 1), (9, 4)])
def test_stat_offsets_are_in_bounds_and_distinct(count: int, size: int) -> None:
    every = [o for p in range(size) for o in fb.stat_offsets(count, size, p)]
    n = size if count == 1 else size * len(FIELDS)
    assert sorted(every) == [8 * i for i in range(n)]
