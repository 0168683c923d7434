"""Range functions over many series and many steps at once, in numpy.

The scalar kernels (:mod:`signalbox.query.rangefuncs`) run a Python loop per series and
step: a 1-hour ``rate`` of 100 series at a 15 s step is 24,100 windows of some thirty
Python operations each, nearly all of an uncached query's time. Here the samples of every
series lie in three arrays (:class:`RawColumns`), each step's window is a ``searchsorted``
slice of them, and each kernel is a few array operations over the (series x steps) grid.

The answers are the scalar kernels', bit for bit: the same IEEE operations in the same
order per window (numpy's element-wise ``+ - * /`` round as Python's floats do), counter
corrections added one at a time in sample order, as the scalar loop adds them, and
sums exactly rounded as ``math.fsum`` rounds them: through integers (a series whose
values are all multiples of one power of two, small enough that its window sums fit an
int64, as counters and integer gauges are; or, split in two int64 limbs, values within
2**61 of that power, as gauges of fractions are) or, for any other series (NaN, infinities,
values too far apart), the scalar sums themselves. ``min``/``max`` over a series holding a negative zero go the scalar way too
(Python's ``min`` keeps the first of equal values; ``fmin`` may not). A property test
compares both paths.

Over rollup buckets, ``rate``, ``increase`` and ``delta`` (:data:`BUCKET_KERNELS`) combine
each bucket's first sample, count and counter drops as the scalar kernel does (a window of
whole buckets gets the raw samples' answer, one that splits a bucket the same estimate); the
``*_over_time`` of :data:`OVER_TIME_BUCKETS` read the statistic the scalar kernel reads
(``sum_over_time`` the buckets' sums, ``min_over_time`` their minimums, ...) in place of the
values, and ``avg``/``count``/``present_over_time`` the sample counts beside it (see
:func:`bucket_view`). The engine still decides exactness and warns
(:mod:`signalbox.query.exactness`); the other functions over buckets, and buckets written
before they kept these statistics, stay with the scalar kernels.

Small cases stay scalar too (:data:`VECTOR_MIN_WINDOWS`): numpy's fixed cost per call is
more than a few windows' loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import numpy.typing as npt

from signalbox.metrics.store import SeriesPoints
from signalbox.query.kahan import kahan_mean, kahan_sum, weighted_mean

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Buckets:
    """Rollup buckets' statistics beside :class:`RawColumns` (see
    :class:`~signalbox.metrics.store.SeriesPoints`): each point's first sample, sample
    count and counter drops inside it; what ``rate``/``increase``/``delta`` combine so a
    window of whole buckets gets the raw samples' answer."""

    first_ts: Ints
    firsts: Floats | None  # None: not read (the *_over_time kernels)
    counts: Floats | None  # None: not read (sum/min/max/last_over_time)
    drops: Floats | None  # None: not read (delta, *_over_time)


