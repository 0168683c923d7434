"""Agent outage benchmark: what holding refused passes and catching up costs, against the
same passes written as they come (the peer here is the collector's own live pass).

A spool of ``--files`` files x 500 ``key=value`` lines (default 20: 10,000 samples a pass)
collected in-process by one :class:`~signalbox.metrics.collect.Collector` on SQLite and on
PostgreSQL (127.0.0.1:5432, database ``test``, a schema of its own), a frozen clock moving
15 s a pass, every value changed each pass. Each round, on each store:

* ``live``: ``--passes`` passes written as they come (frames: the series exist);
* ``held``: ``--passes`` passes while the store is unreachable (every call refused, reads
  included, as a database gone away refuses them), each held from a scan that asks the
  store nothing: frames of the file shapes the last pass that reached the store knew;
* ``catch-up``: the next pass once the store answers: every held pass written, oldest first,
  each at its own time in its own transaction, then the live one.

Printed: medians over rounds of the time per pass of each, the held buffer's size, and the
median of per-round ratios catch-up per held pass / live pass (the same round, the same
store). Also the memory a held pass takes per sample (tracemalloc), as frames and as rows
(held by a collector that never reached the store, so knows no shapes).

Usage: .venv/bin/python bench/agent_catchup.py [--files 20] [--passes 10] [--rounds 3]
       [--skip-postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from signalbox.clock import FrozenClock
from signalbox.exceptions import StoreError
from signalbox.metrics.collect import Collector
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


class Reachable:
    """A real store that can be made unreachable: every call refused while ``down``."""

    def __init__(self, store: SQLMetricStore) -> None:
        self.inner = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        if self.down:

            def refused(*_: object, **__: object) -> Any:
                raise StoreError("cannot connect: the database is away (bench)")

            return refused
        return getattr(self.inner, name)


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def write_spool(spool: Path, files: int, step: int, clock: FrozenClock) -> None:
    for f in range(files):
        p = spool / f"f{f:04d}.metrics"
        p.write_text(
            "".join(f'req_{i}{{path="/p{i % 50}",file="{f}"}}={step + i}\n' for i in range(500))
        )
        os.utime(p, (clock.now(), clock.now()))


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def run(url: str, tmp: Path, files: int, passes: int, rounds: int) -> dict[str, list[float]]:
    clock = FrozenClock(float(int(time.time()) // 300 * 300))
    inner = SQLMetricStore(open_database(url), clock=clock)
    store = Reachable(inner)
    spool = tmp / "spool"
    spool.mkdir()
    c = Collector(store, spool_dir=spool, host="bench", clock=clock)  # type: ignore[arg-type]
    out: dict[str, list[float]] = {"live": [], "held": [], "catchup": [], "ratio": []}
    step = 0
    try:
        write_spool(spool, files, step, clock)
        c.run_once()  # the series and layouts created
        for _ in range(rounds):
            live = []
            for _ in range(passes):
                step += 1
                clock.advance(15)
                write_spool(spool, files, step, clock)
                t = time.perf_counter()
                c.run_once()
                live.append(time.perf_counter() - t)
            held = []
            store.down = True
            for _ in range(passes):
                step += 1
                clock.advance(15)
                write_spool(spool, files, step, clock)
                t = time.perf_counter()
                with contextlib.suppress(StoreError):
                    c.run_once()
                held.append(time.perf_counter() - t)
            assert len(c.buffer) == passes, len(c.buffer)
            store.down = False
            step += 1
            clock.advance(15)
            write_spool(spool, files, step, clock)
            t = time.perf_counter()
            c.run_once()
            catchup = time.perf_counter() - t
            assert not c.buffer
            per_held = (catchup - median(live)) / passes
            out["live"].append(median(live))
            out["held"].append(median(held))
            out["catchup"].append(per_held)
            out["ratio"].append(per_held / median(live))
    finally:
        inner.close()
    return out


def memory(tmp: Path, files: int) -> tuple[float, float]:
    """Bytes a held sample takes: held as frames (the shapes known from the last pass that
    reached the store), and as rows (a collector that never reached it)."""
    clock = FrozenClock(float(int(time.time())))
    inner = SQLMetricStore(open_database(f"sqlite:///{tmp / 'mem.db'}"), clock=clock)
    store = Reachable(inner)
    spool = tmp / "mspool"
    spool.mkdir()
    write_spool(spool, files, 0, clock)
    known = Collector(store, spool_dir=spool, host="bench", clock=clock)  # type: ignore[arg-type]
    known.run_once()  # the shapes registered
    clock.advance(15)
    known.run_once()  # and known to the collector
    store.down = True
    fresh = Collector(store, spool_dir=spool, host="fresh", clock=clock)  # type: ignore[arg-type]
    got = []
    try:
        for c in (known, fresh):
            clock.advance(15)
            write_spool(spool, files, 1, clock)
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            with contextlib.suppress(StoreError):
                c.run_once()
            used = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            held = c.buffer.passes[-1]
            assert bool(held.frames) == (c is known)
            got.append(used / held.size)
    finally:
        inner.close()
    return got[0], got[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20, help="500 samples each")
    ap.add_argument("--passes", type=int, default=10, help="held per outage")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-postgresql", action="store_true")
    a = ap.parse_args()
    print(
        f"{a.files * 500} samples a pass, {a.passes} passes held per outage, {a.rounds} rounds; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as d:
        frames_b, rows_b = memory(Path(d), a.files)
        print(f"held memory: {frames_b:.0f} bytes a sample as frames, {rows_b:.0f} as rows")
        stores = [("sqlite", f"sqlite:///{Path(d) / 'bench.db'}")]
        with contextlib.ExitStack() as stack:
            if not a.skip_postgresql:
                stores.append(("postgresql", stack.enter_context(pg_schema())))
            for name, url in stores:
                tmp = Path(d) / name
                tmp.mkdir()
                r = run(url, tmp, a.files, a.passes, a.rounds)
                print(
                    f"{name:10s} live pass {median(r['live']) * 1000:7.1f} ms | held pass "
                    f"{median(r['held']) * 1000:7.1f} ms | catch-up {median(r['catchup']) * 1000:7.1f}"
                    f" ms per held pass | catch-up/live: median of per-round ratios "
                    f"{median(r['ratio']):.2f}"
                )


if __name__ == "__main__":
    main()
