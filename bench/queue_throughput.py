"""Task queue throughput: signalbox vs huey (SqliteHuey) vs RQ (Redis), same run.

20,000 no-op jobs enqueued one call at a time (the way an application enqueues: one job per
request), then drained by one worker process, and again by two. Each worker is a process of
its own, forked and set up (store opened, task registered) before the clock starts; the
clock stops when the last one exits, every job done (``--burst``-style: a worker exits when
nothing is ready). Every contender runs with its defaults:

* signalbox: ``open_queue_store`` of a fresh ``signalbox.toml`` (SQLite ``tasks.db``, WAL,
  ``synchronous = NORMAL``: each enqueue is committed before it returns, safe from the kill
  of any process) and ``Worker(...).run(burst=True)``;
* huey: ``SqliteHuey(filename=...)`` (results stored, its default), enqueue by calling the
  task, drain by ``dequeue()`` + ``execute()`` (what its consumer's workers do);
* RQ: ``Queue.enqueue`` on the machine's Redis (127.0.0.1:6379), ``SimpleWorker.work(burst=True)``.

Plus, for signalbox only: enqueue with ``[tasks] durable = true`` (``synchronous = FULL``, an
fsync per commit: nothing lost on power loss either) over ``--durable-jobs`` jobs, and a drain
of the 20,000 jobs behind an open ``mysql_load`` gate (MariaDB at 127.0.0.1:3306) with the
number of probes it cost. The worker probes its gate once as it starts, before the timing
(importing the driver and connecting, ~0.15 s, is a worker's start-up, not a job's cost:
with it inside the window the 0.5 s drain looks 36% slower); the probes the drain itself
made are counted.

Rounds are interleaved (each round runs every contender once) and compared by the median of
per-round ratios, as ``bench/spool_ingest.py`` does.

Usage: .venv/bin/python bench/queue_throughput.py [--jobs 20000] [--rounds 3]
       [--durable-jobs 2000] [--skip-rq] [--skip-huey] [--skip-gate]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import median_ratio, run_main

_FORK = multiprocessing.get_context("fork")
MARIADB = "mysql://root@127.0.0.1:3306/test"
# signalbox's store ({root}: the round's temp dir); bench/scaleout.py points it at a
# PostgreSQL schema (forked workers inherit it)
SB_STORE = "sqlite:///{root}/signalbox.db"


def noop(i: int) -> None:
    """The job: nothing, so the figures are the queue's own cost."""


# -- signalbox ----------------------------------------------------------------------------------
def _sb_settings(root: Path, durable: bool = False) -> Any:
    from signalbox.config import settings_from_dict

    raw: dict[str, Any] = {"store": SB_STORE.format(root=root)}
    if durable:
        raw["tasks"] = {"durable": True}
    return settings_from_dict(raw, source="(bench)", base_dir=root)


def _sb_task(gated: bool = False) -> tuple[Any, Any]:
    from signalbox.tasks.registry import Registry, Task

    reg = Registry()
    gates = []
    if gated:
        from signalbox.gates.mysql import mysql_load

        gates = [mysql_load(MARIADB, max_connected=10_000)]
    return reg, Task(noop, name="bench.noop", registry=reg, gates=gates)


def sb_enqueue(root: Path, n: int, durable: bool = False) -> float:
    from signalbox.tasks import registry
    from signalbox.tasks.registry import open_queue_store

    store = open_queue_store(_sb_settings(root, durable))
    registry.configure(store)
    _, task = _sb_task()
    try:
        started = time.perf_counter()
        for i in range(n):
            task.enqueue(i)
        return time.perf_counter() - started
    finally:
        registry.reset()
        store.close()


def _sb_drain(root: Path, ready: Any, go: Any, out: Any, gated: bool) -> None:
    from signalbox.tasks.registry import open_queue_store
    from signalbox.tasks.settings import TasksSettings
    from signalbox.tasks.worker import Worker

    store = open_queue_store(_sb_settings(root))
    reg, task = _sb_task(gated)
    w = Worker(store, registry=reg, settings=TasksSettings(), concurrency=1)
    for g in task.gate_objects():  # a worker's start: the driver imported, the first probe
        g.check()
    before = sum(g.probes for g in task.gate_objects())
    ready.set()
    go.wait()
    w.run(burst=True)
    probes = sum(g.probes for g in task.gate_objects()) - before
    out.put((w.counts["done"], probes))
    store.close()


# -- huey ---------------------------------------------------------------------------------------
def _huey(root: Path) -> tuple[Any, Any]:
    from huey import SqliteHuey

    h = SqliteHuey(filename=str(root / "huey.db"))
    return h, h.task()(noop)


def huey_enqueue(root: Path, n: int) -> float:
    _, task = _huey(root)
    started = time.perf_counter()
    for i in range(n):
        task(i)
    return time.perf_counter() - started


def _huey_drain(root: Path, ready: Any, go: Any, out: Any, gated: bool) -> None:
    h, _ = _huey(root)
    ready.set()
    go.wait()
    done = 0
    while (t := h.dequeue()) is not None:
        h.execute(t)
        done += 1
    out.put((done, 0))


# -- RQ -----------------------------------------------------------------------------------------
def _rq(root: Path) -> tuple[Any, Any]:
    from redis import Redis
    from rq import Queue

    conn = Redis("127.0.0.1", 6379)
    return conn, Queue(f"bench-{root.name}", connection=conn)


def rq_enqueue(root: Path, n: int) -> float:
    _, q = _rq(root)
    import queue_throughput  # RQ refuses __main__'s functions: this file as a module

    job = queue_throughput.noop
    started = time.perf_counter()
    for i in range(n):
        q.enqueue(job, i)
    return time.perf_counter() - started


