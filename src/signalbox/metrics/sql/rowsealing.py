"""Packing closed units of row buckets one row per series, and giving them back.

See :mod:`signalbox.metrics.rowsealed` for why and for the blob. Here: the
``pbuckets_r<res>_<start>`` table beside each rollup partition (rows keyed ``(series_id,
ts = unit start)``), sealing a unit a chunk of series at a time, each chunk in one
transaction (its row buckets are replaced by packed rows, and every reader reads both
tables in one statement, :meth:`~signalbox.metrics.sql.partitions.PartitionTables.bucket_rows`,
so it sees one form or the other, never both or neither), and unsealing (a rebuild after
an import reopens the units it touches; a later compaction seals them again).

A unit is closed when every coarser tier has been built past it, as for frame buckets
(:mod:`signalbox.metrics.sql.sealing`, whose ``seal_closed`` calls this one). Progress is
kept in ``metric_sealed`` under the tier's negated id (the frame buckets' is the tier's
own): the end of the last unit whose row buckets are all packed. At most
:data:`ROWS_PER_PASS` bucket rows are packed per compaction, so a store that predates
packing, or an import of months, is packed over several compactions, never in one long one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from signalbox.metrics.partitions import Level
from signalbox.metrics.sql.partitions import packed_table

if TYPE_CHECKING:
    from signalbox.metrics.sql.partitions import PartitionTables

ROWS_PER_PASS = 200_000
"""Bucket rows one compaction packs at most: reading them is most of the work, ~10 us a
row here (an import of 30 days of 200 series, 10M buckets in three tiers, is packed over
about fifty compactions; coarse tiers first, see :func:`seal_closed`)."""

CHUNK_SERIES = 500
"""Series packed per transaction (500 series x 60 buckets: 30,000 rows read, 500 written)."""


def _columns() -> str:
    from signalbox.metrics.rowbuckets import FINER

    return ", ".join(FINER)


def _key(tier: int) -> int:
    """The ``metric_sealed`` key of a tier's row buckets (the frame buckets' is ``tier``)."""
    return -tier


def packed_until(parts: PartitionTables, tier: int) -> int | None:
    """The end of the last unit of ``tier`` whose row buckets are all packed."""
    rows = parts.db.query("SELECT sealed_ms FROM metric_sealed WHERE tier = ?", (_key(tier),))
    return int(rows[0][0]) if rows else None


def _set_packed(parts: PartitionTables, tier: int, until: int) -> None:
    db = parts.db
    db.execute(
        db.dialect.upsert("metric_sealed", ["tier", "sealed_ms"], ["tier"]), (_key(tier), until)
    )


def seal_closed(parts: PartitionTables, budget: int = ROWS_PER_PASS) -> int:
    """Pack the row buckets of every tier's closed units, oldest first, at most ``budget``
    bucket rows in all; returns how many were packed. The coarsest tier first: its units
    hold the fewest rows and serve the longest windows (a 30-day graph reads the 1-hour
    tier), so a budget spent on an import's backlog helps the slowest queries first."""
    from signalbox.metrics.sql import (
        rollup,  # it imports sealing, which imports this
        unitcache,
    )

    if unitcache.generation(parts.db) is None:  # a store packed before the generation was kept
        with parts.db.transaction():
            unitcache.ensure(parts.db)
    lvs = parts.levels
    done = 0
    for i in reversed(range(1, len(lvs))):
        lv = lvs[i]
        unit = lv.unit_ms
        if not unit or not parts.starts[lv.tier]:
            continue
        marks = [rollup.watermark(parts.db, x.tier) for x in lvs[i:]]
        if any(m is None for m in marks):
            continue
        limit = min(m for m in marks if m is not None) // unit * unit  # units ending by then
        u = packed_until(parts, lv.tier)
        if u is None:
            u = min(parts.starts[lv.tier]) // unit * unit
        while u + unit <= limit:
            if done >= budget:
                return done
            skip = next_unit(parts, lv, u, unit, limit)
            if skip > u:  # nothing to pack in [u, skip): one mark for the whole gap
                with parts.db.transaction():
                    _set_packed(parts, lv.tier, skip)
                u = skip
                continue
            used, whole = _seal_unit(parts, lv, u, unit, budget - done)
            done += used
            if not whole:
                return done
            u += unit
    return done


