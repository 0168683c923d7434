"""Packed units: a closed run of one row-stored series' rollup buckets in one row.

Row buckets (:mod:`signalbox.metrics.rowbuckets`) are one database row per series and
bucket. A week of 5-minute buckets of 200 series is 400,000 rows, and reading them is
mostly the driver making a Python object per column of each (a 7-day ``sum(rate)`` spent
two thirds of its time in ``fetchall``). Once a unit of
:data:`~signalbox.metrics.partitions.SEALED_UNIT_BUCKETS` buckets is closed for good, a
series' buckets of that unit are *packed*: one row holding every statistic as an array of
little-endian 8-byte numbers, statistic after statistic, read back with ``frombuffer``. The
same week is then ~7,000 rows, whose bytes numpy takes as they are.

The layout of a packed blob: :data:`PACKED` columns, each ``m`` numbers (``m`` buckets,
time order), int64 for :data:`INTS` and float64 for the others. NULL is NaN, as the row
tables read back (SQLite stores NaN as NULL), and a missing ``prev_ts`` is -1, as
:func:`signalbox.metrics.rowbuckets.columns` has it. :func:`pack` then :func:`unpack` give
the buckets back exactly.

Pure logic over numpy arrays; the SQL around it is in :mod:`signalbox.metrics.sql.rowsealing`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from signalbox.metrics.rowbuckets import FINER

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

PACKED = FINER[1:]
"""The columns of a packed blob, in stored order: a bucket row's, but the series id."""

INTS = frozenset({"ts", "count", "first_ts", "last_ts", "prev_ts", "resets", "changes"})
"""Columns stored as int64 (the others are float64)."""

WIDTH = len(PACKED)
_INDEX = {name: i for i, name in enumerate(PACKED)}


def index(name: str) -> int:
    """The position of column ``name`` in a packed blob."""
    return _INDEX[name]


def pack(cols: dict[str, Any]) -> tuple[Ints, list[bytes]]:
    """Bucket columns of :data:`FINER` (sorted by series, then end; ``prev_ts`` -1 for none,
    NaN for NULL) as one blob per series: (series ids, blobs)."""
    sids = np.asarray(cols["series_id"], dtype=np.int64)
    n = len(sids)
    if not n:
        return sids, []
    grid = np.empty((WIDTH, n), dtype="<i8")
    for i, name in enumerate(PACKED):
        if name in INTS:
            grid[i] = np.asarray(cols[name], dtype=np.int64)
        else:
            grid[i] = np.asarray(cols[name], dtype="<f8").view("<i8")
    heads = np.flatnonzero(np.concatenate(([True], sids[1:] != sids[:-1])))
    bounds = [*heads.tolist(), n]
    blobs = [grid[:, a:b].tobytes() for a, b in itertools.pairwise(bounds)]
    return sids[heads], blobs


def buckets(blob: bytes) -> int:
    """How many buckets a packed blob holds."""
    return len(blob) // (8 * WIDTH)


def unpack_many(sids: Sequence[int], blobs: Sequence[bytes]) -> tuple[Ints, Ints]:
    """Many packed blobs at once: (the series id of every bucket, a ``(WIDTH, buckets)``
    int64 grid of every column, series after series in the order given; float columns are
    the grid's rows viewed as float64, see :func:`column`).

    Blobs of one size (a unit's worth: nearly all of them) are joined and reshaped in one
    go, a few numpy operations whatever their number."""
    if not blobs:
        return np.empty(0, dtype=np.int64), np.empty((WIDTH, 0), dtype=np.int64)
    sizes = [len(b) for b in blobs]
    if min(sizes) == max(sizes):
        m = buckets(blobs[0])
        a = np.frombuffer(b"".join(blobs), dtype="<i8").reshape(len(blobs), WIDTH, m)
        grid = a.transpose(1, 0, 2).reshape(WIDTH, -1)
        ids = np.repeat(np.asarray(sids, dtype=np.int64), m)
    else:
        pieces = [np.frombuffer(b, dtype="<i8").reshape(WIDTH, -1) for b in blobs]
        grid = np.concatenate(pieces, axis=1)
        ids = np.repeat(np.asarray(sids, dtype=np.int64), [p.shape[1] for p in pieces])
    return ids, np.ascontiguousarray(grid, dtype=np.int64)


def column(grid: Ints, name: str) -> Any:
    """Column ``name`` of an unpacked grid: int64 for :data:`INTS`, else float64."""
    row = grid[_INDEX[name]]
    return row if name in INTS else row.view(np.float64)


def unpack(sids: Sequence[int], blobs: Sequence[bytes]) -> dict[str, Any]:
    """Blobs back to the bucket columns of :data:`FINER` :func:`pack` was given."""
    ids, grid = unpack_many(sids, blobs)
    out: dict[str, Any] = {"series_id": ids}
    for name in PACKED:
        out[name] = np.array(column(grid, name))
    return out


def as_rows(blob: bytes, names: Sequence[str], lo: int, hi: int) -> list[tuple[Any, ...]]:
    """The buckets of one packed blob ending in ``[lo, hi]`` as rows of the columns
    ``names``, as a bucket table reads: Python numbers, NULL (None) for NaN and for no
    ``prev_ts``."""
    grid = np.frombuffer(blob, dtype="<i8").reshape(WIDTH, -1)
    ends = grid[_INDEX["ts"]]
    keep = (ends >= lo) & (ends <= hi)
    cols: list[list[Any]] = []
    for name in names:
        col = column(grid, name)[keep]
        if name == "prev_ts":
            cols.append([None if t < 0 else t for t in col.tolist()])
        elif name in INTS:
            cols.append(col.tolist())
        elif np.isnan(col).any():
            cols.append([None if x != x else x for x in col.tolist()])
        else:
            cols.append(col.tolist())
    return list(zip(*cols, strict=True))
