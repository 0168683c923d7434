"""Range-vector functions (``rate``, ``*_over_time``, ...) for one series, all steps at once.

Each kernel gets the series' points and, per step, the slice ``[lo, hi)`` of points inside
that step's window ``(end - width, end]`` (found by bisect, never by scanning) and returns
one value or None per step. Raw points are read from ``values``; rollup buckets carry
``mins``/``maxs``/``sums``/``counts`` so min/max/sum/count/avg stay exact across buckets,
while counter functions read the bucket-last ``values``.

Counter resets inside a rollup bucket: a counter only grows, so a bucket whose last value
is below its maximum saw a reset. The increase lost to it is the bucket's maximum (the
value the counter reached before restarting from zero), which :func:`reset_amounts` adds,
where a raw series' resets add the value before each drop as Prometheus does.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import compress, islice

from signalbox.metrics.store import SeriesPoints
from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min, quantile, regression_slope
from signalbox.query.kahan import kahan_mean, kahan_sum, weighted_mean

Values = list[float | None]


@dataclass(frozen=True, slots=True)
class Windows:
    """Per-step window bounds for one series."""

    los: list[int]  # first index inside the window
    his: list[int]  # one past the last index inside the window
    ends: list[int]  # window end (step time minus offset), ms
    width_ms: int  # window width actually used (widened for coarse rollups)
    range_ms: int  # the range the user wrote


Kernel = Callable[[SeriesPoints, Windows, list[float] | None], Values]


def windows_for(sp: SeriesPoints, ends: list[int], width_ms: int, range_ms: int) -> Windows:
    """Bisect each window's bounds. When the width is a whole number ``k`` of uniform
    steps, window ``i`` starts where window ``i - k`` ends, so those bisects are reused."""
    ts = sp.timestamps
    his = list(map(partial(bisect_right, ts), ends))
    n = len(ends)
    step = ends[1] - ends[0] if n > 1 else 0
    k = width_ms // step if step > 0 and width_ms % step == 0 else 0
    if k and ends[-1] - ends[0] == step * (n - 1):
        los = [bisect_right(ts, e - width_ms) for e in ends[:k]] + his[: max(0, n - k)]
    else:
        los = [bisect_right(ts, e - width_ms) for e in ends]
    return Windows(los, his, ends, width_ms, range_ms)


def _has_nan(values: list[float]) -> bool:
    return any(map(math.isnan, values))


def avg_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    """Compensated and overflow-safe (see :mod:`signalbox.query.kahan`); over rollup
    buckets, the samples' mean from the buckets' sums and counts."""
    if sp.resolution and sp.sums is not None and sp.counts is not None:
        sums, counts = sp.sums, sp.counts
        return [
            weighted_mean(sums[lo:hi], counts[lo:hi]) if hi > lo else None
            for lo, hi in zip(w.los, w.his, strict=True)
        ]
    vs = sp.values
    return [kahan_mean(vs[lo:hi]) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


def sum_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    vs = sp.sums if sp.resolution and sp.sums is not None else sp.values
    return [kahan_sum(vs[lo:hi]) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


def count_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    if sp.resolution and sp.counts is not None:
        counts = sp.counts
        return [
            float(sum(counts[lo:hi])) if hi > lo else None
            for lo, hi in zip(w.los, w.his, strict=True)
        ]
    return [float(hi - lo) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


def present_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    """1 where the window holds a sample. Over rollups a bucket counts when it holds a
    sample (count > 0): exact at any resolution, as every sample lies in some bucket."""
    if sp.resolution and sp.counts is not None:
        counts = sp.counts
        return [1.0 if any(counts[lo:hi]) else None for lo, hi in zip(w.los, w.his, strict=True)]
    return [1.0 if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


def _extreme(
    pick: Callable[[list[float]], float],
    nan_safe: Callable[[list[float]], float],
    vs: list[float],
    w: Windows,
) -> Values:
    if _has_nan(vs):
        return [
            nan_safe(vs[lo:hi]) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)
        ]
    return [pick(vs[lo:hi]) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


def min_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    vs = sp.mins if sp.resolution and sp.mins is not None else sp.values
    return _extreme(min, nan_ignoring_min, vs, w)


def max_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    vs = sp.maxs if sp.resolution and sp.maxs is not None else sp.values
    return _extreme(max, nan_ignoring_max, vs, w)


def last_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    vs = sp.values
    return [vs[hi - 1] if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


def quantile_over_time(sp: SeriesPoints, w: Windows, qs: list[float] | None) -> Values:
    """Over rollup buckets this reads bucket-last values: an approximation, not exact."""
    assert qs is not None
    vs = sp.values
    return [
        quantile(q, vs[lo:hi]) if hi > lo else None
        for lo, hi, q in zip(w.los, w.his, qs, strict=True)
    ]


def reset_amounts(sp: SeriesPoints) -> list[tuple[int, float]]:
    """``(j, amount)`` for each point j that follows a counter reset: the increase the plain
    difference ``vs[j] - vs[j-1]`` misses there (see the module docstring)."""
    vs, maxs = sp.values, sp.maxs if sp.resolution else None
    if maxs is None:
        return [
            (j, vs[j - 1])
            for j in compress(range(1, len(vs)), map(operator.lt, islice(vs, 1, None), vs))
        ]
    out = []
    for j in range(1, len(vs)):
        if vs[j] < maxs[j]:  # a reset inside bucket j
            out.append((j, maxs[j]))
        elif vs[j] < vs[j - 1]:  # between buckets
            out.append((j, vs[j - 1]))
    return out


def _extrapolated(sp: SeriesPoints, w: Windows, *, counter: bool, per_second: bool) -> Values:
    """Prometheus' ``extrapolatedRate`` (rate, increase, delta) for every step."""
    ts, vs = sp.timestamps, sp.values
    found = reset_amounts(sp) if counter else []
    resets = [j for j, _ in found]  # points j that follow a reset
    width_s = w.width_ms / 1000.0
    rescale = w.range_ms / w.width_ms  # 1 unless the window was widened for coarse rollups
    out: Values = []
    for lo, hi, end in zip(w.los, w.his, w.ends, strict=True):
        if hi - lo < 2:
            out.append(None)
            continue
        last = hi - 1
        first_v = vs[lo]
        result = vs[last] - first_v
        if resets:
            a, b = bisect_right(resets, lo), bisect_right(resets, last)
            for _, amount in found[a:b]:  # summed in order, as an instant query does
                result += amount
        to_start = (ts[lo] - (end - w.width_ms)) / 1000.0
        to_end = (end - ts[last]) / 1000.0
        sampled = (ts[last] - ts[lo]) / 1000.0
        avg_gap = sampled / (last - lo)
        threshold = avg_gap * 1.1
        if to_start >= threshold:
            to_start = avg_gap / 2
        if counter and result > 0 and first_v >= 0:
            to_zero = sampled * (first_v / result)
            if to_zero < to_start:
                to_start = to_zero
        if to_end >= threshold:
            to_end = avg_gap / 2
        factor = (sampled + to_start + to_end) / sampled
        if per_second:
            factor /= width_s
        elif rescale != 1:
            factor *= rescale
        out.append(result * factor)
    return out


