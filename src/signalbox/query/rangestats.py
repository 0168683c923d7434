"""Range-vector statistics: ``changes``, ``resets``, ``deriv``, ``predict_linear``,
``stddev_over_time``, ``stdvar_over_time``, ``mad_over_time``.

Over rollup buckets they combine each bucket's statistics (see
:class:`~signalbox.metrics.store.SeriesPoints`) so that a window of whole buckets gets the
answer its raw samples give: counts of changes and resets add the pairs across bucket edges;
least squares shifts each bucket's sums (``x`` measured from the bucket's first sample) to the
window's origin; variance adds the buckets' ``m2`` and the spread of their means (Chan).
Raw samples are computed the way Prometheus computes them (``promql/functions.go``).
"""

from __future__ import annotations

import math
from itertools import accumulate

from signalbox.metrics.store import SeriesPoints
from signalbox.query.functions import div, quantile
from signalbox.query.kahan import kahan_inc, kahan_sum
from signalbox.query.rangefuncs import (
    Kernel,
    Values,
    Windows,
    count_prefix,
    firsts_of,
    has_firsts,
)


def _changed(a: float, b: float) -> bool:
    """Prometheus ``changes``: NaN after NaN is no change."""
    return b != a and (a == a or b == b)


def _pairs(sp: SeriesPoints, w: Windows, inside: list[int] | None, differs: str) -> Values:
    """How many consecutive sample pairs in each window satisfy ``differs`` ("changed" or
    "dropped"): the buckets' own counts plus the pairs across their edges, by prefix sums."""
    vs = sp.values
    _, fvs = firsts_of(sp)
    test = _changed if differs == "changed" else (lambda a, b: b < a)
    across = [0, 0, *(int(test(vs[j - 1], fvs[j])) for j in range(1, len(vs)))]
    pa = list(accumulate(across))  # pa[j + 1]: pairs across edges up to point j
    pin = [0, *accumulate(inside)] if inside is not None and has_firsts(sp) else None
    out: Values = []
    for lo, hi in zip(w.los, w.his, strict=True):
        if hi <= lo:
            out.append(None)
            continue
        n = pa[hi] - pa[lo + 1]
        if pin is not None:
            n += pin[hi] - pin[lo]
        out.append(float(n))
    return out


