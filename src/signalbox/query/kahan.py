"""Compensated (Kahan-Neumaier) summation and overflow-safe means, as Prometheus computes them.

A plain float sum loses small terms next to large ones (``1e100 + 10 - 1e100`` is 0); the
Neumaier compensation carries the lost low-order part separately, so PromQL's ``sum``,
``avg``, ``sum_over_time`` and ``avg_over_time`` give the answers Prometheus gives
(``KahanSumInc`` in its ``kahansum.go``). The compensation is reset when the running sum
becomes infinite, so an overflow stays ±Inf instead of turning into NaN.

Means sum directly (more accurate) until the running sum would overflow, then switch to an
incremental mean, so ``avg`` of values near the float limit is finite, as in Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

_isinf = math.isinf
_fsum = math.fsum


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """Add ``inc`` to the running ``total`` with compensation ``c``; the new pair."""
    t = total + inc
    if _isinf(t):
        return t, 0.0
    if abs(total) >= abs(inc):
        return t, c + ((total - t) + inc)
    return t, c + ((inc - t) + total)


def kahan_sum(values: Iterable[float]) -> float:
    """The compensated sum of ``values`` (0.0 when empty).

    ``math.fsum`` (C, exactly rounded: at least as exact as Neumaier's compensation) answers
    whenever it can, 20x faster than the loop; the loop answers what fsum refuses: a sum
    that overflows (Prometheus: ±Inf) or ``Inf + -Inf`` (NaN)."""
    seq = values if isinstance(values, list | tuple) else list(values)
    try:
        return math.fsum(seq)
    except (OverflowError, ValueError):
        pass
    total = c = 0.0
    for v in seq:
        t = total + v
        if _isinf(t):
            c = 0.0
        elif abs(total) >= abs(v):
            c += (total - t) + v
        else:
            c += (v - t) + total
        total = t
    return total if _isinf(total) else total + c


def step_sums(rows: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Each step's :func:`kahan_sum` of the values ``rows`` (one a series, one value a step)
    hold there, None where none does: ``sum``'s per-step reduction. Without gaps, every
    column goes to ``math.fsum`` in one ``map`` (what kahan_sum answers first), unless one
    overflows or meets ``Inf + -Inf``; then, and with gaps, step by step."""
    if not any(None in r for r in rows):
        try:
            return list(map(_fsum, zip(*rows, strict=True)))
        except (OverflowError, ValueError):
            pass
    out: list[float | None] = []
    for column in zip(*rows, strict=True):
        present = [v for v in column if v is not None]
        out.append(kahan_sum(present) if present else None)
    return out


def kahan_mean(values: Sequence[float]) -> float:
    """The mean of ``values`` (at least one): a compensated sum over the count while that
    sum stays finite, an incremental mean from the value that would overflow it on."""
    try:  # the common case, in C (see kahan_sum); the loop only when the sum would overflow
        total = math.fsum(values)
        if not _isinf(total):
            return total / len(values)
    except (OverflowError, ValueError):
        pass
    total, c = values[0], 0.0
    mean = 0.0
    incremental = False
    count = 1.0
    for v in values[1:]:
        count += 1.0
        if not incremental:
            new_total, new_c = kahan_inc(v, total, c)
            if not _isinf(new_total):
                total, c = new_total, new_c
                continue
            incremental = True
            mean = total / (count - 1.0)
            c /= count - 1.0
        q = (count - 1.0) / count
        mean, c = kahan_inc(v / count, q * mean, q * c)
    if incremental:
        return mean + c
    return total / count + c / count


def weighted_mean(sums: Sequence[float], counts: Sequence[float]) -> float:
    """The mean of samples given as per-bucket ``sums`` and ``counts`` (rollup buckets):
    the compensated sum of sums over the total count while that sum stays finite; past an
    overflow, an incremental mean that weighs each bucket by its count. A bucket whose own
    sum is infinite or NaN makes the mean so (its samples were)."""
    n = math.fsum(counts)
    total = kahan_sum(sums)
    if not _isinf(total) or any(map(_isinf, sums)):
        return total / n
    mean = c = 0.0
    seen = 0.0
    for s, k in zip(sums, counts, strict=True):
        if not k:
            continue
        seen += k
        q = (seen - k) / seen
        mean, c = kahan_inc(s / seen, q * mean, q * c)
    return mean + c
