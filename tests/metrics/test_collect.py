"""A collection pass: host label, self-metrics, error counters that survive restarts."""

from __future__ import annotations

import os
from pathlib import Path

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector, with_host
from signalbox.metrics.samples import Matcher, MetricMeta, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database

NOW = 1_700_000_000.0


def store_at(tmp_path: Path, clock: FrozenClock) -> SQLMetricStore:
    return SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)


def write(path: Path, text: str, mtime: float = NOW) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def latest(store: SQLMetricStore, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for _, labels, _, v in store.latest([Matcher("__name__", "=", name)])}


class FakeStatsd:
    """A real SampleSource implementation (the protocol is two methods), not a mock."""

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        return [Sample("uploads_total", (), 3.0)], [MetricMeta("uploads_total", "counter")]


def test_pass_stores_spool_and_sources_with_host_label(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    spool.mkdir()
    write(spool / "photos.metrics", 'image_processed=30\nlag{host="db7"}=2\n')
    store = store_at(tmp_path, clock)
    report = Collector(
        store, spool_dir=spool, host="web1", sources=[FakeStatsd()], clock=clock
    ).run_once()
    assert report.problems == []
    assert latest(store, "image_processed") == {(("host", "web1"),): 30.0}
    assert latest(store, "lag") == {(("host", "db7"),): 2.0}  # a file may speak for another host
    assert latest(store, "uploads_total") == {(("host", "web1"),): 3.0}
    assert store.metadata()["uploads_total"].type == "counter"
    assert latest(store, "signalbox_spool_file_age_seconds") == {
        (("file", "photos.metrics"), ("host", "web1")): 0.0
    }
    assert latest(store, "signalbox_spool_files") == {(("host", "web1"),): 1.0}


def test_error_counter_accumulates_across_collector_restarts(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    spool.mkdir()
    write(spool / "bad.metrics", "good=1\nnope\n")
    for i in range(3):
        clock.set(NOW + i * 15)
        store = store_at(tmp_path, clock)  # a new process each time, like `collect --once`
        Collector(store, spool_dir=spool, host="h", clock=clock).run_once()
        store.close()
    store = store_at(tmp_path, clock)
    assert latest(store, "signalbox_spool_errors_total") == {
        (("file", "bad.metrics"), ("host", "h")): 3.0
    }


def test_each_problem_is_logged_once_while_it_persists(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    spool.mkdir()
    write(spool / "bad.metrics", "nope\n")
    seen = []
    c = Collector(
        store_at(tmp_path, clock), spool_dir=spool, host="h", clock=clock, on_problem=seen.append
    )
    c.run_once()
    c.run_once()
    assert len(seen) == 1 and seen[0].line == 1
    write(spool / "bad.metrics", "fixed=1\n")
    c.run_once()
    write(spool / "bad.metrics", "nope\n")
    c.run_once()
    assert len(seen) == 2  # came back: reported again


def test_with_host_keeps_labels_sorted() -> None:
    assert with_host((("a", "1"), ("z", "2")), "h") == (("a", "1"), ("host", "h"), ("z", "2"))
    assert with_host((), "h") == (("host", "h"),)
