"""``rowsealed.columns_of``: the columns asked for of many packed blobs, read in place, are
``unpack_many``'s (the reference: each blob decoded whole) bit for bit, cut to a window,
for blobs of every header (full, constant and copied columns, copies of copies), in the
order given."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics import rowbuckets, rowsealed

_SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.5, -(2.0**60)]


@st.composite
def _units(draw: st.DrawFn) -> dict[str, Any]:
    """Bucket columns of a few series: each column random, constant, or a copy of an
    earlier column (so headers differ from blob to blob)."""
    sizes = draw(st.lists(st.integers(1, 70), min_size=1, max_size=6))
    if draw(st.booleans()):  # units of one size (whole units: the usual)
        sizes = [sizes[0]] * len(sizes)
    n = sum(sizes)
    sids = np.repeat(np.arange(len(sizes), dtype=np.int64) * 3 + 1, sizes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols: dict[str, Any] = {"series_id": sids}
    made: list[str] = []
    for name in rowsealed.PACKED:
        how = draw(st.sampled_from(["random", "constant", "copy"]))
        if name == "ts":
            how = "random"
        if how == "copy" and made:
            src = draw(st.sampled_from(made))
            bits = np.asarray(cols[src]).view(np.int64) if src not in rowsealed.INTS else cols[src]
            col = np.array(bits, dtype=np.int64)
        elif how == "constant":
            col = np.full(n, draw(st.integers(-(2**40), 2**40)), dtype=np.int64)
        else:
            col = rng.integers(-(2**50), 2**50, n, dtype=np.int64)
            if name not in rowsealed.INTS:
                f = rng.normal(size=n) * 1e6
                f[rng.integers(0, n, 3)] = rng.choice(_SPECIAL, 3)
                col = f.view(np.int64).copy()
        cols[name] = col if name in rowsealed.INTS else col.view(np.float64)
        made.append(name)
    # bucket ends ascending within each series (the packed order)
    ts = np.concatenate([np.sort(rng.integers(0, 10**6, k)) * 60 + i for i, k in enumerate(sizes)])
    cols["ts"] = ts.astype(np.int64)
    return cols


@settings(max_examples=150, deadline=None)
@given(
    cols=_units(),
    names=st.lists(st.sampled_from(rowsealed.PACKED), min_size=1, max_size=8, unique=True),
    window=st.one_of(st.none(), st.tuples(st.integers(-10, 7 * 10**7), st.integers(0, 10**8))),
    reverse=st.booleans(),
)
def test_columns_of_are_the_decoded_columns(
    cols: dict[str, Any], names: list[str], window: tuple[int, int] | None, reverse: bool
) -> None:
    ids, blobs = rowsealed.pack(cols)
    sids, blobs = ids.tolist(), list(blobs)
    if reverse:
        sids, blobs = sids[::-1], blobs[::-1]
    want_ids, grid = rowsealed.unpack_many(sids, blobs)
    lo, hi = window if window is not None else (None, None)
    got_ids, got = rowsealed.columns_of(sids, blobs, names, lo, hi)
    keep = np.ones(len(want_ids), dtype=bool)
    if window is not None:
        ends = rowsealed.column(grid, "ts")
        keep = (ends >= window[0]) & (ends <= window[1])
    assert got_ids.tolist() == want_ids[keep].tolist()
    assert list(got) == names
    for name in names:
        want = rowsealed.column(grid, name)[keep]
        have = rowsealed.as_column(name, got[name])
        assert have.dtype == want.dtype, name
        assert have.tobytes() == want.tobytes(), name


def test_columns_of_nothing_and_one_sample_units() -> None:
    ids, got = rowsealed.columns_of([], [], ["ts", "last"])
    assert len(ids) == 0 and [len(v) for v in got.values()] == [0, 0]
    ts = np.arange(1, 61, dtype=np.int64) * 60_000 - 30_000
    values = np.arange(60, dtype=np.float64) * 1.5
    values[7] = math.nan
    cols = rowbuckets.from_samples(np.full(60, 4, dtype=np.int64), ts, values, 60_000)
    sids, blobs = rowsealed.pack(cols)
    got_ids, got = rowsealed.columns_of(
        sids.tolist(), blobs, ["last", "count", "ts"], 600_000, 1_200_000
    )
    keep = (cols["ts"] >= 600_000) & (cols["ts"] <= 1_200_000)
    assert got_ids.tolist() == [4] * int(keep.sum())
    assert rowsealed.as_column("last", got["last"]).tobytes() == cols["last"][keep].tobytes()
    assert got["count"].tolist() == np.asarray(cols["count"])[keep].tolist()
    assert got["ts"].tolist() == cols["ts"][keep].tolist()
