"""``histogram_quantile``'s array path over all steps at once (``_sorted_steps``) answers
every step as the per-step reference does (``_sorted_steps_loop``, and ``_each_step``'s
sort-and-coalesce ``bucket_quantile``), to the bit: absent buckets, NaN, ±Inf, negative,
decreasing and near-equal counts (an increase within 1e-12 suppressed, after which the
running ``prev`` is no running maximum), φ NaN, below 0, above 1 or differing by step, no
+Inf bucket, fewer than two buckets, zero observations, the rank in a first bucket bounded
at or below 0, 0/0."""

from __future__ import annotations

import math
import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from signalbox.query.histogram import (
    _ARRAY_STEPS,
    _each_step,
    _sorted_steps,
    _sorted_steps_loop,
    histogram_quantile,
)
from signalbox.query.values import StepSeries

Members = list[tuple[float, list[float | None]]]

BOUNDS = st.one_of(
    st.sampled_from(
        [-math.inf, -2.0, -0.5, 0.0, 1e-300, 5e-324, 0.1, 0.25, 1.0, 2.5, 10.0, 1e308, math.inf]
    ),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e3, max_value=1e3),
)
PHI = st.one_of(
    st.floats(min_value=0.0, max_value=1.0),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 0.99, math.nan, -0.1, 1.1, -math.inf, math.inf]),
    st.floats(),
)
ODD = st.sampled_from(
    [
        None,
        math.nan,
        math.inf,
        -math.inf,
        -1.0,
        -0.0,
        0.0,
        5e-324,
        1e-310,
        2.2250738585072014e-308,
        1e308,
        1.7976931348623157e308,
    ]
)


@st.composite
def columns(draw: st.DrawFn, n: int) -> list[float | None]:
    """One step's counts for ``n`` buckets, mostly rising with float-noise steps among them."""
    out: list[float | None] = []
    prev = 0.0
    for _ in range(n):
        kind = draw(st.integers(0, 9))
        c: float | None
        if kind == 0:
            c = draw(ODD)
        elif kind == 1:
            c = prev * draw(st.sampled_from([1 + 1e-13, 1 + 9e-13, 1 + 1.9e-12, 1 - 1e-13]))
        elif kind == 2:
            c = prev + draw(st.sampled_from([1e-13, 2e-12, 3.5e-12, -1e-13])) * max(prev, 1.0)
        elif kind == 3:
            c = prev  # flat
        elif kind == 4:
            c = prev - draw(st.floats(0.0, 10.0))  # a decrease, maybe negative
        elif kind == 5:
            c = draw(st.floats(allow_nan=True, allow_infinity=True))
        else:
            c = prev + draw(st.floats(0.0, 100.0))
        out.append(c)
        if c is not None and math.isfinite(c):
            prev = c
    return out


@st.composite
def histograms(draw: st.DrawFn) -> tuple[list[float], Members]:
    bounds = draw(st.lists(BOUNDS, min_size=1, max_size=8, unique=True))
    if draw(st.booleans()):
        bounds.append(math.inf)
    bounds = sorted(set(bounds))  # distinct and not NaN, as histogram_quantile hands them
    steps = draw(st.integers(1, 24))
    phi_one = draw(PHI)
    phi = draw(st.one_of(st.just([phi_one] * steps), st.lists(PHI, min_size=steps, max_size=steps)))
    cols = [draw(columns(len(bounds))) for _ in range(steps)]
    members: Members = [(b, [col[i] for col in cols]) for i, b in enumerate(bounds)]
    return phi, members


def bits(vals: list[float | None]) -> list[bytes | None]:
    return [None if v is None else struct.pack("<d", v) for v in vals]


# prev 1; 1 + 1.9e-12 is noise (relative 0.95e-12), prev stays 1; 1 + 3.5e-12 is then an
# increase (1.75e-12 over 1, though 0.8e-12 over a running maximum of 1 + 1.9e-12)
NOISE_THEN_RISE: Members = [
    (0.5, [1.0, 1.0]),
    (1.0, [1.0 + 1.9e-12, 4.0]),
    (2.0, [1.0 + 3.5e-12, 9.0]),
    (math.inf, [1.0 + 3.5e-12, 9.0]),
]


@settings(max_examples=1500, deadline=None)
@given(histograms())
@example(([0.5, 0.999999999999], NOISE_THEN_RISE))
@example(([0.0, 0.5], [(1.0, [0.0, 0.0]), (math.inf, [5.0, 0.0])]))  # 0/0; no observations
@example(([0.5], [(-1.0, [3.0]), (math.inf, [4.0])]))  # rank in a first bucket bounded below 0
@example(([0.5, 0.5], [(1.0, [None, 2.0]), (2.0, [2.0, None]), (math.inf, [4.0, 4.0])]))
def test_array_path_is_the_per_step_reference(case: tuple[list[float], Members]) -> None:
    phi, members = case
    want = bits(_sorted_steps_loop(phi, members))
    assert bits(_sorted_steps(phi, members)) == want
    assert bits(_each_step(phi, members)) == want


def test_noise_then_rise_takes_the_increase() -> None:
    # the answer a running maximum would give differs: this step needs the exact prev
    got = _sorted_steps([0.999999999999], [(b, v[:1]) for b, v in NOISE_THEN_RISE])
    want = _sorted_steps_loop([0.999999999999], [(b, v[:1]) for b, v in NOISE_THEN_RISE])
    assert bits(got) == bits(want)
    assert got != _sorted_steps_loop(
        [0.999999999999],
        [(0.5, [1.0]), (1.0, [1.0 + 1.9e-12]), (2.0, [1.0 + 1.9e-12]), (math.inf, [1.0 + 1.9e-12])],
    )


@settings(max_examples=200, deadline=None)
@given(histograms())
def test_histogram_quantile_of_many_steps_is_each_steps(case: tuple[list[float], Members]) -> None:
    # enough steps (repeated) for histogram_quantile to take the array path
    phi, members = case
    k = -(-_ARRAY_STEPS // len(phi))
    phi = phi * k
    series = [StepSeries((("__name__", "h_bucket"), ("le", repr(b))), v * k) for b, v in members]
    got = [bits(s.values) for s in histogram_quantile(phi, series)]
    want = bits(_each_step(phi, [(b, v * k) for b, v in members]))
    assert got == ([want] if any(v is not None for v in want) else [])
