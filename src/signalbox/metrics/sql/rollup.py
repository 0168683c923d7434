"""Rollup tiers of the SQL metric store, built in SQL from the level below.

Each tier is built from the one below it (raw → 1m → 5m → 1h), so the work runs at the
database's speed and never in the collection pass. A bucket holds the samples of one series
in ``(end - resolution, end]`` -- the same half-open side as a PromQL window ``(t - range, t]``,
so a window whose ends are multiples of the resolution is made of whole buckets -- and is
keyed by its end. It keeps what makes range functions exact over whole buckets (see
:class:`~signalbox.metrics.store.SeriesPoints`): count, sum, min, max; first, last and the
sample before the last, with their times; the counter-reset correction (``drops``), resets
and changes; the least-squares sums; and the sum of squared deviations (``m2``). A coarser
bucket is combined from the finer tier's buckets: shifted sums, Chan's formula for ``m2``,
and the pairs that straddle two finer buckets for drops, resets and changes.

NaN, in every tier as in the samples: SQLite stores NaN as NULL, and PostgreSQL's NaN is
made NULL too (``NULLIF(x, 'NaN')``; SQLite never equals a REAL to the text 'NaN'), so
``min``/``max`` leave it out, comparisons with it are false (as in Go), and a bucket holding
one has a NULL (NaN) sum, ``sxy`` and ``m2``.

``metric_rollups`` keeps, per tier, the end of the last bucket built (the watermark):
readers take buckets up to it and raw samples after it.
"""

from __future__ import annotations

import logging

from signalbox.metrics.partitions import RAW, Level
from signalbox.metrics.sql.partitions import PartitionTables, frames_table
from signalbox.storage.database import Database

log = logging.getLogger("signalbox.metrics")

_ROLLUP_GRACE_MS = 30_000  # late samples of the current pass still land in their bucket

COLUMNS = (
    "count, sum, min, max, first_ts, first, last_ts, last, prev_ts, prev, "
    "drops, resets, changes, sx, sxx, sxy, m2"
)
"""A bucket's statistics, in the order every statement here writes them."""

_COLS = f"series_id, ts, {COLUMNS}"
_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", "))


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
            # the bucket holding the oldest partition's first possible key or sample
            wm = (min(parts.starts[src.tier]) - 1) // res * res
        if limit > wm:
            with db.transaction():
                _rollup(parts, src, dst, wm, limit)
                _set_watermark(db, dst.tier, limit)


def rebuild(parts: PartitionTables, start_ms: int, end_ms: int) -> None:
    """Recompute every tier's buckets holding samples of ``[start_ms, end_ms)``, up to each
    tier's watermark."""
    db, lvs = parts.db, parts.levels
    for i in range(1, len(lvs)):
        src, dst = lvs[i - 1], lvs[i]
        res = dst.tier * 1000
        a, b = (start_ms - 1) // res * res, -(-end_ms // res) * res
        wm = watermark(db, dst.tier)
        if wm is not None:
            b = min(b, max(wm, a))
        if b > a:
            with db.transaction():
                _rollup(parts, src, dst, a, b)


