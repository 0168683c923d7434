"""Row buckets in bulk: the rollup buckets of series stored as rows, computed with numpy.

The statistics are those :mod:`signalbox.metrics.sql.rollup` keeps per bucket (see
:class:`~signalbox.metrics.store.SeriesPoints`), with the same meaning as its SQL had and as
:mod:`signalbox.metrics.framebuckets` has for frames: NaN left out of min and max, a NaN makes
the sum, ``sxy`` and ``m2`` NaN, comparisons with NaN are false (as in Go), NaN after NaN is
no change; products and squares that would underflow are 0, as PostgreSQL needs them.

Input is column arrays sorted by (series, time) -- raw samples, or finer buckets keyed by
their end -- and every (series, bucket) is a contiguous segment of them, so each statistic is
one ``reduceat`` over the segments: the cost is a few dozen array operations per batch, not
a window-function pass of the database per row (an import of 30 days x 200 series spent 23
minutes in that SQL). NaN stands for NULL both ways.

Pure logic; the reads and writes around it are in :mod:`signalbox.metrics.sql.rollup`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

FINER = (
    "series_id", "ts", "count", "sum", "min", "max", "first_ts", "first", "last_ts", "last",
    "prev_ts", "prev", "drops", "resets", "changes", "sx", "sxx", "sxy", "m2",
)  # fmt: skip
"""A bucket row's columns, in the order :func:`combine` takes and every function gives."""

_INT_COLUMNS = frozenset({"series_id", "ts", "count", "first_ts", "last_ts", "resets", "changes"})


def _ends(ts: Ints, res: int) -> Ints:
    """The end of the bucket of size ``res`` holding each time: ``(end - res, end]``."""
    out: Ints = (ts + (res - 1)) // res * res
    return out


def _segments(sids: Ints, ends: Ints) -> tuple[Ints, Ints, Ints]:
    """(first index, last index, segment of each element) of the runs of equal (series, end)."""
    n = len(sids)
    new = np.ones(n, dtype=bool)
    new[1:] = (sids[1:] != sids[:-1]) | (ends[1:] != ends[:-1])
    starts = np.flatnonzero(new)
    lasts = np.append(starts[1:], n) - 1
    seg = np.cumsum(new) - 1
    return starts, lasts, seg


def _changed(prev: Floats, cur: Floats) -> npt.NDArray[np.bool_]:
    """Where ``cur`` differs from ``prev``; NaN after NaN is no change."""
    out: npt.NDArray[np.bool_] = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev))
    return out


def _product(small: Floats, v: Floats) -> Floats:
    """``small * v``, 0 where ``v`` is so small the product would underflow."""
    out: Floats = np.where(np.abs(v) < 1e-300, 0.0, small * v)
    return out


def _square(e: Floats) -> Floats:
    out: Floats = np.where(np.abs(e) < 1e-150, 0.0, e * e)
    return out


def _quotient(num: Floats, den: Floats) -> Floats:
    out: Floats = np.where(np.abs(num) < 1e-290, 0.0, num / den)
    return out


def _pairs(starts: Ints, n: int) -> npt.NDArray[np.bool_]:
    """For elements 1..n-1: whether the element before is of the same segment."""
    inner = np.ones(max(n - 1, 0), dtype=bool)
    inner[starts[1:] - 1] = False
    return inner


def from_samples(sids: Ints, ts: Ints, values: Floats, res: int) -> dict[str, Any]:
    """The buckets of raw samples (sorted by series, then time), as columns of :data:`FINER`."""
    ends = _ends(ts, res)
    starts, lasts, seg = _segments(sids, ends)
    v = values
    n = len(v)
    count = lasts - starts + 1
    several = count > 1
    same = _pairs(starts, n)
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.add.reduceat(v, starts)
        before, cur = v[:-1], v[1:]
        dropped = same & (cur < before)
        x = (ts - ts[starts][seg]).astype(np.float64) / 1000
        mean = total / count
        out: dict[str, Any] = {
            "series_id": sids[starts],
            "ts": ends[starts],
            "count": count,
            "sum": total,
            "min": np.fmin.reduceat(v, starts),
            "max": np.fmax.reduceat(v, starts),
            "first_ts": ts[starts],
            "first": v[starts],
            "last_ts": ts[lasts],
            "last": v[lasts],
            "prev_ts": np.where(several, ts[lasts - several], -1),
            "prev": np.where(several, v[lasts - several], np.nan),
            "drops": _tail_sum(np.where(dropped, before, 0.0), starts, n),
            "resets": _tail_sum(dropped.astype(np.int64), starts, n),
            "changes": _tail_sum((same & _changed(before, cur)).astype(np.int64), starts, n),
            "sx": np.add.reduceat(x, starts),
            "sxx": np.add.reduceat(x * x, starts),
            "sxy": np.add.reduceat(_product(x, v), starts),
            "m2": np.add.reduceat(_square(v - mean[seg]), starts),
        }
    return out


