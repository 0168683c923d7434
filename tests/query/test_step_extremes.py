"""``max``/``min`` of a group over every step at once (``stepextremes``) give, to the bit,
what ``nan_ignoring_max``/``_min`` of each step's present values give: NaN anywhere, all
NaN, infinities, zeros of both signs (ties keep the first), gaps left to the caller."""

from __future__ import annotations

import math
import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from signalbox.query.aggregate import aggregate
from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min
from signalbox.query.stepextremes import step_extremes
from signalbox.query.values import StepSeries

VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, math.inf, -math.inf, math.nan, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def bits(vals: list[float | None] | None) -> list[bytes | None] | None:
    return None if vals is None else [None if v is None else struct.pack("<d", v) for v in vals]


def per_step(rows: list[list[float | None]], largest: bool) -> list[float | None]:
    reduce = nan_ignoring_max if largest else nan_ignoring_min
    out: list[float | None] = []
    for column in zip(*rows, strict=True):
        present = [v for v in column if v is not None]
        out.append(reduce(present) if present else None)
    return out


@st.composite
def matrices(draw: st.DrawFn, gaps: bool) -> list[list[float | None]]:
    steps = draw(st.integers(1, 8))
    value = st.one_of(st.none(), VALUES) if gaps else VALUES
    row = st.lists(value, min_size=steps, max_size=steps)
    return draw(st.lists(row, min_size=2, max_size=6))


@settings(max_examples=500, deadline=None)
@given(matrices(gaps=False), st.booleans())
@example([[0.0, -0.0], [-0.0, 0.0]], True)  # a zero pick: the first of the tie
@example([[-0.0, 0.0], [0.0, -0.0]], False)
@example([[math.nan, math.nan], [math.nan, 1.0]], True)  # all NaN: NaN; NaN first: ignored
@example([[math.inf, -math.inf], [math.nan, math.inf]], False)
@example([[-math.nan], [-math.nan]], True)  # all NaN: the functions' own NaN, not an input's
def test_step_extremes_are_each_steps_pick(rows: list[list[float | None]], largest: bool) -> None:
    assert bits(step_extremes(rows, largest)) == bits(per_step(rows, largest))


@settings(max_examples=200, deadline=None)
@given(matrices(gaps=True), st.sampled_from(["max", "min"]))
@example([[None, 1.0], [2.0, None]], "max")
def test_max_and_min_by_give_each_steps_pick(rows: list[list[float | None]], op: str) -> None:
    series = [StepSeries((("g", "a"), ("n", str(i))), r) for i, r in enumerate(rows)]
    got = aggregate(op, series, ("g",), False, None, 0)
    want = per_step(rows, op == "max")
    assert [(s.metric, bits(s.values)) for s in got] == [((("g", "a"),), bits(want))]