def _rollup(parts: PartitionTables, src: Level, dst: Level, a: int, b: int) -> None:
    """Buckets of ``dst`` ending in ``(a, b]`` (multiples of its resolution), inside the
    caller's transaction, one destination partition at a time.

    Each chunk runs in a savepoint: a source partition that retention (of this or another
    process) dropped meanwhile has nothing left to roll up and is skipped, without undoing
    the buckets already built; any other error propagates.
    """
    db, res = parts.db, dst.tier * 1000
    lo = a
    while lo < b:
        # bucket ends in (lo, hi] all belong to the destination partition of lo + res, and
        # their samples (or finer buckets) to one source partition, but for the sample
        # exactly at a source partition's end, which the next partition holds
        part = dst.partition_start(lo + res)
        hi = min(b, (part + dst.span_ms - 1) // res * res, src.partition_start(lo) + src.span_ms)
        sources = _sources(parts, src, lo, hi)
        if sources:
            target = parts.ensure(dst, part)  # outside the savepoint: its creation must stay
            try:
                with db.savepoint():
                    if src.tier == RAW:
                        _from_raw(parts, target, sources, res, lo, hi)
                    else:
                        _from_tier(parts, target, sources, res, lo, hi)
            except Exception as e:
                if not db.is_undefined_table(e):
                    raise
                log.info("a partition of %s was dropped by retention while being rolled up", src)
        lo = hi


def _sources(parts: PartitionTables, src: Level, a: int, b: int) -> list[str]:
    """Tables of ``src`` whose rows (keyed by sample time or bucket end) may fall in ``(a, b]``."""
    return [table for _, table in parts.between(src, a + 1, b)]


def _union(parts: PartitionTables, tables: list[str], raw: bool) -> str:
    if raw:
        return " UNION ALL ".join(
            f"SELECT series_id, ts, value FROM {t} UNION ALL {parts.sql.frame_rows(frames_table(t))}"
            for t in tables
        )
    return " UNION ALL ".join(f"SELECT series_id, ts, {COLUMNS} FROM {t}" for t in tables)


def _from_raw(
    parts: PartitionTables, target: str, tables: list[str], res: int, a: int, b: int
) -> None:
    """Buckets ending in ``(a, b]`` from raw samples. A bucket of spool-file passes where each
    series has exactly one value (the usual case at one pass a minute) is a copy of the
    frames; anything else is aggregated from rows and frames."""
    if len(tables) == 2 and _empty_at(parts, tables[1], b):
        tables = tables[:1]  # the next partition holds nothing at this chunk's last instant
    if len(tables) == 1:
        table = tables[0]
        frames = parts.read(
            f"SELECT ts, layout_id FROM {frames_table(table)} WHERE ts > ? AND ts <= ?", (a, b)
        )
        if frames:
            buckets: dict[int, list[int]] = {}
            for ts, lid in frames:
                buckets.setdefault(-(-ts // res) * res, []).append(lid)
            rest = a
            for end in range(a + res, b + res, res):
                lids = buckets.get(end)
                if lids is not None and _one_value_each(parts, table, lids, end - res, end):
                    if rest < end - res:
                        _aggregate(parts, target, _union(parts, tables, True), res, rest, end - res)
                    _copy_frames(parts, target, table, end - res, end)
                    rows_only = f"SELECT series_id, ts, value FROM {table}"
                    _aggregate(parts, target, rows_only, res, end - res, end)
                    rest = end
            if rest < b:
                _aggregate(parts, target, _union(parts, tables, True), res, rest, b)
            return
    _aggregate(parts, target, _union(parts, tables, True), res, a, b)


def _empty_at(parts: PartitionTables, table: str, ts: int) -> bool:
    """Does the raw partition ``table`` hold no sample (row or frame) at ``ts``?"""
    rows = parts.read(
        f"SELECT 1 FROM {table} WHERE ts = ? UNION ALL "
        f"SELECT 1 FROM {frames_table(table)} WHERE ts = ?",
        (ts, ts),
    )
    return not rows


# One window for every function of a bucket's rows, so the database sorts them once: the
# whole bucket in time order (row_number, lag and lead ignore the frame; min, avg, sum and
# count over it see every row of the bucket).
_WINDOW = (
    "WINDOW w AS (PARTITION BY series_id, e ORDER BY ts "
    "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
)


def _end(col: str, res: int) -> str:
    """The end of the bucket of size ``res`` holding time ``col``."""
    return f"(({col} + {res - 1}) / {res}) * {res}"


def _aggregate(parts: PartitionTables, target: str, source: str, res: int, a: int, b: int) -> None:
    """Buckets ending in ``(a, b]`` from the raw samples ``(series_id, ts, value)`` of ``source``."""
    samples = (
        f"SELECT series_id, ts, NULLIF(value, 'NaN') AS v, {_end('ts', res)} AS e "
        f"FROM ({source}) AS x WHERE ts > ? AND ts <= ?"
    )
    ranked = (
        f"SELECT series_id, e, ts, v, {_seconds('ts - min(ts) OVER w')} AS x, "
        "row_number() OVER w AS rn, count(*) OVER w AS k, lag(v) OVER w AS pv, "
        f"avg(v) OVER w AS mean FROM ({samples}) AS s {_WINDOW}"
    )
    whole = "count(*) = count(v)"  # no NaN in the bucket
    select = (
        f"SELECT series_id, e, count(*), CASE WHEN {whole} THEN sum(v) END, min(v), max(v), "
        "min(ts), max(CASE WHEN rn = 1 THEN v END), max(ts), max(CASE WHEN rn = k THEN v END), "
        "max(CASE WHEN rn = k - 1 THEN ts END), max(CASE WHEN rn = k - 1 THEN v END), "
        "sum(CASE WHEN v < pv THEN pv ELSE 0.0 END), sum(CASE WHEN v < pv THEN 1 ELSE 0 END), "
        f"sum({_changed('v', 'pv')}), sum(x), sum(x * x), "
        f"CASE WHEN {whole} THEN sum({_product('x', 'v')}) END, "
        f"CASE WHEN {whole} THEN sum({_square('v - mean')}) END "
        f"FROM ({ranked}) AS w WHERE 1 = 1 GROUP BY series_id, e"
    )
    parts.db.execute(
        f"INSERT INTO {target} ({_COLS}) {select} ON CONFLICT (series_id, ts) DO UPDATE SET {_UPDATES}",
        (a, b),
    )


def _seconds(ms: str) -> str:
    """Milliseconds to seconds in floating point on both databases (PostgreSQL would make
    ``x / 1000.0`` an exact, slow NUMERIC)."""
    return f"CAST({ms} AS DOUBLE PRECISION) / 1000"


# PostgreSQL raises "value out of range: underflow" where a product or quotient of nonzero
# floats rounds to zero (a gauge of 1e-200 squared would stop compaction); these give 0.0
# there instead, which is what the sum it lands in makes of it anyway. NULL (NaN) stays NULL.
def _square(e: str) -> str:
    return f"CASE WHEN abs({e}) < 1e-150 THEN 0.0 ELSE ({e}) * ({e}) END"


def _product(small: str, v: str) -> str:
    """``small * v`` where ``small`` is seconds (0, or at least 0.001) and ``v`` any value."""
    return f"CASE WHEN abs({v}) < 1e-300 THEN 0.0 ELSE {small} * {v} END"


def _quotient(num: str, den: str) -> str:
    """``num / den`` where ``den`` is a sample count (at least 1)."""
    return f"CASE WHEN abs({num}) < 1e-290 THEN 0.0 ELSE {num} / {den} END"


def _changed(cur: str, prev: str) -> str:
    """1 where a value differs from the one before it (``rn`` > 1); NaN after NaN is no change."""
    return (
        f"CASE WHEN rn = 1 THEN 0 WHEN {cur} IS NULL AND {prev} IS NULL THEN 0 "
        f"WHEN {cur} = {prev} THEN 0 ELSE 1 END"
    )


def _from_tier(
    parts: PartitionTables, target: str, tables: list[str], res: int, a: int, b: int
) -> None:
    """Buckets ending in ``(a, b]`` combined from the finer buckets of ``tables``.

    Finer buckets are read by their key range, one index seek per series in a
    (series_id, ts)-clustered partition, never by scanning it.
    """
    finer = f"SELECT t.*, {_end('t.ts', res)} AS e FROM ({_union(parts, tables, False)}) AS t WHERE t.ts > ? AND t.ts <= ?"
    ranked = (
        f"SELECT f.*, {_seconds('first_ts - min(first_ts) OVER w')} AS d, "
        "row_number() OVER w AS rn, count(*) OVER w AS k, lag(last) OVER w AS pl, "
        "lead(count) OVER w AS nc, "
        f"{_quotient('sum(sum) OVER w', 'sum(count) OVER w')} AS mean FROM ({finer}) AS f {_WINDOW}"
    )
    select = (
        "SELECT series_id, e, sum(count), CASE WHEN count(*) = count(sum) THEN sum(sum) END, "
        "min(min), max(max), min(first_ts), max(CASE WHEN rn = 1 THEN first END), "
        "max(last_ts), max(CASE WHEN rn = k THEN last END), "
        "max(CASE WHEN rn = k AND count >= 2 THEN prev_ts WHEN rn = k - 1 AND nc = 1 THEN last_ts END), "
        "max(CASE WHEN rn = k AND count >= 2 THEN prev WHEN rn = k - 1 AND nc = 1 THEN last END), "
        "sum(drops) + sum(CASE WHEN first < pl THEN pl ELSE 0.0 END), "
        "sum(resets) + sum(CASE WHEN first < pl THEN 1 ELSE 0 END), "
        f"sum(changes) + sum({_changed('first', 'pl')}), "
        "sum(sx + count * d), sum(sxx + 2 * d * sx + count * d * d), "
        f"CASE WHEN count(*) = count(sxy) THEN sum(sxy + {_product('d', 'sum')}) END, "
        f"CASE WHEN count(*) = count(m2) THEN "
        f"sum(m2 + count * {_square(_quotient('sum', 'count') + ' - mean')}) END "
        f"FROM ({ranked}) AS w WHERE 1 = 1 GROUP BY series_id, e"
    )
    parts.db.execute(
        f"INSERT INTO {target} ({_COLS}) {select} ON CONFLICT (series_id, ts) DO UPDATE SET {_UPDATES}",
        (a, b),
    )


def _one_value_each(parts: PartitionTables, table: str, lids: list[int], a: int, b: int) -> bool:
    """Does every series of these frames have exactly one value in ``(a, b]``? (One pass per
    bucket: the usual case, whose buckets are copies of the values.)"""
    seen = parts.layouts.series_set(lids)
    if seen is None:  # a layout twice, or two (a file that changed shape) sharing a series
        return False
    rows = parts.read(f"SELECT DISTINCT series_id FROM {table} WHERE ts > ? AND ts <= ?", (a, b))
    return not any(r[0] in seen for r in rows)


def _copy_frames(parts: PartitionTables, target: str, table: str, a: int, b: int) -> None:
    """A bucket of one sample per series: first = last = min = max = sum = the value."""
    values = parts.sql.frame_rows(frames_table(table), " WHERE f.ts > ? AND f.ts <= ?")
    one = (
        "SELECT series_id, ?, 1, v, v, v, ts, v, ts, v, NULL, NULL, 0.0, 0, 0, 0.0, 0.0, "
        "0.0 * v, 0.0 * v "
        f"FROM (SELECT series_id, ts, NULLIF(value, 'NaN') AS v FROM ({values}) AS y) AS x"
    )
    parts.db.execute(
        f"INSERT INTO {target} ({_COLS}) {one} WHERE 1 = 1 ON CONFLICT (series_id, ts) DO UPDATE SET {_UPDATES}",
        (b, a, b),
    )
