"""``histogram_quantile`` over many steps answers each step as Prometheus' BucketQuantile of
that step's present buckets, to the bit: the members sorted once per histogram (distinct,
non-NaN bounds), almost.Equal asked only of an increase, its common case inlined."""

from __future__ import annotations

import math
import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from signalbox.query.histogram import histogram_quantile
from signalbox.query.values import StepSeries

_MIN_NORMAL = 2.2250738585072014e-308


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    return diff / (abs_sum if math.isnan(abs_sum) else min(abs_sum, 1.7976931348623157e308)) < (
        epsilon
    )


def reference(q: float, buckets: list[tuple[float, float]]) -> float:
    """promql/quantile.go's BucketQuantile for classic buckets, line by line."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(([b, c] for b, c in buckets), key=lambda b: b[0])
    if ordered[-1][0] != math.inf:
        return math.nan
    merged = [list(ordered[0])]
    for bound, count in ordered[1:]:
        if bound == merged[-1][0]:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    prev = merged[0][1]
    for b in merged[1:]:
        curr = b[1]
        if curr == prev:
            continue
        if _almost_equal(prev, curr, 1e-12):
            b[1] = prev
            continue
        if curr < prev:
            b[1] = prev
            continue
        prev = curr
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    lo, hi = 0, len(merged) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if not merged[mid][1] >= rank:
            lo = mid + 1
        else:
            hi = mid
    b = lo
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    # Go's float division: 0/0 is NaN (x/0 cannot happen: the bucket's count reaches rank)
    return start + (end - start) * (rank / count if count else math.nan)


def bits(v: float | None) -> bytes | None:
    return None if v is None else struct.pack("<d", v)


BOUNDS = ["+Inf", "0.1", "0.25", "1", "1e0", "-0.5", "0", "-0", "NaN", "10", "2.5"]
COUNTS = st.one_of(
    st.none(),
    st.sampled_from(
        [0.0, -0.0, 1.0, 1.0 + 1e-13, 1.0 - 1e-13, 2.0, 1e308, 1.7e308, 1.7976931348623157e308]
    ),
    st.sampled_from([math.inf, -math.inf, math.nan, 5e-324, 1e-308, -1.0, 3.0, 3.0000000000001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=100.0),
)
PHI = st.one_of(st.floats(min_value=0.0, max_value=1.0), st.sampled_from([math.nan, -0.1, 1.1]))


@st.composite
def histograms(draw: st.DrawFn) -> tuple[list[float], list[StepSeries]]:
    steps = draw(st.integers(1, 6))
    les = draw(st.lists(st.sampled_from(BOUNDS), min_size=1, max_size=7))
    phi = draw(st.lists(PHI, min_size=steps, max_size=steps))
    series = [
        StepSeries(
            (("__name__", "h_bucket"), ("job", "a"), ("le", le), ("n", str(n))),
            draw(st.lists(COUNTS, min_size=steps, max_size=steps)),
        )
        for n, le in enumerate(les)
    ]
    return phi, series


def steps_of(phi: list[float], series: list[StepSeries]) -> list[list[bytes | None]]:
    """Each step's reference answer for the one histogram ``series`` hold (n dropped)."""
    from signalbox.query.histogram import parse_le

    out = []
    for i, q in enumerate(phi):
        buckets = [
            (parse_le(dict(s.metric)["le"]), s.values[i]) for s in series if s.values[i] is not None
        ]
        out.append(bits(reference(q, buckets)) if buckets else None)  # type: ignore[arg-type]
    return [out]


@settings(max_examples=600, deadline=None)
@given(histograms())
@example(  # phi 0, the lowest bucket empty: rank 0 over count 0, NaN in Go (Python raised)
    ([0.0], [StepSeries((("le", "1"),), [0.0]), StepSeries((("le", "+Inf"),), [5.0])])
)
@example(  # an increase within 1e-12: float noise, ignored
    ([0.5], [StepSeries((("le", "1"),), [1.0]), StepSeries((("le", "+Inf"),), [1.0 + 1e-13])])
)
@example(  # prev + curr overflows: Go's Min(absSum, MaxFloat64) divides by MaxFloat64
    ([0.5], [StepSeries((("le", "1"),), [1.0e308]), StepSeries((("le", "+Inf"),), [1.7e308])])
)
def test_every_step_is_bucket_quantile_of_its_present_buckets(
    case: tuple[list[float], list[StepSeries]],
) -> None:
    phi, series = case
    # the n label keeps series apart in the input; one histogram: drop it before grouping
    one = [StepSeries(tuple(p for p in s.metric if p[0] != "n"), s.values) for s in series]
    got = histogram_quantile(phi, one)
    want = [w for w in steps_of(phi, series) if any(v is not None for v in w)]
    assert [[bits(v) for v in s.values] for s in got] == want
