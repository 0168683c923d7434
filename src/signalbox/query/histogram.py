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


def bucket_quantile(q: float, buckets: Sequence[Bucket]) -> float:
    """The ``q`` quantile of one classic histogram at one time (Prometheus' BucketQuantile)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
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


def _sorted_steps(
    phi: list[float], members: list[tuple[float, list[float | None]]]
) -> list[float | None]:
    """Each step's quantile of ``members`` sorted once by their distinct, non-NaN bounds:
    any step's present buckets are then sorted already (a stable sort of a subset is the
    subset of the sort) and have nothing to coalesce, so only the counts are gathered."""
    bounds = [bound for bound, _ in members]
    vals: list[float | None] = []
    for i, column in enumerate(zip(*(v for _, v in members), strict=True)):
        buckets = [[b, c] for b, c in zip(bounds, column, strict=True) if c is not None]
        if not buckets:
            vals.append(None)
            continue
        q = phi[i]
        if math.isnan(q):
            vals.append(math.nan)
        elif q < 0:
            vals.append(-math.inf)
        elif q > 1:
            vals.append(math.inf)
        else:
            vals.append(_sorted_quantile(q, buckets))
    return vals
