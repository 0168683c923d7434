"""How long monitors take: one evaluation pass of 10,000 monitors, and a 30-day backtest.

1. Evaluation pass. 10,000 threshold monitors over 10,000 series in a SQLite store (one
   sample per series at "now" plus an hour of history at 1-minute spacing, 610,000 rows).
   A pass queries every monitor at "now" and runs the state machine on the result, batched
   through :func:`signalbox.monitors.batch.evaluate_many` (one store read per window width).
   The monitors mix plain selectors, ``avg_over_time(...[5m])``, ``max_over_time(...[10m])``
   and arithmetic. For comparison, the naive way (one engine query per monitor) is timed
   on a sample of monitors and scaled up. Target: under 1 s per pass.

2. Backtest. One monitor replayed over 30 days of 1-minute data (43,200 samples, a
   ``for``, ``recover`` and a few incidents) from SQLite (1-minute rollups, as the store
   serves a 30-day window) and from memory. Target: under 0.5 s.

Prints the median of several runs of each.

    .venv/bin/python bench/monitor_eval.py
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from signalbox.durations import Tier
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sqlstore import SQLMetricStore
from signalbox.monitors.batch import evaluate_many, observations
from signalbox.monitors.evaluate import evaluate_vector
from signalbox.monitors.model import Monitor, ThresholdCheck
from signalbox.monitors.replay import replay
from signalbox.monitors.threshold import parse_threshold
from signalbox.query import Engine
from signalbox.storage import open_database

MIN = 60_000
DAY = 86_400_000
NOW = 1_700_000_000_000 - 1_700_000_000_000 % DAY
N = 10_000
RUNS = 5


class FixedClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now(self) -> float:
        return self.ms / 1000


def median_s(fn: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def monitors() -> list[Monitor]:
    out = []
    for i in range(N):
        sel = f'cpu_load{{host="h{i:05d}"}}'
        query = (sel, f"avg_over_time({sel}[5m])", f"max_over_time({sel}[10m])", f"{sel} * 100")[
            i % 4
        ]
        scale = 100 if i % 4 == 3 else 1
        check = ThresholdCheck(
            query, parse_threshold(f"> {0.8 * scale}"), parse_threshold(f"> {0.95 * scale}")
        )
        out.append(Monitor(f"cpu_high_{i:05d}", "CPU saturated.", check, for_seconds=120))
    return out


def build_eval_store(path: Path) -> SQLMetricStore:
    store = SQLMetricStore(open_database(f"sqlite:///{path}"), clock=FixedClock(NOW))
    samples = []
    for i in range(N):
        labels = (("host", f"h{i:05d}"),)
        for k in range(60, -1, -1):
            samples.append(
                Sample("cpu_load", labels, 0.5 + 0.49 * math.sin(i + k / 7), NOW - k * MIN)
            )
    store.write(samples, NOW)
    return store


def bench_pass(tmp: Path) -> None:
    store = build_eval_store(tmp / "eval.db")
    ms = monitors()
    prev: dict[str, dict] = {}

    def one_pass() -> None:
        nonlocal prev
        got = evaluate_many(ms, store, NOW, prev)
        prev = {name: r.states for name, r in got.items()}

    t = median_s(one_pass)
    firing = sum(
        1 for states in prev.values() for s in states.values() if s.state.firing or s.pending
    )
    print(
        f"evaluation pass, {N:,} monitors over {N:,} series (SQLite): {t * 1000:7.1f} ms median of {RUNS}"
    )
    print(f"  ({firing:,} series firing or pending after the passes)")

    engine = Engine(store)
    sample = ms[:: N // 200]

    def naive() -> None:
        for m in sample:
            assert isinstance(m.check, ThresholdCheck)
            evaluate_vector(m, {}, observations(engine.instant(m.check.query, NOW)), NOW)

    t_naive = median_s(naive, 3) * N / len(sample)
    print(
        f"  one engine query per monitor instead (scaled from {len(sample)}): {t_naive * 1000:7.1f} ms"
    )
    store.close()


def history(n: int) -> list[Sample]:
    out = []
    start = NOW - (n - 1) * MIN
    for i in range(n):
        v = 2 + math.sin(i / 50)
        if (i // 1440) % 6 == 3 and i % 1440 < 90:  # an incident every 6 days
            v = 9.5
        out.append(Sample("image_processing_time", (("host", "web1"),), v, start + i * MIN))
    return out


def bench_backtest(tmp: Path) -> None:
    n = 30 * 1440
    m = Monitor(
        "image_processing_slow",
        "Resizes slower than users tolerate.",
        ThresholdCheck(
            "avg_over_time(image_processing_time[5m])",
            parse_threshold("> 4"),
            parse_threshold("> 8"),
            parse_threshold("< 3"),
        ),
        for_seconds=180,
    )
    start, end = NOW - (n - 1) * MIN, NOW
    samples = history(n)

    sql = SQLMetricStore(
        open_database(f"sqlite:///{tmp / 'backtest.db'}"),
        raw_retention_s=86400,
        tiers=(Tier(60, 35 * 86400), Tier(3600, 400 * 86400)),
        clock=FixedClock(NOW),
    )
    sql.write(samples, NOW)
    sql.compact(NOW + 2 * MIN)
    mem = MemoryMetricStore()
    mem.write(samples, NOW)
    for label, store in (("SQLite, 1m rollups", sql), ("memory, raw", mem)):
        engine = Engine(store)
        res = replay(m, engine, start, end, MIN)
        t = median_s(lambda e=engine: replay(m, e, start, end, MIN))
        print(
            f"backtest of 1 monitor, 30 days at 1m ({n:,} samples, {label}): "
            f"{t * 1000:7.1f} ms median of {RUNS}  ({len(res.intervals())} incidents)"
        )
    sql.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_pass(tmp)
        bench_backtest(tmp)


if __name__ == "__main__":
    main()
