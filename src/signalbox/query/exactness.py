"""When an answer read from rollup buckets is exact, and the warning when it is not.

A bucket holds the samples of ``(end - resolution, end]`` with the statistics that make range
functions exact over whole buckets (see :class:`~signalbox.metrics.store.SeriesPoints`). A
window ``(a, b]`` is answered exactly when it splits no bucket: every bucket is wholly inside
it (first sample after ``a``, last at or before ``b``) or wholly outside. The store picks a
tier whose buckets line up with the query's windows when one covers the time (see
``align_ms`` in :meth:`~signalbox.metrics.store.MetricReader.select`); where none does, the
answer is the best estimate and the query carries a warning saying which resolution was used.
"""

from __future__ import annotations

from bisect import bisect_right

from signalbox.durations import format_duration
from signalbox.metrics.store import SeriesPoints

# never exact over buckets of more than one sample: they need every sample's value
NEEDS_SAMPLES = frozenset({"quantile_over_time", "mad_over_time"})


def splits(sp: SeriesPoints, ends: list[int], width_ms: int) -> bool:
    """Does any window ``(end - width_ms, end]`` split one of ``sp``'s buckets?"""
    if not sp.resolution:
        return False
    firsts, lasts = sp.first_ts, sp.timestamps
    if firsts is None or sp.approximate:
        return True
    res = sp.resolution * 1000
    if width_ms % res == 0 and not any(map(res.__rmod__, ends)):  # every end % res == 0
        return False  # edges on bucket ends: a bucket (e - res, e] is never split
    n = len(lasts)
    for end in ends:
        for edge in (end - width_ms, end) if width_ms else (end,):
            i = bisect_right(lasts, edge)  # the first bucket ending after the edge
            if i < n and firsts[i] <= edge:
                return True
    return False


def holds_many(sp: SeriesPoints) -> bool:
    """Does some bucket hold more than one sample?"""
    return bool(sp.resolution) and (sp.counts is None or any(c > 1 for c in sp.counts))


def warning(sp: SeriesPoints, what: str) -> str:
    """The warning for an estimate: which resolution answered, and why not exactly."""
    res = format_duration(sp.resolution)
    if sp.approximate:
        return (
            f"{what}: answered from {res} rollup buckets written before buckets kept exact "
            "statistics; raw samples for that time are past retention, so it is an estimate"
        )
    return (
        f"{what}: answered from {res} rollup buckets that the query's windows do not line up "
        f"with (raw samples and finer buckets for that time are past retention), so it is an "
        f"estimate; align start and step to {res} for an exact answer"
    )