def _tail_sum(pair_values: npt.NDArray[Any], starts: Ints, n: int) -> npt.NDArray[Any]:
    """Per segment, the sum of a value computed for each element with the one before it
    (``pair_values[i - 1]`` belongs to element ``i``; 0 where that one is of another segment)."""
    padded = np.concatenate([np.zeros(1, dtype=pair_values.dtype), pair_values])
    if n == 0:
        return padded[:0]
    # each segment's own first element's pair is with another segment: the callers' masks
    # made it 0
    out: npt.NDArray[Any] = np.add.reduceat(padded, starts)
    return out


def combine(cols: dict[str, Any], res: int) -> dict[str, Any]:
    """The coarser buckets of finer row buckets (columns of :data:`FINER`, sorted by series,
    then end): shifted sums, Chan's formula for ``m2``, and the sample pairs that straddle
    two finer buckets for drops, resets and changes."""
    sids, keys = cols["series_id"], cols["ts"]
    ends = _ends(keys, res)
    starts, lasts, seg = _segments(sids, ends)
    n = len(sids)
    parts = np.add.reduceat(np.ones(n, dtype=np.int64), starts)
    counts = cols["count"]
    sums, firsts, lasts_v = cols["sum"], cols["first"], cols["last"]
    last_count = counts[lasts]
    own_prev = last_count >= 2
    from_before = ~own_prev & (parts >= 2)
    same = _pairs(starts, n)
    with np.errstate(invalid="ignore", over="ignore"):
        before, cur = lasts_v[:-1], firsts[1:]
        dropped = same & (cur < before)
        fts = cols["first_ts"]
        d = (fts - fts[starts][seg]).astype(np.float64) / 1000
        cf = counts.astype(np.float64)
        total = np.add.reduceat(sums, starts)
        count = np.add.reduceat(counts, starts)
        mean = _quotient(total, count.astype(np.float64))[seg]
        spread = cols["m2"] + cf * _square(_quotient(sums, cf) - mean)
        prior = np.maximum(lasts - 1, 0)
        out: dict[str, Any] = {
            "series_id": sids[starts],
            "ts": ends[starts],
            "count": count,
            "sum": total,
            "min": np.fmin.reduceat(cols["min"], starts),
            "max": np.fmax.reduceat(cols["max"], starts),
            "first_ts": fts[starts],
            "first": firsts[starts],
            "last_ts": cols["last_ts"][lasts],
            "last": lasts_v[lasts],
            "prev_ts": np.where(
                own_prev, cols["prev_ts"][lasts], np.where(from_before, cols["last_ts"][prior], -1)
            ),
            "prev": np.where(
                own_prev, cols["prev"][lasts], np.where(from_before, lasts_v[prior], np.nan)
            ),
            "drops": np.add.reduceat(cols["drops"], starts)
            + _tail_sum(np.where(dropped, before, 0.0), starts, n),
            "resets": np.add.reduceat(cols["resets"], starts)
            + _tail_sum(dropped.astype(np.int64), starts, n),
            "changes": np.add.reduceat(cols["changes"], starts)
            + _tail_sum((same & _changed(before, cur)).astype(np.int64), starts, n),
            "sx": np.add.reduceat(cols["sx"] + cf * d, starts),
            "sxx": np.add.reduceat(cols["sxx"] + 2 * d * cols["sx"] + cf * d * d, starts),
            "sxy": np.add.reduceat(cols["sxy"] + _product(d, sums), starts),
            "m2": np.add.reduceat(spread, starts),
        }
    return out


def columns(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> dict[str, Any]:
    """Rows read from the database as arrays by column name (NULL as NaN, or -1 for times)."""
    out: dict[str, Any] = {}
    for name, col in zip(names, zip(*rows, strict=True), strict=True):
        if name in _INT_COLUMNS:
            out[name] = np.array(col, dtype=np.int64)
        elif name == "prev_ts":
            out[name] = np.array([-1 if t is None else t for t in col], dtype=np.int64)
        else:
            out[name] = np.array(col, dtype=np.float64)  # None becomes NaN
    if not rows:
        for name in names:
            out[name] = np.empty(0, dtype=np.float64 if name not in _INT_COLUMNS else np.int64)
    return out


def rows(cols: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Bucket rows in :data:`FINER` order, as the database takes them: NaN as NULL, a
    missing ``prev_ts`` as NULL, Python numbers."""
    out = []
    for name in FINER:
        col = cols[name]
        if name == "prev_ts":
            out.append([None if t < 0 else t for t in col.tolist()])
        elif name in _INT_COLUMNS:
            out.append(col.tolist())
        elif np.isnan(col).any():
            out.append([None if x != x else x for x in col.tolist()])
        else:
            out.append(col.tolist())
    return list(zip(*out, strict=True))
