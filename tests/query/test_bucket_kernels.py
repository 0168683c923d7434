"""Range kernels over rollup buckets equal the kernels over the raw samples whenever every
window holds whole buckets (ends and widths multiples of the resolution): the property that
makes answers from rollups exact (issue 9). Buckets come from the reference in
:mod:`tests.query.bucketing`, straight from raw and through a finer tier."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics.store import SeriesPoints
from signalbox.query.exactness import splits
from signalbox.query.kahan import kahan_inc
from signalbox.query.kernels import KERNELS
from signalbox.query.rangefuncs import Values, windows_for
from tests.query.bucketing import bucketize, merge

T0 = 1_700_000_100_000  # a multiple of 5 minutes
NAN = math.nan

EXACT = (
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "stddev_over_time",
    "stdvar_over_time",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "last_over_time",
    "present_over_time",
)


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@st.composite
def raw_series(draw: st.DrawFn) -> SeriesPoints:
    """Irregular spacing with occasional long gaps; a counter with resets or a gauge; some NaNs."""
    n = draw(st.integers(1, 80))
    gaps = draw(
        st.lists(
            st.one_of(st.integers(1, 45_000), st.integers(45_000, 900_000)), min_size=n, max_size=n
        )
    )
    counter = draw(st.booleans())
    values: list[float] = []
    v = draw(st.floats(0, 500))
    for _ in range(n):
        if counter:
            v = 0.0 if draw(st.integers(0, 9)) == 0 else v + draw(st.floats(0, 50))
        else:
            v = draw(st.floats(-1000, 1000))
        values.append(NAN if draw(st.integers(0, 24)) == 0 else v)
    ts, t = [], T0 + draw(st.integers(0, 300_000))
    for g in gaps:
        t += g
        ts.append(t)
    return SeriesPoints("x", (), ts, values)


def run(name: str, sp: SeriesPoints, ends: list[int], width_ms: int) -> Values:
    param = [3600.0] * len(ends) if name == "predict_linear" else None
    return KERNELS[name](sp, windows_for(sp, ends, width_ms, width_ms, steps=ends), param)


def check_all(raw: SeriesPoints, buckets: SeriesPoints, res_s: int, k: int, shift: int) -> None:
    res = res_s * 1000
    first = -(-raw.timestamps[0] // res) * res + shift * res
    last = -(-raw.timestamps[-1] // res) * res + 2 * res
    ends = list(range(first, last + 1, res))
    width = k * res
    assert not splits(buckets, ends, width)  # the premise: whole buckets only
    for name in EXACT:
        want, got = run(name, raw, ends, width), run(name, buckets, ends, width)
        bad = [(e, w, g) for e, w, g in zip(ends, want, got, strict=True) if not same(w, g)]
        assert not bad, (name, bad[:3])


@settings(max_examples=75, deadline=None)
@given(raw=raw_series(), k=st.integers(1, 6), shift=st.integers(0, 3))
def test_kernels_over_minute_buckets_equal_kernels_over_raw(
    raw: SeriesPoints, k: int, shift: int
) -> None:
    check_all(raw, bucketize(raw, 60), 60, k, shift)


@settings(max_examples=75, deadline=None)
@given(raw=raw_series(), k=st.integers(1, 4), shift=st.integers(0, 2))
def test_kernels_over_five_minute_buckets_built_from_minute_buckets_equal_kernels_over_raw(
    raw: SeriesPoints, k: int, shift: int
) -> None:
    check_all(raw, merge(bucketize(raw, 60), 300), 300, k, shift)


@settings(max_examples=50, deadline=None)
@given(raw=raw_series())
def test_merging_minute_buckets_gives_the_five_minute_buckets_of_the_raw_samples(
    raw: SeriesPoints,
) -> None:
    direct, merged = bucketize(raw, 300), merge(bucketize(raw, 60), 300)
    assert merged.columns() == direct.columns()
    for column in direct.columns():
        a, b = getattr(direct, column), getattr(merged, column)
        assert len(a) == len(b)
        assert all(same(float(x), float(y)) for x, y in zip(a, b, strict=True)), column


def test_a_bucket_keeps_first_last_prev_drops_and_regression_sums() -> None:
    # one minute bucket (T0, T0 + 60 s]: a counter 5, 9, 2 (a reset from 9), then 4
    ts = [T0 + 10_000, T0 + 20_000, T0 + 40_000, T0 + 60_000]
    raw = SeriesPoints("x", (), ts, [5.0, 9.0, 2.0, 4.0])
    b = bucketize(raw, 60)
    assert (b.first_ts, b.firsts, b.timestamps, b.values) == ([ts[0]], [5.0], [ts[3]], [4.0])
    assert (b.prev_ts, b.prevs, b.counts) == ([ts[2]], [2.0], [4.0])
    assert (b.drops, b.resets, b.changes) == ([9.0], [1], [3])
    assert (b.sx, b.sxx, b.sxy) == ([90.0], [100 + 900 + 2500], [0 + 90 + 60 + 200])
    assert b.m2 == [pytest.approx(26.0)]  # mean 5: 0 + 16 + 9 + 1
    assert (b.mins, b.maxs, b.sums) == ([2.0], [9.0], [20.0])


def test_nan_is_left_out_of_min_and_max_but_makes_sums_nan() -> None:
    raw = SeriesPoints("x", (), [T0 + 1000, T0 + 2000, T0 + 3000], [NAN, 3.0, NAN])
    b = bucketize(raw, 60)
    assert (b.mins, b.maxs) == ([3.0], [3.0])
    assert b.sums is not None and b.sxy is not None and b.m2 is not None
    assert math.isnan(b.sums[0]) and math.isnan(b.sxy[0]) and math.isnan(b.m2[0])
    assert (b.changes, b.resets, b.drops) == ([2], [0], [0.0])  # NaN compares false


def test_rate_over_one_bucket_uses_its_first_and_last_sample_and_drops() -> None:
    # 10 samples 6 s apart in one minute bucket, rising by 1 with a reset after the 5th
    ts = [T0 + 6_000 * i for i in range(1, 11)]
    vals = [float(i) for i in range(1, 6)] + [float(i) for i in range(1, 6)]
    raw = SeriesPoints("x", (), ts, vals)
    b = bucketize(raw, 60)
    end = T0 + 60_000
    [inc] = run("increase", b, [end], 60_000)
    assert inc == run("increase", raw, [end], 60_000)[0]
    assert inc == pytest.approx((5 - 1 + 5) * 60 / 54)  # 9 over 54 s, extrapolated to 60 s
    # the old buckets (last value only) saw a single point here: no rate at all
    assert run("rate", SeriesPoints("x", (), [end], [5.0], resolution=60), [end], 60_000) == [None]


# --- long windows: sums taken by blocks of buckets, against Prometheus' own loops ----------


def prometheus_regression(ts: list[int], vs: list[float], origin: int) -> tuple[float, float]:
    """``linearRegression`` of promql/functions.go, step for step (Kahan sums)."""
    n = sx = cx = sy = cy = sxy = cxy = sx2 = cx2 = 0.0
    for t, v in zip(ts, vs, strict=True):
        n += 1
        x = (t - origin) / 1000
        sx, cx = kahan_inc(x, sx, cx)
        sy, cy = kahan_inc(v, sy, cy)
        sxy, cxy = kahan_inc(x * v, sxy, cxy)
        sx2, cx2 = kahan_inc(x * x, sx2, cx2)
    if all(v == vs[0] for v in vs):
        return 0.0, vs[0]
    sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
    slope = (sxy - sx * sy / n) / (sx2 - sx * sx / n)
    return slope, sy / n - slope * sx / n


def prometheus_stdvar(vs: list[float]) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for v in vs:
        count += 1
        d = v - (mean + c_mean)
        mean, c_mean = kahan_inc(d / count, mean, c_mean)
        aux, c_aux = kahan_inc(d * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


@pytest.mark.parametrize("source", ["raw", "1m", "5m from 1m"])
def test_long_windows_match_prometheus_loops(source: str) -> None:
    rng = random.Random(7)
    ts, vs, v = [], [], 1e6  # a large offset with small moves: sums that could cancel
    for i in range(3000):
        ts.append(T0 + i * 15_000 + rng.randrange(3000))
        v += rng.uniform(-3, 5)
        vs.append(v)
    raw = SeriesPoints("x", (), ts, vs)
    sp = {
        "raw": raw,
        "1m": bucketize(raw, 60),
        "5m from 1m": merge(bucketize(raw, 60), 300),
    }[source]
    ends = list(range(T0 + 3 * 3600_000, T0 + 12 * 3600_000 + 1, 1800_000))
    width = 3 * 3600_000  # 720 samples, far more than one block of buckets
    w = windows_for(sp, ends, width, width, steps=ends)
    derivs = KERNELS["deriv"](sp, w, None)
    predicted = KERNELS["predict_linear"](sp, w, [600.0] * len(ends))
    stdvars = KERNELS["stdvar_over_time"](sp, w, None)
    for end, d, p, s in zip(ends, derivs, predicted, stdvars, strict=True):
        window = [(t, x) for t, x in zip(ts, vs, strict=True) if end - width < t <= end]
        wts, wvs = [t for t, _ in window], [x for _, x in window]
        slope, _ = prometheus_regression(wts, wvs, wts[0])
        at_end, intercept = prometheus_regression(wts, wvs, end)
        assert d == pytest.approx(slope, rel=1e-9)
        assert p == pytest.approx(at_end * 600 + intercept, rel=1e-9)
        assert s == pytest.approx(prometheus_stdvar(wvs), rel=1e-9)