def changes(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return _pairs(sp, w, sp.changes, "changed")


def resets(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return _pairs(sp, w, sp.resets, "dropped")


# --- least squares: deriv, predict_linear ------------------------------------------------


def _flat_runs(sp: SeriesPoints) -> list[int]:
    """``runs[i]``: one past the last point of the run of points, from ``i`` on, whose samples
    all equal point ``i``'s first (``i`` itself when point ``i`` is not flat). A window
    ``[lo, hi)`` has one constant value when ``runs[lo] >= hi`` (Prometheus' ``constY``)."""
    _, fvs = firsts_of(sp)
    n = len(fvs)
    if has_firsts(sp) and sp.mins is not None and sp.maxs is not None and sp.sums is not None:
        mins, maxs, sums = sp.mins, sp.maxs, sp.sums
        flat = [
            mins[i] == maxs[i] == fvs[i] and sums[i] == sums[i] for i in range(n)
        ]  # NaN in a bucket: its sum is NaN
    elif has_firsts(sp):
        vs = sp.values
        flat = [fvs[i] == vs[i] and sp.counts is not None and sp.counts[i] == 1 for i in range(n)]
    else:
        flat = [v == v for v in fvs]
    runs = [0] * n
    for i in range(n - 1, -1, -1):
        if not flat[i]:
            runs[i] = i
        elif i + 1 < n and flat[i + 1] and fvs[i + 1] == fvs[i]:
            runs[i] = runs[i + 1]
        else:
            runs[i] = i + 1
    return runs


def _regression(
    sp: SeriesPoints, lo: int, hi: int, n: float, runs: list[int]
) -> tuple[float, float, float]:
    """Prometheus' ``linearRegression`` over the window's samples as ``(slope, mean_x,
    mean_y)``, ``x`` in seconds from the window's first sample. Prometheus measures ``x``
    from the intercept time; the line is the same, and from the first sample the sums do
    not cancel (they agree with the raw samples' to the last digits whatever the buckets)."""
    fts, fvs = firsts_of(sp)
    init = fvs[lo]
    if runs[lo] >= hi:  # constY
        return (math.nan, 0.0, math.nan) if math.isinf(init) else (0.0, 0.0, init)
    origin = fts[lo]
    if (
        has_firsts(sp)
        and sp.sx is not None
        and sp.sxx is not None
        and sp.sxy is not None
        and sp.sums is not None
        and sp.counts is not None
    ):
        ks, sums = sp.counts[lo:hi], sp.sums[lo:hi]
        ds = [(t - origin) / 1000.0 for t in fts[lo:hi]]
        sxs = sp.sx[lo:hi]
        sum_x = kahan_sum([sx + k * d for sx, k, d in zip(sxs, ks, ds, strict=True)])
        sum_x2 = kahan_sum(
            [
                sxx + 2 * d * sx + k * d * d
                for sxx, sx, k, d in zip(sp.sxx[lo:hi], sxs, ks, ds, strict=True)
            ]
        )
        sum_xy = kahan_sum([sxy + d * s for sxy, s, d in zip(sp.sxy[lo:hi], sums, ds, strict=True)])
        sum_y = kahan_sum(sums)
    else:
        ts, vs = sp.timestamps[lo:hi], sp.values[lo:hi]
        xs = [(t - origin) / 1000.0 for t in ts]
        sum_x = kahan_sum(xs)
        sum_x2 = kahan_sum([x * x for x in xs])
        sum_xy = kahan_sum([x * v for x, v in zip(xs, vs, strict=True)])
        sum_y = kahan_sum(vs)
    cov = sum_xy - sum_x * sum_y / n
    var = sum_x2 - sum_x * sum_x / n
    return div(cov, var), sum_x / n, sum_y / n


def deriv(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    """The least-squares slope per second."""
    pc = count_prefix(sp)
    runs = _flat_runs(sp)
    out: Values = []
    for lo, hi in zip(w.los, w.his, strict=True):
        n = pc[hi] - pc[lo] if pc is not None else float(hi - lo)
        if hi <= lo or n < 2:
            out.append(None)
            continue
        out.append(_regression(sp, lo, hi, n, runs)[0])
    return out


def predict_linear(sp: SeriesPoints, w: Windows, durations: list[float] | None) -> Values:
    """The least-squares line's value ``duration`` seconds after the evaluation time (the
    step time, Prometheus' ``enh.Ts``; the window end when the engine does not pass steps)."""
    assert durations is not None
    fts, _ = firsts_of(sp)
    pc = count_prefix(sp)
    runs = _flat_runs(sp)
    at = w.steps if w.steps is not None else w.ends
    out: Values = []
    for lo, hi, t, d in zip(w.los, w.his, at, durations, strict=True):
        n = pc[hi] - pc[lo] if pc is not None else float(hi - lo)
        if hi <= lo or n < 2:
            out.append(None)
            continue
        slope, mean_x, mean_y = _regression(sp, lo, hi, n, runs)
        if slope == 0:  # Prometheus' constant case: 0 * duration + the value
            out.append(slope * d + mean_y)
            continue
        # the intercept at t is mean_y - slope * (mean_x - (t - first) / 1000)
        out.append(slope * (d + (t - fts[lo]) / 1000.0 - mean_x) + mean_y)
    return out


# --- spread: stdvar, stddev, mad ---------------------------------------------------------


def _welford(values: list[float]) -> float:
    """Prometheus' ``stdvar_over_time``: Welford's online variance with Kahan-compensated
    mean and sum of squares, step for step (so raw answers match to the last bits)."""
    count = mean = c_mean = aux = c_aux = 0.0
    for v in values:
        count += 1.0
        d = v - (mean + c_mean)
        mean, c_mean = kahan_inc(d / count, mean, c_mean)
        aux, c_aux = kahan_inc(d * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def stdvar_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    """Population variance. Over buckets: ``(sum of m2 + sum of k * (mean_k - mean)^2) / n``
    (Chan's combination, all at once), each sum compensated."""
    if has_firsts(sp) and sp.m2 is not None and sp.sums is not None and sp.counts is not None:
        m2s, sums, counts = sp.m2, sp.sums, sp.counts
        out: Values = []
        for lo, hi in zip(w.los, w.his, strict=True):
            if hi <= lo:
                out.append(None)
                continue
            ks, ss = counts[lo:hi], sums[lo:hi]
            n = math.fsum(ks)
            mean = kahan_sum(ss) / n
            if not math.isfinite(mean):
                out.append(math.nan)  # Prometheus: an Inf sample makes the variance NaN
                continue
            spread = [k * (s / k - mean) ** 2 for s, k in zip(ss, ks, strict=True)]
            out.append(kahan_sum([*m2s[lo:hi], *spread]) / n)
        return out
    vs = sp.values
    return [_welford(vs[lo:hi]) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


def stddev_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    return [
        None if v is None else math.sqrt(v) if not v < 0 else math.nan  # Go: Sqrt(-x) is NaN
        for v in stdvar_over_time(sp, w, None)
    ]


def _mad(values: list[float]) -> float:
    """Prometheus ``mad_over_time``: the median of absolute deviations from the median."""
    median = quantile(0.5, values)
    return quantile(0.5, [abs(v - median) for v in values])


def mad_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    """Needs every sample: over buckets of several samples it reads bucket-last values, an
    estimate (the engine warns)."""
    vs = sp.values
    return [_mad(vs[lo:hi]) if hi > lo else None for lo, hi in zip(w.los, w.his, strict=True)]


KERNELS: dict[str, Kernel] = {
    "changes": changes,
    "resets": resets,
    "deriv": deriv,
    "predict_linear": predict_linear,
    "stdvar_over_time": stdvar_over_time,
    "stddev_over_time": stddev_over_time,
    "mad_over_time": mad_over_time,
}
