"""Counters over rollup tiers: a reset inside a bucket must not lose the increase before it,
and a window of whole buckets answers exactly what the raw samples answer."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine
from signalbox.storage import open_database

NOW = 1_700_006_400_000  # a whole hour
STEP = 15_000


def true_increase(values: list[float]) -> float:
    """Prometheus' reading of a raw counter: each drop is a reset from zero."""
    total = 0.0
    for prev, cur in itertools.pairwise(values):
        total += cur - prev if cur >= prev else cur
    return total


def test_increase_over_one_minute_buckets_counts_resets_inside_a_bucket(tmp_path: Path) -> None:
    store = SQLMetricStore(
        open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        raw_retention_s=3600,
        tiers=(Tier(60, 8 * 86400),),
        clock=FrozenClock(NOW / 1000),
    )
    start = NOW - 3 * 3600_000
    # +10 every 15 s, restarting every 27 samples: resets fall inside 1-minute buckets
    values = [float((i % 27) * 10) for i in range(3 * 240)]
    samples = [Sample("jobs_total", (), v, start + i * STEP) for i, v in enumerate(values)]
    store.write(samples, NOW)
    store.compact(NOW)  # rollups built; raw older than 1 h dropped
    raw = MemoryMetricStore()
    raw.write(samples, NOW)
    at = NOW - 90 * 60_000
    engine = Engine(store)
    result = engine.instant("increase(jobs_total[30m])", at)
    [got] = result.vector
    assert result.warnings == ()  # whole minute buckets: exact
    window = [v for i, v in enumerate(values) if at - 30 * 60_000 < start + i * STEP <= at]
    # 119 gaps of 15 s sampled, extrapolated to the 1800 s window
    assert got.value == pytest.approx(true_increase(window) * 1800 / 1785, rel=1e-9)
    [want] = Engine(raw).instant("increase(jobs_total[30m])", at).vector
    assert got.value == pytest.approx(want.value, rel=1e-9)
    [rate] = engine.instant("rate(jobs_total[30m])", at).vector
    assert rate.value * 1800 == pytest.approx(want.value, rel=1e-9)
    store.close()
