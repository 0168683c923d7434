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
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add, mul, sub, truediv

from signalbox.metrics.store import SeriesPoints
from signalbox.query.functions import div, quantile
from signalbox.query.kahan import kahan_sum
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


@dataclass(frozen=True, slots=True)
class _Parts:
    """Per-part sums for least squares and variance. A part is a bucket, a raw sample (one
    sample: its sums of ``x`` are 0) or a block of consecutive parts; ``x`` is in seconds from
    the part's own first sample at ``origin`` (ms)."""

    origin: list[int]
    k: list[float]
    sx: list[float]
    sxx: list[float]
    sxy: list[float]
    sy: list[float]
    m2: list[float]

    def cut(self, lo: int, hi: int) -> _Parts:
        return _Parts(*(getattr(self, f)[lo:hi] for f in _PART_FIELDS))

    def __add__(self, other: _Parts) -> _Parts:
        return _Parts(*(getattr(self, f) + getattr(other, f) for f in _PART_FIELDS))


_PART_FIELDS = ("origin", "k", "sx", "sxx", "sxy", "sy", "m2")
_BLOCK = 32  # parts per block: a long window sums a few blocks, not every part


def _parts(sp: SeriesPoints, *, regression: bool) -> _Parts:
    """The series as parts: its buckets when they carry the statistics the function needs,
    else one part per point (raw samples, or old buckets read as one sample each)."""
    n = len(sp.timestamps)
    zeros = [0.0] * n
    if has_firsts(sp) and sp.sums is not None and sp.counts is not None:
        assert sp.first_ts is not None
        if regression and sp.sx is not None and sp.sxx is not None and sp.sxy is not None:
            return _Parts(sp.first_ts, sp.counts, sp.sx, sp.sxx, sp.sxy, sp.sums, zeros)
        if not regression and sp.m2 is not None:
            return _Parts(sp.first_ts, sp.counts, zeros, zeros, zeros, sp.sums, sp.m2)
    m2 = [0.0 if math.isfinite(v) else math.nan for v in sp.values]
    return _Parts(sp.timestamps, [1.0] * n, zeros, zeros, zeros, sp.values, m2)


@dataclass(frozen=True, slots=True)
class _Sums:
    n: float
    sx: float
    sxx: float
    sxy: float
    sy: float
    m2: float  # NaN unless asked for


def _combine(p: _Parts, origin: int, *, m2: bool) -> _Sums:
    """The parts' sums with ``x`` from ``origin``: each part's shifted by ``d`` (its origin
    from ``origin``, s): ``x + d`` sums to ``sx + k d``, ``(x + d)^2`` to ``sxx + 2 d sx +
    k d^2``, ``(x + d) y`` to ``sxy + d sy``; m2 by Chan: ``sum m2 + sum k (mean_k - mean)^2``.
    Every sum exactly rounded (or compensated where it overflows)."""
    ks, sxs, sys_ = p.k, p.sx, p.sy
    ds = list(map(truediv, map(sub, p.origin, repeat(origin)), repeat(1000.0)))
    n = math.fsum(ks)
    sy = kahan_sum(sys_)
    sx = kahan_sum([*sxs, *map(mul, ks, ds)])
    sxx = kahan_sum(
        [*p.sxx, *map(mul, map(mul, ds, sxs), repeat(2.0)), *map(mul, ks, map(mul, ds, ds))]
    )
    sxy = kahan_sum([*p.sxy, *map(mul, ds, sys_)])
    spread = math.nan
    mean = sy / n if n else math.nan
    if m2 and math.isfinite(mean):
        dev = list(map(sub, map(truediv, sys_, ks), repeat(mean)))
        spread = kahan_sum([*p.m2, *map(mul, ks, map(mul, dev, dev))])
    return _Sums(n, sx, sxx, sxy, sy, spread)


