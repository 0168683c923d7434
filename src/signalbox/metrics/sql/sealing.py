"""Sealing closed units of frame buckets series-major, and reading them back.

See :mod:`signalbox.metrics.sealed` for why and for the row format. Here: which units are
closed for good (every coarser tier built past them), the ``sbuckets_r<res>_<start>`` table
beside each rollup partition's frame buckets (rows keyed ``(layout_id, ts = unit start,
chunk)``, chunk -1 the header), sealing a unit in one transaction (its frame-bucket rows are
replaced by sealed rows, so a reader sees one or the other, never both or neither),
unsealing (a rebuild after an import reopens the units it touches, and they are sealed again
by a later compaction), and the reads.

Per tier, ``metric_sealed`` keeps the end of the last unit sealed whole: units are sealed in
order, at most :data:`POSITIONS_PER_PASS` series positions per compaction (a unit may take
several: its layouts are sealed a chunk at a time, each chunk in one transaction), so an hour
of a million series, or a store that predates sealing, never stalls one compaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signalbox.metrics.partitions import Level
from signalbox.metrics.sql import rowsealing
from signalbox.metrics.sql.partitions import fbuckets_table, sealed_table
from signalbox.storage.database import Database, Migration

if TYPE_CHECKING:
    from signalbox.metrics.framebuckets import FrameBucket
    from signalbox.metrics.sql.partitions import PartitionTables

log = logging.getLogger("signalbox.metrics")

POSITIONS_PER_PASS = 100_000
"""Series positions one compaction seals at most (an hour of 100,000 series is ~0.9 s here):
an hour of a million series is sealed over ten compactions instead of one long one."""

_CHUNK_POSITIONS = 20_000  # positions of a unit held in memory at once while sealing


MIGRATION: Migration = (
    7,
    "sealed units: closed hours of frame buckets stored series-major",
    [
        "CREATE TABLE IF NOT EXISTS metric_sealed (tier INTEGER PRIMARY KEY, sealed_ms BIGINT NOT NULL)"
    ],
)


def sealed_until(db: Database, tier: int) -> int | None:
    """The end of the last unit of ``tier`` sealed (every unit before it is)."""
    rows = db.query("SELECT sealed_ms FROM metric_sealed WHERE tier = ?", (tier,))
    return int(rows[0][0]) if rows else None


def _set_sealed(parts: PartitionTables, tier: int, until: int) -> None:
    db = parts.db
    db.execute(db.dialect.upsert("metric_sealed", ["tier", "sealed_ms"], ["tier"]), (tier, until))


def seal_closed(
    parts: PartitionTables, positions: int | None = None, rows: int | None = None
) -> tuple[int, int]:
    """Seal the units of every tier that no rollup will read again, oldest first: frame
    buckets series-major, at most ``positions`` (:data:`POSITIONS_PER_PASS`) series
    positions in all (a unit may take several passes: its layouts are sealed a chunk at a
    time, each chunk with its rows in one transaction); row buckets packed per series, at
    most ``rows`` (``rowsealing.ROWS_PER_PASS``) bucket rows
    (:mod:`signalbox.metrics.sql.rowsealing`). Returns (positions sealed, rows packed):
    both 0 when nothing closed was left."""
    sealed = _seal_frames(parts, POSITIONS_PER_PASS if positions is None else positions)
    packed = rowsealing.seal_closed(parts, rowsealing.ROWS_PER_PASS if rows is None else rows)
    return sealed, packed


def _seal_frames(parts: PartitionTables, budget: int) -> int:
    """Seal closed units of frame buckets, at most about ``budget`` positions (at least one
    chunk); returns the positions sealed (0: nothing closed was left)."""
    from signalbox.metrics.sql import rollup  # it imports this module

    lvs = parts.levels
    left = budget
    for i in range(1, len(lvs)):
        lv = lvs[i]
        unit = lv.unit_ms
        if not unit or not parts.starts[lv.tier]:
            continue
        marks = [rollup.watermark(parts.db, x.tier) for x in lvs[i:]]
        if any(m is None for m in marks):
            continue
        limit = min(m for m in marks if m is not None) // unit * unit  # units ending by then
        u = sealed_until(parts.db, lv.tier)
        if u is None:
            u = min(parts.starts[lv.tier]) // unit * unit
        while u + unit <= limit and left > 0:
            # hours with nothing to seal, in a partition or a gap of days, crossed by one query a
            # partition and one mark in all (a compaction after a long gap ran 13,509 of them)
            skip = rowsealing.next_unit(parts, lv, u, unit, limit, fbuckets_table)
            if skip > u:  # nothing to seal in [u, skip): one mark for the whole gap
                with parts.db.transaction():
                    _set_sealed(parts, lv.tier, skip)
                u = skip
                continue
            with parts.db.transaction():
                used, whole = _seal_unit(parts, lv, u, unit, left)
                if whole:
                    _set_sealed(parts, lv.tier, u + unit)
            left -= used
            if not whole:
                return budget - left
            u += unit
    return budget - left


def _seal_unit(
    parts: PartitionTables, lv: Level, u: int, unit: int, budget: int
) -> tuple[int, bool]:
    """The frame buckets ending in ``[u, u + unit)`` as sealed rows, layouts in chunks up to
    about ``budget`` positions (at least one chunk); (positions sealed, whether the whole
    unit is sealed now)."""
    start = lv.partition_start(u)
    if start not in parts.starts[lv.tier]:
        return 0, True
    table = lv.table(start)
    parts.ensure_fbuckets(table)
    fb, sb = fbuckets_table(table), sealed_table(table)
    lids = [
        r[0]
        for r in parts.read(
            f"SELECT DISTINCT layout_id FROM {fb} WHERE ts >= ? AND ts < ?", (u, u + unit)
        )
    ]
    if not lids:
        return 0, True
    from signalbox.metrics import framebuckets, sealed  # numpy: only with buckets to seal

    sizes = {lid: len(ids) for lid, ids in parts.layouts.series_of(lids).items()}
    used = 0
    chunks = _layout_chunks(sorted(lids), sizes)
    for n, chunk in enumerate(chunks):
        if n and used >= budget:
            return used, False
        marks = ", ".join("?" * len(chunk))
        by_layout: dict[int, list[FrameBucket]] = {}
        # no ORDER BY: SQLite would sort the rows, arrays and all, in a temporary b-tree
        for row in parts.read(
            f"SELECT {framebuckets.COLUMNS} FROM {fb} WHERE ts >= ? AND ts < ? "
            f"AND layout_id IN ({marks})",
            (u, u + unit, *chunk),
        ):
            lid, bucket = framebuckets.decode(row)
            by_layout.setdefault(lid, []).append(bucket)
        rows: list[tuple[Any, ...]] = []
        for lid, fbs in by_layout.items():
            fbs.sort(key=lambda b: b.end)
            header, blobs = sealed.seal(fbs)
            rows.append((lid, u, sealed.HEADER, header.encode()))
            rows += [(lid, u, c, blob) for c, blob in enumerate(blobs)]
        parts.db.executemany(
            f"INSERT INTO {sb} (layout_id, ts, chunk, data) VALUES (?, ?, ?, ?)", rows
        )
        parts.db.execute(
            f"DELETE FROM {fb} WHERE ts >= ? AND ts < ? AND layout_id IN ({marks})",
            (u, u + unit, *chunk),
        )
        used += sum(sizes.get(lid, 0) for lid in chunk)
    return used, True


def _layout_chunks(lids: list[int], sizes: dict[int, int]) -> list[list[int]]:
    out: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for lid in lids:
        n = sizes.get(lid, 0)
        if cur and (size + n > _CHUNK_POSITIONS or len(cur) >= 500):
            out.append(cur)
            cur, size = [], 0
        cur.append(lid)
        size += n
    if cur:
        out.append(cur)
    return out


def unseal_range(
    parts: PartitionTables, start_ms: int, end_ms: int, levels: Sequence[Level] | None = None
) -> None:
    """Give the frame buckets of every sealed unit (of ``levels``, default all) holding a
    bucket end in ``[start_ms, end_ms]`` back their per-bucket rows (inside the caller's
    transaction), and let a later compaction seal them again; packed row buckets too
    (:func:`signalbox.metrics.sql.rowsealing.unseal_range`)."""
    rowsealing.unseal_range(parts, start_ms, end_ms, levels)
    for lv in parts.levels[1:] if levels is None else levels:
        unit = lv.unit_ms
        if not unit:
            continue
        first = start_ms // unit * unit
        lowest = None
        for _, table in parts.between(lv, first, end_ms):
            parts.ensure_fbuckets(table)
            sb = sealed_table(table)
            units = [
                r[0]
                for r in parts.read(
                    f"SELECT DISTINCT ts FROM {sb} WHERE ts >= ? AND ts <= ?", (first, end_ms)
                )
            ]
            if units:
                from signalbox.metrics import framebuckets  # numpy: only when there are some
            for u in units:
                rows = []
                for lid, got in _read_units(parts, sb, None, u, u).items():
                    rows += [framebuckets.encode(lid, b) for b in got]
                if rows:
                    marks = ", ".join("?" * len(framebuckets.COLUMNS.split(", ")))
                    parts.db.executemany(
                        f"INSERT INTO {fbuckets_table(table)} ({framebuckets.COLUMNS}) "
                        f"VALUES ({marks})",
                        rows,
                    )
                parts.db.execute(f"DELETE FROM {sb} WHERE ts = ?", (u,))
                lowest = u if lowest is None else min(lowest, u)
        if lowest is not None:
            done = sealed_until(parts.db, lv.tier)
            if done is not None and done > lowest:
                _set_sealed(parts, lv.tier, lowest)


def _read_units(
    parts: PartitionTables, sb: str, lids: Sequence[int] | None, first: int, last: int
) -> dict[int, list[FrameBucket]]:
    """The frame buckets of the units starting in ``[first, last]`` (of the layouts
    ``lids``, or all), per layout in time order."""
    from signalbox.metrics import sealed

    where, params = "ts >= ? AND ts <= ?", [first, last]
    if lids is not None:
        where += f" AND layout_id IN ({', '.join('?' * len(lids))})"
        params += list(lids)
    out: dict[int, list[FrameBucket]] = {}
    cur: tuple[int, int] | None = None
    header: sealed.Header | None = None
    blobs: list[bytes] = []

    def flush() -> None:
        if cur is not None and header is not None:
            out.setdefault(cur[0], []).extend(sealed.unseal(header, blobs))

    for lid, u, chunk, data in parts.read(
        f"SELECT layout_id, ts, chunk, data FROM {sb} WHERE {where} ORDER BY layout_id, ts, chunk",
        params,
    ):
        if (lid, u) != cur:
            flush()
            cur, header, blobs = (lid, u), None, []
        if chunk == sealed.HEADER:
            header = sealed.Header.decode(data)
        else:
            blobs.append(bytes(data))
    flush()
    return out


def read_buckets(
    parts: PartitionTables, table: str, lids: Sequence[int], lo: int, hi: int, unit: int
) -> dict[int, list[FrameBucket]]:
    """The sealed frame buckets of ``lids`` ending in ``[lo, hi]`` in rollup partition
    ``table``, per layout in time order (for reads of many positions)."""
    if not unit:
        return {}
    got = _read_units(parts, sealed_table(table), lids, lo // unit * unit, hi)
    return {
        lid: kept for lid, fbs in got.items() if (kept := [b for b in fbs if lo <= b.end <= hi])
    }


SHARED = ("ends", "counts", "first_ts", "last_ts", "prev_ts", "sx", "sxx")
"""The per-bucket numbers of a unit's header, in stored order (``sx``, ``sxx`` are floats)."""


