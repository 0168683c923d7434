"""Observing a pass's monitors at once: the same observations (and failures) as one at a time."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors.definitions.model import (
    Monitor,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
)
from signalbox.monitors.definitions.threshold import parse_threshold
from signalbox.monitors.engine.evaluate import Observation
from signalbox.monitors.engine.observe import Observed, observe_many, observe_one, run_plugins
from signalbox.monitors.nagios.perfdata_parse import PluginOutput
from signalbox.monitors.nagios.plugin import PluginResult
from signalbox.query import Engine
from signalbox.storage import open_database

T = 1_700_000_040_000
MIN = 60_000


def threshold(name: str, query: str) -> Monitor:
    return Monitor(name, "d", ThresholdCheck(query, critical=parse_threshold("> 1")))


MIXED = [
    threshold("plain", 'latency{host="web1"}'),
    threshold("over_time", 'avg_over_time(latency{host="web2"}[5m])'),
    threshold("shared_a", 'latency{host="web1"} * 1000'),
    threshold("shared_b", 'latency{host="web2"} * 1000'),
    threshold("by_dc", "max by (dc) (latency)"),
    threshold("many_to_many", "latency / on(dc) latency"),  # fails when evaluated
    threshold("absent", 'absent(latency{host="web9"})'),
    threshold("missing", 'nothing{host="web1"}'),
    threshold("duplicate_labels", '{__name__=~"latency|errors", host="web1"}'),
    Monitor("queue", "d", QueueCheck("photos", 1000, 10)),
    Monitor("feed_stale", "d", StaleCheck(600, metric='feed_items{source="photos"}')),
    Monitor("spool_stale", "d", StaleCheck(600, spool_file="photos*.metrics")),
    Monitor("disk", "d", NagiosCheck(("check_disk",))),
]


def fill(store: MemoryMetricStore | SQLMetricStore) -> None:
    web1, web2 = (("dc", "a"), ("host", "web1")), (("dc", "a"), ("host", "web2"))
    samples = []
    for k in range(10):
        t = T - k * MIN
        samples += [Sample("latency", web1, 0.5 + k, t), Sample("latency", web2, 2.5, t)]
    samples += [
        Sample("errors", web1, 3.0, T),
        Sample("signalbox_queue_depth", (("queue", "photos"),), 1500.0, T - MIN),
        Sample("feed_items", (("source", "photos"),), 5.0, T - 11 * MIN),
        Sample(
            "signalbox_spool_file_age_seconds", (("file", "photos.metrics"),), 30.0, T - 2 * MIN
        ),
        Sample("signalbox_spool_file_age_seconds", (("file", "other.metrics"),), 30.0, T),
    ]
    store.write(samples, T)


def one_at_a_time(engine: Engine, store: MemoryMetricStore | SQLMetricStore) -> dict[str, object]:
    out: dict[str, object] = {}
    for m in MIXED:
        if isinstance(m.check, NagiosCheck):
            continue
        try:
            out[m.name] = observe_one(engine, store, m, T)
        except Exception as e:
            out[m.name] = (type(e), str(e))
    return out


def at_once(engine: Engine, store: MemoryMetricStore | SQLMetricStore) -> dict[str, object]:
    got = observe_many(engine, store, MIXED, T)
    return {k: (type(v), str(v)) if isinstance(v, Exception) else v for k, v in got.items()}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_observing_at_once_sees_what_observing_one_at_a_time_sees(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = (
        MemoryMetricStore()
        if kind == "memory"
        else SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'm.db'}"))
    )
    fill(store)
    engine = Engine(store, coarsest_resolution_s=0)
    with caplog.at_level(logging.WARNING, logger="signalbox.monitors"):
        want = one_at_a_time(engine, store)
        alone_logs = [r.getMessage() for r in caplog.records]
        caplog.clear()
        got = at_once(engine, store)
        batch_logs = [r.getMessage() for r in caplog.records]
    assert got == want
    assert "disk" not in got  # plugins are run_plugins' business
    assert got["plain"] == {(("dc", "a"), ("host", "web1")): 0.5}
    assert got["queue"] == {(("queue", "photos"),): 1500.0}
    assert got["feed_stale"] == {(("source", "photos"),): 660.0}
    assert got["spool_stale"] == {(("file", "photos.metrics"),): 150.0}
    assert isinstance(got["many_to_many"], tuple)
    assert batch_logs == alone_logs and any("share labels" in x for x in batch_logs)
    store.close()


def test_a_store_that_cannot_be_read_fails_every_check_that_reads_it(tmp_path: Path) -> None:
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'm.db'}"))
    fill(store)
    store.close()
    got = observe_many(Engine(store), store, MIXED, T)
    failed = {name for name, v in got.items() if isinstance(v, Exception)}
    assert failed == {m.name for m in MIXED if not isinstance(m.check, NagiosCheck)}


def test_a_plugin_runner_that_raises_makes_its_monitor_unknown_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def runner(argv: list[str], timeout: float) -> PluginResult:
        if argv == ["check_broken"]:
            raise OSError("no such plugin")
        return PluginResult(State.WARNING, 1, PluginOutput("DISK WARNING - 8% free"), 0.01, False)

    monitors = [
        Monitor("broken", "d", NagiosCheck(("check_broken",))),
        Monitor("disk", "d", NagiosCheck(("check_disk",))),
        threshold("plain", "x"),
    ]
    with caplog.at_level(logging.ERROR, logger="signalbox.monitors"):
        done = run_plugins(monitors, runner, host="web1", now_ms=T)
    expected: dict[str, Observed] = {
        "broken": {
            (): Observation(state=State.UNKNOWN, text="check failed: OSError: no such plugin")
        },
        "disk": {(): Observation(state=State.WARNING, text="DISK WARNING - 8% free")},
    }
    assert done.observed == expected
    assert "monitor broken: running the plugin failed" in caplog.text
