"""Rollup tiers of the SQL metric store, built in SQL from the level below.

Each tier is built from the one below it (raw → 1m → 5m → 1h), so the work runs at the
database's speed and never in the collection pass. A bucket holds min, max, sum, count and
last; it is keyed by its start and reported to readers stamped 1 ms before its end (the last
instant it covers, so it never collides with a raw sample of the next bucket).

``metric_rollups`` keeps, per tier, the end of the last bucket built (the watermark):
readers take buckets up to it and raw samples after it.
"""

from __future__ import annotations

import logging

from signalbox.metrics.partitions import RAW, Level, segments
from signalbox.metrics.sql.partitions import PartitionTables, frames_table
from signalbox.storage.database import Database

log = logging.getLogger("signalbox.metrics")

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


_COLS = "series_id, ts, min, max, sum, count, last"


# NaN in every tier as in the samples: a bucket's sum is NaN (NULL) if any of its samples
# (or finer buckets) is NaN, so avg_over_time and sum_over_time over it are NaN as over raw
# data, while min and max leave NaN out unless all are NaN (min_over_time/max_over_time).
# SQLite stores NaN as NULL, which sum() would skip while count still counted it;
# PostgreSQL keeps NaN, which max() would rank above every number: NULLIF(x, 'NaN') makes
# both NULL (SQLite never equals a REAL to the text 'NaN'; PostgreSQL reads it as NaN).
def _sum(col: str) -> str:
    return f"CASE WHEN count(*) = count({col}) THEN sum({col}) END"


def _min(col: str) -> str:
    return f"min(NULLIF({col}, 'NaN'))"


def _max(col: str) -> str:
    return f"max(NULLIF({col}, 'NaN'))"


_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in ("min", "max", "sum", "count", "last"))


def _rollup(parts: PartitionTables, src: Level, dst: Level, start_ms: int, end_ms: int) -> None:
    """Buckets of ``dst`` over ``[start_ms, end_ms)``, inside the caller's transaction.

    Each source partition is rolled up in a savepoint: one that retention (of this or
    another process) dropped meanwhile has nothing left to roll up and is skipped, without
    undoing the buckets already built; any other error propagates.
    """
    db, res = parts.db, dst.tier * 1000
    known = parts.starts[src.tier]
    for a, b in segments(start_ms, end_ms, (src.span_ms, dst.span_ms)):
        sstart = src.partition_start(a)
        if sstart not in known:
            continue
        target = parts.ensure(dst, dst.partition_start(a))  # outside: its creation must stay
        try:
            with db.savepoint():
                _rollup_segment(parts, src, target, src.table(sstart), res, a, b)
        except Exception as e:
            if not db.is_undefined_table(e):
                raise
            log.info(
                "%s was dropped by retention while being rolled up: skipped", src.table(sstart)
            )


def _rollup_segment(
    parts: PartitionTables, src: Level, target: str, table: str, res: int, a: int, b: int
) -> None:
    if src.tier != RAW:
        _from_tier(parts, target, table, res, a, b)
        return
    frames = parts.read(
        f"SELECT ts, layout_id FROM {frames_table(table)} WHERE ts >= ? AND ts < ?", (a, b)
    )
    if not frames:  # rows only (an import, or no spool files)
        _aggregate(parts, target, table, res, a, b)
        return
    buckets: dict[int, list[int]] = {}
    for ts, lid in frames:
        buckets.setdefault(ts - ts % res, []).append(lid)
    for bucket in range(a - a % res, b, res):
        lo, hi = max(a, bucket), min(b, bucket + res)
        lids = buckets.get(bucket)
        if lids is None:
            _aggregate(parts, target, table, res, lo, hi)
        elif lo == bucket and hi == bucket + res and _one_value_each(parts, table, lids, lo, hi):
            _copy_frames(parts, target, table, lo, hi)
            _aggregate(parts, target, table, res, lo, hi)
        else:
            _aggregate(parts, target, f"{parts.raw_source(table)} AS src", res, lo, hi)


def _from_tier(parts: PartitionTables, target: str, table: str, res: int, a: int, b: int) -> None:
    """Buckets of ``target`` over ``[a, b)`` from the finer tier partition ``table``.

    The source is read by one index seek per series, not by scanning the (series, ts)-
    clustered partition (a day of 1m buckets is 1440 rows per series, of which a 5m bucket
    needs 5); each bucket's last value is looked up by its newest timestamp, which is
    cheaper than ranking every row with a window function.
    """
    join = parts.db.dialect.ordered_join
    grouped = (
        f"SELECT t.series_id AS series_id, (t.ts / {res}) * {res} AS b, {_min('t.min')} AS mn, "
        f"{_max('t.max')} AS mx, {_sum('t.sum')} AS sm, sum(t.count) AS cnt, max(t.ts) AS lt "
        f"FROM series AS s {join} {table} AS t ON t.series_id = s.id "
        f"WHERE t.ts >= ? AND t.ts < ? GROUP BY t.series_id, (t.ts / {res}) * {res}"
    )
    parts.db.execute(
        f"INSERT INTO {target} ({_COLS}) SELECT g.series_id, g.b, g.mn, g.mx, g.sm, g.cnt, l.last "
        f"FROM ({grouped}) AS g {join} {table} AS l ON l.series_id = g.series_id AND l.ts = g.lt "
        f"WHERE 1 = 1 ON CONFLICT (series_id, ts) DO UPDATE SET {_UPDATES}",
        (a, b),
    )


def _aggregate(parts: PartitionTables, target: str, source: str, res: int, a: int, b: int) -> None:
    """Buckets of ``target`` over ``[a, b)`` from raw samples in ``source``."""
    inner = (
        "SELECT series_id, value AS v, value AS mn, value AS mx, value AS sm, 1 AS cnt, "
        "(ts / {r}) * {r} AS b, row_number() OVER (PARTITION BY series_id, ts / {r} ORDER BY ts DESC) AS rn "
        "FROM {t} WHERE ts >= ? AND ts < ?"
    )
    select = (
        f"SELECT series_id, b, {_min('mn')}, {_max('mx')}, {_sum('sm')}, sum(cnt), "
        "max(CASE WHEN rn = 1 THEN v END) "
        f"FROM ({inner.format(r=res, t=source)}) AS x GROUP BY series_id, b"
    )
    parts.db.execute(
        f"INSERT INTO {target} ({_COLS}) {select} ON CONFLICT (series_id, ts) DO UPDATE SET {_UPDATES}",
        (a, b),
    )


def _one_value_each(parts: PartitionTables, table: str, lids: list[int], a: int, b: int) -> bool:
    """Does every series of these frames have exactly one value in ``[a, b)``? (One pass per
    bucket: the usual case, whose buckets are copies of the values.)"""
    seen = parts.layouts.series_set(lids)
    if seen is None:  # a layout twice, or two (a file that changed shape) sharing a series
        return False
    rows = parts.read(f"SELECT DISTINCT series_id FROM {table} WHERE ts >= ? AND ts < ?", (a, b))
    return not any(r[0] in seen for r in rows)


def _copy_frames(parts: PartitionTables, target: str, table: str, a: int, b: int) -> None:
    """A bucket of one value per series: min = max = sum = last = the value, count 1."""
    values = parts.sql.frame_rows(frames_table(table), " WHERE f.ts >= ? AND f.ts < ?")
    parts.db.execute(
        f"INSERT INTO {target} ({_COLS}) SELECT series_id, ?, value, value, value, 1, value "
        f"FROM ({values}) AS x WHERE 1 = 1 ON CONFLICT (series_id, ts) DO UPDATE SET {_UPDATES}",
        (a, a, b),
    )