def read_positions(
    parts: PartitionTables,
    table: str,
    lid: int,
    positions: Sequence[int],
    lo: int,
    hi: int,
    unit: int,
    fields: Sequence[str],
) -> dict[int, dict[str, Any]]:
    """For reads of a few positions of one layout: per position, its buckets ending in
    ``[lo, hi]`` in the sealed units of ``table``, as arrays: the header's :data:`SHARED`
    numbers and the statistics ``fields`` (names of ``FIELDS``), in time order.

    Only the headers and the chunks holding those positions are read, and units of one
    shape (the same number of buckets, mode and absent count: all of them, usually) are
    decoded together, a few numpy operations whatever the number of units."""
    import numpy as np

    from signalbox.metrics import sealed
    from signalbox.metrics.framebuckets import FIELDS

    if not unit:
        return {}
    chunks = sorted({p // sealed.CHUNK for p in positions})
    marks = ", ".join("?" * (len(chunks) + 1))
    rows = parts.read(
        f"SELECT ts, chunk, data FROM {sealed_table(table)} WHERE layout_id = ? "
        f"AND ts >= ? AND ts <= ? AND chunk IN ({marks}) ORDER BY ts, chunk",
        (lid, lo // unit * unit, hi, sealed.HEADER, *chunks),
    )
    # unit start -> (header blob, {chunk: blob}); grouped by the header's shape
    groups: dict[tuple[int, ...], list[tuple[bytes, dict[int, bytes]]]] = {}
    cur: tuple[bytes, dict[int, bytes]] | None = None
    for _, chunk, data in rows:
        blob = bytes(data)
        if chunk == sealed.HEADER:
            head = np.frombuffer(blob[:24], dtype="<i8")
            cur = (blob, {})
            groups.setdefault(tuple(head.tolist()), []).append(cur)  # (buckets, mode, absent)
        elif cur is not None:
            cur[1][chunk] = blob
    out: dict[int, dict[str, list[Any]]] = {}
    for (m, mode, k), members in groups.items():
        full = mode == sealed.FULL
        h = np.frombuffer(b"".join(b for b, _ in members), dtype="<i8").reshape(len(members), -1)
        shared = {name: h[:, 3 + i * m : 3 + (i + 1) * m] for i, name in enumerate(SHARED)}
        shared["sx"] = shared["sx"].view(np.float64)
        shared["sxx"] = shared["sxx"].view(np.float64)
        inside = (shared["ends"] >= lo) & (shared["ends"] <= hi)
        pairs = h[:, 3 + 7 * m :].reshape(len(members), k, 2)
        for p in positions:
            c, j = divmod(p, sealed.CHUNK)
            blobs = [got.get(c) for _, got in members]
            if any(b is None for b in blobs):
                continue
            cube = np.frombuffer(b"".join(blobs), dtype="<f8")  # type: ignore[arg-type]
            if full:
                block = cube.reshape(len(members), -1, len(FIELDS), m)[:, j]  # (unit, field, b)
            else:
                block = cube.reshape(len(members), -1, m)[:, j]  # (unit, bucket)
            keep = inside
            if k:
                hit = pairs[:, :, 1] == p
                if hit.any():
                    keep = inside.copy()
                    keep[np.nonzero(hit)[0], pairs[:, :, 0][hit]] = False
            into = out.setdefault(p, {})
            for name in SHARED:
                into.setdefault(name, []).append(shared[name][keep])
            for f in fields:
                col = block[:, FIELDS.index(f)] if full else sealed.position_field(False, block, f)
                into.setdefault(f, []).append(col[keep])
    return {p: {name: np.concatenate(cols) for name, cols in got.items()} for p, got in out.items()}
