"""Packed units of row buckets (``metrics/rowsealed.py``): what packing costs, and what it
saves a long-range query, in process, on one store packed and the same store unpacked.

A SQLite store gets ``--series`` counters, a sample a minute for ``--days``, written as an
import writes history (timestamped samples; tiers 1m:8d, 5m:35d, 1h:400d, raw 1 d), then
compacted; compactions run until every closed unit is packed (each one's packed rows and
time printed: the packing budget per compaction at work). A copy of the file is then
unpacked whole (``rowsealing.unseal_range``): the same buckets as rows. Each query runs on
both, the order alternating per round, after one warm-up of each; reported per query: the
median time of each and the median of per-round ratios packed / rows (< 1: packed faster),
and whether both answered the same, bit for bit. Also the file sizes (``VACUUM``-ed copies).

The machine this runs on is often shared: the per-round ratio is the figure to read, and
``valgrind --tool=callgrind`` on ``--only packed`` / ``--only rows`` gives instruction
counts that load does not move.

    .venv/bin/python bench/packed_rollups.py                 # 100 series, 10 days, 7 rounds
    .venv/bin/python bench/packed_rollups.py --series 200 --days 30
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql import rowsealing
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine
from signalbox.storage import open_database

TIERS = (Tier(60, 8 * 86400), Tier(300, 35 * 86400), Tier(3600, 400 * 86400))
QUERIES = (
    ("7d", "sum(rate(c[15m]))", 7 * 86400, 900),
    ("7d", "avg_over_time(c[15m])", 7 * 86400, 900),
    ("7d", "max by (g) (c)", 7 * 86400, 900),
    ("30d", "sum(rate(c[1h]))", 30 * 86400, 3600),
    ("30d", "sum by (g) (increase(c[1h]))", 30 * 86400, 3600),
)


def open_store(path: Path, now_s: int) -> SQLMetricStore:
    return SQLMetricStore(
        open_database(f"sqlite:///{path}"),
        raw_retention_s=86400,
        tiers=TIERS,
        clock=FrozenClock(now_s),
    )


def write_history(store: SQLMetricStore, series: int, days: int, end_s: int) -> int:
    """Counters with a reset now and then, a sample a minute, a day per write."""
    start = end_s - days * 86400
    n = 0
    for d in range(days):
        batch = []
        for i in range(series):
            labels = (("g", str(i % 5)), ("s", str(i)))
            for m in range(1440):
                t = start + d * 86400 + m * 60
                v = float((t // 60 * (i + 1)) % 100_000)
                batch.append(Sample("c", labels, v, t * 1000 - 30_000))
        store.write(batch, end_s * 1000)
        n += len(batch)
    store.rebuild_rollups((start - 60) * 1000, end_s * 1000)
    return n


def bits(result: Any) -> list[Any]:
    return [
        (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
        for m in result.matrix
    ]


def vacuumed_size(path: Path) -> int:
    copy = path.with_suffix(".vacuumed")
    conn = sqlite3.connect(path)
    conn.execute(f"VACUUM INTO '{copy}'")
    conn.close()
    size = copy.stat().st_size
    copy.unlink()
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", choices=("packed", "rows"), help="time one side only (callgrind)")
    a = ap.parse_args()
    end_s = int(time.time()) // 3600 * 3600
    with tempfile.TemporaryDirectory(prefix="sb-bench-packed-") as d:
        packed_db, rows_db = Path(d) / "packed.db", Path(d) / "rows.db"
        store = open_store(packed_db, end_s)
        t = time.perf_counter()
        n = write_history(store, a.series, a.days, end_s)
        print(
            f"{n} samples ({a.series} series x {a.days} d) written: {time.perf_counter() - t:.1f} s"
        )
        t = time.perf_counter()
        store.compact(end_s * 1000)
        print(f"first compaction (rollups, retention, packing): {time.perf_counter() - t:.1f} s")
        while True:
            t = time.perf_counter()
            store._partitions.load(fresh=True)
            got = rowsealing.seal_closed(store._partitions)
            if not got:
                break
            took = time.perf_counter() - t
            print(
                f"  a compaction's packing: {got} bucket rows in {took:.2f} s ({took / got * 1e6:.1f} us a row)"
            )
        store.close()
        shutil.copy(packed_db, rows_db)
        rows = open_store(rows_db, end_s)
        rows._partitions.load(fresh=True)
        with rows.db.transaction():
            rowsealing.unseal_range(rows._partitions, 0, 2**62)
        rows.close()
        print(
            f"file: packed {vacuumed_size(packed_db) / 1e6:.1f} MB, "
            f"as rows {vacuumed_size(rows_db) / 1e6:.1f} MB (VACUUM-ed)"
        )
        sides = {"packed": open_store(packed_db, end_s), "rows": open_store(rows_db, end_s)}
        print(
            f"{'range':>5} {'query':32} {'packed ms':>10} {'rows ms':>9} {'packed/rows':>12}  same"
        )
        for name, q, rng, step in QUERIES:
            e, s = end_s // step * step, (end_s - rng) // step * step
            args = (q, s * 1000, e * 1000, step * 1000)
            answers = {k: bits(Engine(st).range(*args)) for k, st in sides.items()}  # warm-up
            times: dict[str, list[float]] = {"packed": [], "rows": []}
            order = ["packed", "rows"] if a.only is None else [a.only]
            for r in range(a.rounds):
                for k in order if r % 2 == 0 else order[::-1]:
                    t = time.perf_counter()
                    Engine(sides[k]).range(*args)
                    times[k].append(time.perf_counter() - t)
            if a.only:
                print(f"{name:>5} {q:32} {a.only}: {statistics.median(times[a.only]) * 1e3:.1f} ms")
                continue
            ratio = statistics.median(
                p / r for p, r in zip(times["packed"], times["rows"], strict=True)
            )
            print(
                f"{name:>5} {q:32} {statistics.median(times['packed']) * 1e3:10.1f} "
                f"{statistics.median(times['rows']) * 1e3:9.1f} {ratio:11.2f}x  "
                f"{answers['packed'] == answers['rows']}"
            )
        for st in sides.values():
            st.close()


if __name__ == "__main__":
    main()
