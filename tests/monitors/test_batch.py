"""Many monitors at one instant with one store read: the same answers as one query each."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import MetricStore
from signalbox.monitors.definitions.model import Monitor, NagiosCheck, StaleCheck, ThresholdCheck
from signalbox.monitors.definitions.threshold import parse_threshold
from signalbox.monitors.engine.evaluate import evaluate_vector
from signalbox.query import Engine
from signalbox.query.batch import (
    PrefetchedStore,
    evaluate_many,
    monitor_query,
    observations,
    query_many,
)
from signalbox.storage import open_database
from tests.stores import sqlite_url

MIN = 60_000
NOW = 1_700_000_040_000
QUERIES = [
    'cpu{host="h1"}',
    'cpu{host="h1"}',  # the same query twice
    "cpu",
    'cpu{host=~"h[12]"} * 100',
    "avg_over_time(cpu[5m])",
    'max_over_time(cpu{host="h2"}[10m])',
    "sum by (dc) (cpu)",
    "cpu offset 3m",
    'rate(req_total{host="h1"}[5m])',
    '{__name__=~"cpu|req_total", host="h3"}',
    "scalar(sum(cpu))",
    "count(cpu > 0.5)",
    'cpu{host="nope"}',
    "req_total / 60",
]


def fill(store: MetricStore) -> None:
    samples = []
    for k in range(31):
        t = NOW - (30 - k) * MIN
        for h in ("h1", "h2", "h3"):
            labels = (("dc", "a" if h != "h3" else "b"), ("host", h))
            samples.append(Sample("cpu", labels, 0.5 + 0.4 * math.sin(k + int(h[1])), t))
            samples.append(Sample("req_total", labels, float(k * 60 * int(h[1])), t))
    store.write(samples, NOW)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MetricStore:
    s: MetricStore
    if request.param == "memory":
        s = MemoryMetricStore()
    else:
        s = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(NOW / 1000))
    fill(s)
    return s


def test_query_many_answers_exactly_what_each_query_answers_alone(store: MetricStore) -> None:
    engine = Engine(store)
    assert query_many(store, QUERIES, NOW) == [engine.instant(q, NOW) for q in QUERIES]


def test_query_many_reads_the_store_once_for_raw_windows(tmp_path: Path) -> None:
    calls: list[tuple[Matcher, ...]] = []

    class CountingStore(MemoryMetricStore):
        def select(self, matchers, start_ms, end_ms, *, step_ms=0, aggregates=True, align_ms=0):  # type: ignore[no-untyped-def]
            calls.append(tuple(matchers))
            return super().select(
                matchers, start_ms, end_ms, step_ms=step_ms, aggregates=aggregates
            )

    store = CountingStore()
    fill(store)
    query_many(store, [q for q in QUERIES if "nope" not in q], NOW)
    assert len(calls) == 1


def test_many_metric_names_are_read_in_one_select_of_everything() -> None:
    store = MemoryMetricStore()
    store.write([Sample(f"m{i}", (), float(i), NOW) for i in range(200)], NOW)
    got = query_many(store, [f"m{i}" for i in range(0, 200, 2)], NOW)
    assert [r.vector[0].value for r in got] == [float(i) for i in range(0, 200, 2)]


def test_evaluate_many_is_the_state_machine_over_each_monitors_result(store: MetricStore) -> None:
    monitors = [
        Monitor(f"m{i}", "d", ThresholdCheck(q, parse_threshold("> 0.6"), parse_threshold("> 0.8")))
        for i, q in enumerate(QUERIES)
    ]
    got = evaluate_many(monitors, store, NOW, {})
    engine = Engine(store)
    for m in monitors:
        assert isinstance(m.check, ThresholdCheck)
        expected = evaluate_vector(m, {}, observations(engine.instant(m.check.query, NOW)), NOW)
        assert got[m.name] == expected
    again = evaluate_many(monitors, store, NOW + MIN, {n: r.states for n, r in got.items()})
    assert set(again) == {m.name for m in monitors}


def test_prefetched_store_sends_earlier_reads_to_the_real_store() -> None:
    real = MemoryMetricStore()
    fill(real)
    cpu = [Matcher("__name__", "=", "cpu")]
    points = real.select(cpu, NOW - 5 * MIN, NOW)
    pre = PrefetchedStore(points, since_ms=NOW - 5 * MIN, fallback=real)
    assert pre.select(cpu, NOW - 2 * MIN, NOW) == real.select(cpu, NOW - 2 * MIN, NOW)
    assert pre.select(cpu, NOW - 20 * MIN, NOW) == real.select(cpu, NOW - 20 * MIN, NOW)
    assert [s for s in pre.series([Matcher("host", "=", "h1")])] == [
        ("cpu", (("dc", "a"), ("host", "h1")))
    ]
    with pytest.raises(Exception, match="read-only"):
        pre.write([], NOW)


def test_monitors_without_a_query_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'disk' \\(nagios\\) is not a query"):
        monitor_query(Monitor("disk", "d", NagiosCheck(("check_disk",))))
    with pytest.raises(ValueError, match="staleness"):
        monitor_query(Monitor("old", "d", StaleCheck(60, metric="x")))
    spool = Monitor("spool", "d", StaleCheck(60, spool_file="a*.metrics"))
    assert monitor_query(spool).startswith("signalbox_spool_file_age_seconds{")