@dataclass(frozen=True, slots=True)
class RawColumns:
    """Points of several series, concatenated: series ``i`` holds positions ``starts[i]`` to
    ``starts[i + 1]`` of ``ts``/``vs``, oldest first, at least one each. Raw samples, or
    with ``buckets`` rollup buckets (``ts``/``vs`` their last sample)."""

    ts: Ints  # ms
    vs: Floats
    starts: Ints  # len(series) + 1 offsets, starts[0] == 0, starts[-1] == len(ts)
    buckets: Buckets | None = None

    @classmethod
    def of(
        cls,
        series: Sequence[tuple[Sequence[int], Sequence[float]]],
        stats: Sequence[
            tuple[Sequence[int], Sequence[float], Sequence[float], Sequence[float] | None]
        ]
        | None = None,
    ) -> RawColumns:
        """Columns of ``(timestamps, values)`` lists, one pair per series; with ``stats``,
        buckets: ``(first_ts, firsts, counts, drops)`` per series."""
        lengths = np.fromiter((len(t) for t, _ in series), dtype=np.int64, count=len(series))
        starts = np.zeros(len(series) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        total = int(starts[-1])
        ts = np.empty(total, dtype=np.int64)
        vs = np.empty(total, dtype=np.float64)
        for i, (t, v) in enumerate(series):
            a, b = int(starts[i]), int(starts[i + 1])
            ts[a:b] = t
            vs[a:b] = v
        if stats is None:
            return cls(ts, vs, starts)
        first_ts = np.empty(total, dtype=np.int64)
        firsts, counts = np.empty(total), np.empty(total)
        drops = np.empty(total) if all(d is not None for *_, d in stats) else None
        for i, (ft, fv, c, d) in enumerate(stats):
            a, b = int(starts[i]), int(starts[i + 1])
            first_ts[a:b], firsts[a:b], counts[a:b] = ft, fv, c
            if drops is not None:
                drops[a:b] = d
        return cls(ts, vs, starts, Buckets(first_ts, firsts, counts, drops))

    def __len__(self) -> int:
        return len(self.starts) - 1


@dataclass(frozen=True, slots=True)
class Grid:
    """Each series' window bounds at each step: ``[lo, hi)`` positions in the columns
    (shape series x steps), and the windows' ends (ms, one per step)."""

    lo: Ints
    hi: Ints
    ends: Ints
    width_ms: int
    range_ms: int


def grid(cols: RawColumns, ends: Sequence[int], width_ms: int, range_ms: int) -> Grid:
    """Window ``(end - width, end]`` of every series at every end, found by ``searchsorted``
    (``side="right"``: the scalar path's ``bisect_right``). Series are told apart by a key
    ``series * span + (t - base)``, one search over all of them, when that fits an int64;
    otherwise a search per series."""
    e = np.asarray(ends, dtype=np.int64)
    n = len(cols)
    ts, starts = cols.ts, cols.starts
    base = min(int(ts.min()), int(e.min()) - width_ms)
    span = max(int(ts.max()), int(e.max())) - base + 1
    if n * span < 2**62:
        which = np.repeat(np.arange(n, dtype=np.int64), np.diff(starts))
        keys = which * span + (ts - base)
        rows = np.arange(n, dtype=np.int64)[:, None] * span
        k = _steps_per_width(e, width_ms)
        if k:  # each window starts where the one k steps before ends: one search for both
            both = np.concatenate((e[:k] - width_ms, e))  # the first k windows start
            at = np.searchsorted(keys, rows + (both - base), side="right").astype(np.int64)
            lo, hi = at[:, : len(e)], at[:, k:]
        else:
            hi = np.searchsorted(keys, rows + (e - base), side="right").astype(np.int64)
            lo = np.searchsorted(keys, rows + (e - width_ms - base), side="right").astype(np.int64)
    else:
        hi = np.empty((n, len(e)), dtype=np.int64)
        lo = np.empty((n, len(e)), dtype=np.int64)
        for i in range(n):
            a, b = int(starts[i]), int(starts[i + 1])
            hi[i] = np.searchsorted(ts[a:b], e, side="right") + a
            lo[i] = np.searchsorted(ts[a:b], e - width_ms, side="right") + a
    return Grid(lo, hi, e, width_ms, range_ms)


def _steps_per_width(e: Ints, width_ms: int) -> int:
    """``k`` when the ends are evenly spaced and the width is ``k`` of their steps, fewer
    than the ends (so ``end - width`` is the end ``k`` steps before, or one of the ``k``
    before the first); 0 otherwise."""
    if len(e) < 2:
        return 0
    step = int(e[1] - e[0])
    if step <= 0 or width_ms % step or width_ms // step >= len(e):
        return 0
    return width_ms // step if bool((np.diff(e) == step).all()) else 0


Result = tuple[Floats, Bools]
"""Values (series x steps) and where there is one (the scalar kernels' None elsewhere)."""

VectorKernel = Callable[[RawColumns, Grid], Result]


# --- counters: rate, increase, delta ---------------------------------------------------------


def _series_pairs(cols: RawColumns) -> Bools:
    """``pairs[j - 1]``: positions ``j - 1`` and ``j`` are consecutive samples of one series."""
    inside = np.ones(max(len(cols.vs) - 1, 0), dtype=bool)
    cuts = cols.starts[1:-1]
    inside[cuts[cuts > 0] - 1] = False
    return inside


def _corrections(cols: RawColumns) -> tuple[Ints, Floats]:
    """Counter-reset corrections as :func:`signalbox.query.rangefuncs.corrections` keys
    them, over the concatenated series: a drop inside bucket ``j`` has key ``2j``, one
    between points ``j - 1`` and ``j`` (of one series) key ``2j - 1``; sorted by key."""
    vs, b = cols.vs, cols.buckets
    fvs = vs if b is None or b.firsts is None else b.firsts
    across = np.flatnonzero((fvs[1:] < vs[:-1]) & _series_pairs(cols)) + 1
    keys, amounts = 2 * across - 1, vs[across - 1]
    if b is not None and b.drops is not None:
        inside = np.flatnonzero(b.drops != 0)  # NaN too, as the scalar path's truth test
        keys = np.concatenate([keys, 2 * inside])
        amounts = np.concatenate([amounts, b.drops[inside]])
        order = np.argsort(keys, kind="stable")
        keys, amounts = keys[order], amounts[order]
    return keys, amounts


def _extrapolated(cols: RawColumns, g: Grid, *, counter: bool, per_second: bool) -> Result:
    """Prometheus' ``extrapolatedRate``, as :func:`signalbox.query.rangefuncs._extrapolated`
    computes it (over raw samples or whole buckets), for every window at once."""
    ts, vs, b = cols.ts, cols.vs, cols.buckets
    fts, fvs = (ts, vs) if b is None else (b.first_ts, b.firsts)
    assert fvs is not None, "rate/increase/delta over buckets read their firsts"
    lo, hi = g.lo, g.hi
    if b is None:
        n = (hi - lo).astype(np.float64)
    else:  # running sample counts, as the scalar path's (whole numbers: exact in any order)
        assert b.counts is not None, "rate/increase/delta over buckets read their counts"
        prefix = np.zeros(len(vs) + 1)
        np.cumsum(b.counts, out=prefix[1:])
        n = prefix[hi] - prefix[lo]
    present = (hi > lo) & (n >= 2)
    first = np.where(present, lo, 0)
    last = np.where(present, hi - 1, 0)
    first_v = fvs[first]
    result = vs[last] - first_v
    if counter:
        keys, amounts = _corrections(cols)
        if len(keys):
            a = np.searchsorted(keys, 2 * first, side="left")
            count = np.where(present, np.searchsorted(keys, 2 * last, side="right") - a, 0)
            for k in range(int(count.max())):  # one correction at a time, in key order
                more = count > k
                result[more] += amounts[a[more] + k]
    first_t, last_t = fts[first], ts[last]
    to_start = (first_t - (g.ends - g.width_ms)) / 1000.0
    to_end = (g.ends - last_t) / 1000.0
    sampled = (last_t - first_t) / 1000.0
    present &= sampled > 0
    avg_gap = sampled / (n - 1)
    threshold = avg_gap * 1.1
    to_start = np.where(to_start >= threshold, avg_gap / 2, to_start)
    if counter:
        to_zero = sampled * (first_v / result)
        closer = (result > 0) & (first_v >= 0) & (to_zero < to_start)
        to_start = np.where(closer, to_zero, to_start)
    to_end = np.where(to_end >= threshold, avg_gap / 2, to_end)
    factor = (sampled + to_start + to_end) / sampled
    if per_second:
        factor /= g.width_ms / 1000.0
    else:
        rescale = g.range_ms / g.width_ms
        if rescale != 1:
            factor *= rescale
    return result * factor, present


def rate(cols: RawColumns, g: Grid) -> Result:
    return _extrapolated(cols, g, counter=True, per_second=True)


def increase(cols: RawColumns, g: Grid) -> Result:
    return _extrapolated(cols, g, counter=True, per_second=False)


def delta(cols: RawColumns, g: Grid) -> Result:
    return _extrapolated(cols, g, counter=False, per_second=False)


def _instant(cols: RawColumns, g: Grid, *, is_rate: bool) -> Result:
    """Prometheus' ``instantValue`` over the window's last two samples."""
    present = g.hi - g.lo >= 2
    last = np.where(present, g.hi - 1, 0)
    prev = np.where(present, last - 1, 0)
    v, pv = cols.vs[last], cols.vs[prev]
    interval = cols.ts[last] - cols.ts[prev]
    present &= interval != 0
    if not is_rate:
        return v - pv, present
    change = np.where(v < pv, v, v - pv)
    return change / (interval / 1000.0), present


def irate(cols: RawColumns, g: Grid) -> Result:
    return _instant(cols, g, is_rate=True)


def idelta(cols: RawColumns, g: Grid) -> Result:
    return _instant(cols, g, is_rate=False)


# --- *_over_time --------------------------------------------------------------------------


def count_over_time(cols: RawColumns, g: Grid) -> Result:
    n = g.hi - g.lo
    return n.astype(np.float64), n > 0


def present_over_time(cols: RawColumns, g: Grid) -> Result:
    present = g.hi > g.lo
    return np.ones(present.shape), present


def last_over_time(cols: RawColumns, g: Grid) -> Result:
    present = g.hi > g.lo
    return cols.vs[np.where(present, g.hi - 1, 0)], present


def _times_pow2(x: Floats, q: Ints, counts: Ints) -> Floats:
    """``np.ldexp(x, q[which])`` where series ``i`` holds ``counts[i]`` of ``x``'s values,
    bit for bit: a product with a power of two is rounded once (exact unless it under- or
    overflows), as ``ldexp`` rounds, and numpy's ``ldexp`` over an int64 exponent array
    converts each exponent on the way (~40x a product's cost). ``ldexp`` itself answers
    when a ``2**q`` is no float (``q`` past -1074..1023)."""
    if len(q) and (int(q.min()) < -1074 or int(q.max()) > 1023):
        return np.ldexp(x, np.repeat(q, counts))
    return x * np.repeat(np.ldexp(1.0, q), counts)  # type: ignore[no-any-return]


def _exact_scales(cols: RawColumns) -> tuple[Ints, Bools]:
    """Per series, a power of two ``2**q`` every value is a multiple of, and whether the
    sums of any run of its values, so scaled, fit an int64 exactly (not when a value is NaN
    or infinite, fractions like 0.1, values too far apart, or sums near the float limit)."""
    qmin, ok, _, _ = _scales(cols)
    return qmin, ok


def _scales(cols: RawColumns) -> tuple[Ints, Bools, Bools, Floats]:
    """:func:`_exact_scales`, with each series' values all finite, and the values scaled
    by ``2**-q`` (zero for a series not finite or scaled past ``2**960``), which
    :func:`_wide_sums` reads too."""
    vs, starts = cols.vs, cols.starts
    heads, counts = starts[:-1], np.diff(starts)
    q = _lowest_bits(vs)
    qmin = np.minimum.reduceat(q, heads)
    qmin[qmin == 2**31] = 0
    all_finite = np.logical_and.reduceat(np.isfinite(vs), heads)
    ok = all_finite & (qmin <= 960)
    kept = vs if ok.all() else np.where(np.repeat(ok, counts), vs, 0.0)
    scaled = _times_pow2(kept, -np.where(ok, qmin, 0), counts)
    ok &= np.add.reduceat(np.abs(scaled), heads) < 2.0**62  # bounds every partial sum
    return qmin, ok, all_finite, scaled


def _lowest_bits(vs: Floats) -> Ints:
    """Each value's scale ``q``: the largest with the value a multiple of ``2**q`` (its
    lowest set bit), read from its IEEE bits; ``2**31`` for a zero (a multiple of anything),
    0 for NaN and infinities (1.0's: their series are turned away anyway)."""
    bits = vs.view(np.int64)
    biased = (bits >> 52) & 0x7FF
    fraction = bits & (2**52 - 1)
    significand = fraction | (np.minimum(biased, 1) << 52)  # a subnormal's: no implicit 1
    low = significand & -significand  # its lowest set bit, a power of two (exact as a float)
    q = np.maximum(biased, 1) - 1075 + ((low.astype(np.float64).view(np.int64) >> 52) - 1023)
    q[significand == 0] = 2**31
    q[biased == 0x7FF] = 0
    return q  # type: ignore[no-any-return]


def _window_sums(cols: RawColumns, g: Grid) -> tuple[Floats, Bools]:
    """Exactly rounded sums of every window (``math.fsum``'s answers) where a series' values
    allow integer sums (see :func:`_exact_scales`, and :func:`_wide_sums` for values too
    far apart for one int64); ``exact`` marks the series that did."""
    qmin, exact, all_finite, scaled = _scales(cols)
    if exact.any():
        counts = np.diff(cols.starts)
        kept = scaled if exact.all() else np.where(np.repeat(exact, counts), scaled, 0.0)
        prefix = np.zeros(len(cols.vs) + 1, dtype=np.int64)
        np.cumsum(kept.astype(np.int64), out=prefix[1:])  # wraps past 2**63: differences do not
        total = prefix[g.hi] - prefix[g.lo]
        # one rounding, int64 -> float; 2**qmin is a float (-1074 <= qmin <= 960 where exact)
        sums = total.astype(np.float64) * np.ldexp(1.0, np.where(exact, qmin, 0))[:, None]
    else:
        sums = np.zeros(g.lo.shape)
    _wide_sums(cols, g, qmin, exact, all_finite, scaled, sums)
    return sums, exact


_LIMB = 31  # bits of the low limb of a scaled value: sums of 2**22 of them stay exact floats


def _wide_sums(
    cols: RawColumns,
    g: Grid,
    qmin: Ints,
    exact: Bools,
    all_finite: Bools,
    scaled: Floats,
    sums: Floats,
) -> None:
    """Window sums, into ``sums`` (marked in ``exact``), of the series :func:`_exact_scales`
    turned away whose values still are integers below 2**61 once scaled by ``2**qmin``
    (gauges of fractions: 53-bit significands a few powers of two apart). Each scaled value
    is split ``hi * 2**31 + lo``; the windows' sums of ``hi`` and of ``lo`` are exact int64
    differences of running sums and exact as floats (fewer than 2**22 values a series), so
    the float sum of the two, scaled back, is one IEEE rounding of the exact sum: what
    ``math.fsum`` gives. Not for NaN, infinities, or scales near the float range's ends.
    ``scaled``: :func:`_scales`' values over ``2**qmin``, for every series finite with
    ``qmin <= 960`` (those of this range)."""
    heads, counts = cols.starts[:-1], np.diff(cols.starts)
    wide = ~exact & all_finite & (counts < 2**22)
    wide &= (qmin >= -1000) & (qmin <= 900)
    if not wide.any():
        return
    wide &= np.maximum.reduceat(np.abs(scaled), heads) < 2.0**61
    if not wide.any():
        return
    q = np.where(wide, qmin, 0)
    kept = scaled if wide.all() else np.where(np.repeat(wide, counts), scaled, 0.0)
    ints = kept.astype(np.int64)
    hi_prefix = np.zeros(len(ints) + 1, dtype=np.int64)
    lo_prefix = np.zeros(len(ints) + 1, dtype=np.int64)
    np.cumsum(ints >> _LIMB, out=hi_prefix[1:])  # wraps past 2**63: differences do not
    np.cumsum(ints & (2**_LIMB - 1), out=lo_prefix[1:])
    high = (hi_prefix[g.hi] - hi_prefix[g.lo]).astype(np.float64)
    low = (lo_prefix[g.hi] - lo_prefix[g.lo]).astype(np.float64)
    # 2**(q + 31) and 2**q are floats (-1000 <= q <= 900): products as ldexp rounds them
    wide_sums = high * np.ldexp(1.0, q + _LIMB)[:, None] + low * np.ldexp(1.0, q)[:, None]
    rows = np.flatnonzero(wide)
    sums[rows] = wide_sums[rows]
    exact[rows] = True


def _scalar_rows(
    cols: RawColumns, g: Grid, rows: Ints, fn: Callable[[list[float]], float], out: Floats
) -> None:
    """``fn`` over each window of the series ``rows``, the scalar way."""
    for i in rows.tolist():
        a = int(cols.starts[i])
        vs = cols.vs[a : int(cols.starts[i + 1])].tolist()
        los, his = (g.lo[i] - a).tolist(), (g.hi[i] - a).tolist()
        out[i] = [fn(vs[lo:hi]) if hi > lo else 0.0 for lo, hi in zip(los, his, strict=True)]


def sum_over_time(cols: RawColumns, g: Grid) -> Result:
    sums, exact = _window_sums(cols, g)
    _scalar_rows(cols, g, np.flatnonzero(~exact), kahan_sum, sums)
    return sums, g.hi > g.lo


def avg_over_time(cols: RawColumns, g: Grid) -> Result:
    sums, exact = _window_sums(cols, g)
    present = g.hi > g.lo
    means = sums / (g.hi - g.lo).astype(np.float64)
    _scalar_rows(cols, g, np.flatnonzero(~exact), kahan_mean, means)
    return means, present


def _extreme(
    cols: RawColumns,
    g: Grid,
    reduce: np.ufunc,
    pick: Callable[[list[float]], float],
    nan_safe: Callable[[list[float]], float],
) -> Result:
    """``fmin``/``fmax`` over each window (NaN left out unless all are, as the scalar
    kernels' NaN-ignoring pick); a series holding a negative zero the scalar way."""
    present = g.hi > g.lo
    vs = np.append(cols.vs, 0.0)  # reduceat wants every index inside the array
    bounds = np.stack([g.lo, g.hi], axis=-1).reshape(-1)
    out = np.asarray(reduce.reduceat(vs, bounds)[::2], dtype=np.float64).reshape(g.lo.shape)
    out[np.isnan(out)] = np.nan  # all NaN: the scalar pick's own NaN, not an input's bits
    neg_zero = (cols.vs == 0) & np.signbit(cols.vs)
    if neg_zero.any():
        rows = np.unique(np.searchsorted(cols.starts, np.flatnonzero(neg_zero), side="right") - 1)
        for i in rows.tolist():
            a, b = int(cols.starts[i]), int(cols.starts[i + 1])
            fn = nan_safe if np.isnan(cols.vs[a:b]).any() else pick
            _scalar_rows(cols, g, np.array([i]), fn, out)
    return out, present


def min_over_time(cols: RawColumns, g: Grid) -> Result:
    from signalbox.query.functions import nan_ignoring_min

    return _extreme(cols, g, np.fmin, min, nan_ignoring_min)


def max_over_time(cols: RawColumns, g: Grid) -> Result:
    from signalbox.query.functions import nan_ignoring_max

    return _extreme(cols, g, np.fmax, max, nan_ignoring_max)


# --- *_over_time over rollup buckets -------------------------------------------------------
# ``cols.vs`` holds the statistic the scalar kernel reads (see bucket_view), ``counts`` the
# buckets' sample counts.


def _whole_counts(cols: RawColumns) -> Floats | None:
    """The buckets' sample counts when they are whole numbers (finite, not negative) whose
    running total over all series stays below 2**53: then differences of one running sum are
    each window's count exactly, as the scalar path's own running sum per series gives it.
    None otherwise (the scalar way answers)."""
    b = cols.buckets
    assert b is not None and b.counts is not None, "the count kernels read the buckets' counts"
    c = b.counts
    if not len(c):
        return c
    ok = bool(np.isfinite(c).all()) and bool((c >= 0).all()) and bool((c == np.floor(c)).all())
    return c if ok and float(c.sum()) < 2.0**53 else None


def _scalar_counts(
    cols: RawColumns, g: Grid, fn: Callable[[list[float], int, int], float]
) -> Floats:
    """``fn(running counts, lo, hi)`` per window, each series' running sum its own (the
    scalar kernels' ``[0.0, *accumulate(counts)]``)."""
    b = cols.buckets
    assert b is not None and b.counts is not None
    out = np.zeros(g.lo.shape)
    for i in range(len(cols)):
        a = int(cols.starts[i])
        pc = [0.0, *accumulate(b.counts[a : int(cols.starts[i + 1])].tolist())]
        los, his = (g.lo[i] - a).tolist(), (g.hi[i] - a).tolist()
        out[i] = [fn(pc, lo, hi) if hi > lo else 0.0 for lo, hi in zip(los, his, strict=True)]
    return out


def bucket_count_over_time(cols: RawColumns, g: Grid) -> Result:
    """The windows' sample counts: the sum of their buckets' counts."""
    present = g.hi > g.lo
    c = _whole_counts(cols)
    if c is None:
        return _scalar_counts(cols, g, lambda pc, lo, hi: pc[hi] - pc[lo]), present
    prefix = np.zeros(len(c) + 1)
    np.cumsum(c, out=prefix[1:])
    return prefix[g.hi] - prefix[g.lo], present


def bucket_present_over_time(cols: RawColumns, g: Grid) -> Result:
    """1 where a bucket of the window holds a sample (a count that is not zero, NaN too:
    the scalar path's truth test)."""
    b = cols.buckets
    assert b is not None and b.counts is not None
    prefix = np.zeros(len(b.counts) + 1, dtype=np.int64)
    np.cumsum(b.counts != 0, out=prefix[1:])
    return np.ones(g.lo.shape), (g.hi > g.lo) & (prefix[g.hi] > prefix[g.lo])


def bucket_avg_over_time(cols: RawColumns, g: Grid) -> Result:
    """The samples' mean from the buckets' sums (``cols.vs``) and counts, as
    :func:`signalbox.query.kahan.weighted_mean`: the exactly rounded sum of sums over the
    total count. Series whose sums take the scalar sums, or whose counts are not plain
    whole numbers or hold a zero (the scalar division's own error), go the scalar way."""
    b = cols.buckets
    assert b is not None and b.counts is not None
    sums, exact = _window_sums(cols, g)
    present = g.hi > g.lo
    c = _whole_counts(cols)
    if c is None:
        exact[:] = False
        n = np.ones(g.lo.shape)
    else:
        if len(c):  # every series holds a bucket: reduceat's segments are its own
            exact &= ~np.logical_or.reduceat(c == 0, cols.starts[:-1])
        prefix = np.zeros(len(c) + 1)
        np.cumsum(c, out=prefix[1:])
        n = prefix[g.hi] - prefix[g.lo]
    means = sums / n
    for i in np.flatnonzero(~exact).tolist():
        a, z = int(cols.starts[i]), int(cols.starts[i + 1])
        vs, cs = cols.vs[a:z].tolist(), b.counts[a:z].tolist()
        los, his = (g.lo[i] - a).tolist(), (g.hi[i] - a).tolist()
        means[i] = [
            weighted_mean(vs[lo:hi], cs[lo:hi]) if hi > lo else 0.0
            for lo, hi in zip(los, his, strict=True)
        ]
    return means, present


def _quiet(kernel: VectorKernel) -> VectorKernel:
    """IEEE answers without numpy's warnings: NaN and infinities are values here (and
    windows without an answer compute garbage that ``present`` masks)."""

    def run(cols: RawColumns, g: Grid) -> Result:
        with np.errstate(all="ignore"):
            return kernel(cols, g)

    run.__doc__ = kernel.__doc__
    return run


KERNELS: dict[str, VectorKernel] = {
    name: _quiet(kernel)
    for name, kernel in {
        "rate": rate,
        "increase": increase,
        "delta": delta,
        "irate": irate,
        "idelta": idelta,
        "count_over_time": count_over_time,
        "present_over_time": present_over_time,
        "last_over_time": last_over_time,
        "sum_over_time": sum_over_time,
        "avg_over_time": avg_over_time,
        "min_over_time": min_over_time,
        "max_over_time": max_over_time,
    }.items()
}
"""Range functions with a vector kernel (parameterless, over raw samples)."""

BUCKET_KERNELS = frozenset({"rate", "increase", "delta"})
"""Those of :data:`KERNELS` that also combine rollup buckets (:class:`Buckets`)."""

OVER_TIME_BUCKETS: dict[str, str | None] = {
    "sum_over_time": "sums",
    "avg_over_time": "sums",
    "min_over_time": "mins",
    "max_over_time": "maxs",
    "count_over_time": "counts",
    "present_over_time": "counts",
    "last_over_time": None,
}
"""``*_over_time`` with a kernel over rollup buckets: the statistic it reads in place of the
buckets' last values (None: the last values themselves), as the scalar kernels of
:mod:`signalbox.query.rangefuncs` do."""

_BUCKET_OVERRIDES: dict[str, VectorKernel] = {
    name: _quiet(kernel)
    for name, kernel in {
        "avg_over_time": bucket_avg_over_time,
        "count_over_time": bucket_count_over_time,
        "present_over_time": bucket_present_over_time,
    }.items()
}
_COUNTED = frozenset(_BUCKET_OVERRIDES)  # over buckets, these read the counts too


def kernel_for(func: str, cols: RawColumns) -> VectorKernel:
    """``func``'s kernel for these columns: over buckets, the bucket form where it has one
    (sum/min/max/last_over_time are their raw kernels over the statistic read)."""
    if cols.buckets is not None and func in _BUCKET_OVERRIDES:
        return _BUCKET_OVERRIDES[func]
    return KERNELS[func]


def bucket_view(
    func: str,
    ts: Ints,
    values: Floats,
    starts: Ints,
    first_ts: Ints,
    stats: Mapping[str, Floats],
) -> RawColumns:
    """Buckets as ``func``'s kernel reads them: for ``rate``/``increase``/``delta`` their
    last values with firsts, counts (and drops, not for ``delta``); for the
    :data:`OVER_TIME_BUCKETS`, the statistic read in place of the values, with the counts
    where the kernel needs them."""
    if func in BUCKET_KERNELS:
        drops = None if func == "delta" else stats["drops"]
        return RawColumns(
            ts, values, starts, Buckets(first_ts, stats["firsts"], stats["counts"], drops)
        )
    stat = OVER_TIME_BUCKETS[func]
    vs = values if stat is None else stats[stat]
    counts = stats["counts"] if func in _COUNTED else None
    return RawColumns(ts, vs, starts, Buckets(first_ts, None, counts, None))


def values_of(values: Floats, present: Bools) -> list[list[float | None]]:
    """Per series, the engine's step values: the number, or None where there is none."""
    out: list[list[float | None]] = []
    for row, has in zip(values.tolist(), present.tolist(), strict=True):
        if all(has):
            out.append(row)
        else:
            out.append([v if h else None for v, h in zip(row, has, strict=True)])
    return out


VECTOR_MIN_WINDOWS = 256
"""Fewer windows (series x steps) than this stay scalar: numpy's fixed cost per call (a
few µs, some twenty calls a kernel) is more than their loop costs. Measured (a few samples
a window): ``rate`` and ``max_over_time`` break even near 128 windows and are 2x faster at
1,000; the exact sums of ``sum``/``avg_over_time`` cost more up front (twice this)."""

_MIN_FACTOR = {"sum_over_time": 2, "avg_over_time": 2}

_CELLS = 1 << 20  # windows per batch of series: bounds the (series x steps) arrays' memory


def worth(func: str, series: Sequence[SeriesPoints], n_steps: int) -> bool:
    """Is the vector path the faster one for ``func`` over these series, and does it answer
    them: raw samples, or buckets of one resolution with the statistics of whole buckets
    (not written before buckets kept them: those estimates stay scalar)?"""
    least = VECTOR_MIN_WINDOWS * _MIN_FACTOR.get(func, 1)
    if func not in KERNELS or len(series) * n_steps < least:
        return False
    resolution = series[0].resolution
    if any(sp.resolution != resolution for sp in series):
        return False
    if not resolution:
        return True
    return func in BUCKET_KERNELS and all(
        sp.first_ts is not None
        and sp.firsts is not None
        and sp.counts is not None
        and not sp.approximate
        and (func == "delta" or sp.drops is not None)
        for sp in series
    )


def evaluate(
    func: str,
    series: Sequence[SeriesPoints],
    ends: Sequence[int],
    width_ms: int,
    range_ms: int,
    check: Callable[[], None] = lambda: None,
) -> list[list[float | None]]:
    """``func`` over each series at each window ``(end - width, end]`` (``range_ms``: the
    range written, which ``increase`` rescales to when the window was widened): what the
    scalar kernel gives for each, in batches of series (``check`` runs before each: the
    query's deadline). ``series`` must be ones :func:`worth` accepts."""
    kernel = KERNELS[func]
    batch = max(1, _CELLS // max(len(ends), 1))
    out: list[list[float | None]] = []
    for i in range(0, len(series), batch):
        check()
        part = series[i : i + batch]
        pairs = [(sp.timestamps, sp.values) for sp in part]
        stats = None
        if part[0].resolution:
            stats = [(sp.first_ts or [], sp.firsts or [], sp.counts or [], sp.drops) for sp in part]
        cols = RawColumns.of(pairs, stats)
        values, present = kernel(cols, grid(cols, ends, width_ms, range_ms))
        out += values_of(values, present)
    return out


def evaluate_columns(
    func: str,
    cols: RawColumns,
    ends: Sequence[int],
    range_ms: int,
    check: Callable[[], None] = lambda: None,
    *,
    width_ms: int | None = None,
) -> list[list[float | None]]:
    """:func:`evaluate` over points already in columns (a store's raw samples, see
    :meth:`~signalbox.metrics.sql.store.SQLMetricStore.raw_columns`, or its buckets, see
    ``bucket_columns``); ``width_ms``: the windows' width when not the range (buckets
    coarser than it)."""
    kernel = kernel_for(func, cols)
    width = range_ms if width_ms is None else width_ms
    batch = max(1, _CELLS // max(len(ends), 1))
    out: list[list[float | None]] = []
    for i in range(0, len(cols), batch):
        check()
        j = min(i + batch, len(cols))
        part = cols if (i, j) == (0, len(cols)) else _series_slice(cols, i, j)
        values, present = kernel(part, grid(part, ends, width, range_ms))
        out += values_of(values, present)
    return out


def _series_slice(cols: RawColumns, i: int, j: int) -> RawColumns:
    """Series ``[i, j)`` of ``cols``, buckets' statistics included."""
    a, b = int(cols.starts[i]), int(cols.starts[j])
    bk = cols.buckets
    buckets = None
    if bk is not None:
        buckets = Buckets(
            bk.first_ts[a:b],
            None if bk.firsts is None else bk.firsts[a:b],
            None if bk.counts is None else bk.counts[a:b],
            None if bk.drops is None else bk.drops[a:b],
        )
    return RawColumns(cols.ts[a:b], cols.vs[a:b], cols.starts[i : j + 1] - a, buckets)
