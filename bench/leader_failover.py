"""Leader failover: how long a store is leaderless after its leader is killed or stalls.

Two candidate processes on one PostgreSQL schema, for each way of electing:

* ``lease`` -- signalbox's (:class:`signalbox.storage.leader.LeaseLeadership`, what every
  ``serve`` runs): a lease row with a TTL, renewed or tried every third of it;
* ``advisory`` -- the peer: a session-level ``pg_try_advisory_lock``, tried at the same
  cadence, the lock held as long as the holder's connection lives.

Each round, for each way in turn (interleaved, so the machine's drift hits both alike): start
both candidates, wait until one leads, then SIGKILL it (``kill``), SIGSTOP it (``stall``: a
paused process, a VM frozen, a partition that leaves its TCP connection open) or SIGTERM it
(``stop``: a clean shutdown) at a random moment a little later, and time until the other
says it leads (its own clock and ours
are the same machine's). A stall not taken over within ``--cap`` seconds is reported as such:
the advisory lock stays held while the paused holder's connection is open, however long the
pause, and the paused holder resumes believing it still leads; the lease expires after its
TTL and the paused holder, once it wakes, finds its term over.

Usage: .venv/bin/python bench/leader_failover.py [--rounds 5] [--ttl 3] [--cap 12]
Needs: PostgreSQL at 127.0.0.1:5432, database ``test`` (trust), as the tests.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

PG = "postgresql://postgres@127.0.0.1:5432/test"
LOCK_KEY = 0x5B1EAD
ROOT = Path(__file__).resolve().parent.parent


def child(way: str, url: str, ttl: float) -> None:
    """A candidate: prints ``LEAD <epoch s>`` when it starts to lead, then keeps at it."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if way == "lease":
        from signalbox.storage import open_database
        from signalbox.storage.leader import LeaseLeadership

        db = open_database(url)
        lead = LeaseLeadership(db, f"bench:{os.getpid()}", ttl)
        lead.subscribe(lambda leading: leading and print(f"LEAD {time.time()}", flush=True))
        try:
            lead.start()  # its LEAD may draw the SIGTERM before start returns
            while True:
                time.sleep(1)
        finally:
            lead.stop()  # SIGTERM: released, as serve does
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
            time.sleep(ttl / 3)
        print(f"LEAD {time.time()}", flush=True)
        while True:
            time.sleep(1)


def spawn(way: str, url: str, ttl: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, __file__, "--child", way, "--url", url, "--ttl", str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_lead(procs: list[subprocess.Popen[str]], timeout: float) -> tuple[int, float] | None:
    """(index, time) of the first ``LEAD`` line among ``procs`` within ``timeout``."""
    deadline = time.monotonic() + timeout
    pipes = {p.stdout.fileno(): i for i, p in enumerate(procs) if p.stdout is not None}
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(pipes), [], [], left)
        for fd in ready:
            i = pipes[fd]
            line = procs[i].stdout.readline()  # type: ignore[union-attr]
            if line.startswith("LEAD "):
                return i, float(line.split()[1])
            if not line:
                del pipes[fd]
        if not pipes:
            return None
    return None


def one(way: str, how: str, ttl: float, cap: float) -> float | None:
    """Seconds without a leader after the leader is ``how``-ed (None: not within ``cap``)."""
    import psycopg

    schema = f"bench_leader_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG}?options=-csearch_path%3D{schema}"
    procs = [spawn(way, url, ttl), spawn(way, url, ttl)]
    try:
        got = first_lead(procs, 60)
        assert got is not None, f"{way}: nobody led within 60 s"
        leader = procs[got[0]]
        other = procs[1 - got[0]]
        sig = {"kill": signal.SIGKILL, "stall": signal.SIGSTOP, "stop": signal.SIGTERM}[how]
        # both candidates running, the other's attempts at any phase
        time.sleep(random.uniform(2 * ttl / 3, ttl))
        at = time.time()
        leader.send_signal(sig)
        took = first_lead([other], cap)
        return None if took is None else took[1] - at
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(10)
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def show(xs: list[float | None], cap: float) -> str:
    done = [x for x in xs if x is not None]
    if not done:
        return f"none within {cap:g} s ({len(xs)} of {len(xs)} rounds)"
    text = f"median {statistics.median(done):.2f} s, max {max(done):.2f} s"
    missed = len(xs) - len(done)
    return text + (f"; {missed} round(s) not within {cap:g} s" if missed else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ttl", type=float, default=3.0, help="the lease's TTL (s)")
    ap.add_argument("--cap", type=float, default=12.0, help="longest wait for a takeover (s)")
    ap.add_argument("--child", choices=["lease", "advisory"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.url, a.ttl)
        return
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; TTL {a.ttl:g} s")
    results: dict[tuple[str, str], list[float | None]] = {}
    for r in range(a.rounds):
        for how in ("kill", "stall", "stop"):
            for way in ("lease", "advisory") if r % 2 == 0 else ("advisory", "lease"):
                got = one(way, how, a.ttl, a.cap)
                results.setdefault((way, how), []).append(got)
                print(f"round {r + 1} {how:5} {way:8} {'-' if got is None else f'{got:.2f} s'}")
    print()
    for how in ("kill", "stall", "stop"):
        for way in ("lease", "advisory"):
            print(f"{how:5} {way:8} {show(results[(way, how)], a.cap)}")
        pairs = [
            (x, y)
            for x, y in zip(results[("lease", how)], results[("advisory", how)], strict=True)
            if x is not None and y is not None and y > 0
        ]
        if pairs:
            ratio = statistics.median(x / y for x, y in pairs)
            print(f"{how:5} lease/advisory: median of per-round ratios {ratio:.1f}x")


if __name__ == "__main__":
    main()
