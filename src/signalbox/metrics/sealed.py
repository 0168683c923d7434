"""Sealed units: a closed run of one layout's frame buckets, stored series-major.

Frame buckets (:mod:`signalbox.metrics.framebuckets`) are written time-major: one row per
layout and bucket, appended as the minutes pass, which is what keeps a minute's rollup as
cheap as its ingest. But reading *one* series over a week of 1-minute buckets then touches
one row, and one page, per minute: 10,080 pages for 10,080 numbers.

Once a unit of :data:`UNIT_BUCKETS` buckets is closed for good (every coarser tier has been
built past it), it is *sealed*: its buckets are transposed into one **header** (what every
position shares, per bucket: end, count, sample times, ``sx``/``sxx``, and the positions
kept as rows instead) and **chunks** of :data:`CHUNK` positions, each holding its positions'
statistics for the whole unit contiguously. One series over a week is then a header and a
chunk per hour: ~340 rows instead of 10,080. :func:`unseal` gives the frame buckets back
exactly (a rebuild after an import reopens a unit that way).

Pure logic over numpy arrays; the SQL around it is in :mod:`signalbox.metrics.sql.sealing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalbox.metrics.framebuckets import FIELDS, FrameBucket
from signalbox.metrics.partitions import SEALED_UNIT_BUCKETS

UNIT_BUCKETS = SEALED_UNIT_BUCKETS
"""Buckets in a sealed unit: an hour of the 1-minute tier, five hours of the 5-minute one."""

CHUNK = 16
"""Positions in a chunk row: 16 x 60 one-frame buckets are 7.7 KB, two to a 16 KB page."""

HEADER = -1
"""The ``chunk`` number of a unit's header row."""

VALUES, FULL = 0, 1  # chunk layout: the values alone (every bucket one frame), or FIELDS

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(slots=True)
class Header:
    """What every position of a sealed unit shares, one entry per bucket (time order).

    ``absent`` holds ``(bucket index, position)`` pairs, shape ``(k, 2)``: positions whose
    bucket is kept as a row instead (see :class:`~signalbox.metrics.framebuckets.FrameBucket`).
    """

    ends: Ints
    counts: Ints
    first_ts: Ints
    last_ts: Ints
    prev_ts: Ints
    sx: Floats
    sxx: Floats
    absent: Ints
    full: bool  # chunks hold every statistic of FIELDS, not the values alone

    @property
    def size(self) -> int:
        return len(self.ends)

    def encode(self) -> bytes:
        m = len(self.ends)
        head = np.array([m, FULL if self.full else VALUES, len(self.absent)], dtype="<i8")
        parts = [
            head, self.ends, self.counts, self.first_ts, self.last_ts, self.prev_ts,
            self.sx.view(np.int64), self.sxx.view(np.int64), self.absent.reshape(-1),
        ]  # fmt: skip
        return b"".join(np.ascontiguousarray(p, dtype="<i8").tobytes() for p in parts)

    @classmethod
    def decode(cls, blob: bytes) -> Header:
        a = np.frombuffer(bytes(blob), dtype="<i8")
        m, mode, k = int(a[0]), int(a[1]), int(a[2])
        col = [a[3 + i * m : 3 + (i + 1) * m] for i in range(7)]
        rest = a[3 + 7 * m : 3 + 7 * m + 2 * k]
        return cls(
            col[0], col[1], col[2], col[3], col[4],
            col[5].view(np.float64), col[6].view(np.float64),
            rest.reshape(k, 2), mode == FULL,
        )  # fmt: skip


def seal(fbs: Sequence[FrameBucket]) -> tuple[Header, list[bytes]]:
    """One layout's frame buckets of a unit (time order, one size) as a header and the
    chunks' blobs (chunk ``c`` holds positions ``[c * CHUNK, (c + 1) * CHUNK)``)."""
    n = fbs[0].size
    full = any(fb.count > 1 for fb in fbs)
    absent = [(i, int(p)) for i, fb in enumerate(fbs) if fb.absent is not None for p in fb.absent]
    header = Header(
        np.array([fb.end for fb in fbs], dtype=np.int64),
        np.array([fb.count for fb in fbs], dtype=np.int64),
        np.array([fb.first_ts for fb in fbs], dtype=np.int64),
        np.array([fb.last_ts for fb in fbs], dtype=np.int64),
        np.array([fb.prev_ts for fb in fbs], dtype=np.int64),
        np.array([fb.sx for fb in fbs], dtype=np.float64),
        np.array([fb.sxx for fb in fbs], dtype=np.float64),
        np.array(absent, dtype=np.int64).reshape(-1, 2),
        full,
    )
    if full:  # (position, field, bucket)
        cube = np.stack([fb.full() for fb in fbs], axis=2).transpose(1, 0, 2)
    else:  # (position, bucket)
        cube = np.stack([fb.stats for fb in fbs], axis=1)
    cube = np.ascontiguousarray(cube, dtype="<f8")
    chunks = [cube[c : c + CHUNK].tobytes() for c in range(0, n, CHUNK)]
    return header, chunks


def position_field(full: bool, block: Floats, name: str) -> Floats:
    """One statistic of one position over a unit's buckets, from its block of a chunk:
    ``(len(FIELDS), buckets)`` when ``full``, else ``(buckets,)``, the values alone."""
    if full:
        row: Floats = block[FIELDS.index(name)]
        return row
    if name in ("sum", "min", "max", "first", "last"):
        return block
    if name == "prev":
        return np.full_like(block, np.nan)
    if name in ("drops", "resets", "changes"):
        return np.zeros_like(block)
    with np.errstate(invalid="ignore"):
        zero_or_nan: Floats = block * 0.0
    return zero_or_nan


def position_blocks(header: Header, blob: bytes) -> Floats:
    """A chunk's blocks, one per position: ``(positions, buckets)`` of values alone, or
    ``(positions, len(FIELDS), buckets)``."""
    a = np.frombuffer(bytes(blob), dtype="<f8")
    if header.full:
        return a.reshape(-1, len(FIELDS), header.size)
    return a.reshape(-1, header.size)


def unseal(header: Header, chunks: Sequence[bytes]) -> list[FrameBucket]:
    """The frame buckets :func:`seal` was given, from its header and every chunk in order."""
    m = header.size
    a = np.concatenate([np.frombuffer(bytes(c), dtype="<f8") for c in chunks])
    # (position, field, bucket), or (position, bucket) for the values alone
    cube = a.reshape(-1, len(FIELDS), m) if header.full else a.reshape(-1, m)
    out = []
    for i in range(m):
        count = int(header.counts[i])
        if count > 1:
            stats = np.ascontiguousarray(cube[:, :, i].T)
        elif header.full:
            stats = np.ascontiguousarray(cube[:, FIELDS.index("last"), i])
        else:
            stats = np.ascontiguousarray(cube[:, i])
        gone = header.absent[header.absent[:, 0] == i, 1]
        out.append(
            FrameBucket(
                int(header.ends[i]), count, int(header.first_ts[i]), int(header.last_ts[i]),
                int(header.prev_ts[i]), float(header.sx[i]), float(header.sxx[i]), stats,
                np.array(gone, dtype=np.int64) if len(gone) else None,
            )
        )  # fmt: skip
    return out
