"""Scale-out benchmark (issue 14): signalbox on PostgreSQL beside its peers, in one run.

Three parts, each selectable with ``--part`` (``all`` by default); every part interleaves
ours and the peer's in rounds and reports medians of per-round ratios (the machine's speed
drifts; a round's pair saw the same machine), as ``bench/spool_ingest.py`` does:

* ``ingest``: ``signalbox collect --once`` (the real CLI, a process of its own, so process
  start is included) of ``bench/spool_ingest.py``'s 100k-sample spool into PostgreSQL (a new
  schema on ``--pg``) versus SQLite: the first pass (every series new, a new store each
  round) and the steady pass (the same files again, new values). Its ``pg_versus`` does
  this; here it runs with this script's rounds. Target: PostgreSQL's steady pass within 2x
  of SQLite's.
* ``queue``: ``--jobs`` no-op jobs drained by 1, 2 and 4 signalbox worker processes on
  PostgreSQL (a new schema per drain) versus as many RQ ``SimpleWorker`` processes on the
  machine's Redis (127.0.0.1:6379), the same job function (``queue_throughput.noop``) and
  counts; ``bench/queue_throughput.py``'s harness (each worker forked and set up before the
  clock starts; the clock stops when the last exits, the queue empty). Jobs/s per
  configuration and the ours/RQ ratio per round. Every signalbox drain is checked for jobs
  lost or run twice: the workers' own counts of done jobs and the store's (nothing ready,
  running or dead left) must both be exactly ``--jobs``.
* ``flags``: ``bench/flag_propagation.py`` as it is (``--procs`` 10 processes, pushed by
  LISTEN/NOTIFY versus polled, on PostgreSQL and SQLite).

The signalbox jobs are enqueued on a connection with ``synchronous_commit = off`` (the
enqueue is not what is measured here, and 5,000 WAL flushes would only slow the setup; see
``bench/queue_throughput.py`` for enqueue rates); the workers drain on the server's own
settings, as every ``collect --once`` here runs.

``--quick``: one round, 1,000 jobs, 4 flips (the ingest workload stays at 100k samples: its
target is defined there).

Usage: .venv/bin/python bench/scaleout.py [--part ingest|queue|flags|all] [--rounds 3]
       [--quick] [--jobs 5000] [--workers 1,2,4] [--flips 10]
       [--pg postgresql://postgres@127.0.0.1:5432/test]
Needs: PostgreSQL (a schema of its own per store, dropped afterwards) and Redis; ``rq`` (the
``dev`` extra).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flag_propagation
import queue_throughput
import spool_ingest

from peers import median_ratio, run_main

PG = "postgresql://postgres@127.0.0.1:5432/test"
NO_FLUSH = "-csynchronous_commit%3Doff%20"  # a libpq option, prefixed to the URL's options


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# -- ingest -------------------------------------------------------------------------------------
def ingest(pg: str, rounds: int) -> None:
    """``collect --once`` into SQLite and into PostgreSQL, first and steady passes."""
    print(
        f"\n== ingest: signalbox collect --once, {spool_ingest.N:,} samples, PostgreSQL vs SQLite, "
        f"{rounds} round(s) (load {loadavg()})",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="sb-scaleout-ingest-") as tmp:
        spool_ingest.pg_versus(Path(tmp), pg, rounds, rounds)
    print("  target: PostgreSQL's steady pass within 2x of SQLite's (the pg/sqlite wall ratio)")


# -- queue --------------------------------------------------------------------------------------
def sb_drain_pg(pg: str, root: Path, jobs: int, workers: int) -> float:
    """Enqueue ``jobs`` into a new schema, drain them with ``workers`` processes; seconds.
    Raises if a job was lost or done twice (by the workers' counts or the store's)."""
    from signalbox.tasks.registry import open_queue_store

    with spool_ingest.pg_schema(pg) as url:
        queue_throughput.SB_STORE = (
            url.replace("options=", f"options={NO_FLUSH}", 1)
            if "options=" in url
            else f"{url}{'&' if '?' in url else '?'}options={NO_FLUSH}"
        )
        queue_throughput.sb_enqueue(root, jobs)
        queue_throughput.SB_STORE = url
        took, done, _ = queue_throughput.drain(queue_throughput._sb_drain, root, workers)
        store = open_queue_store(queue_throughput._sb_settings(root))
        try:
            stats = store.stats(int(time.time() * 1000))
        finally:
            store.close()
    left = {k: sum(getattr(s, k) for s in stats) for k in ("ready", "scheduled", "running", "dead")}
    stored_done = sum((s.outcomes or {}).get("done", 0) for s in stats)
    if done != jobs or stored_done != jobs or any(left.values()):
        raise RuntimeError(
            f"signalbox x{workers} on PostgreSQL: {jobs} jobs enqueued, the workers counted "
            f"{done} done, the store {stored_done} done, left {left}"
        )
    return took


def rq_drain_redis(root: Path, jobs: int, workers: int) -> float:
    """The same with RQ on Redis; seconds. Raises if a job is left or failed."""
    try:
        queue_throughput.rq_enqueue(root, jobs)
        took, _, _ = queue_throughput.drain(queue_throughput._rq_drain, root, workers)
        _, q = queue_throughput._rq(root)
        left, failed = q.count, q.failed_job_registry.count
    finally:
        queue_throughput._rq_cleanup(root)
    if left or failed:
        raise RuntimeError(f"RQ x{workers}: {jobs} jobs enqueued, {left} left, {failed} failed")
    return took


def queue(pg: str, rounds: int, jobs: int, counts: list[int]) -> None:
    """Each round: every worker count, ours and RQ's in turn (the order swapped each round)."""
    print(
        f"\n== queue drain: {jobs:,} no-op jobs, signalbox workers on PostgreSQL vs RQ "
        f"SimpleWorkers on Redis, {rounds} round(s) (load {loadavg()})",
        flush=True,
    )
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="sb-scaleout-queue-") as tmp:
                root = Path(tmp)
                for name in ("signalbox", "rq")[:: 1 if (r + n) % 2 == 0 else -1]:
                    took = (
                        sb_drain_pg(pg, root, jobs, n)
                        if name == "signalbox"
                        else rq_drain_redis(root, jobs, n)
                    )
                    times.setdefault((name, n), []).append(took)
            print(
                f"  round {r + 1}, x{n}: signalbox {jobs / times['signalbox', n][-1]:,.0f} /s, "
                f"rq {jobs / times['rq', n][-1]:,.0f} /s (load {loadavg()})",
                flush=True,
            )
    print(f"  jobs/s, median over {rounds} round(s) (per round in brackets):")
    for n in counts:
        for name in ("signalbox", "rq"):
            ts = times[name, n]
            print(
                f"    {name:<10} x{n}  {jobs / statistics.median(ts):>8,.0f} /s  "
                f"({', '.join(f'{jobs / t:,.0f}' for t in ts)})"
            )
        ratio = median_ratio(times["rq", n], times["signalbox", n])
        print(f"    signalbox/rq x{n}: {ratio:.2f}x the throughput (median of per-round ratios)")
    for name in ("signalbox", "rq"):
        one = times[name, counts[0]]
        if len(counts) > 1:
            scaled = ", ".join(f"x{n} {median_ratio(one, times[name, n]):.2f}x" for n in counts[1:])
            print(f"    {name} scaling vs x{counts[0]}: {scaled} (median of per-round ratios)")


