"""Packed units: a closed run of one row-stored series' rollup buckets in one row.

Row buckets (:mod:`signalbox.metrics.rowbuckets`) are one database row per series and
bucket. A week of 5-minute buckets of 200 series is 400,000 rows, and reading them is
mostly the driver making a Python object per column of each (a 7-day ``sum(rate)`` spent
two thirds of its time in ``fetchall``). Once a unit of
:data:`~signalbox.metrics.partitions.SEALED_UNIT_BUCKETS` buckets is closed for good, a
series' buckets of that unit are *packed*: one row holding every statistic as an array of
little-endian 8-byte numbers, statistic after statistic, read back with ``frombuffer``. The
same week is then ~7,000 rows, whose bytes numpy takes as they are.

The layout of a packed blob: a header of ``1 + WIDTH`` int64 -- the number of buckets ``m``,
then how each column of :data:`PACKED` is kept -- then the columns kept, in order: ``FULL``
(``m`` numbers, time order), ``CONSTANT`` (one number, every bucket's), or the index of an
earlier column holding the same numbers bit for bit (stored once). Numbers are
little-endian int64 for :data:`INTS` and float64 for the others. A unit of one-sample
buckets (a minute of a series scraped every minute) keeps three or four columns of the
eighteen: resets, changes and the least-squares sums are constant, ``first``/``min``/``max``
are ``sum``, and the row fits a quarter of a page instead of half of one. NULL is NaN, as
the row tables read back (SQLite stores NaN as NULL), and a missing ``prev_ts`` is -1, as
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


FULL, CONSTANT = -1, -2  # how a column is kept (else: the index of an earlier column)
_HEAD = 1 + WIDTH


def pack(cols: dict[str, Any]) -> tuple[Ints, list[bytes]]:
    """Bucket columns of :data:`FINER` (sorted by series, then end; ``prev_ts`` -1 for none,
    NaN for NULL) as one blob per series: (series ids, blobs)."""
    sids = np.asarray(cols["series_id"], dtype=np.int64)
    n = len(sids)
    if not n:
        return sids, []
    grid = np.empty((WIDTH, n), dtype="<i8")  # every column's bits as int64
    for i, name in enumerate(PACKED):
        if name in INTS:
            grid[i] = np.asarray(cols[name], dtype=np.int64)
        else:
            grid[i] = np.asarray(cols[name], dtype="<f8").view("<i8")
    heads = np.flatnonzero(np.concatenate(([True], sids[1:] != sids[:-1])))
    seg = np.cumsum(np.concatenate(([True], sids[1:] != sids[:-1]))) - 1
    # per series and column: constant over the unit? the same as an earlier column?
    modes = np.full((len(heads), WIDTH), FULL, dtype=np.int64)
    for i in range(WIDTH):
        differs = np.add.reduceat((grid[i] != grid[i][heads][seg]).astype(np.int64), heads)
        modes[:, i] = np.where(differs == 0, CONSTANT, FULL)
        for j in range(i):
            same = np.add.reduceat((grid[i] != grid[j]).astype(np.int64), heads) == 0
            modes[:, i] = np.where(same & (modes[:, i] != j) & (modes[:, i] < 0), j, modes[:, i])
    bounds = [*heads.tolist(), n]
    blobs = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        mode = modes[k]
        parts = [np.array([b - a], dtype="<i8"), mode.astype("<i8")]
        for i in range(WIDTH):
            if mode[i] == FULL:
                parts.append(grid[i, a:b])
            elif mode[i] == CONSTANT:
                parts.append(grid[i, a : a + 1])
        blobs.append(b"".join(p.tobytes() for p in parts))
    return sids[heads], blobs


def buckets(blob: bytes) -> int:
    """How many buckets a packed blob holds."""
    return int(np.frombuffer(blob[:8], dtype="<i8")[0])


def unpack_many(
    sids: Sequence[int], blobs: Sequence[bytes], *, ordered: bool = True
) -> tuple[Ints, Ints]:
    """Many packed blobs at once: (the series id of every bucket, a ``(WIDTH, buckets)``
    int64 grid of every column; float columns are the grid's rows viewed as float64, see
    :func:`column`), blob after blob in the order given, or with ``ordered`` False in any
    order of blobs (each blob's buckets still together, in time order).

    Blobs of one header (the same size and the same columns kept: a unit's worth of a
    kind of series, nearly all of them) are joined and cut in one go, a few numpy
    operations per column whatever their number."""
    if not blobs:
        return np.empty(0, dtype=np.int64), np.empty((WIDTH, 0), dtype=np.int64)
    heads = [b[: 8 * _HEAD] for b in blobs]
    sizes = np.frombuffer(b"".join(h[:8] for h in heads), dtype="<i8").astype(np.int64)
    keys = np.asarray(sids, dtype=np.int64)
    groups: dict[bytes, list[int]] = {}
    for k, h in enumerate(heads):
        groups.setdefault(h, []).append(k)
    if len(groups) == 1:
        ((head, _),) = groups.items()
        return np.repeat(keys, sizes), _decode(head, blobs)
    if not ordered:
        blocks = [_decode(head, [blobs[k] for k in members]) for head, members in groups.items()]
        ids = [np.repeat(keys[members], sizes[members]) for members in groups.values()]
        return np.concatenate(ids), np.concatenate(blocks, axis=1)
    starts = np.cumsum(sizes) - sizes
    grid = np.empty((WIDTH, int(sizes.sum())), dtype=np.int64)
    for head, members in groups.items():  # each group's buckets into their places
        m = int(sizes[members[0]])
        at = np.add.outer(starts[members], np.arange(m)).reshape(-1)
        _decode(head, [blobs[k] for k in members], grid, at)
    return np.repeat(keys, sizes), grid


def _decode(
    head: bytes, blobs: Sequence[bytes], into: Ints | None = None, at: Ints | None = None
) -> Ints:
    """Blobs of one header as a ``(WIDTH, buckets)`` grid, blob after blob; or written into
    the columns ``at`` of grid ``into``."""
    h = np.frombuffer(head, dtype="<i8")
    m, mode = int(h[0]), h[1:].tolist()
    a = np.frombuffer(b"".join(blobs), dtype="<i8").reshape(len(blobs), -1)
    out = np.empty((WIDTH, len(blobs) * m), dtype=np.int64) if into is None else into
    cols: Any = slice(None) if at is None else at
    off = _HEAD
    for i, how in enumerate(mode):
        if how == FULL:
            out[i, cols] = a[:, off : off + m].reshape(-1)
            off += m
        elif how == CONSTANT:
            out[i, cols] = np.repeat(a[:, off], m)
            off += 1
        else:
            out[i, cols] = out[how, cols]
    return out


def columns_of(
    sids: Sequence[int],
    blobs: Sequence[bytes],
    names: Sequence[str],
    lo: int | None = None,
    hi: int | None = None,
) -> tuple[Ints, dict[str, Ints]]:
    """The columns ``names`` of many packed blobs (int64 bits; :func:`as_column` views a
    float one as float64), blob after blob in the order given, each blob's buckets in time
    order, with the series id of every bucket; with ``lo``/``hi``, only the buckets ending
    in ``[lo, hi]``.

    Every blob is read in place from one buffer of them all: where each column of each
    blob starts (its header's modes, a cumulative sum over the columns), an earlier
    column's copy followed to the column kept, then one gather per column asked for. A
    few numpy operations per column whatever the number of blobs, and no column decoded
    that is not asked for (a 7-day ``rate`` reads 6 of the 18)."""
    nb = len(blobs)
    if not nb:
        return np.empty(0, dtype=np.int64), {n: np.empty(0, dtype=np.int64) for n in names}
    buf = np.frombuffer(b"".join(blobs), dtype="<i8")
    lens = np.fromiter(map(len, blobs), dtype=np.int64, count=nb) // 8
    base = np.cumsum(lens) - lens
    heads = buf[base[:, None] + np.arange(_HEAD)]
    m, modes = heads[:, 0], heads[:, 1:]
    kept = np.where(modes == FULL, m[:, None], np.where(modes == CONSTANT, 1, 0))
    start = base[:, None] + _HEAD + np.cumsum(kept, axis=1) - kept  # each column's place
    src = np.where(modes >= 0, modes, np.arange(WIDTH))  # a copy: the column it copies
    for _ in range(WIDTH):  # a copy of a copy: follow to the column kept
        nxt = np.take_along_axis(modes, src, axis=1)
        if (nxt < 0).all():
            break
        src = np.where(nxt >= 0, nxt, src)
    rows = np.arange(nb)
    blob = np.repeat(rows, m)  # each bucket's blob
    k = np.arange(len(blob), dtype=np.int64) - np.repeat(np.cumsum(m) - m, m)
    ids = np.repeat(np.asarray(sids, dtype=np.int64), m)

    def gather(name: str, b: Ints, kk: Ints) -> Ints:
        s = src[:, _INDEX[name]]
        at = start[rows, s]
        full = modes[rows, s] == FULL
        if full.all():  # the usual: every blob keeps this column (or its copy) whole
            got: Ints = buf[at[b] + kk]
        else:
            got = buf[at[b] + np.where(full[b], kk, 0)]
        return got

    out: dict[str, Ints] = {}
    if lo is not None or hi is not None:
        ts = gather("ts", blob, k)
        mask = np.ones(len(ts), dtype=bool)
        if lo is not None:
            mask &= ts >= lo
        if hi is not None:
            mask &= ts <= hi
        if not mask.all():
            keep = np.flatnonzero(mask)
            ts, ids, blob, k = ts[keep], ids[keep], blob[keep], k[keep]
        out["ts"] = ts
    for name in names:
        if name not in out:
            out[name] = gather(name, blob, k)
    return ids, {name: out[name] for name in names}


def as_column(name: str, bits: Ints) -> Any:
    """A column of :func:`columns_of` as its numbers: int64 for :data:`INTS`, else float64."""
    return bits if name in INTS else bits.view(np.float64)


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
    _, grid = unpack_many([0], [blob])
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
