"""The process's own metrics: read from this very process, plausible, moving when the
process does, absent (not 0) where the platform cannot say, stored by a collection pass."""

from __future__ import annotations

import gc
import logging
import os
import resource
import sys
import time
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import settings_from_dict
from signalbox.exceptions import ConfigError
from signalbox.metrics.collect import Collector
from signalbox.metrics.process import (
    GC_TIMER,
    PROCESS_METRICS,
    ProcessMetrics,
    ProcessStats,
    gc_collections,
    read_process_stats,
)
from signalbox.metrics.samples import Matcher, format_series
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.runtime import open_metric_store
from signalbox.server.loops import Background
from signalbox.server.settings import ServerSettings
from signalbox.storage import open_database

linux = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
NOW_MS = 1_700_000_000_000


def values(source: ProcessMetrics) -> dict[str, float]:
    samples, _ = source.flush(NOW_MS)
    assert all(s.timestamp_ms == NOW_MS for s in samples)
    return {format_series(s.name, s.labels): s.value for s in samples}


@linux
def test_values_are_this_process() -> None:
    st = read_process_stats()
    assert st.resident_memory_bytes is not None and st.virtual_memory_bytes is not None
    assert 1 << 20 < st.resident_memory_bytes <= st.virtual_memory_bytes
    assert st.threads is not None and st.threads >= 1
    assert st.max_fds == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert st.start_time_seconds is not None
    assert time.time() - 7 * 86400 < st.start_time_seconds <= time.time()
    # the same start time as another reading: derived from the process, not from "now"
    assert read_process_stats().start_time_seconds == st.start_time_seconds


@linux
def test_open_fds_counts_proc_self_fd_and_follows_an_open_file(tmp_path: Path) -> None:
    before = read_process_stats().open_fds
    # listing the folder opens one fd of its own, in both counts
    assert before == len(os.listdir("/proc/self/fd"))
    with open(tmp_path / "held", "w"):
        assert read_process_stats().open_fds == before + 1
    assert read_process_stats().open_fds == before


@linux
def test_resident_memory_grows_with_what_the_process_holds() -> None:
    before = read_process_stats().resident_memory_bytes
    held = bytearray(64 << 20)  # zero pages are resident only once written
    for i in range(0, len(held), 4096):
        held[i] = 1
    after = read_process_stats().resident_memory_bytes
    assert before is not None and after is not None
    assert after - before > 48 << 20
    del held


def test_cpu_seconds_increase_with_work() -> None:
    before = read_process_stats().cpu_seconds
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = read_process_stats().cpu_seconds
    assert before is not None and after is not None
    assert after - before >= 0.2


def test_gc_time_and_collections_counted_after_a_forced_collection() -> None:
    source = ProcessMetrics()  # installs the timer
    seconds = values(source)["signalbox_process_gc_seconds_total"]
    full = values(source)['signalbox_process_gc_collections_total{generation="2"}']
    cycles = []
    for _ in range(200_000):  # garbage with cycles: the collector has something to walk
        a: list[object] = []
        a.append(a)
        cycles.append(a)
    del cycles, a
    gc.collect()
    got = values(source)
    assert got["signalbox_process_gc_seconds_total"] > seconds
    # the allocations above may have triggered full collections of their own
    assert got['signalbox_process_gc_collections_total{generation="2"}'] >= full + 1
    assert gc.callbacks.count(GC_TIMER) == 1  # a second collector shares the one timer
    ProcessMetrics()
    assert gc.callbacks.count(GC_TIMER) == 1


def test_without_proc_the_metrics_it_alone_knows_are_absent(tmp_path: Path) -> None:
    st = read_process_stats(proc=tmp_path / "no-proc")
    assert st.resident_memory_bytes is None
    assert st.virtual_memory_bytes is None
    assert st.open_fds is None
    assert st.start_time_seconds is None
    assert st.threads is None
    assert st.cpu_seconds is not None and st.cpu_seconds > 0  # os.times() knows
    if sys.platform != "win32":
        assert st.max_fds == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    samples, metas = ProcessMetrics(read=lambda: st).flush(NOW_MS)
    names = {s.name for s in samples}
    assert "signalbox_process_resident_memory_bytes" not in names
    assert "signalbox_process_open_fds" not in names
    assert "signalbox_process_cpu_seconds_total" in names
    assert {m.name for m in metas} == names  # metadata only for what is there


