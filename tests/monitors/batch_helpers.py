"""Data and checks shared by the batch-evaluation tests: a store with the awkward cases a
pass meets, and "the same answer as one query at a time" with NaN and errors compared."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine, QueryResult
from signalbox.storage import open_database

MIN = 60_000
NOW = 1_700_000_400_000 - 1_700_000_400_000 % (10 * MIN)
HOSTS = ("h1", "h2", "h3", "h4")


def _labels(host: str) -> Labels:
    return (("dc", "a" if host in ("h1", "h2") else "b"), ("host", host))


def history() -> list[Sample]:
    """Four hours of data with the awkward cases a pass meets."""
    rng = random.Random(7)
    out: list[Sample] = []
    for k in range(240, -1, -1):
        t = NOW - k * MIN
        for h in HOSTS:
            if h == "h4" and k < 12:
                continue  # h4 went quiet 12 minutes ago: its 5m windows are empty
            v = rng.choice([rng.uniform(0, 1), rng.uniform(0, 1), float("nan")])
            out.append(Sample("cpu", _labels(h), v, t))
        if k % 5 == 0:
            out.append(Sample("mem", _labels("h2"), rng.uniform(0, 100), t))
        for i, h in enumerate(("h1", "h2", "h3")):
            total = float((240 - k) * (i + 1) * 10 % 1700)  # a counter with resets
            out.append(Sample("req_total", _labels(h), total, t))
        if k > 180:
            out.append(Sample("old", _labels("h1"), float(k), t))
    return out


def memory_store() -> MemoryMetricStore:
    s = MemoryMetricStore()
    s.write(history(), NOW)
    return s


def sqlite_store(path: Path) -> SQLMetricStore:
    """Raw for 30 minutes, then 10-minute buckets: windows further back read rollups."""
    s = SQLMetricStore(
        open_database(f"sqlite:///{path}"),
        raw_retention_s=1800,
        tiers=(Tier(600, 2 * 86400),),
        clock=FrozenClock(NOW / 1000),
    )
    s.write(history(), NOW)
    s.compact(NOW)
    return s


SELECTORS = [
    "cpu",
    'cpu{host="h1"}',
    'cpu{host="h2"}',
    'cpu{host="h4"}',
    'cpu{dc="a"}',
    'cpu{host=~"h[12]"}',
    'cpu{host!="h1"}',
    'mem{host="h2"}',
    'req_total{host="h3"}',
    "req_total",
    "old",
    'nope{host="h1"}',
    '{__name__=~"cpu|mem", host="h2"}',
]


def each(engine: Engine, qs: Sequence[str], at_ms: int) -> list[QueryResult | Exception]:
    out: list[QueryResult | Exception] = []
    for q in qs:
        try:
            out.append(engine.instant(q, at_ms))
        except Exception as e:
            out.append(e)
    return out


def same(got: Sequence[QueryResult | Exception], want: Sequence[QueryResult | Exception]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if isinstance(w, Exception):
            assert isinstance(g, Exception) and (type(g), str(g)) == (type(w), str(w))
        else:
            assert not isinstance(g, Exception), g
            assert _comparable(g) == _comparable(w)


def _comparable(r: QueryResult) -> object:
    """NaN != NaN: compare values by their text."""
    return (
        r.result_type,
        [(s.metric, repr(s.value)) for s in r.vector],
        repr(r.scalar),
        r.at_ms,
    )
