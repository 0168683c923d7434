"""Flag-flip propagation: how long until every process sees a flip, pushed vs polled.

``--procs`` (10) real processes each run four flags clients side by side, every one over
the same flag, so each flip is seen by all four paths in the same processes at the same
moment (the comparison is paired, flip by flip):

* PostgreSQL, pushed: LISTEN/NOTIFY (``[flags] listen``, the default), polling beside it;
* PostgreSQL, polled only (``listen = false``): the peer, what came before;
* SQLite, polled only: the peer on the single-host store;
* SQLite, pushed through the event table (read every 200 ms), polling beside it.

Every client polls every ``--refresh`` (2 s, the default ``[flags] refresh``). The
controller flips the flag on both stores ``--flips`` times (off, on, off...), a random
0-``--refresh`` apart so the polls' phases vary; each process reports the wall-clock time
each client's answer changed (checked as each refresh swaps its decisions in). A latency is from just
before the change's transaction began to that report: commit, delivery and the re-read. Per path: median and p99 over every (flip, process); per flip, the median over
the processes, and the "median of per-flip ratios" of polled to pushed.

Usage: .venv/bin/python bench/flag_propagation.py [--procs 10] [--flips 20] [--refresh 2]
       [--pg postgresql://postgres@127.0.0.1:5432/test]
Needs: a PostgreSQL server (a schema of its own is made and dropped); ~4 connections per
process.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

PATHS = ("pg_push", "pg_poll", "sqlite_poll", "sqlite_push")
LABELS = {
    "pg_push": "PostgreSQL, LISTEN/NOTIFY (ours)",
    "pg_poll": "PostgreSQL, polling only",
    "sqlite_poll": "SQLite, polling only",
    "sqlite_push": "SQLite, event table (ours)",
}
FLAG = "bench_kill_switch"


def watch(pg_url: str, sqlite_url: str, refresh_s: float) -> None:
    """One process: four clients over the flag; prints ``ready``, then ``PATH VALUE TIME``
    whenever a client's answer changes (checked as each refresh swaps the new decisions in,
    the only moment it can change: no busy loop loading the machine)."""
    from signalbox.flags.cache import FlagCache
    from signalbox.flags.model import FlagDecl, FlagState
    from signalbox.flags.store import open_flag_store

    said = threading.Lock()  # one line at a time from the clients' threads

    class Reporting(FlagCache):
        def __init__(self, path: str, *args: Any, **kw: Any) -> None:
            self.path, self.last = path, True
            super().__init__(*args, **kw)

        def _install(self, *args: Any) -> None:
            super()._install(*args)  # the new decisions answer from here on
            now = self.state(FLAG) == FlagState("on")
            if now != self.last:
                with said:
                    sys.stdout.write(f"{self.path} {now} {time.time()}\n")
                    sys.stdout.flush()
                self.last = now

    decls = {FLAG: FlagDecl(FLAG, "the flag flipped", "bench", FlagState("on"))}
    urls = {"pg": pg_url, "sqlite": sqlite_url}
    caches = [
        Reporting(
            path,
            open_flag_store(urls[path.split("_")[0]]),
            decls,
            refresh_s=refresh_s,
            listen=path.endswith("_push"),
        ).start()
        for path in PATHS
    ]
    end = time.monotonic() + 30
    while not all(c.listening for c in caches if c.listen):
        if time.monotonic() > end:
            print("not listening", flush=True)
            return
        time.sleep(0.01)
    print("ready", flush=True)
    threading.Event().wait()  # killed by the controller


class Watcher:
    """A watching process and the lines it printed (read by a thread of its own)."""

    def __init__(self, pg_url: str, sqlite_url: str, refresh_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--watch", pg_url, sqlite_url, str(refresh_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def loadavg() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    """``argv``: the options (default: the command line's); bench/scaleout.py passes its own."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--procs", type=int, default=10)
    ap.add_argument("--flips", type=int, default=20)
    ap.add_argument("--refresh", type=float, default=2.0, help="seconds between polls")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--watch", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.watch:
        watch(a.watch[0], a.watch[1], float(a.watch[2]))
        return

    import psycopg

    from signalbox.flags.model import parse_setting
    from signalbox.flags.store import open_flag_store

    schema = f"bench_flags_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(a.pg, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in a.pg else "?"
    pg_url = f"{a.pg}{sep}options=-csearch_path%3D{schema}"
    tmp = tempfile.TemporaryDirectory(prefix="flag_propagation_")
    sqlite_url = f"sqlite:///{Path(tmp.name) / 'flags.db'}"
    stores = {"pg": open_flag_store(pg_url), "sqlite": open_flag_store(sqlite_url)}
    for s in stores.values():  # the event table made before any listener reads it
        s.set(FLAG, parse_setting("on"), by="bench", reason="start", now_ms=0)
    print(f"load average at start: {loadavg()}")
    print(
        f"{a.procs} processes x 4 clients, {a.flips} flips, polls every {a.refresh:g} s; "
        "starting them...",
        flush=True,
    )
    watchers = [Watcher(pg_url, sqlite_url, a.refresh) for _ in range(a.procs)]
    rng = random.Random(7)
    lat: dict[str, list[list[float]]] = {p: [] for p in PATHS}  # per flip, per process
    try:
        for w in watchers:
            line = w.lines.get(timeout=120)
            assert line.startswith("ready"), line
        value = True
        for flip in range(a.flips):
            time.sleep(rng.uniform(0, a.refresh))
            value = not value
            started = {}
            for backend, s in stores.items():  # the two stores in turn, timed apart
                started[backend] = time.time()
                s.set(
                    FLAG,
                    parse_setting("on" if value else "off"),
                    by="bench",
                    reason=f"flip {flip}",
                    now_ms=round(started[backend] * 1000),
                )
            seen: dict[str, list[float]] = {p: [] for p in PATHS}
            deadline = time.monotonic() + 4 * a.refresh + 10
            for w in watchers:
                for _ in PATHS:
                    line = w.lines.get(timeout=max(0.1, deadline - time.monotonic()))
                    path, got, at = line.split()
                    assert got == str(value), line
                    seen[path].append(float(at) - started[path.split("_")[0]])
            for p in PATHS:
                lat[p].append(seen[p])
            print(
                f"  flip {flip + 1:2d} ({'on' if value else 'off':>3}): "
                + "  ".join(f"{p} {statistics.median(seen[p]) * 1000:7.1f}" for p in PATHS)
                + " ms (median over processes)",
                flush=True,
            )
    finally:
        for w in watchers:
            w.stop()
        for s in stores.values():
            s.close()
        with psycopg.connect(a.pg, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
        tmp.cleanup()
    report(lat, a)


def report(lat: dict[str, list[list[float]]], a: Any) -> None:
    print(f"\nload average at end: {loadavg()}")
    print(
        f"{'path':<36} {'median':>9} {'p99':>9} {'max':>9}   over {a.flips} flips x {a.procs} processes"
    )
    for p in PATHS:
        every = [x for per_flip in lat[p] for x in per_flip]
        print(
            f"{LABELS[p]:<36} {statistics.median(every) * 1000:7.1f}ms {pct(every, 0.99) * 1000:7.1f}ms "
            f"{max(every) * 1000:7.1f}ms"
        )
    for pushed, polled in (
        ("pg_push", "pg_poll"),
        ("pg_push", "sqlite_poll"),
        ("sqlite_push", "sqlite_poll"),
    ):
        ratios = [
            statistics.median(b) / statistics.median(f)
            for f, b in zip(lat[pushed], lat[polled], strict=True)
        ]
        print(
            f"  {LABELS[pushed]} vs {LABELS[polled]}: {statistics.median(ratios):.0f}x sooner "
            "(median of per-flip ratios of the medians over the processes)"
        )
    every_push = [x for per_flip in lat["pg_push"] for x in per_flip]
    print(
        f"  kill switch everywhere within a second on PostgreSQL: "
        f"{sum(x < 1.0 for x in every_push)} of {len(every_push)} (process, flip) pairs"
    )


if __name__ == "__main__":
    main()
