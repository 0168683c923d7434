"""A collection pass: host label, self-metrics, error counters that survive restarts."""

from __future__ import annotations

import os
from pathlib import Path

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector, with_host
from signalbox.metrics.samples import Matcher, MetricMeta, Sample
from signalbox.metrics.spool import SpoolProblem
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
    seen: list[SpoolProblem] = []
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


def test_a_series_two_files_give_is_reported_and_the_rest_stored_pass_after_pass(
    tmp_path: Path, store_url: str
) -> None:
    """What ``serve`` does: many passes in one process with one store. A second file that
    repeats a framed file's series (and brings a new one) makes the frames write fail with
    DuplicateSeries; the redone pass must store everything else, and no later pass, read or
    fresh process may trip over an id of the rolled-back attempt."""
    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    spool.mkdir()
    write(spool / "a.metrics", "shared=1\nonly_a=1\n")
    seen: list[SpoolProblem] = []
    store = SQLMetricStore(open_database(store_url), clock=clock)
    c = Collector(store, spool_dir=spool, host="h", clock=clock, on_problem=seen.append)
    c.run_once()  # registers a.metrics' layout
    for i in range(1, 4):
        clock.set(NOW + 15 * i)
        write(spool / "a.metrics", f"shared={i + 1}\nonly_a={i + 1}\n", NOW + 15 * i)
        if i == 1:
            write(spool / "b.metrics", "shared=99\nonly_b=7\n", NOW + 15 * i)
        report = c.run_once()
        assert [p.kind for p in report.problems] == ["duplicate"]
        assert "b.metrics" in report.problems[0].file
        assert latest(store, "shared") == {(("host", "h"),): float(i + 1)}  # the first file wins
        assert latest(store, "only_a") == {(("host", "h"),): float(i + 1)}
        assert latest(store, "only_b") == {(("host", "h"),): 7.0}
        names = {n for n, _, _, _ in store.latest()}  # what /metrics reads
        assert {"shared", "only_a", "only_b"} <= names
        errors = latest(store, "signalbox_spool_errors_total")
        assert errors[(("file", "b.metrics"), ("host", "h"))] == float(i)
    assert len(seen) == 1  # reported once while it persists
    (spool / "b.metrics").unlink()
    clock.set(NOW + 60)
    write(spool / "a.metrics", "shared=5\nonly_a=5\n", NOW + 60)
    assert c.run_once().problems == []
    assert latest(store, "shared") == {(("host", "h"),): 5.0}
    names = {n for n, _, _, _ in store.latest()}
    assert names >= {"shared", "only_a"} and "only_b" not in names  # b.metrics' series ended
    # every sample's series exists: a fresh process reads and writes the same
    orphans = store.db.query(
        "SELECT count(*) FROM metric_layout_series WHERE series_id NOT IN (SELECT id FROM series)"
    )
    assert orphans == [(0,)]
    store.close()
    fresh = SQLMetricStore(open_database(store_url), clock=clock)
    clock.set(NOW + 75)
    Collector(fresh, spool_dir=spool, host="h", clock=clock).run_once()
    assert latest(fresh, "only_a") == {(("host", "h"),): 5.0}
    assert latest(fresh, "only_b") == {}  # still ended
    fresh.close()
