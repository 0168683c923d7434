"""What the results cache's data version costs on PostgreSQL (signalbox.metrics.dataversion).

Two figures, interleaved in rounds on one fresh schema (the machine's drift hits both sides
of each ratio alike); the medians of per-round ratios are the comparison:

* the version read each cacheable request makes: ours (the counters' sum and a shared
  try-lock on the compaction key) versus the server snapshot (``pg_current_snapshot()``),
  the version before, and versus reading ``pg_locks`` for the compaction lock (the first
  form of ours);
* a collection pass's write (``--samples`` new values of existing series, one transaction)
  with the counter's bump, its last statement, versus the same write with the bump left out.

Usage: python bench/cache_version.py [--rounds 8] [--reads 300] [--writes 40]
[--samples 1000] [--url postgresql://127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg

from signalbox.metrics import dataversion
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from signalbox.storage.database import _EXCLUSIVE_LOCK

PG_LOCKS = (
    "SELECT (SELECT coalesce(sum(version), 0)::bigint FROM metric_data_version), "
    "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = %s::int4::oid AND objid = hashtext(current_schema() || 'compact')::oid "
    "AND objsubid = 2)"
)


def median_us(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--writes", type=int, default=40)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    a = p.parse_args()
    schema = f"sbbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(a.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        run(a, f"{a.url}?options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(a.url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def run(a: argparse.Namespace, url: str) -> None:
    store = SQLMetricStore(open_database(url))
    db = store.db
    raw = db.conn  # the main thread's connection, for the pg_locks form's %s
    now = int(time.time() * 1000)
    step = [0]

    def write() -> None:
        step[0] += 1
        ts = now + step[0]
        store.write([Sample("bench", (("i", str(i)),), float(i), ts) for i in range(a.samples)], ts)

    write()  # the series exist: steady passes from here
    bump = dataversion.bump
    reads: list[tuple[float, float, float]] = []
    writes: list[tuple[float, float]] = []
    for r in range(a.rounds):
        ours = median_us(lambda: dataversion.read(db), a.reads)
        snap = median_us(lambda: db.query("SELECT pg_current_snapshot()::text"), a.reads)
        locks = median_us(lambda: raw.execute(PG_LOCKS, (_EXCLUSIVE_LOCK,)).fetchall(), a.reads)
        with_bump = median_us(write, a.writes)
        dataversion.bump = lambda db: None  # the store calls it through the module
        try:
            without = median_us(write, a.writes)
        finally:
            dataversion.bump = bump
        reads.append((ours, snap, locks))
        writes.append((with_bump, without))
        print(
            f"round {r + 1}: read ours {ours:.0f} us, snapshot {snap:.0f} us, pg_locks "
            f"{locks:.0f} us; {a.samples}-sample write with bump {with_bump / 1000:.2f} ms, "
            f"without {without / 1000:.2f} ms"
        )
    store.close()
    med = statistics.median
    print(
        f"version read: ours {med(o for o, _, _ in reads):.0f} us, snapshot "
        f"{med(s for _, s, _ in reads):.0f} us, pg_locks {med(lk for _, _, lk in reads):.0f} us; "
        f"median of per-round ratios ours/snapshot {med(o / s for o, s, _ in reads):.2f}, "
        f"pg_locks/snapshot {med(lk / s for _, s, lk in reads):.2f}"
    )
    print(
        f"write: with bump {med(w for w, _ in writes) / 1000:.2f} ms, without "
        f"{med(wo for _, wo in writes) / 1000:.2f} ms; median of per-round ratios "
        f"{med(w / wo for w, wo in writes):.3f}"
    )


if __name__ == "__main__":
    main()
