"""``nan_ignoring_min``/``nan_ignoring_max`` (``min``/``max`` and their ``_over_time``) pick
what the NaN-filtered list's ``min``/``max`` picks, to the bit: signed zeros (the first of
equal values wins), NaN first, in the middle, last or alone, infinities."""

from __future__ import annotations

import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min

_VALUE = st.one_of(
    st.sampled_from([math.nan, -math.nan, 0.0, -0.0, math.inf, -math.inf, 1.0, -1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _filtered(pick: type[min] | type[max], values: list[float]) -> float:
    real = [v for v in values if v == v]
    return pick(real) if real else math.nan


def _bits(v: float) -> bytes:
    return struct.pack("<d", v)


@given(st.lists(_VALUE, max_size=12))
def test_extremes_are_the_filtered_lists(values: list[float]) -> None:
    for fast, pick in ((nan_ignoring_min, min), (nan_ignoring_max, max)):
        got, want = fast(values), _filtered(pick, values)
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert _bits(got) == _bits(want), (fast.__name__, values)


def test_ties_of_signed_zeros_keep_the_first() -> None:
    assert _bits(nan_ignoring_max([0.0, -0.0])) == _bits(0.0)
    assert _bits(nan_ignoring_max([-0.0, 0.0])) == _bits(-0.0)
    assert _bits(nan_ignoring_min([math.nan, -0.0, 0.0])) == _bits(-0.0)
    assert _bits(nan_ignoring_max([math.nan, 0.0, -0.0])) == _bits(0.0)
    assert nan_ignoring_max([math.nan, 1.0, 3.0, math.nan, 2.0]) == 3.0
    assert math.isnan(nan_ignoring_min([math.nan, math.nan]))
    assert math.isnan(nan_ignoring_max([]))
