"""``histogram_quantile`` over classic histograms: ``_bucket`` series with an ``le`` label.

Prometheus' ``BucketQuantile`` (promql/quantile.go), step by step, so a latency SLO
monitor fires when Prometheus' would: buckets sorted by upper bound, equal bounds
coalesced, counts forced monotonic (a decrease is ignored, a difference within 1e-12
relative is float noise), then linear interpolation inside the bucket the rank falls in.
A bucket set without ``+Inf``, or with fewer than two buckets, gives NaN; ``φ`` below 0
gives -Inf, above 1 +Inf, NaN gives NaN. Native histograms are not stored here, so only
the classic form exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from signalbox.query.values import Metric, StepSeries

SMALL_DELTA_TOLERANCE = 1e-12  # Prometheus' smallDeltaTolerance
_MIN_NORMAL = 2.2250738585072014e-308  # math.Float64frombits(0x0010000000000000)
_MAX_FLOAT = 1.7976931348623157e308
_GO_FLOAT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.ASCII | re.IGNORECASE
)
_GO_HEX_FLOAT = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?", re.ASCII
)

Bucket = tuple[float, float]  # (upper bound, cumulative count)
# Below this many steps the per-step loop is the faster (bench/histogram_steps.py, 12
# buckets: the arrays cost ~0.07 ms however few the steps, the loop ~2 us a step)
_ARRAY_STEPS = 32
_T = TypeVar("_T", bound=np.generic)


def parse_le(text: str) -> float | None:
    """An ``le`` value as Go's ``strconv.ParseFloat`` reads it; None where it fails
    (Prometheus then skips the series). Stricter than ``float()``: no spaces, no ``_``."""
    if _GO_FLOAT.fullmatch(text):
        value = float(text)
        if math.isinf(value) and "inf" not in text.lower():
            return None  # 1e400: Go reports it out of range, and Prometheus skips it
        return value
    if _GO_HEX_FLOAT.fullmatch(text):
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        if "p" not in body.lower():
            return None  # Go requires the p exponent in a hex float
        return sign * float.fromhex(body)
    return None


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    """Prometheus' ``almost.Equal``."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    # Go's math.Min(absSum, MaxFloat64): NaN stays NaN, and every comparison with it fails
    return diff / (abs_sum if math.isnan(abs_sum) else min(abs_sum, _MAX_FLOAT)) < epsilon


def _coalesce(buckets: list[list[float]]) -> list[list[float]]:
    out = [list(buckets[0])]
    for bound, count in buckets[1:]:
        if bound == out[-1][0]:
            out[-1][1] += count
        else:
            out.append([bound, count])
    return out


def _ensure_monotonic(buckets: list[list[float]]) -> None:
    # A decrease and float noise are both ignored (prev stays), so almost.Equal is asked
    # only of an increase; its common case (two positive normal counts) is inlined.
    prev = buckets[0][1]
    for b in buckets[1:]:
        curr = b[1]
        if curr == prev:
            continue
        if curr < prev:
            b[1] = prev
            continue
        if prev > 0.0 and _MIN_NORMAL <= prev + curr <= _MAX_FLOAT:
            # prev + curr is |prev| + |curr|, finite: Go's Min leaves it as it is
            if (curr - prev) / (prev + curr) < SMALL_DELTA_TOLERANCE:
                b[1] = prev
                continue
        elif _almost_equal(prev, curr, SMALL_DELTA_TOLERANCE):
            b[1] = prev
            continue
        prev = curr


def _search(n: int, rank: float, buckets: list[list[float]]) -> int:
    """Go's ``sort.Search(n, func(i) bool { return buckets[i].Count >= rank })``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if not buckets[mid][1] >= rank:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _outside(q: float) -> float | None:
    """What every histogram answers for a ``φ`` that is NaN or outside [0, 1]; None inside."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    return None


def bucket_quantile(q: float, buckets: Sequence[Bucket]) -> float:
    """The ``q`` quantile of one classic histogram at one time (Prometheus' BucketQuantile)."""
    outside = _outside(q)
    if outside is not None:
        return outside
    if not buckets:
        return math.nan
    ordered = sorted(([b, c] for b, c in buckets), key=lambda b: b[0])
    return _sorted_quantile(q, _coalesce(ordered))


