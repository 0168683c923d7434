"""Frame buckets: one rollup bucket for every series of one layout, as packed arrays.

A spool file's series are stored pass by pass as *frames* (one row per file and pass, see
:mod:`signalbox.metrics.sql.layouts`). Every frame of a layout holds a value for every
position at the same timestamp, so the bucket statistics that depend only on *when* the
samples were taken -- count, first/last/previous sample times, the least-squares sums of
``x`` -- are one number for the whole layout, and the rest are one array each, indexed by
position. A million series in 2,000 files are then 2,000 rows a bucket instead of a million:
a minute's rollup costs about what its ingest costs, and it appends rows in time order, so
it does not grow as a day-long partition fills.

The statistics are those of :class:`~signalbox.metrics.store.SeriesPoints` and mean exactly
what :mod:`signalbox.metrics.sql.rollup` computes in SQL for series stored as rows (NaN left
out of min and max, a NaN makes the sum, ``sxy`` and ``m2`` NaN; NaN after NaN is no
change). A bucket of one frame is kept as the frame's values alone (the usual 1-minute
bucket at one pass a minute): every other statistic follows from them.

``absent`` positions are series whose bucket is kept as a row instead (their samples came
from several sources in this bucket; the builder combined them there): readers skip them.

Pure logic over numpy arrays; the SQL around it is in :mod:`signalbox.metrics.sql.rollup`
and :mod:`signalbox.metrics.sql.partitions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

FIELDS = ("sum", "min", "max", "first", "last", "prev", "drops", "resets", "changes", "sxy", "m2")
"""The per-position statistics of a bucket of more than one frame, in stored order."""

_INDEX = {name: i for i, name in enumerate(FIELDS)}


@dataclass(slots=True)
class FrameBucket:
    """The bucket ``(end - resolution, end]`` of every position of one layout.

    ``stats`` is the frame's values (shape ``(n,)``) when ``count`` is 1, else one row per
    name of :data:`FIELDS` (shape ``(len(FIELDS), n)``). ``prev_ts`` is 0 when ``count`` is 1.
    """

    end: int
    count: int
    first_ts: int
    last_ts: int
    prev_ts: int
    sx: float
    sxx: float
    stats: Floats
    absent: npt.NDArray[np.int64] | None = None

    @property
    def size(self) -> int:
        return int(self.stats.shape[-1])

    def field(self, name: str) -> Floats:
        """One statistic for every position (expanded from the values of a one-frame bucket)."""
        if self.count > 1:
            row: Floats = self.stats[_INDEX[name]]
            return row
        v = self.stats
        if name in ("sum", "min", "max", "first", "last"):
            return v
        if name == "prev":
            return np.full_like(v, np.nan)
        if name in ("drops", "resets", "changes"):
            return np.zeros_like(v)
        with np.errstate(invalid="ignore"):
            zero_or_nan: Floats = v * 0.0  # sxy, m2: 0, or NaN for a NaN (or infinite) sample
        return zero_or_nan

    def full(self) -> Floats:
        """Every statistic, one row per name of :data:`FIELDS`."""
        if self.count > 1:
            stats: Floats = self.stats
            return stats
        rows: Floats = np.stack([self.field(n) for n in FIELDS])
        return rows


def _changed(prev: Floats, cur: Floats) -> Floats:
    """1.0 where ``cur`` differs from ``prev``; NaN after NaN is no change."""
    differs = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev))
    out: Floats = differs.astype(np.float64)
    return out


def _nan_if_any(total: Floats, parts: Floats) -> Floats:
    """``total`` with NaN wherever a column of ``parts`` holds a NaN."""
    return np.where(np.isnan(parts).any(axis=0), np.nan, total)


def from_frames(end: int, stamps: Sequence[int], values: Floats) -> FrameBucket:
    """The bucket of the frames of one layout at ``stamps`` (ascending, ms), ``values`` of
    shape ``(len(stamps), n)``."""
    k = len(stamps)
    if k == 1:
        return FrameBucket(end, 1, stamps[0], stamps[0], 0, 0.0, 0.0, np.array(values[0]))
    xs = (np.asarray(stamps, dtype=np.int64) - stamps[0]).astype(np.float64) / 1000
    v = values
    with np.errstate(invalid="ignore", over="ignore"):
        total = v.sum(axis=0)
        cur, before = v[1:], v[:-1]
        dropped = cur < before  # false where either is NaN, as in Go
        mean = total / k
        out = np.empty((len(FIELDS), v.shape[1]))
        out[_INDEX["sum"]] = total
        out[_INDEX["min"]] = np.fmin.reduce(v, axis=0)
        out[_INDEX["max"]] = np.fmax.reduce(v, axis=0)
        out[_INDEX["first"]] = v[0]
        out[_INDEX["last"]] = v[-1]
        out[_INDEX["prev"]] = v[-2]
        out[_INDEX["drops"]] = np.where(dropped, before, 0.0).sum(axis=0)
        out[_INDEX["resets"]] = dropped.sum(axis=0)
        out[_INDEX["changes"]] = _changed(before, cur).sum(axis=0)
        out[_INDEX["sxy"]] = xs @ v
        out[_INDEX["m2"]] = ((v - mean) ** 2).sum(axis=0)
    return FrameBucket(
        end, k, stamps[0], stamps[-1], stamps[-2], float(xs.sum()), float((xs * xs).sum()), out
    )


def combine(end: int, parts: Sequence[FrameBucket]) -> FrameBucket:
    """The coarser bucket made of finer buckets of one layout, in time order (shifted sums,
    Chan's formula for ``m2``, and the sample pairs that straddle two finer buckets)."""
    if len(parts) == 1:
        p = parts[0]
        return FrameBucket(end, p.count, p.first_ts, p.last_ts, p.prev_ts, p.sx, p.sxx, p.stats)
    if all(p.count == 1 for p in parts):  # one frame each: the frames themselves
        return from_frames(end, [p.first_ts for p in parts], np.stack([p.stats for p in parts]))
    full = np.stack([p.full() for p in parts])  # (parts, fields, n)

    def col(name: str) -> Floats:
        return full[:, _INDEX[name], :]

    counts = np.array([p.count for p in parts], dtype=np.float64)
    d = np.array([(p.first_ts - parts[0].first_ts) / 1000 for p in parts])
    count = int(counts.sum())
    last = parts[-1]
    if last.count >= 2:
        prev_ts, prev = last.prev_ts, col("prev")[-1]
    else:
        prev_ts, prev = parts[-2].last_ts, col("last")[-2]
    with np.errstate(invalid="ignore", over="ignore"):
        sums = col("sum")
        total = sums.sum(axis=0)
        firsts, lasts = col("first"), col("last")
        later, earlier = firsts[1:], lasts[:-1]
        dropped = later < earlier
        mean = total / count
        part_means = sums / counts[:, None]
        out = np.empty((len(FIELDS), full.shape[2]))
        out[_INDEX["sum"]] = total
        out[_INDEX["min"]] = np.fmin.reduce(col("min"), axis=0)
        out[_INDEX["max"]] = np.fmax.reduce(col("max"), axis=0)
        out[_INDEX["first"]] = firsts[0]
        out[_INDEX["last"]] = lasts[-1]
        out[_INDEX["prev"]] = prev
        out[_INDEX["drops"]] = col("drops").sum(axis=0) + np.where(dropped, earlier, 0.0).sum(
            axis=0
        )
        out[_INDEX["resets"]] = col("resets").sum(axis=0) + dropped.sum(axis=0)
        out[_INDEX["changes"]] = col("changes").sum(axis=0) + _changed(earlier, later).sum(axis=0)
        out[_INDEX["sxy"]] = _nan_if_any((col("sxy") + d[:, None] * sums).sum(axis=0), sums)
        spread = col("m2") + counts[:, None] * (part_means - mean) ** 2
        out[_INDEX["m2"]] = _nan_if_any(spread.sum(axis=0), col("m2"))
    sx = float(sum(p.sx + p.count * dj for p, dj in zip(parts, d, strict=True)))
    sxx = float(
        sum(p.sxx + 2 * dj * p.sx + p.count * dj * dj for p, dj in zip(parts, d, strict=True))
    )
    return FrameBucket(end, count, parts[0].first_ts, last.last_ts, prev_ts, sx, sxx, out)


# -- storage --------------------------------------------------------------------------------
COLUMNS = "layout_id, ts, count, first_ts, last_ts, prev_ts, sx, sxx, stats, absent"
"""A frame bucket's row, in the order :func:`encode` gives and :func:`decode` takes."""


def encode(layout_id: int, b: FrameBucket) -> tuple[Any, ...]:
    """The row of ``b`` (see :data:`COLUMNS`): the arrays as little-endian float64 bytes."""
    absent = None if b.absent is None or not len(b.absent) else b.absent.astype("<i8").tobytes()
    return (
        layout_id,
        b.end,
        b.count,
        b.first_ts,
        b.last_ts,
        b.prev_ts or None,
        b.sx,
        b.sxx,
        np.ascontiguousarray(b.stats, dtype="<f8").tobytes(),
        absent,
    )


def decode(row: Sequence[Any]) -> tuple[int, FrameBucket]:
    """``(layout_id, bucket)`` of a row read in :data:`COLUMNS` order."""
    lid, end, count, first_ts, last_ts, prev_ts, sx, sxx, stats, absent = row
    arr = np.frombuffer(bytes(stats), dtype="<f8")
    if count > 1:
        arr = arr.reshape(len(FIELDS), -1)
    gone = None if absent is None else np.frombuffer(bytes(absent), dtype="<i8")
    bucket = FrameBucket(
        int(end), int(count), int(first_ts), int(last_ts), int(prev_ts or 0),
        float(sx), float(sxx), arr, gone,
    )  # fmt: skip
    return int(lid), bucket


def stat_offsets(count: int, size: int, position: int) -> list[int]:
    """Byte offsets (0-based) in a stored ``stats`` blob of ``size`` positions of each
    statistic of ``position``: one for a one-frame bucket (its value), else one per name of
    :data:`FIELDS`. Lets a reader of a few series take 8 bytes a field instead of the blob."""
    if count == 1:
        return [position * 8]
    return [(i * size + position) * 8 for i in range(len(FIELDS))]


# -- many layouts at once ---------------------------------------------------------------------
# The files of one collector pass share their timestamps, so their buckets share every
# per-layout number: the arrays of all of them are computed in one numpy pass (a million
# positions cost a few dozen array operations, not a few dozen per file).


def _split(whole: FrameBucket, sizes: Sequence[int]) -> list[FrameBucket]:
    out, at = [], 0
    for n in sizes:
        stats = whole.stats[..., at : at + n]
        out.append(
            FrameBucket(
                whole.end,
                whole.count,
                whole.first_ts,
                whole.last_ts,
                whole.prev_ts,
                whole.sx,
                whole.sxx,
                stats,
            )
        )
        at += n
    return out


def from_frames_many(
    end: int, stamps: Sequence[int], blocks: Sequence[Floats]
) -> list[FrameBucket]:
    """:func:`from_frames` of several layouts whose frames have the same ``stamps``."""
    if len(blocks) == 1:
        return [from_frames(end, stamps, blocks[0])]
    whole = from_frames(end, stamps, np.concatenate(blocks, axis=1))
    return _split(whole, [b.shape[1] for b in blocks])


def combine_many(end: int, layouts: Sequence[Sequence[FrameBucket]]) -> list[FrameBucket]:
    """:func:`combine` of several layouts whose finer buckets share every per-layout number
    (:func:`timing`)."""
    if len(layouts) == 1:
        return [combine(end, layouts[0])]
    parts = []
    for j in range(len(layouts[0])):
        first = layouts[0][j]
        stats = np.concatenate([lay[j].stats for lay in layouts], axis=-1)
        parts.append(
            FrameBucket(
                first.end,
                first.count,
                first.first_ts,
                first.last_ts,
                first.prev_ts,
                first.sx,
                first.sxx,
                stats,
            )
        )
    return _split(combine(end, parts), [lay[0].size for lay in layouts])


def timing(parts: Sequence[FrameBucket]) -> tuple[Any, ...]:
    """What finer buckets of a layout must share with another's to be combined together."""
    return tuple((p.end, p.count, p.first_ts, p.last_ts, p.prev_ts, p.sx, p.sxx) for p in parts)
