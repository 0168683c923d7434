"""``signalbox_monitor_state``: one set of label names per monitor, whatever its kind.

Every state series carries ``monitor``, the series' own labels and ``host`` exactly once (the
series' own when it has one, else the runner's, as the collector adds it), and a monitor whose
data came back no longer writes its label-less "query returned nothing" series next to the
real ones. Runs the real collector and runner over SQLite and PostgreSQL, a real Nagios
plugin, and promtool over the exposition.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.expose import render
from signalbox.metrics.parse.promtext import parse_prometheus
from signalbox.metrics.samples import Labels, Matcher
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.outbox.store import Outbox
from signalbox.monitors.state.store import MonitorStore
from signalbox.query import Engine
from signalbox.storage import open_database
from signalbox.storage.database import Database
from tests.stores import pg_schema_url, sqlite_url

T0 = 1_700_000_000.0
CHECK_DUMMY = "/usr/lib/nagios/plugins/check_dummy"

MONITORS = f"""
- name: jobs_low
  description: Too few jobs done.
  query: jobs_done
  warning: "< 10"
  no_data: unknown
- name: jobs_total
  description: Too few jobs done across hosts.
  query: sum(jobs_done)
  critical: "< 1"
  no_data: unknown
- name: jobs_stale
  description: The job counter stopped moving.
  stale: {{metric: jobs_done, after: 10m}}
- name: spool_stale
  description: A spool file stopped being written.
  stale: {{spool_file: "*.metrics", after: 10m}}
- name: dummy_plugin
  description: A real Nagios plugin saying WARNING.
  command: [{CHECK_DUMMY}, "1", "dummy says warning"]
- name: photos_queue
  description: The photo queue is backing up.
  queue: {{name: photos, high: 1000, low: 10}}
  no_data: unknown
"""
KINDS = ["jobs_low", "jobs_total", "jobs_stale", "spool_stale", "dummy_plugin", "photos_queue"]


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with pg_schema_url() as u:
            yield u


class Site:
    """One host's collector and monitor runner over one store, at a frozen time."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.clock = FrozenClock(T0)
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        (tmp_path / "monitors").mkdir()
        (tmp_path / "monitors" / "m.yaml").write_text(MONITORS)
        self.db: Database = open_database(url)
        self.store = SQLMetricStore(self.db, clock=self.clock)
        self.collector = Collector(self.store, spool_dir=self.spool, host="web1", clock=self.clock)
        self.runner = MonitorRunner(
            paths=[tmp_path / "monitors"],
            metric_store=self.store,
            state=MonitorStore(self.db),
            outbox=Outbox(self.db, rng=random.Random(1)),
            notifiers={},
            repeat_s=3600,
            engine=Engine(self.store, coarsest_resolution_s=0),
            host="web1",
        )

    def at(self, seconds: float) -> int:
        self.clock.set(T0 + seconds)
        return int((T0 + seconds) * 1000)

    def write_spool(self) -> None:
        path = self.spool / "jobs.metrics"
        path.write_text('jobs_done=5\nsignalbox_queue_depth{queue="photos"}=3\n')
        os.utime(path, (self.clock.now(), self.clock.now()))

    def states_at(self, ts_ms: int) -> dict[str, list[Labels]]:
        """The state series the pass at ``ts_ms`` wrote, by monitor (without the name)."""
        rows = self.store.latest([Matcher("__name__", "=", "signalbox_monitor_state")])
        out: dict[str, list[Labels]] = {}
        for _, labels, ts, _ in rows:
            if ts == ts_ms:
                out.setdefault(dict(labels)["monitor"], []).append(labels)
        return out

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def site(tmp_path: Path, url: str) -> Iterator[Site]:
    s = Site(tmp_path, url)
    yield s
    s.close()


def label_names(series: list[Labels]) -> set[tuple[str, ...]]:
    return {tuple(k for k, _ in labels) for labels in series}


@pytest.mark.peer("monitoring-plugins")
def test_every_kind_writes_one_label_set_with_host_once_even_when_data_comes_back(
    site: Site,
) -> None:
    """A first pass sees no data (label-less stand-ins); once the spool is collected, the
    next pass writes for every monitor series with the same label names, host included."""
    first = site.at(0)
    site.runner.run_pass(first, deliver=False)
    before = site.states_at(first)
    assert set(before) == set(KINDS)  # no data is UNKNOWN for the query kinds: all written
    for name, series in before.items():
        assert label_names(series) == {("host", "monitor")}, name

    site.at(15)
    site.write_spool()
    site.collector.run_once()
    second = site.at(30)
    site.runner.run_pass(second, deliver=False)
    after = site.states_at(second)
    assert set(after) == set(KINDS)
    for name, series in after.items():
        assert len(label_names(series)) == 1, (name, series)
        for labels in series:
            assert [k for k, _ in labels].count("host") == 1, (name, labels)
            assert dict(labels)["host"] == "web1"
    assert label_names(after["spool_stale"]) == {("file", "host", "monitor")}
    assert label_names(after["jobs_low"]) == {("host", "monitor")}
    assert label_names(after["dummy_plugin"]) == {("host", "monitor")}
    assert label_names(after["photos_queue"]) == {("host", "monitor", "queue")}


@pytest.mark.peer("monitoring-plugins")
def test_a_series_from_another_host_keeps_its_host_and_gets_no_second_one(site: Site) -> None:
    """A shared store holds other hosts' series: their state keeps their host."""
    site.at(0)
    site.write_spool()
    site.collector.run_once()
    other = Collector(site.store, spool_dir=site.spool, host="web2", clock=site.clock)
    other.run_once()
    now = site.at(10)
    site.runner.run_pass(now, deliver=False)
    hosts = {dict(lb)["host"] for lb in site.states_at(now)["jobs_low"]}
    assert hosts == {"web1", "web2"}
    total = site.states_at(now)["jobs_total"]  # sum() has no host of its own: the runner's
    assert total == [(("host", "web1"), ("monitor", "jobs_total"))]


@pytest.mark.peer("promtool")
@pytest.mark.peer("monitoring-plugins")
def test_the_exposition_of_every_kind_is_consistent_and_passes_promtool(site: Site) -> None:
    site.at(0)
    site.write_spool()
    site.collector.run_once()
    for step in (10, 40, 70):
        site.runner.run_pass(site.at(step), deliver=False)
    now_ms = site.at(70)
    text = render(site.store.latest(since_ms=now_ms - 300_000), site.store.metadata())
    parsed = parse_prometheus(text, "/metrics")
    assert parsed.errors == []
    by_monitor: dict[str, set[tuple[str, ...]]] = {}
    for s in parsed.samples:
        if s.name == "signalbox_monitor_state":
            by_monitor.setdefault(dict(s.labels)["monitor"], set()).add(
                tuple(k for k, _ in s.labels)
            )
    assert set(by_monitor) == set(KINDS)
    assert all(len(names) == 1 for names in by_monitor.values()), by_monitor
    assert all("host" in next(iter(names)) for names in by_monitor.values())
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