def _sorted_quantile(q: float, merged: list[list[float]]) -> float:
    """:func:`bucket_quantile` of buckets sorted by bound, equal bounds coalesced (a list of
    its own: counts are changed in place), ``q`` a number in [0, 1]."""
    if merged[-1][0] != math.inf:
        return math.nan
    _ensure_monotonic(merged)
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = _search(len(merged) - 1, rank, merged)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    bucket_start = 0.0
    bucket_end = merged[b][0]
    count = merged[b][1]
    if b > 0:
        bucket_start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return bucket_start + (bucket_end - bucket_start) * _go_divide(rank, count)


def _go_divide(a: float, b: float) -> float:
    """``a / b`` as Go divides floats: by zero gives ±Inf, or NaN for 0/0 (``φ`` 0 with an
    empty lowest bucket), where Python raises."""
    if b:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def histogram_quantile(phi: list[float], series: list[StepSeries]) -> list[StepSeries]:
    """``histogram_quantile(φ, series)`` at every step.

    Series are grouped by all their labels but ``le`` (the metric name included, as
    Prometheus groups them: two histograms with equal labels but different names give
    two results with the same labels, which the caller refuses as a duplicate); a result
    carries the group's labels without ``le`` and ``__name__``. A series whose ``le`` is
    missing or not a number is skipped.
    """
    groups: dict[Metric, tuple[Metric, list[tuple[float, list[float | None]]]]] = {}
    for s in series:
        le = next((v for k, v in s.metric if k == "le"), "")
        bound = parse_le(le)
        if bound is None:
            continue
        key = tuple(p for p in s.metric if p[0] != "le")
        entry = groups.get(key)
        if entry is None:
            entry = groups[key] = (tuple(p for p in key if p[0] != "__name__"), [])
        entry[1].append((bound, s.values))
    out: list[StepSeries] = []
    for metric, members in groups.values():
        bounds = [bound for bound, _ in members]
        if any(map(math.isnan, bounds)) or len(set(bounds)) < len(bounds):
            vals = _each_step(phi, members)
        elif len(phi) < _ARRAY_STEPS:
            vals = _sorted_steps_loop(phi, sorted(members, key=lambda m: m[0]))
        else:
            vals = _sorted_steps(phi, sorted(members, key=lambda m: m[0]))
        if vals.count(None) != len(vals):
            out.append(StepSeries(metric, vals))
    return out


def _each_step(
    phi: list[float], members: list[tuple[float, list[float | None]]]
) -> list[float | None]:
    """Each step's quantile, its present buckets sorted and coalesced anew."""
    vals: list[float | None] = []
    for i, q in enumerate(phi):
        buckets = [(bound, v[i]) for bound, v in members if v[i] is not None]
        vals.append(bucket_quantile(q, buckets) if buckets else None)  # type: ignore[arg-type]
    return vals


def _sorted_step(q: float, bounds: list[float], column: Sequence[float | None]) -> float | None:
    """One step's quantile of buckets sorted by distinct, non-NaN ``bounds``: the present
    ones (``column`` holds each bucket's count at the step, None where absent) are sorted
    already (a stable sort of a subset is the subset of the sort) and have nothing to
    coalesce, so only the counts are gathered. The reference for :func:`_sorted_steps`."""
    buckets = [[b, c] for b, c in zip(bounds, column, strict=True) if c is not None]
    if not buckets:
        return None
    outside = _outside(q)
    return _sorted_quantile(q, buckets) if outside is None else outside


def _sorted_steps_loop(
    phi: list[float], members: list[tuple[float, list[float | None]]]
) -> list[float | None]:
    """:func:`_sorted_step` at each step, one by one."""
    bounds = [bound for bound, _ in members]
    columns = zip(*(v for _, v in members), strict=True)
    return [_sorted_step(phi[i], bounds, column) for i, column in enumerate(columns)]


def _running_max(a: npt.NDArray[_T]) -> npt.NDArray[_T]:
    """``np.maximum.accumulate(a, axis=0)`` (NaN spreads the same), row by row: a few rows
    of many steps, where the ufunc's accumulate over the first axis is several times slower."""
    out = a.copy()
    for i in range(1, len(out)):
        np.maximum(out[i - 1], out[i], out=out[i])
    return out