def rate(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return _extrapolated(sp, w, counter=True, per_second=True)


def increase(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return _extrapolated(sp, w, counter=True, per_second=False)


def delta(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return _extrapolated(sp, w, counter=False, per_second=False)


def irate(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    ts, vs = sp.timestamps, sp.values
    maxs = sp.maxs if sp.resolution else None
    out: Values = []
    for lo, hi in zip(w.los, w.his, strict=True):
        if hi - lo < 2:
            out.append(None)
            continue
        prev, last = vs[hi - 2], vs[hi - 1]
        if maxs is not None and last < maxs[hi - 1]:  # reset inside the last bucket
            change = max(maxs[hi - 1] - prev, 0.0) + last
        else:
            change = last if last < prev else last - prev
        out.append(change / ((ts[hi - 1] - ts[hi - 2]) / 1000.0))
    return out


def deriv(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    ts, vs = sp.timestamps, sp.values
    return [
        regression_slope(ts, vs, lo, hi) if hi - lo >= 2 else None
        for lo, hi in zip(w.los, w.his, strict=True)
    ]


KERNELS: dict[str, Kernel] = {
    "avg_over_time": avg_over_time,
    "sum_over_time": sum_over_time,
    "count_over_time": count_over_time,
    "present_over_time": present_over_time,
    "min_over_time": min_over_time,
    "max_over_time": max_over_time,
    "last_over_time": last_over_time,
    "quantile_over_time": quantile_over_time,
    "rate": rate,
    "increase": increase,
    "delta": delta,
    "irate": irate,
    "deriv": deriv,
}
