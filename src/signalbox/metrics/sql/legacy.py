"""Rollup partitions of schema 4 and earlier, converted to the bucket format of schema 5.

Schema 4 keyed a bucket by its start, covered ``[start, start + res)`` and kept min, max,
sum, count and last only. Schema 5 keys it by its end, covers ``(end - res, end]`` (the side
PromQL windows take) and keeps the statistics that make range functions exact (see
:mod:`signalbox.metrics.sql.rollup`). A converted bucket keeps what it had, with its first
sample taken as its minimum at the bucket's start (a counter's, unless it was reset) and a
reset assumed where its last value is below its maximum;
its partition is marked ``exact = 0``, so answers read from it carry a warning. Where raw
samples are still kept, the buckets are then rebuilt from them, exactly.
"""

from __future__ import annotations

import logging

from signalbox.metrics.partitions import Level
from signalbox.metrics.sql import rollup
from signalbox.metrics.sql.partitions import PartitionTables

log = logging.getLogger("signalbox.metrics")

MIGRATION = (
    5,
    "rollup buckets keyed by their end, with the statistics that make range functions exact",
    ["ALTER TABLE metric_partitions ADD COLUMN exact INTEGER NOT NULL DEFAULT 1"],
)


def convert(parts: PartitionTables, now_ms: int) -> None:
    """Move every schema-4 rollup partition into schema-5 tables, then rebuild what raw
    samples still cover. One transaction for the move: a failure leaves schema 4's tables."""
    db = parts.db
    old = db.query("SELECT tier, start_ms, end_ms FROM metric_partitions WHERE tier > 0")
    if not old:
        return
    levels = {lv.tier: lv for lv in parts.levels}
    with db.transaction():
        db.execute("DELETE FROM metric_partitions WHERE tier > 0")  # ensure() registers anew
        parts.forget()
        parts.load()
        for tier, start, end in old:
            legacy = Level(tier, end - start, 0).legacy_table(start)
            lv = levels.get(tier)
            if lv is not None:
                _move(parts, lv, legacy, start, end)
            db.execute(f"DROP TABLE IF EXISTS {legacy}")
    log.info("converted %d rollup partitions to exact buckets", len(old))
    raw = parts.starts[0]
    if raw:
        rollup.rebuild(parts, min(raw), now_ms, now_ms)


def _move(parts: PartitionTables, lv: Level, legacy: str, start: int, end: int) -> None:
    db, res = parts.db, lv.tier * 1000
    # a bucket [b, b + res) becomes the bucket ending at b + res, in that end's partition
    for part in sorted({lv.partition_start(start + res), lv.partition_start(end)}):
        target = parts.ensure(lv, part)
        db.execute(
            "UPDATE metric_partitions SET exact = 0 WHERE tier = ? AND start_ms = ?",
            (lv.tier, part),
        )
        db.execute(
            f"INSERT INTO {target} (series_id, ts, {rollup.COLUMNS}) "
            f"SELECT series_id, ts + {res}, count, sum, min, max, "
            f"CASE WHEN count > 1 THEN ts + 1 ELSE ts + {res - 1} END, min, "
            f"ts + {res - 1}, last, NULL, NULL, CASE WHEN last < max THEN max ELSE 0.0 END, "
            "CASE WHEN last < max THEN 1 ELSE 0 END, 0, 0.0, 0.0, 0.0 * sum, 0.0 * sum "
            f"FROM {legacy} WHERE ts + {res} >= ? AND ts + {res} < ? "
            "ON CONFLICT (series_id, ts) DO NOTHING",
            (part, part + lv.span_ms),
        )
