"""The slice shortcut for regular series answers exactly what bisecting every step answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signalbox.query.lookback import _bisected, _regular, latest_at


@st.composite
def series_and_steps(draw: st.DrawFn) -> tuple[list[int], list[float], list[int], int]:
    d = draw(st.integers(1, 120))
    t0 = draw(st.integers(-1000, 1000))
    regular = draw(st.integers(0, 40))
    ts = [t0 + i * d for i in range(regular)]
    for gap in draw(st.lists(st.integers(1, 300), max_size=8)):  # an irregular tail
        ts.append((ts[-1] if ts else t0) + gap)
    vs = [float(i) for i in range(len(ts))]
    step = d * draw(st.integers(1, 4)) if draw(st.booleans()) else draw(st.integers(1, 300))
    start = draw(st.integers(t0 - 500, t0 + 500 + 40 * d))
    ends = [start + i * step for i in range(draw(st.integers(0, 60)))]
    lookback = draw(st.integers(1, 600))
    return ts, vs, ends, lookback


@given(series_and_steps())
def test_the_shortcut_agrees_with_bisection(
    case: tuple[list[int], list[float], list[int], int],
) -> None:
    ts, vs, ends, lookback = case
    assert latest_at(ts, vs, ends, lookback) == _bisected(ts, vs, ends, lookback)


def test_rollup_buckets_then_a_raw_tail_take_the_shortcut() -> None:
    buckets = [60_000 * i + 59_999 for i in range(10)]  # stamped 1 ms before each bucket ends
    ts = [*buckets, buckets[-1] + 20_001, buckets[-1] + 40_001]  # raw samples after
    vs = [float(i) for i in range(len(ts))]
    ends = [60_000 * i for i in range(14)]
    got = _regular(ts, vs, ends, 300_000)
    assert got is not None and got == _bisected(ts, vs, ends, 300_000)
    assert got[:3] == [None, 0.0, 1.0] and got[-1] == 11.0