class _Blocked:
    """Parts and blocks of ``_BLOCK`` of them (each summed from its own first sample), so a
    window's sums combine at most ``2 * _BLOCK`` parts and its whole blocks: long windows
    over long series cost blocks, not samples. Shifting a block by ``d`` (at most the
    window's width) keeps the rounding of sums taken from the window's start."""

    def __init__(self, p: _Parts, *, m2: bool, longest: int) -> None:
        self.parts, self.m2 = p, m2
        self.blocks: _Parts | None = None
        if longest >= 3 * _BLOCK:  # else no window holds enough whole blocks to gain
            self.blocks = self._sum_blocks(p, m2)

    @staticmethod
    def _sum_blocks(p: _Parts, m2: bool) -> _Parts:
        """Every block's sums at once: each part's terms shifted to its block's origin, then
        one exactly rounded sum per block (no per-block Python work beyond the sums)."""
        n = len(p.origin)
        starts = range(0, n, _BLOCK)
        base = [p.origin[j] for j in starts for _ in range(min(_BLOCK, n - j))]
        ds = list(map(truediv, map(sub, p.origin, base), repeat(1000.0)))
        ks = p.k
        tx = list(map(add, p.sx, map(mul, ks, ds)))
        txx = list(
            map(add, p.sxx, map(mul, ds, map(add, map(mul, p.sx, repeat(2.0)), map(mul, ks, ds))))
        )
        txy = list(map(add, p.sxy, map(mul, ds, p.sy)))

        def per_block(xs: list[float]) -> list[float]:
            return [kahan_sum(xs[j : j + _BLOCK]) for j in starts]

        bk, by = per_block(list(ks)), per_block(list(p.sy))
        bm2 = [math.nan] * len(bk)
        if m2:
            means = [y / k if k else math.nan for y, k in zip(by, bk, strict=True)]
            rep = [means[j // _BLOCK] for j in range(n)]
            dev = list(map(sub, map(truediv, p.sy, ks), rep))
            spread = list(map(add, p.m2, map(mul, ks, map(mul, dev, dev))))
            bm2 = per_block(spread)
        return _Parts(
            [p.origin[j] for j in starts],
            bk,
            per_block(tx),
            per_block(txx),
            per_block(txy),
            by,
            bm2,
        )

    def window(self, lo: int, hi: int, origin: int) -> _Sums:
        b0, b1 = -(-lo // _BLOCK), hi // _BLOCK
        if self.blocks is None or b1 - b0 < 2:
            p = self.parts.cut(lo, hi)
        else:
            p = (
                self.parts.cut(lo, b0 * _BLOCK)
                + self.blocks.cut(b0, b1)
                + self.parts.cut(b1 * _BLOCK, hi)
            )
        return _combine(p, origin, m2=self.m2)


def _regression(sums: _Sums, init: float, constant: bool) -> tuple[float, float, float]:
    """Prometheus' ``linearRegression`` as ``(slope, mean_x, mean_y)``, from sums with ``x``
    from the window's first sample. Prometheus measures ``x`` from the intercept time: the
    line is the same, and from the first sample the sums do not cancel."""
    if constant:  # constY
        return (math.nan, 0.0, math.nan) if math.isinf(init) else (0.0, 0.0, init)
    n = sums.n
    cov = sums.sxy - sums.sx * sums.sy / n
    var = sums.sxx - sums.sx * sums.sx / n
    return div(cov, var), sums.sx / n, sums.sy / n


def _lines(sp: SeriesPoints, w: Windows) -> list[tuple[float, float, float, int] | None]:
    """Per window ``(slope, mean_x, mean_y, first sample ms)``, None under two samples."""
    fts, fvs = firsts_of(sp)
    pc = count_prefix(sp)
    runs = _flat_runs(sp)
    blocked = _Blocked(_parts(sp, regression=True), m2=False, longest=_longest(w))
    out: list[tuple[float, float, float, int] | None] = []
    for lo, hi in zip(w.los, w.his, strict=True):
        n = pc[hi] - pc[lo] if pc is not None else float(hi - lo)
        if hi <= lo or n < 2:
            out.append(None)
            continue
        constant = runs[lo] >= hi
        sums = _ZERO if constant else blocked.window(lo, hi, fts[lo])
        out.append((*_regression(sums, fvs[lo], constant), fts[lo]))
    return out


def _longest(w: Windows) -> int:
    return max(map(sub, w.his, w.los), default=0)


_ZERO = _Sums(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def deriv(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    """The least-squares slope per second."""
    return [None if line is None else line[0] for line in _lines(sp, w)]


def predict_linear(sp: SeriesPoints, w: Windows, durations: list[float] | None) -> Values:
    """The least-squares line's value ``duration`` seconds after the evaluation time (the
    step time, Prometheus' ``enh.Ts``; the window end when the engine does not pass steps)."""
    assert durations is not None
    at = w.steps if w.steps is not None else w.ends
    out: Values = []
    for line, t, d in zip(_lines(sp, w), at, durations, strict=True):
        if line is None:
            out.append(None)
            continue
        slope, mean_x, mean_y, first = line
        if slope == 0:  # Prometheus' constant case: 0 * duration + the value
            out.append(slope * d + mean_y)
        else:  # the intercept at t is mean_y - slope * (mean_x - (t - first) / 1000)
            out.append(slope * (d + (t - first) / 1000.0 - mean_x) + mean_y)
    return out


# --- spread: stdvar, stddev, mad ---------------------------------------------------------


def stdvar_over_time(sp: SeriesPoints, w: Windows, _: list[float] | None) -> Values:
    """Population variance: Chan's combination of the window's parts (buckets, samples,
    blocks), ``(sum of m2 + sum of k (mean_k - mean)^2) / n``. Prometheus uses Welford's
    method with compensation; the two agree but for rounding. NaN when a sample is NaN or
    infinite (as Prometheus), exactly 0 when all samples are equal."""
    runs = _flat_runs(sp)
    blocked = _Blocked(_parts(sp, regression=False), m2=True, longest=_longest(w))
    fts, _f = firsts_of(sp)
    out: Values = []
    for lo, hi in zip(w.los, w.his, strict=True):
        if hi <= lo:
            out.append(None)
            continue
        sums = blocked.window(lo, hi, fts[lo])
        if not math.isfinite(sums.sy / sums.n):
            out.append(math.nan)
        elif runs[lo] >= hi:
            out.append(0.0)
        else:
            out.append(sums.m2 / sums.n)
    return out


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