def _sorted_steps(
    phi: list[float], members: list[tuple[float, list[float | None]]]
) -> list[float | None]:
    """:func:`_sorted_steps_loop` (each step's quantile of ``members``, sorted by their
    distinct, non-NaN bounds), to the bit, as array operations over every step at once.

    Each step's present buckets are the present rows of a (bucket, step) array. Where the
    counts are finite and not negative, ``_ensure_monotonic`` is a running maximum (a
    decrease takes the maximum so far, an equal count stays as it is) unless it suppresses
    an increase as float noise, after which its ``prev`` is no running maximum; so a step
    where any increase over the running maximum is not plainly real (a relative increase
    of 1e-12 or more over a positive count, their sum normal and finite, or a normal count
    over zero), or where a present count is NaN, infinite or negative, is answered by
    :func:`_sorted_step` instead. With monotonic counts Go's binary search finds the first
    present bucket whose count reaches the rank, and the interpolation does the same float
    operations in the same order.
    """
    steps = len(phi)
    bounds = [bound for bound, _ in members]
    if steps == 0 or len(members) < 2 or bounds[-1] != math.inf:
        return _sorted_steps_loop(phi, members)  # no step has a quantile: NaN, ±Inf or None
    values = [v for _, v in members]
    try:
        counts = np.array(values, dtype=np.float64)  # None is NaN here
    except ValueError:
        counts = np.empty(0)
    if counts.shape != (len(members), steps):
        return _sorted_steps_loop(phi, members)  # ragged, or phi of another length
    present = np.ones(counts.shape, dtype=bool)
    for row in np.flatnonzero(np.isnan(counts).any(axis=1)).tolist():
        present[row] = [c is not None for c in values[row]]
    q = np.array(phi, dtype=np.float64)
    bound = np.array(bounds, dtype=np.float64)
    cols = np.arange(steps)
    rows = np.arange(len(members))[:, None]
    with np.errstate(all="ignore"):
        x = np.where(present, counts, -math.inf)
        seen = _running_max(x)
        prev = np.empty_like(x)
        prev[0] = -math.inf
        prev[1:] = seen[:-1]  # the largest present count below each bucket; -Inf for none
        total = prev + x
        real = (
            (prev > 0.0)
            & (total >= _MIN_NORMAL)
            & (total <= _MAX_FLOAT)
            & ((x - prev) / total >= SMALL_DELTA_TOLERANCE)
        ) | ((prev == 0.0) & (x >= _MIN_NORMAL))
        doubtful = present & (x > prev) & (prev > -math.inf) & ~real
        bad = present & ~((counts >= 0.0) & (counts < math.inf))
        unusual = (doubtful | bad).any(axis=0)
        fixed = np.where(x < prev, prev, x)

        n = present.sum(axis=0)
        observations = fixed[-1]
        rank = q * observations
        hit = present[:-1] & (fixed[:-1] >= rank)
        has_hit = hit.any(axis=0)
        b = hit.argmax(axis=0)
        below = _running_max(np.where(present, rows, -1))  # the last present bucket
        before = np.empty_like(below)  # the present bucket before each, -1 for none
        before[0] = -1
        before[1:] = below[:-1]
        p = before[b, cols]
        first = p < 0
        end = bound[b]
        start = np.where(first, 0.0, bound[p])
        count = fixed[b, cols]
        under = fixed[p, cols]
        count = np.where(first, count, count - under)
        rank = np.where(first, rank, rank - under)
        ratio = rank / count
        ratio = np.where((count == 0) & ((rank == 0) | np.isnan(rank)), math.nan, ratio)
        out = start + (end - start) * ratio
    out = np.where(first & (end <= 0), end, out)
    out = np.where(has_hit, out, bound[before[-1]])
    out = np.where(observations == 0, math.nan, out)
    out = np.where(~present[-1] | (n < 2), math.nan, out)
    out = np.where(q > 1, math.inf, out)
    out = np.where(q < 0, -math.inf, out)
    out = np.where(np.isnan(q), math.nan, out)
    vals: list[float | None] = out.tolist()
    settled = np.isnan(q) | (q < 0) | (q > 1) | ~present[-1] | (n < 2)
    for i in np.flatnonzero(unusual & ~settled).tolist():
        vals[i] = _sorted_step(phi[i], bounds, [v[i] for v in values])
    for i in np.flatnonzero(n == 0).tolist():
        vals[i] = None
    return vals
