"""Range-vector functions (``rate``, ``*_over_time``, ...) for one series, all steps at once.

Each kernel gets the series' points and, per step, the slice ``[lo, hi)`` of points inside
that step's window ``(end - width, end]`` (found by bisect, never by scanning) and returns
one value or None per step.

Raw points are samples. Rollup points are *buckets* carrying the statistics of
:class:`~signalbox.metrics.store.SeriesPoints`, and a kernel combines them so that a window
holding whole buckets gets the answer the raw samples give: a window's first sample is its
first bucket's ``firsts``, its sample count the sum of ``counts``, its counter resets the
buckets' own ``drops`` plus the pairs across bucket edges (last of one, first of the next).
Buckets from a store that did not send those statistics (``first_ts`` None) are read as one
point each, the old estimate: a bucket whose last value is below its maximum saw a reset that
lost that maximum. Deciding whether a window splits a bucket, and warning, is the engine's job
(:mod:`signalbox.query.exactness`); kernels only compute.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import accumulate, compress, islice

from signalbox.metrics.store import SeriesPoints
from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min, quantile
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
    steps: list[int] | None = None  # evaluation times (predict_linear's intercept); None: ends


Kernel = Callable[[SeriesPoints, Windows, list[float] | None], Values]


def windows_for(
    sp: SeriesPoints,
    ends: list[int],
    width_ms: int,
    range_ms: int,
    steps: list[int] | None = None,
) -> Windows:
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
    return Windows(los, his, ends, width_ms, range_ms, steps)


# --- what a series' points are ------------------------------------------------------------


def has_firsts(sp: SeriesPoints) -> bool:
    """Buckets that know their first sample (and so are not read as one point each)."""
    return bool(sp.resolution) and sp.first_ts is not None and sp.firsts is not None


def firsts_of(sp: SeriesPoints) -> tuple[list[int], list[float]]:
    """Each point's first sample: the bucket's first, or the point itself."""
    if has_firsts(sp):
        assert sp.first_ts is not None and sp.firsts is not None
        return sp.first_ts, sp.firsts
    return sp.timestamps, sp.values


def count_prefix(sp: SeriesPoints) -> list[float] | None:
    """Running sample counts (``[0, c0, c0 + c1, ...]``) when points are buckets of several
    samples; None when every point is one sample."""
    if has_firsts(sp) and sp.counts is not None:
        return [0.0, *accumulate(sp.counts)]
    return None


def _samples(pc: list[float] | None, lo: int, hi: int) -> float:
    return pc[hi] - pc[lo] if pc is not None else float(hi - lo)


def _has_nan(values: list[float]) -> bool:
    return any(map(math.isnan, values))


# --- *_over_time over bucket aggregates ---------------------------------------------------


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
    pc = [0.0, *accumulate(sp.counts)] if sp.resolution and sp.counts is not None else None
    return [_samples(pc, lo, hi) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


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
    """Over buckets of several samples this reads bucket-last values: an estimate (the
    engine warns), as a quantile needs every sample."""
    assert qs is not None
    vs = sp.values
    return [
        quantile(q, vs[lo:hi]) if hi > lo else None
        for lo, hi, q in zip(w.los, w.his, qs, strict=True)
    ]


# --- counters: rate, increase, delta --------------------------------------------------------


def corrections(sp: SeriesPoints) -> tuple[list[int], list[float]]:
    """Counter-reset corrections, sorted by key: a drop inside bucket ``j`` has key ``2j``,
    one between points ``j - 1`` and ``j`` key ``2j - 1``. A window ``[lo, hi)`` adds the
    amounts with keys in ``[2lo, 2hi - 2]``: the drops inside its buckets and between them,
    not the one between its first point and the point before."""
    vs = sp.values
    if sp.resolution and not has_firsts(sp) and sp.maxs is not None:
        maxs = sp.maxs  # old buckets: a last value below the maximum saw a reset
        keys, amounts = [], []
        for j in range(1, len(vs)):
            if vs[j] < maxs[j]:
                keys.append(2 * j - 1)
                amounts.append(maxs[j])
            elif vs[j] < vs[j - 1]:
                keys.append(2 * j - 1)
                amounts.append(vs[j - 1])
        return keys, amounts
    _, fvs = firsts_of(sp)
    across = list(compress(range(1, len(vs)), map(operator.lt, islice(fvs, 1, None), vs)))
    found = [(2 * j - 1, vs[j - 1]) for j in across]
    if has_firsts(sp) and sp.drops is not None:
        drops = sp.drops
        found += [(2 * j, drops[j]) for j in compress(range(len(drops)), drops)]
        found.sort()
    return [k for k, _ in found], [a for _, a in found]


def _extrapolated(sp: SeriesPoints, w: Windows, *, counter: bool, per_second: bool) -> Values:
    """Prometheus' ``extrapolatedRate`` (rate, increase, delta) for every step."""
    ts, vs = sp.timestamps, sp.values
    fts, fvs = firsts_of(sp)
    pc = count_prefix(sp)
    keys, amounts = corrections(sp) if counter else ([], [])
    width_s = w.width_ms / 1000.0
    rescale = w.range_ms / w.width_ms  # 1 unless the window was widened for coarse rollups
    out: Values = []
    for lo, hi, end in zip(w.los, w.his, w.ends, strict=True):
        n = _samples(pc, lo, hi)
        if hi <= lo or n < 2:
            out.append(None)
            continue
        last = hi - 1
        first_v = fvs[lo]
        result = vs[last] - first_v
        if keys:
            a, b = bisect_left(keys, 2 * lo), bisect_right(keys, 2 * last)
            for amount in amounts[a:b]:  # summed in order, as an instant query does
                result += amount
        to_start = (fts[lo] - (end - w.width_ms)) / 1000.0
        to_end = (end - ts[last]) / 1000.0
        sampled = (ts[last] - fts[lo]) / 1000.0
        if sampled <= 0:  # buckets estimated from an old schema can claim this; never a 500
            out.append(None)
            continue
        avg_gap = sampled / (n - 1)
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


# --- the last two samples: irate, idelta ----------------------------------------------------


def instant_value(sp: SeriesPoints, w: Windows, *, is_rate: bool) -> Values:
    """Prometheus' ``instantValue``: the window's last two samples. The one before the last
    is the last bucket's ``prevs`` when that bucket holds two or more, else the previous
    bucket's last."""
    ts, vs = sp.timestamps, sp.values
    prev_ts = sp.prev_ts if sp.resolution else None
    prevs = sp.prevs if sp.resolution else None
    maxs = sp.maxs if sp.resolution and not has_firsts(sp) else None
    out: Values = []
    for lo, hi in zip(w.los, w.his, strict=True):
        last = hi - 1
        if hi <= lo:
            out.append(None)
            continue
        if prev_ts is not None and prevs is not None and prev_ts[last]:
            pt, pv = prev_ts[last], prevs[last]
        elif hi - lo >= 2:
            pt, pv = ts[last - 1], vs[last - 1]
        else:
            out.append(None)
            continue
        v = vs[last]
        if maxs is not None and is_rate and v < maxs[last]:  # old buckets: reset inside
            change = max(maxs[last] - pv, 0.0) + v
        elif is_rate and v < pv:
            change = v
        else:
            change = v - pv
        interval = ts[last] - pt
        if interval == 0:
            out.append(None)
        else:
            out.append(change / (interval / 1000.0) if is_rate else change)
    return out


def irate(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return instant_value(sp, w, is_rate=True)


def idelta(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return instant_value(sp, w, is_rate=False)


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
    "idelta": idelta,
}
