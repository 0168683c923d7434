"""Window bounds found by one search for both edges when windows start where an earlier
one ends (evenly spaced ends, a width of whole steps: :func:`vectorkernels.grid`) are the
bisects of each series, as when each edge is searched for: widths of 1..n steps and more,
ends before, among and after the samples, uneven ends and widths between steps."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.query import vectorkernels
from signalbox.query.vectorkernels import RawColumns, grid

_SERIES = st.lists(
    st.lists(st.integers(0, 600), min_size=1, max_size=30, unique=True).map(sorted),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    series=_SERIES,
    first=st.integers(-100, 500),
    step=st.integers(1, 60),
    steps=st.integers(1, 25),
    k=st.integers(0, 30),
    extra=st.integers(0, 2),
    jitter=st.booleans(),
)
def test_bounds_are_each_series_bisects(
    series: list[list[int]], first: int, step: int, steps: int, k: int, extra: int, jitter: bool
) -> None:
    ends = [first + i * step for i in range(steps)]
    if jitter and steps > 2:
        ends[1] += 1  # uneven: the edges are searched for one by one
    width = k * step + extra  # whole steps, or between them
    cols = RawColumns.of([(ts, [0.0] * len(ts)) for ts in series])
    g = grid(cols, ends, width, width)
    for i, ts in enumerate(series):
        a = int(cols.starts[i])
        assert (g.hi[i] - a).tolist() == [bisect_right(ts, e) for e in ends]
        assert (g.lo[i] - a).tolist() == [bisect_right(ts, e - width) for e in ends]


def test_one_search_only_for_whole_steps_of_even_ends() -> None:
    e = np.array([10, 20, 30, 40], dtype=np.int64)
    assert vectorkernels._steps_per_width(e, 20) == 2
    assert vectorkernels._steps_per_width(e, 25) == 0  # between steps
    assert vectorkernels._steps_per_width(e, 40) == 0  # as many steps as ends: two searches
    assert vectorkernels._steps_per_width(np.array([10, 20, 31]), 10) == 0  # uneven
    assert vectorkernels._steps_per_width(np.array([10]), 10) == 0
