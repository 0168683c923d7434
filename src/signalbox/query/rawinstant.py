"""An instant selector of a range query over raw columns: the newest sample within the
lookback at every step, for every series at once.

``max by (instance) (queue_depth)`` over an hour at 1m is 61 steps of every series. Read by
``select``, each series became two Python lists, was checked sample by sample, and was
searched step by step (:func:`signalbox.query.lookback.latest_at`). Here the store's raw
columns (:class:`~signalbox.metrics.store.RawSeriesColumns`, sorted by series then time)
are searched once for all series and steps: each (series, end) pair becomes one key in the
same order as the samples' (series rank, time) keys, so one ``searchsorted`` finds every
newest sample. The answers are ``latest_at``'s to the bit (values are picked, never
computed), stale markers included: a marker at or before an end that is not older than the
newest sample ends the series there, as Prometheus' stale NaN does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]

_KEY_MAX = 2**62
"""Composite keys (series rank x span + time) must stay below this; else one search per series."""


def newest(
    timestamps: Ints, starts: Ints, ends: Sequence[int] | Ints, lookback_ms: int | Ints
) -> tuple[Ints, npt.NDArray[np.bool_]]:
    """For each series (``starts``: offsets into ``timestamps``, ``len + 1``) and each end
    (ascending), the position of its newest sample at or before the end and newer than
    ``end - lookback_ms`` (one lookback, or one per series): (positions, whether there is
    one), both (series, ends) shaped."""
    e = np.asarray(ends, dtype=np.int64)
    n, k = len(starts) - 1, len(e)
    if not n or not k:
        return np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=bool)
    firsts = starts[:-1]
    if len(timestamps):
        lo = min(int(timestamps.min()), int(e[0]))
        span = max(int(timestamps.max()), int(e[-1])) - lo + 1
    else:
        lo, span = int(e[0]), int(e[-1]) - int(e[0]) + 1
    if n * span < _KEY_MAX:
        rank = np.repeat(np.arange(n, dtype=np.int64), np.diff(starts))
        keys = rank * span + (timestamps - lo)
        asked = np.arange(n, dtype=np.int64)[:, None] * span + (e - lo)[None, :]
        pos = np.searchsorted(keys, asked.ravel(), side="right").reshape(n, k) - 1
    else:  # times too far apart for one key: a search per series
        pos = np.empty((n, k), dtype=np.int64)
        for i in range(n):
            a, b = int(starts[i]), int(starts[i + 1])
            pos[i] = np.searchsorted(timestamps[a:b], e, side="right") - 1 + a
    found = pos >= firsts[:, None]
    pos = np.where(found, pos, 0)
    if len(timestamps):
        lookback = np.asarray(lookback_ms, dtype=np.int64).reshape(-1, 1)
        found &= timestamps[pos] > e[None, :] - lookback
    return pos, found


def end_at_markers(
    timestamps: Ints,
    starts: Ints,
    ids: Sequence[int],
    stale: Mapping[int, Sequence[int]],
    ends: Sequence[int],
    found: npt.NDArray[np.bool_],
) -> None:
    """Clear ``found`` at every end in ``[marker, first sample after the marker)`` of each
    series with markers (``stale``: ascending times by series id): there the newest thing
    at or before the end is the marker (``lookback._blank_after_markers``' rule)."""
    if not stale:
        return
    e = np.asarray(ends, dtype=np.int64)
    k = len(e)
    for i, sid in enumerate(ids):
        marks = stale.get(sid)
        if not marks:
            continue
        ts = timestamps[int(starts[i]) : int(starts[i + 1])]
        for m in marks:
            lo = int(np.searchsorted(e, m, side="left"))
            if lo == k:
                break
            after = int(np.searchsorted(ts, m, side="right"))
            hi = k if after == len(ts) else int(np.searchsorted(e, ts[after], side="left"))
            if hi > lo:
                found[i, lo:hi] = False


def rows(
    timestamps: Ints,
    values: npt.NDArray[np.float64],
    starts: Ints,
    ids: Sequence[int],
    stale: Mapping[int, Sequence[int]],
    ends: Sequence[int],
    lookback_ms: int,
    *,
    times: bool = False,
) -> list[list[float | None]]:
    """Each series' value at each end (None: nothing within the lookback, or ended by a
    marker), or with ``times`` the picked sample's own time in seconds; ``latest_at``'s
    answer for every series."""
    pos, found = newest(timestamps, starts, ends, lookback_ms)
    end_at_markers(timestamps, starts, ids, stale, ends, found)
    picked = timestamps[pos] / 1000.0 if times else values[pos]
    out = picked.astype(object)
    out[~found] = None
    got: list[list[float | None]] = out.tolist()
    return got
