"""Bucket columns' pieces are put in (series, time) order by one stable sort of a combined
key (:func:`bucketcolumns._series_time_order`): the permutation ``np.lexsort`` gives,
position for position, duplicates (kept in their order, as lexsort keeps them), series ids
and times too far apart for the key (lexsort itself) and pieces in runs included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics.sql import bucketcolumns

_T0 = 1_700_000_000_000


@st.composite
def _pieces(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A few runs of (series id, time) points, each in order as a piece reads them, with
    duplicates, and now and then ids or times at the ends of int64."""
    sid: list[int] = []
    ts: list[int] = []
    for _ in range(draw(st.integers(1, 4))):
        ids = sorted(draw(st.lists(st.integers(0, 6), min_size=1, max_size=4)))
        for i in ids:
            times = sorted(draw(st.lists(st.integers(0, 40), min_size=1, max_size=6)))
            sid += [i] * len(times)
            ts += [_T0 + t * 60_000 for t in times]
    if draw(st.booleans()):  # shuffled: not runs at all
        perm = draw(st.permutations(range(len(sid))))
        sid, ts = [sid[j] for j in perm], [ts[j] for j in perm]
    wide = draw(st.sampled_from(["none", "ids", "times", "negative", "late"]))
    a, b = np.array(sid, dtype=np.int64), np.array(ts, dtype=np.int64)
    if wide == "ids":
        a[a == a.max()] = 2**62  # (id + 1) * span past int64: lexsort answers
    elif wide == "times":
        b[0] = -(2**62)
    elif wide == "negative":
        a[0] = -(2**45) + 3  # sid.min() * span past int64 the other way
    elif wide == "late":
        b += 2**63 - 1 - int(b.max())  # times at int64's end: the key counts from the first
    return a, b


@settings(max_examples=300, deadline=None)
@given(_pieces())
def test_order_is_lexsorts(pieces: tuple[np.ndarray, np.ndarray]) -> None:
    sid, ts = pieces
    got = bucketcolumns._series_time_order(sid, ts)
    assert got.tolist() == np.lexsort((ts, sid)).tolist()


def test_edges_of_the_key() -> None:
    """The widest span the key holds uses it; one more goes to lexsort; both answer alike."""
    for top in (2**31 - 1, 2**32):
        widest = (2**63 - 1) // (top + 1)
        for span in (widest, widest + 1):
            sid = np.array([top, 0, top, 0], dtype=np.int64)
            ts = np.array([span - 1, span - 1, 0, 0], dtype=np.int64)
            assert bucketcolumns._series_time_order(sid, ts).tolist() == [3, 1, 2, 0]