def _rq_drain(root: Path, ready: Any, go: Any, out: Any, gated: bool) -> None:
    import logging

    from rq import SimpleWorker

    class Worker(SimpleWorker):  # type: ignore[misc]
        def unsubscribe(self) -> None:
            """RQ bounds its wait for the command listener at 1 s (``join(timeout=1)``), but
            redis-py 8.2's ``stop()`` joins it unbounded, and the listener, woken by the
            UNSUBSCRIBE reply before its flag is cleared, polls again for 60 s: every worker
            exited a minute after the queue was empty, inside the timing. Clearing the flag
            first (``stop(timeout=0)``) lets that reply end it, as RQ intends."""
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop(timeout=0)
            super().unsubscribe()

    conn, q = _rq(root)
    w = Worker([q], connection=conn)
    logging.getLogger("rq.worker").setLevel(logging.WARNING)
    ready.set()
    go.wait()
    w.work(burst=True, logging_level="WARNING")
    out.put((0, 0))  # the parent counts what is left instead (two workers share the queue)


def _rq_cleanup(root: Path) -> None:
    conn, q = _rq(root)
    q.delete(delete_jobs=True)
    for key in conn.scan_iter(f"rq:*bench-{root.name}*"):
        conn.delete(key)
    conn.close()


# -- the harness --------------------------------------------------------------------------------
def drain(
    target: Callable[..., None], root: Path, workers: int, gated: bool = False
) -> tuple[float, int, int]:
    """Seconds for ``workers`` forked processes to drain the queue; jobs done; gate probes."""
    ready = [_FORK.Event() for _ in range(workers)]
    go, out = _FORK.Event(), _FORK.Queue()
    procs = [_FORK.Process(target=target, args=(root, r, go, out, gated)) for r in ready]
    for p in procs:
        p.start()
    for r in ready:
        if not r.wait(60):
            raise RuntimeError(f"{target.__name__}: a worker did not start")
    started = time.perf_counter()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"{target.__name__}: a worker failed")
    return elapsed, sum(d for d, _ in results), sum(p for _, p in results)


CONTENDERS: dict[str, tuple[Callable[[Path, int], float], Callable[..., None]]] = {
    "signalbox": (sb_enqueue, _sb_drain),
    "huey": (huey_enqueue, _huey_drain),
    "rq": (rq_enqueue, _rq_drain),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--durable-jobs", type=int, default=2000)
    ap.add_argument("--skip-rq", action="store_true")
    ap.add_argument("--skip-huey", action="store_true")
    ap.add_argument("--skip-gate", action="store_true")
    a = ap.parse_args()
    names = [n for n in CONTENDERS if not getattr(a, f"skip_{n}", False)]
    n = a.jobs
    times: dict[tuple[str, str], list[float]] = {}
    extra: dict[str, list[float]] = {"durable": [], "gated": []}
    probes: list[int] = []
    for r in range(a.rounds):
        for name in names:
            enqueue, drainer = CONTENDERS[name]
            for workers in (1, 2):
                with tempfile.TemporaryDirectory(prefix=f"qbench-{name}-") as tmp:
                    root = Path(tmp)
                    try:
                        t_enq = enqueue(root, n)
                        t_drain, done, _ = drain(drainer, root, workers)
                        if name == "rq":
                            _, q = _rq(root)
                            done = n - q.count - q.failed_job_registry.count
                    finally:
                        if name == "rq":
                            _rq_cleanup(root)
                    if done != n:
                        raise RuntimeError(f"{name}: {done} of {n} jobs drained")
                    times.setdefault((name, "enqueue"), []).append(t_enq)
                    times.setdefault((name, f"drain x{workers}"), []).append(t_drain)
            print(f"round {r + 1}: {name} done", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="qbench-durable-") as tmp:
            extra["durable"].append(sb_enqueue(Path(tmp), a.durable_jobs, durable=True))
        if not a.skip_gate:
            with tempfile.TemporaryDirectory(prefix="qbench-gated-") as tmp:
                sb_enqueue(Path(tmp), n)
                t, done, p = drain(_sb_drain, Path(tmp), 1, gated=True)
                if done != n:
                    raise RuntimeError(f"gated drain: {done} of {n} jobs done")
                extra["gated"].append(t)
                probes.append(p)

    print(f"\n{n:,} no-op jobs, {a.rounds} interleaved rounds; jobs/s median (per round)")
    for (name, phase), ts in times.items():
        per_round = ", ".join(f"{n / t:,.0f}" for t in ts)
        print(f"  {name:<10} {phase:<10} {n / statistics.median(ts):>10,.0f} /s   ({per_round})")
    for phase in ("enqueue", "drain x1", "drain x2"):
        ours = times[("signalbox", phase)]
        for peer in names[1:]:
            ratio = median_ratio(times[(peer, phase)], ours)
            print(
                f"  signalbox vs {peer:<5} {phase:<10} {ratio:5.1f}x (median of per-round ratios)"
            )
    d = extra["durable"]
    print(
        f"  signalbox enqueue, [tasks] durable = true (fsync per commit), {a.durable_jobs:,} jobs: "
        f"{a.durable_jobs / statistics.median(d):,.0f} /s"
    )
    if extra["gated"]:
        g = extra["gated"]
        cost = median_ratio(g, times[("signalbox", "drain x1")]) - 1
        print(
            f"  signalbox drain x1 behind an open mysql_load gate: {n / statistics.median(g):,.0f} /s "
            f"({cost * 100:+.1f}% time, median of per-round ratios), probes while draining {n:,} jobs: "
            f"{', '.join(map(str, probes))}"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
