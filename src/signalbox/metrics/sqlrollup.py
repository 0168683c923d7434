"""Rollup tiers of the SQL metric store, built in SQL from the level below.

Each tier is built from the one below it (raw → 1m → 5m → 1h), so the work runs at the
database's speed and never in the collection pass. A bucket holds min, max, sum, count and
last; it is keyed by its start and reported to readers stamped 1 ms before its end (the last
instant it covers, so it never collides with a raw sample of the next bucket).

``metric_rollups`` keeps, per tier, the end of the last bucket built (the watermark):
readers take buckets up to it and raw samples after it.
"""

from __future__ import annotations

from signalbox.metrics.partitions import RAW, Level, segments
from signalbox.metrics.sqlpartitions import PartitionTables
from signalbox.storage.database import Database

_ROLLUP_GRACE_MS = 30_000  # late samples of the current pass still land in their bucket


def watermark(db: Database, tier: int) -> int | None:
    """End of the last bucket built for ``tier``; None if it was never compacted."""
    rows = db.query("SELECT watermark_ms FROM metric_rollups WHERE tier = ?", (tier,))
    return int(rows[0][0]) if rows else None


def _set_watermark(db: Database, tier: int, wm: int) -> None:
    db.execute(db.dialect.upsert("metric_rollups", ["tier", "watermark_ms"], ["tier"]), (tier, wm))


def build_closed(parts: PartitionTables, now_ms: int) -> None:
    """Roll up every bucket of every tier closed by ``now_ms`` and not built yet."""
    db, lvs = parts.db, parts.levels
    for i in range(1, len(lvs)):
        src, dst = lvs[i - 1], lvs[i]
        res = dst.tier * 1000
        limit = (now_ms - _ROLLUP_GRACE_MS) // res * res
        if src.tier != RAW:
            src_wm = watermark(db, src.tier)
            if src_wm is None:
                continue
            limit = min(limit, src_wm // res * res)
        wm = watermark(db, dst.tier)
        if wm is None:
            if not parts.starts[src.tier]:
                continue
            wm = min(parts.starts[src.tier]) // res * res
        if limit > wm:
            with db.transaction():
                _rollup(parts, src, dst, wm, limit)
                _set_watermark(db, dst.tier, limit)


def rebuild(parts: PartitionTables, start_ms: int, end_ms: int) -> None:
    """Recompute every tier's buckets over ``[start_ms, end_ms)`` up to its watermark."""
    db, lvs = parts.db, parts.levels
    for i in range(1, len(lvs)):
        src, dst = lvs[i - 1], lvs[i]
        res = dst.tier * 1000
        a, b = start_ms // res * res, -(-end_ms // res) * res
        wm = watermark(db, dst.tier)
        if wm is not None:
            b = min(b, max(wm, a))
        if b > a:
            with db.transaction():
                _rollup(parts, src, dst, a, b)


def _rollup(parts: PartitionTables, src: Level, dst: Level, start_ms: int, end_ms: int) -> None:
    res = dst.tier * 1000
    cols = "series_id, ts, min, max, sum, count, last"
    if src.tier == RAW:
        inner = (
            "SELECT series_id, value AS v, value AS mn, value AS mx, value AS sm, 1 AS cnt, "
            "(ts / {r}) * {r} AS b, row_number() OVER (PARTITION BY series_id, ts / {r} ORDER BY ts DESC) AS rn "
            "FROM {t} WHERE ts >= ? AND ts < ?"
        )
    else:
        inner = (
            "SELECT series_id, last AS v, min AS mn, max AS mx, sum AS sm, count AS cnt, "
            "(ts / {r}) * {r} AS b, row_number() OVER (PARTITION BY series_id, ts / {r} ORDER BY ts DESC) AS rn "
            "FROM {t} WHERE ts >= ? AND ts < ?"
        )
    known = parts.starts[src.tier]
    for a, b in segments(start_ms, end_ms, (src.span_ms, dst.span_ms)):
        sstart = src.partition_start(a)
        if sstart not in known:
            continue
        target = parts.ensure(dst, dst.partition_start(a))
        table = src.table(sstart)
        source = f"{parts.raw_source(table)} AS src" if src.tier == RAW else table
        select = (
            f"SELECT series_id, b, min(mn), max(mx), sum(sm), sum(cnt), max(CASE WHEN rn = 1 THEN v END) "
            f"FROM ({inner.format(r=res, t=source)}) AS x GROUP BY series_id, b"
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in ("min", "max", "sum", "count", "last"))
        parts.db.execute(
            f"INSERT INTO {target} ({cols}) {select} ON CONFLICT (series_id, ts) DO UPDATE SET {updates}",
            (a, b),
        )
