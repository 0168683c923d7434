"""``sum``'s per-step reduction over all steps at once (``kahan.step_sums``) gives, to the
bit, what ``kahan_sum`` of each step's present values gives: gaps, NaN, infinities of both
signs, sums that overflow, signed zeros."""

from __future__ import annotations

import math
import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from signalbox.query.aggregate import aggregate
from signalbox.query.kahan import kahan_sum, step_sums
from signalbox.query.values import StepSeries

VALUES = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, 1.0, 1e100, -1e100, 10.0, 1.7e308, -1.7e308, 5e-324]),
    st.sampled_from([math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def bits(vals: list[float | None]) -> list[bytes | None]:
    return [None if v is None else struct.pack("<d", v) for v in vals]


def per_step(rows: list[list[float | None]]) -> list[float | None]:
    out: list[float | None] = []
    for column in zip(*rows, strict=True):
        present = [v for v in column if v is not None]
        out.append(kahan_sum(present) if present else None)
    return out


@st.composite
def matrices(draw: st.DrawFn, series: int = 1) -> list[list[float | None]]:
    steps = draw(st.integers(1, 8))
    row = st.lists(VALUES, min_size=steps, max_size=steps)
    return draw(st.lists(row, min_size=series, max_size=6))


@settings(max_examples=500, deadline=None)
@given(matrices())
@example([[1e100, 1.0], [10.0, 2.0], [-1e100, 3.0]])  # compensation: 10, not 0
@example([[1.7e308, 1.0], [1.7e308, 2.0]])  # fsum overflows: +Inf, every step still summed
@example([[math.inf, 1.0], [-math.inf, 2.0]])  # Inf + -Inf: NaN
@example([[None, 1.0], [2.0, None]])  # gaps
@example([[None, 1.0], [None, 2.0]])  # a step with nothing present
@example([[-0.0], [-0.0]])
def test_step_sums_is_kahan_sum_of_each_steps_present_values(
    rows: list[list[float | None]],
) -> None:
    assert bits(step_sums(rows)) == bits(per_step(rows))


@settings(max_examples=100, deadline=None)
@given(matrices(series=2))  # one series is its own sum (its -0.0 kept): not step_sums' case
def test_sum_by_of_several_series_gives_each_steps_kahan_sum(
    rows: list[list[float | None]],
) -> None:
    series = [StepSeries((("g", "a"), ("n", str(i))), r) for i, r in enumerate(rows)]
    got = aggregate("sum", series, ("g",), False, None, 0)
    assert [(s.metric, bits(s.values)) for s in got] == [((("g", "a"),), bits(per_step(rows)))]