def next_unit(
    parts: PartitionTables,
    lv: Level,
    u: int,
    unit: int,
    limit: int,
    table_of: Callable[[str], str] = str,
) -> int:
    """The first unit at or after ``u`` (and before ``limit``) with buckets in
    ``table_of(partition)`` (the row buckets themselves by default; sealing passes the frame
    buckets' table), or ``limit``: units with none, in a partition or in a gap of days
    between partitions, are crossed by one query a partition, not a transaction each."""
    starts = parts.starts[lv.tier]
    while u < limit:
        start = lv.partition_start(u)
        if start not in starts:
            later = [s for s in starts if s > start]
            u = min(later) if later else limit
            continue
        table = lv.table(start)
        with parts.db.transaction():
            parts.ensure_fbuckets(table)  # the packed table and the index on ts among them
            first = parts.read(
                f"SELECT min(ts) FROM {table_of(table)} WHERE ts >= ? AND ts < ?",
                (u, min(start + lv.span_ms, limit)),
            )[0][0]
        if first is not None:
            return max(u, int(first) // unit * unit)
        u = start + lv.span_ms
    return limit


def _seal_unit(
    parts: PartitionTables, lv: Level, u: int, unit: int, budget: int
) -> tuple[int, bool]:
    """The row buckets ending in ``[u, u + unit)`` packed, :data:`CHUNK_SERIES` series per
    transaction until about ``budget`` rows are (at least one chunk), the last one marking
    the unit packed; (rows packed, whether the whole unit is packed now)."""
    start = lv.partition_start(u)
    if start not in parts.starts[lv.tier]:
        with parts.db.transaction():
            _set_packed(parts, lv.tier, u + unit)
        return 0, True
    table = lv.table(start)
    sids = sorted(
        r[0]
        for r in parts.read(
            f"SELECT DISTINCT series_id FROM {table} WHERE ts >= ? AND ts < ?", (u, u + unit)
        )
    )
    used = 0
    for n in range(0, max(len(sids), 1), CHUNK_SERIES):
        if n and used >= budget:
            return used, False
        chunk = sids[n : n + CHUNK_SERIES]
        with parts.db.transaction():
            if chunk:
                used += _seal_chunk(parts, table, chunk[0], chunk[-1], u, unit)
            if n + CHUNK_SERIES >= len(sids):
                _set_packed(parts, lv.tier, u + unit)
    return used, True


def _seal_chunk(
    parts: PartitionTables, table: str, lo_sid: int, hi_sid: int, u: int, unit: int
) -> int:
    """Inside the caller's transaction: the row buckets of series ``[lo_sid, hi_sid]`` in
    unit ``u`` become packed rows (merged with a packed row the series has there already,
    the row bucket winning a time both hold); returns the rows packed."""
    import numpy as np

    from signalbox.metrics import rowbuckets, rowsealed

    db = parts.db
    pb = packed_table(table)
    where = "series_id >= ? AND series_id <= ? AND ts >= ? AND ts < ?"
    params = (lo_sid, hi_sid, u, u + unit)
    rows = parts.read(
        f"SELECT {_columns()} FROM {table} WHERE {where} ORDER BY series_id, ts", params
    )
    if not rows:
        return 0
    cols = rowbuckets.columns(rows, rowbuckets.FINER)
    before = parts.read(
        f"SELECT series_id, data FROM {pb} WHERE series_id >= ? AND series_id <= ? AND ts = ?",
        (lo_sid, hi_sid, u),
    )
    if before:  # not expected (a unit is unsealed before its rows change): kept whole anyway
        old = rowsealed.unpack([r[0] for r in before], [bytes(r[1]) for r in before])
        both = {k: np.concatenate([old[k], cols[k]]) for k in rowbuckets.FINER}
        order = np.lexsort((both["ts"], both["series_id"]))
        both = {k: v[order] for k, v in both.items()}
        sid, ts = both["series_id"], both["ts"]
        # of two at one (series, time), the later one: the row bucket (concatenated last,
        # and lexsort is stable)
        last = np.append((sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1]), True)
        cols = {k: v[last] for k, v in both.items()}
    ids, blobs = rowsealed.pack(cols)
    from signalbox.metrics.sql import unitcache

    if before:  # packed rows overwritten: no process may use what it decoded of them
        unitcache.bump(db)
    else:
        unitcache.ensure(db)
    db.executemany(
        db.dialect.upsert(pb, ["series_id", "ts", "data"], ["series_id", "ts"]),
        [(sid, u, blob) for sid, blob in zip(ids.tolist(), blobs, strict=True)],
    )
    db.execute(f"DELETE FROM {table} WHERE {where}", params)
    return len(rows)


def unseal_range(
    parts: PartitionTables, start_ms: int, end_ms: int, levels: Sequence[Level] | None = None
) -> None:
    """Give the packed units (of ``levels``, default all) holding a bucket end in
    ``[start_ms, end_ms]`` back their row buckets, inside the caller's transaction, and let
    a later compaction pack them again."""
    for lv in parts.levels[1:] if levels is None else levels:
        unit = lv.unit_ms
        if not unit:
            continue
        first = start_ms // unit * unit
        lowest = None
        for _, table in parts.between(lv, first, end_ms):
            parts.ensure_fbuckets(table)
            pb = packed_table(table)
            got = parts.read(
                f"SELECT series_id, ts, data FROM {pb} WHERE ts >= ? AND ts <= ? "
                "ORDER BY series_id, ts",
                (first, end_ms),
            )
            if not got:
                continue
            from signalbox.metrics import rowbuckets, rowsealed

            cols = rowsealed.unpack([r[0] for r in got], [bytes(r[2]) for r in got])
            rows: list[tuple[Any, ...]] = rowbuckets.rows(cols)
            marks = ", ".join("?" * len(rowbuckets.FINER))
            parts.db.executemany(f"INSERT INTO {table} ({_columns()}) VALUES ({marks})", rows)
            parts.db.execute(f"DELETE FROM {pb} WHERE ts >= ? AND ts <= ?", (first, end_ms))
            from signalbox.metrics.sql import unitcache

            unitcache.bump(parts.db)  # cached decodings of these units are stale everywhere
            low = min(int(r[1]) for r in got)
            lowest = low if lowest is None else min(lowest, low)
        if lowest is not None:
            done = packed_until(parts, lv.tier)
            if done is not None and done > lowest:
                _set_packed(parts, lv.tier, lowest)
