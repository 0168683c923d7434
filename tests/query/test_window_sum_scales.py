"""The exact window sums' scales read from IEEE bits (:func:`vectorkernels._lowest_bits`)
and powers of two applied by products (:func:`vectorkernels._times_pow2`) answer what
``frexp`` and ``ldexp`` answer, bit for bit: every float (subnormals, signed zeros, NaN,
infinities) and every exponent, the ones past a float's ``2**q`` included; and window sums
of values at the ends of the float range stay ``math.fsum``'s."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.store import SeriesPoints
from signalbox.query import vectorkernels
from signalbox.query.kernels import KERNELS as SCALAR
from signalbox.query.rangefuncs import windows_for
from signalbox.query.vectorkernels import RawColumns, grid, values_of

_ANY_FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", b.to_bytes(8, "little"))[0]),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.0**-1022, 2.0**1023, 1.7976931348623157e308]),
)


def _frexp_scale(v: float) -> int:
    """The scale the kernels read before: ``frexp`` of the value and of its significand's
    lowest set bit (non-finite values as 1.0, zeros the mark ``2**31``)."""
    if v == 0:
        return 2**31
    mant, exp = math.frexp(v if math.isfinite(v) else 1.0)
    whole = int(abs(mant * 2.0**53))
    return exp - 54 + math.frexp(float(whole & -whole))[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(_ANY_FLOAT, min_size=1, max_size=50))
def test_lowest_bits_are_frexps_scales(values: list[float]) -> None:
    got = vectorkernels._lowest_bits(np.array(values, dtype=np.float64)).tolist()
    assert got == [_frexp_scale(v) for v in values]


def _bits(a: np.ndarray) -> list[bytes]:
    return [struct.pack("<d", v) for v in a.tolist()]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(_ANY_FLOAT, min_size=1, max_size=8), st.integers(-1100, 1100)),
        min_size=1,
        max_size=5,
    )
)
def test_products_with_powers_of_two_are_ldexps(series: list[tuple[list[float], int]]) -> None:
    """Exponents past -1074..1023 (no float ``2**q``) included, so ldexp itself answers."""
    x = np.array([v for vs, _ in series for v in vs], dtype=np.float64)
    q = np.array([k for _, k in series], dtype=np.int64)
    counts = np.array([len(vs) for vs, _ in series], dtype=np.int64)
    with np.errstate(all="ignore"):
        got = vectorkernels._times_pow2(x, q, counts)
        want = np.ldexp(x, np.repeat(q, counts))
    assert _bits(got) == _bits(want)


# values at the float range's ends: subnormals (scales below -1023: no float 2**-q),
# values near 2**1023, tiny and huge beside each other (past one limb or two)
_EDGE = st.one_of(
    st.integers(-(2**20), 2**20).map(lambda k: k * 5e-324),
    st.floats(0.5, 1).map(lambda v: v * 2.0**-1040),
    st.floats(0.5, 1).map(lambda v: v * 2.0**1000),
    st.integers(-(2**40), 2**40).map(lambda k: k * 2.0**960),
    st.floats(-1e3, 1e3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(st.lists(_EDGE, min_size=1, max_size=30), min_size=1, max_size=4),
    width=st.sampled_from([1_000, 4_000, 30_000]),
)
def test_window_sums_at_the_float_ranges_ends_are_fsums(
    series: list[list[float]], width: int
) -> None:
    pairs = [(list(range(1_000, 1_000 * (len(vs) + 1), 1_000)), vs) for vs in series]
    ends = list(range(1_000, 32_000, 1_000))
    cols = RawColumns.of(pairs)
    g = grid(cols, ends, width, width)
    for func in ("sum_over_time", "avg_over_time"):
        got = values_of(*vectorkernels.KERNELS[func](cols, g))
        for (ts, vs), row in zip(pairs, got, strict=True):
            sp = SeriesPoints("m", (), ts, vs)
            want = SCALAR[func](sp, windows_for(sp, ends, width, width), None)
            assert _row_bits(row) == _row_bits(want), func


def _row_bits(row: list[float | None]) -> list[bytes | None]:
    return [None if v is None else struct.pack("<d", v) for v in row]
