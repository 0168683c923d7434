"""Sealed units (:mod:`signalbox.metrics.sealed`) give back exactly the frame buckets they
were made of: one-frame buckets (values alone) and many-frame ones (every statistic), mixed
in one unit, NaN and infinities bit for bit, ``absent`` positions, layouts whose size is not
a multiple of the chunk, and units with buckets missing (a file not written every minute).
And the chunk of a position, read alone, holds that position's statistics."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics import framebuckets as fb
from signalbox.metrics import sealed
from signalbox.metrics.framebuckets import FIELDS, FrameBucket

M = 60_000
E0 = 1_700_002_800_000  # a whole hour
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, math.nan, math.inf, -math.inf]),
)


@st.composite
def units(draw: st.DrawFn) -> list[FrameBucket]:
    """A unit of one layout: some minutes of an hour, each of one frame or several."""
    n = draw(st.integers(1, 40))
    minutes = sorted(draw(st.sets(st.integers(0, sealed.UNIT_BUCKETS - 1), min_size=1)))
    out = []
    for m in minutes:
        end = E0 + (m + 1) * M
        k = draw(st.integers(1, 3))
        offsets = sorted(draw(st.sets(st.integers(1, 59_999), min_size=k, max_size=k)))
        stamps = [end - M + o for o in offsets]
        values = np.array(draw(st.lists(VALUES, min_size=k * n, max_size=k * n))).reshape(k, n)
        bucket = fb.from_frames(end, stamps, values)
        gone = draw(st.sets(st.integers(0, n - 1), max_size=3))
        if gone:
            bucket.absent = np.array(sorted(gone), dtype=np.int64)
        out.append(bucket)
    return out


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def _assert_equal(got: FrameBucket, want: FrameBucket) -> None:
    assert (got.end, got.count, got.first_ts, got.last_ts, got.prev_ts) == (
        want.end, want.count, want.first_ts, want.last_ts, want.prev_ts,
    )  # fmt: skip
    assert _bits(np.array([got.sx, got.sxx])) == _bits(np.array([want.sx, want.sxx]))
    assert got.stats.shape == want.stats.shape
    assert _bits(got.stats) == _bits(want.stats)  # NaN, -0.0 and infinities bit for bit
    g = [] if got.absent is None else got.absent.tolist()
    w = [] if want.absent is None else want.absent.tolist()
    assert g == w


@settings(max_examples=60, deadline=None)
@given(units())
def test_a_sealed_unit_unseals_to_the_buckets_it_was_made_of(fbs: list[FrameBucket]) -> None:
    header, chunks = sealed.seal(fbs)
    assert len(chunks) == -(-fbs[0].size // sealed.CHUNK)
    back = sealed.unseal(sealed.Header.decode(header.encode()), chunks)
    assert len(back) == len(fbs)
    for got, want in zip(back, fbs, strict=True):
        _assert_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(units(), st.data())
def test_a_chunk_read_alone_holds_its_positions_statistics(
    fbs: list[FrameBucket], data: st.DataObject
) -> None:
    header, chunks = sealed.seal(fbs)
    header = sealed.Header.decode(header.encode())
    p = data.draw(st.integers(0, fbs[0].size - 1))
    block = sealed.position_blocks(header, chunks[p // sealed.CHUNK])[p % sealed.CHUNK]
    for name in FIELDS:
        got = sealed.position_field(header.full, block, name)
        assert got.shape == (len(fbs),)
        for i, bucket in enumerate(fbs):
            assert _bits(got[i : i + 1]) == _bits(bucket.field(name)[p : p + 1]), name


def test_a_unit_of_one_frame_buckets_keeps_the_values_alone() -> None:
    """The usual hour (one pass a minute): 60 values a position, 7.7 KB a chunk of 16."""
    fbs = [
        fb.from_frames(E0 + (m + 1) * M, [E0 + m * M + 5_000], np.arange(500.0)[None, :] + m)
        for m in range(60)
    ]
    header, chunks = sealed.seal(fbs)
    assert not header.full
    assert len(chunks[0]) == sealed.CHUNK * 60 * 8
    assert np.frombuffer(chunks[1], dtype="<f8").reshape(-1, 60)[2, 7] == 16 + 2 + 7