def test_metadata_types_and_help() -> None:
    _, metas = ProcessMetrics().flush(NOW_MS)
    for m in metas:
        assert m.help
        assert m.type == ("counter" if m.name.endswith("_total") else "gauge"), m
    assert set(PROCESS_METRICS) >= {m.name for m in metas}


def test_memory_warning_once_per_crossing(caplog: pytest.LogCaptureFixture) -> None:
    rss = [100, 200, 300, 150, 120, 250]
    readings = iter(rss)
    source = ProcessMetrics(
        memory_warn_bytes=200, read=lambda: ProcessStats(resident_memory_bytes=next(readings))
    )
    said = []
    for _ in rss:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="signalbox.process"):
            source.flush(NOW_MS)
        said.append([r.getMessage().split(" memory_warn")[0] for r in caplog.records])
    assert said == [
        [],
        ["resident memory 0.0 MiB passed [server]"],
        [],
        ["resident memory 0.0 MiB is back below [server]"],
        [],
        ["resident memory 0.0 MiB passed [server]"],
    ]


def test_no_warning_without_a_threshold(caplog: pytest.LogCaptureFixture) -> None:
    source = ProcessMetrics(read=lambda: ProcessStats(resident_memory_bytes=1 << 40))
    with caplog.at_level(logging.WARNING, logger="signalbox.process"):
        source.flush(NOW_MS)
    assert caplog.records == []


def test_a_pass_stores_them_with_the_host_label_and_metadata(tmp_path: Path) -> None:
    clock = FrozenClock(NOW_MS / 1000)
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)
    spool = tmp_path / "spool"
    spool.mkdir()
    Collector(
        store, spool_dir=spool, host="web1", sources=[ProcessMetrics()], clock=clock
    ).run_once()
    cpu = store.latest([Matcher("__name__", "=", "signalbox_process_cpu_seconds_total")])
    assert [labels for _, labels, _, _ in cpu] == [(("host", "web1"),)]
    assert cpu[0][3] > 0
    gens = store.latest([Matcher("__name__", "=", "signalbox_process_gc_collections_total")])
    assert sorted(labels for _, labels, _, _ in gens) == [
        (("generation", str(g)), ("host", "web1")) for g in range(len(gc_collections()))
    ]
    meta = store.metadata()
    assert meta["signalbox_process_cpu_seconds_total"].type == "counter"
    assert meta["signalbox_process_gc_seconds_total"].type == "counter"
    store.close()


def test_settings_memory_warn_bytes(tmp_path: Path) -> None:
    def server(table: dict[str, object]) -> ServerSettings:
        raw = {"server": table}
        return settings_from_dict(raw, source="t.toml", base_dir=tmp_path, environ={}).server

    assert server({}).memory_warn_bytes == 0
    assert server({"memory_warn_bytes": 2 << 30}).memory_warn_bytes == 2 << 30
    with pytest.raises(ConfigError, match=r"server\.memory_warn_bytes"):
        server({"memory_warn_bytes": -1})


def test_agent_background_stores_them_every_pass(tmp_path: Path) -> None:
    """``agent`` is :class:`Background` without monitors: its passes store them too."""
    settings = settings_from_dict(
        {"host": "agent1", "collect": {"interval": "1s"}, "statsd": {"enabled": False}},
        source="t.toml",
        base_dir=tmp_path,
        environ={},
    )
    settings.metrics.spool_dir.mkdir(parents=True)
    bg = Background(settings)
    bg.start()
    try:
        store = open_metric_store(settings)
        deadline = time.monotonic() + 10
        name = Matcher("__name__", "=", "signalbox_process_resident_memory_bytes")
        while not (got := store.latest([name])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [labels for _, labels, _, _ in got] == [(("host", "agent1"),)]
        store.close()
    finally:
        bg.close()
