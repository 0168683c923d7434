"""How long monitors take: one evaluation pass of the real runner over 10,000 monitors, and a
30-day backtest.

1. Evaluation pass. 10,000 threshold monitors in 10 YAML files over 10,000 series in a
   SQLite store (an hour of history at 1-minute spacing, 610,000 rows), monitor state and
   outbox in the same database, as ``serve`` has them. The monitors mix plain selectors,
   ``avg_over_time(...[5m])``, ``max_over_time(...[10m])`` and arithmetic, with ``for: 5m``
   and a ``log`` notifier. Timed: :meth:`MonitorRunner.run_pass` itself (load the files,
   observe, state machine, policy, the one transaction, state gauges, outbox delivery),
   every 30 s of injected time, a fresh sample per series written (untimed) before each
   pass as the collector would:

   * the first pass of a process: it parses the YAML (``monitors run --once`` pays this
     every time) and creates the 10,000 state rows;
   * steady passes (the ``serve`` loop: files unchanged, ~3,300 series pending, none
     changing state): the median of several. Target: under 1 s;
   * the pass where ``for`` elapses and ~3,300 series fire at once (3,300 notifications
     enqueued, 500 of them delivered in that pass).

   For comparison, the old way (one engine query per monitor) is timed on a sample of
   monitors and scaled up.

2. Backtest. One monitor replayed over 30 days of 1-minute data (43,200 samples, a
   ``for``, ``recover`` and a few incidents) from SQLite (1-minute rollups, as the store
   serves a 30-day window) and from memory. Target: under 0.5 s.

    .venv/bin/python bench/monitor_eval.py
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from signalbox.clock import FrozenClock
from signalbox.config import settings_from_dict
from signalbox.durations import Tier
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors.backtest.replay import replay
from signalbox.monitors.definitions.model import Monitor, ThresholdCheck
from signalbox.monitors.definitions.threshold import parse_threshold
from signalbox.monitors.engine.evaluate import evaluate_vector
from signalbox.monitors.engine.passes import PassReport
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.query import Engine
from signalbox.query.batch import observations
from signalbox.runtime import open_metric_store
from signalbox.storage import open_database

MIN = 60_000
DAY = 86_400_000
NOW = 1_700_000_000_000 - 1_700_000_000_000 % DAY
N = 10_000
PER_FILE = 1_000
INTERVAL_MS = 30_000
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


def query(i: int) -> str:
    sel = f'cpu_load{{host="h{i:05d}"}}'
    return (sel, f"avg_over_time({sel}[5m])", f"max_over_time({sel}[10m])", f"{sel} * 100")[i % 4]


def value(i: int) -> float:
    return 0.5 + 0.49 * math.sin(i)


def monitor_yaml(i: int) -> str:
    scale = 100 if i % 4 == 3 else 1
    return (
        f"- name: cpu_high_{i:05d}\n"
        "  description: CPU saturated.\n"
        f"  query: '{query(i)}'\n"
        f'  warning: "> {0.8 * scale:g}"\n'
        f'  critical: "> {0.95 * scale:g}"\n'
        "  for: 5m\n"
        "  notify: [log]\n"
    )


def write_monitors(directory: Path) -> None:
    directory.mkdir()
    for f in range(0, N, PER_FILE):
        text = "".join(monitor_yaml(i) for i in range(f, f + PER_FILE))
        (directory / f"cpu_{f // PER_FILE:02d}.yaml").write_text(text)


def history() -> list[Sample]:
    out = []
    for i in range(N):
        labels = (("host", f"h{i:05d}"),)
        for k in range(60, -1, -1):
            out.append(Sample("cpu_load", labels, value(i), NOW - k * MIN))
    return out


def fresh(at_ms: int) -> list[Sample]:
    return [Sample("cpu_load", (("host", f"h{i:05d}"),), value(i), at_ms) for i in range(N)]


def quiet_notifications() -> None:
    """The log notifier formats and logs every notification; keep them off the terminal."""
    for name in ("signalbox.notify", "signalbox.monitors.outbox.store"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


def bench_pass(tmp: Path) -> None:
    quiet_notifications()
    write_monitors(tmp / "monitors")
    settings = settings_from_dict(
        {
            "store": f"sqlite:///{tmp / 'signalbox.db'}",
            "monitors": {"paths": [str(tmp / "monitors")]},
            "notifiers": {"log": {"type": "log"}},
        },
        source="bench.toml",
        base_dir=tmp,
    )
    clock = FrozenClock(NOW / 1000)
    store = open_metric_store(settings, clock=clock)
    store.write(history(), NOW)
    db = open_database(settings.store_url)
    runner = MonitorRunner.from_settings(settings, store, db, clock=clock)

    def timed_pass(at_ms: int) -> tuple[float, PassReport]:
        clock.set(at_ms / 1000)
        store.write(fresh(at_ms), at_ms)
        t0 = time.perf_counter()
        report = runner.run_pass(at_ms)
        return time.perf_counter() - t0, report

    first, report = timed_pass(NOW)
    print(f"evaluation pass, {N:,} monitors over {N:,} series (SQLite), MonitorRunner.run_pass:")
    print(
        f"  first pass of a process (parses {N // PER_FILE} YAML files, creates state): "
        f"{first * 1000:7.1f} ms"
    )
    steady = []
    for k in range(1, RUNS + 1):
        t, report = timed_pass(NOW + k * INTERVAL_MS)
        steady.append(t)
        assert not report.transitions and not report.check_errors, "steady passes change nothing"
    pending = sum(
        1 for recs in runner.state.series().values() for r in recs.values() if r.state.pending
    )
    print(
        f"  steady pass ({pending:,} series pending, none changing): "
        f"{statistics.median(steady) * 1000:7.1f} ms median of {RUNS}"
        f"  (min {min(steady) * 1000:.1f}, max {max(steady) * 1000:.1f})"
    )
    t, report = timed_pass(NOW + 10 * INTERVAL_MS)  # `for: 5m` has elapsed
    print(
        f"  the pass where {len(report.transitions):,} series fire at once "
        f"({len(report.queued):,} notifications queued, {report.delivery.sent} delivered): "
        f"{t * 1000:7.1f} ms"
    )

    engine = Engine(store)
    ms = runner.load().monitors
    sample = ms[:: N // 200]
    at = NOW + 10 * INTERVAL_MS

    def naive() -> None:
        for m in sample:
            assert isinstance(m.check, ThresholdCheck)
            evaluate_vector(m, {}, observations(engine.instant(m.check.query, at)), at)

    t_naive = median_s(naive, 3) * N / len(sample)
    print(
        f"  for comparison, one engine query per monitor (queries and state machine only, "
        f"scaled from {len(sample)}): {t_naive * 1000:7.1f} ms"
    )
    db.close()
    store.close()


def backtest_history(n: int) -> list[Sample]:
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
    samples = backtest_history(n)

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
