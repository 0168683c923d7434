"""Everything that reads a pass reads a first pass's columns too.

A clean spool file of a new shape reaches the store as columns on its ``NewLayout``
(:class:`~signalbox.metrics.samples.SeriesColumns`), not among the write's samples. Each
reader of a pass must find those series there: ``collect --once``'s counts, the stale
markers of a line or a file that went away (in the same process and in the next cron run),
the outage buffer's held passes and their replay, StatsD mixed with the spool, and the
tap's passes for forwarders and the agent's ``/metrics`` (``tests/peers/test_tap.py``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.exceptions import DiskFullError
from signalbox.metrics.collect import Collector
from signalbox.metrics.forward import PassTap, TappedStore
from signalbox.metrics.forward.scrape import LastPass
from signalbox.metrics.samples import Labels, Matcher
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.statsd.aggregate import StatsdAggregator
from signalbox.metrics.store import MetricStore
from signalbox.storage import open_database
from tests.cli.helpers import StoreProject, run, store_project
from tests.metrics.test_disk_full import NO_ROOM, FullStore, full_store

__all__ = ["full_store", "store_project"]  # fixtures, used by name

T0 = 1_800_000_000  # the start of a raw partition
MS = T0 * 1000
QUEUES = 30


def write(path: Path, text: str, mtime: float) -> None:
    """A spool file written at ``mtime`` (it would be stale at the real one)."""
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def queues_file(values: list[int], skip: frozenset[int] = frozenset()) -> str:
    """One name, one label shape: a file the columns path takes."""
    return "".join(
        f'queue_depth{{queue="q{i:02d}",region="eu"}}={v}\n'
        for i, v in enumerate(values)
        if i not in skip
    )


def queue(i: int, host: str) -> Labels:
    return (("host", host), ("queue", f"q{i:02d}"), ("region", "eu"))


def by_name(store: MetricStore, name: str) -> dict[Labels, list[tuple[int, float]]]:
    got = store.select([Matcher("__name__", "=", name)], MS - 3_600_000, MS + 3_600_000)
    return {sp.labels: list(zip(sp.timestamps, sp.values, strict=True)) for sp in got}


def markers(store: MetricStore, name: str) -> dict[Labels, list[int]]:
    got = store.select([Matcher("__name__", "=", name)], 0, 2**62)
    return {sp.labels: sp.stale for sp in got if sp.stale}


def test_collect_once_counts_the_columns_and_the_next_run_ends_what_they_lost(
    store_project: StoreProject, tmp_path: Path
) -> None:
    """Cron: each run a new process, the first one's files on the columns path."""
    cfg = store_project.configure('host = "cron1"\n')
    spool = store_project.root / ".signalbox" / "spool"
    spool.mkdir(parents=True)
    write(spool / "queues.metrics", queues_file(list(range(QUEUES))), time.time())
    write(spool / "flat.metrics", "jobs_done=3\nload=1.5\n", time.time())
    r = run("--config", str(cfg), "collect", "--once", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    store = SQLMetricStore(open_database(store_project.store_url))
    try:
        (row,) = store.latest([Matcher("__name__", "=", "signalbox_collect_samples")])
        assert row[3] == QUEUES + 2  # the spool's samples: the columns counted
        every = store.series()
        # the first pass created every series and wrote one sample each, columns included
        assert report["new_series"] == len(every) == report["stored"]
        depth = {
            labels: v for _, labels, _, v in store.latest([Matcher("__name__", "=", "queue_depth")])
        }
        assert depth == {queue(i, "cron1"): float(i) for i in range(QUEUES)}
    finally:
        store.close()

    write(spool / "queues.metrics", queues_file(list(range(QUEUES)), frozenset({7})), time.time())
    (spool / "flat.metrics").unlink()
    r = run("--config", str(cfg), "collect", "--once", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    store = SQLMetricStore(open_database(store_project.store_url))
    try:
        lost = markers(store, "queue_depth")
        assert list(lost) == [queue(7, "cron1")]
        assert markers(store, "jobs_done") and markers(store, "load")
        assert store.latest([Matcher("__name__", "=~", "jobs_done|load")]) == []
        kept = {
            labels for _, labels, _, _ in store.latest([Matcher("__name__", "=", "queue_depth")])
        }
        assert kept == {queue(i, "cron1") for i in range(QUEUES) if i != 7}
    finally:
        store.close()


@NO_ROOM
def test_held_first_passes_keep_their_columns_and_store_them_at_their_own_times(
    full_store: FullStore, tmp_path: Path
) -> None:
    """The store refuses the first pass of new-shape files and the next; both are held with
    their columns (counted in the buffer), stored each at its own time once it takes writes
    again, and the agent's ``/metrics`` showed each as it was collected."""
    clock = FrozenClock(float(T0))
    store = SQLMetricStore(open_database(full_store.url), clock=clock)
    full_store.prepare()
    spool = tmp_path / "spool"
    spool.mkdir()
    live = LastPass()
    tap = PassTap([], [live], add_labels=(("host", "h"),))
    collector = Collector(TappedStore(store, tap), spool_dir=spool, host="h", clock=clock)
    collector.on_held = tap.held
    try:
        collector.run_once()  # the store's tables made; nothing in the spool yet
        full_store.fill()
        for step in (1, 2):
            clock.set(T0 + 10.0 * step)
            write(
                spool / "queues.metrics",
                queues_file([step * 100 + i for i in range(QUEUES)]),
                clock.now(),
            )
            write(spool / "flat.metrics", f"jobs_done={step}\n", clock.now())
            with pytest.raises(DiskFullError):
                collector.run_once()
            held = collector.buffer.passes[-1]
            assert any(nl.columns is not None for nl in held.layouts)  # held as columns
            assert held.size >= QUEUES + 1
            text = live.exposition()
            assert f'queue_depth{{host="h",queue="q03",region="eu"}} {step * 100 + 3}\n' in text
            assert f'jobs_done{{host="h"}} {step}\n' in text
        assert collector.held_samples == sum(p.size for p in collector.buffer.passes)
        full_store.free()
        clock.set(T0 + 30.0)
        write(spool / "queues.metrics", queues_file([300 + i for i in range(QUEUES)]), clock.now())
        write(spool / "flat.metrics", "jobs_done=3\n", clock.now())
        collector.run_once()
        assert not collector.buffer
        stamps = [MS + 10_000, MS + 20_000, MS + 30_000]
        got = by_name(store, "queue_depth")
        assert got == {
            queue(i, "h"): list(zip(stamps, [100.0 + i, 200.0 + i, 300.0 + i], strict=True))
            for i in range(QUEUES)
        }
        assert by_name(store, "jobs_done") == {
            (("host", "h"),): list(zip(stamps, [1.0, 2.0, 3.0], strict=True))
        }
    finally:
        store.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def test_a_statsd_series_a_new_shape_file_also_has_is_stored_with_the_files_other_series(
    backend: str, tmp_path: Path
) -> None:
    """A StatsD gauge named as a line of a file on the columns path: one series twice in a
    write. The pass is redone without frames, as before columns (2348c33 stores the same):
    nothing else is lost, and the source's value, written after the spool's, is the one kept."""
    from tests.stores import pg_schema_url, sqlite_url

    def check(url: str) -> None:
        clock = FrozenClock(float(T0))
        store = SQLMetricStore(open_database(url), clock=clock)
        agg = StatsdAggregator()
        spool = tmp_path / "spool"
        spool.mkdir()
        collector = Collector(store, spool_dir=spool, host="h", sources=[agg], clock=clock)
        try:
            write(spool / "flat.metrics", "jobs_done=3\nload=1.5\n", clock.now())
            agg.add_packet(b"load:7|g", "test")
            collector.run_once()
            assert by_name(store, "jobs_done") == {(("host", "h"),): [(MS, 3.0)]}
            assert by_name(store, "load") == {(("host", "h"),): [(MS, 7.0)]}
            clock.advance(10)
            write(spool / "flat.metrics", "jobs_done=4\nload=2.5\n", clock.now())
            collector.run_once()  # a StatsD gauge keeps its value: both send load again
            assert by_name(store, "jobs_done") == {
                (("host", "h"),): [(MS, 3.0), (MS + 10_000, 4.0)]
            }
            assert by_name(store, "load") == {(("host", "h"),): [(MS, 7.0), (MS + 10_000, 7.0)]}
        finally:
            store.close()

    if backend == "sqlite":
        check(sqlite_url(tmp_path))
    else:
        with pg_schema_url() as url:
            check(url)
