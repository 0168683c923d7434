"""The value an instant selector sees at each step: the newest sample within the lookback.

This runs once per output point of every range query (a week at 1 minute is 10k steps per
series), so both ways of computing it stay out of per-step Python code:

- a *regular* series (samples exactly ``d`` apart, as rollup buckets and steady collection
  are) read at steps that are a multiple of ``d`` apart needs no search at all: the newest
  sample index advances by the same stride every step, so the answer is one slice;
- anything else bisects each step with C-level ``map`` calls and blanks stale answers.

Both give the same answer (a property test holds them to it).

Stale markers (a series that stopped being reported, see
:class:`~signalbox.metrics.store.Ended`) then blank the steps whose newest sample is not
newer than a marker at or before the step, as Prometheus' instant selector does when the
newest sample in its lookback is a stale NaN: the series ends at the marker instead of
lingering for the lookback. Markers are few, so that is one bisect per marker.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from functools import partial
from itertools import islice, repeat
from operator import eq, gt, sub


def latest_at(
    ts: list[int],
    vs: list[float],
    ends: list[int],
    lookback_ms: int,
    *,
    stale: list[int] | None = None,
) -> list[float | None]:
    """For each end (ascending), the value of the newest sample at or before it and newer
    than ``end - lookback_ms``; None where there is none, or where a stale marker (times in
    ``stale``, ascending) at or before the end is at or after that sample. ``ts`` is strictly
    ascending."""
    if len(ends) == 1:  # an instant query: one bisect (a million series each pay this)
        i = bisect_right(ts, ends[0])
        vals: list[float | None] = [vs[i - 1] if i and ts[i - 1] > ends[0] - lookback_ms else None]
    else:
        fast = _regular(ts, vs, ends, lookback_ms)
        vals = fast if fast is not None else _bisected(ts, vs, ends, lookback_ms)
    if stale:
        _blank_after_markers(ts, ends, stale, vals)
    return vals


def _blank_after_markers(
    ts: list[int], ends: list[int], stale: list[int], vals: list[float | None]
) -> None:
    """None at every end in ``[marker, first sample after the marker)``: there the newest
    thing at or before the end is the marker (a sample at the marker's own time is ended by
    it, as ``latest`` has it)."""
    n, k = len(ts), len(ends)
    for m in stale:
        lo = bisect_left(ends, m)
        if lo == k:
            break
        after = bisect_right(ts, m)
        hi = k if after == n else bisect_left(ends, ts[after])
        if hi > lo:
            vals[lo:hi] = [None] * (hi - lo)


def _bisected(
    ts: list[int], vs: list[float], ends: list[int], lookback_ms: int
) -> list[float | None]:
    his = list(map(partial(bisect_right, ts), ends))
    first = bisect_right(his, 0)  # steps before the first sample have nothing
    at = list(map(sub, his[first:], repeat(1)))
    vals: list[float | None] = [None] * first
    vals.extend(map(vs.__getitem__, at))
    horizon = list(map(sub, ends[first:], repeat(lookback_ms)))
    if not all(map(gt, map(ts.__getitem__, at), horizon)):
        for j, (i, h) in enumerate(zip(at, horizon, strict=True), first):
            if ts[i] <= h:
                vals[j] = None
    return vals


def _regular(
    ts: list[int], vs: list[float], ends: list[int], lookback_ms: int
) -> list[float | None] | None:
    """The slice answer over the series' regular prefix (the rollup buckets before the raw
    tail, say), bisection after it; None when steps or samples are not regular enough."""
    n, k = len(ts), len(ends)
    if n < 2 or k < 2:
        return None
    d, s = ts[1] - ts[0], ends[1] - ends[0]
    if d <= 0 or d > lookback_ms or s <= 0 or s % d:
        return None
    if ends[-1] - ends[0] != (k - 1) * s or not all(
        map(eq, map(sub, islice(ends, 1, None), ends), repeat(s))
    ):
        return None
    same = list(map(eq, map(sub, islice(ts, 1, None), ts), repeat(d)))
    r = same.index(False) + 1 if False in same else n  # ts[:r] are d apart
    cut = ts[r - 1] + d if r == n else min(ts[r - 1] + d, ts[r])
    first = bisect_left(ends, ts[0])  # before the first sample: nothing
    inside = bisect_left(ends, cut)  # ends[first:inside]: the newest sample is in ts[:r]
    vals: list[float | None] = [None] * first
    if inside > first:
        i0 = (ends[first] - ts[0]) // d
        m = s // d
        vals.extend(vs[i0 : i0 + m * (inside - first) : m])
    if inside < k:
        vals.extend(_bisected(ts, vs, ends[inside:], lookback_ms))
    return vals