# -- flags --------------------------------------------------------------------------------------
def flags(pg: str, procs: int, flips: int) -> None:
    print(
        f"\n== flag flip: bench/flag_propagation.py, {procs} processes, {flips} flips "
        f"(load {loadavg()})",
        flush=True,
    )
    flag_propagation.main(["--procs", str(procs), "--flips", str(flips), "--pg", pg])


PARTS = ("ingest", "queue", "flags")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--part", choices=(*PARTS, "all"), default="all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round, 1,000 jobs, 4 flips")
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    ap.add_argument("--procs", type=int, default=10, help="flag-watching processes")
    ap.add_argument("--flips", type=int, default=10)
    ap.add_argument("--pg", default=PG, help="PostgreSQL server URL (a schema is made per store)")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.jobs, a.flips = 1, min(a.jobs, 1000), min(a.flips, 4)
    try:
        counts = list(dict.fromkeys(int(w) for w in a.workers.split(",")))
    except ValueError:
        ap.error(f"--workers {a.workers!r}: expected counts like 1,2,4")
    if a.rounds < 1 or a.jobs < 1 or min(counts) < 1:
        ap.error("--rounds, --jobs and --workers must be at least 1")
    parts = PARTS if a.part == "all" else (a.part,)
    print(f"scaleout: {', '.join(parts)}; {os.cpu_count()} cores, load {loadavg()}")
    started = time.monotonic()
    if "ingest" in parts:
        ingest(a.pg, a.rounds)
    if "queue" in parts:
        queue(a.pg, a.rounds, a.jobs, counts)
    if "flags" in parts:
        flags(a.pg, a.procs, a.flips)
    print(f"\nscaleout: {time.monotonic() - started:.0f} s, load at end {loadavg()}")
    return 0


if __name__ == "__main__":
    run_main(main)
