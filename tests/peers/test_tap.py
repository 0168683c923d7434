"""The tap between the collector and its store: what forwarders are handed is what was stored,
frames named by the layouts the tap has seen, across passes and a restart."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.forward import CollectedPass, PassTap, TappedStore
from signalbox.metrics.samples import Labels, MetricMeta, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database

NOW = 1_700_000_000.0


class Recorder:
    """A real pass sink: keeps what it is handed."""

    def __init__(self) -> None:
        self.passes: list[CollectedPass] = []
        self.metas: dict[str, MetricMeta] = {}

    def submit(self, p: CollectedPass) -> None:
        self.passes.append(p)

    def describe(self, metas: Iterable[MetricMeta]) -> None:
        self.metas.update((m.name, m) for m in metas)

    def last(self) -> dict[tuple[str, Labels], tuple[float, int]]:
        return {(n, labels): (v, ts) for n, labels, v, ts in self.passes[-1].series()}


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_every_stored_value_is_handed_over_named_frames_included(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    spool.mkdir()
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)

    def collector() -> tuple[Collector, Recorder, PassTap]:
        rec = Recorder()
        tap = PassTap([rec])
        c = Collector(TappedStore(store, tap), spool_dir=spool, host="web1", clock=clock)
        return c, rec, tap

    def check(rec: Recorder) -> None:
        """The pass handed over holds exactly the store's latest values of the pass."""
        stored = {
            (n, labels): v for n, labels, ts, v in store.latest() if ts == int(clock.now() * 1000)
        }
        got = {k: v for k, (v, _) in rec.last().items()}
        assert got == stored

    c, rec, _ = collector()
    for i in range(3):
        clock.advance(15)
        write(
            spool / "a.metrics",
            f'jobs{{queue="q1"}}={i}\njobs{{queue="q2"}}={i * 2}\n',
            clock.now(),
        )
        write(
            spool / "b.prom",
            f'# TYPE reqs_total counter\nreqs_total{{code="200"}} {10 + i}\n',
            clock.now(),
        )
        c.run_once()
        check(rec)
        assert rec.last()[("jobs", (("host", "web1"), ("queue", "q2")))] == (
            float(i * 2),
            int(clock.now() * 1000),
        )
    # passes after the first sent the files as frames, and they were named
    assert any(p.frames for p in rec.passes[1:])
    assert rec.metas["reqs_total"].type == "counter"

    # a new process on the same store: the store knows the layouts, this tap does not yet
    c2, rec2, tap2 = collector()
    known = store.known_layouts((("host", "web1"),))
    assert known and not tap2.usable(known)
    for i in range(2):
        clock.advance(15)
        write(
            spool / "a.metrics",
            f'jobs{{queue="q1"}}={100 + i}\njobs{{queue="q2"}}=7\n',
            clock.now(),
        )
        c2.run_once()
        check(rec2)
    # its first pass read a.metrics as a new shape (its columns, named by their own values;
    # b.prom's # TYPE line keeps it to samples); the next named both files' frames by that
    # pass's series (whose values were the first pass's)
    first, last = rec2.passes[0].frames, rec2.passes[-1].frames
    assert [[s.value for s in keys] for keys, _ in first] == [[100.0, 7.0]]
    assert sorted([([s.value for s in keys], list(values)) for keys, values in last]) == [
        ([12.0], [12.0]),
        ([100.0, 7.0], [101.0, 7.0]),
    ]


def test_a_file_changing_shape_is_named_by_its_new_series(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    spool.mkdir()
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)
    rec = Recorder()
    c = Collector(TappedStore(store, PassTap([rec])), spool_dir=spool, host="h", clock=clock)
    shapes = ["a=1\nb=2\n", "a=3\nb=4\n", "b=5\nc=6\na=7\n", "b=8\nc=9\na=10\n", "a=11\nb=12\n"]
    for text in shapes:
        clock.advance(15)
        write(spool / "f.metrics", text, clock.now())
        c.run_once()
        want = {
            (k, (("host", "h"),)): float(v) for k, v in (line.split("=") for line in text.split())
        }
        got = {k: v for k, (v, _) in rec.last().items() if not k[0].startswith("signalbox_")}
        assert got == want


def test_a_pass_the_store_refuses_is_live_on_the_agents_metrics_not_forwarded(
    tmp_path: Path,
) -> None:
    import pytest

    from signalbox.exceptions import StoreError
    from signalbox.metrics.forward.scrape import LastPass
    from tests.diskfull import small_disk

    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    spool.mkdir()
    with small_disk(tmp_path / "disk") as disk:
        store = SQLMetricStore(open_database(f"sqlite:///{disk.path / 'db.sqlite'}"), clock=clock)
        stored, live = Recorder(), LastPass()
        tap = PassTap([stored], [live], add_labels=(("host", "h"),))
        c = Collector(TappedStore(store, tap), spool_dir=spool, host="h", clock=clock)
        c.on_held = tap.held
        try:
            for value in (1, 2, 3, 4):
                clock.advance(15)
                write(spool / "f.metrics", f"queue_depth={value}\n", clock.now())
                if value in (2, 3):  # the disk full: refused (2), then held unasked (3)
                    disk.fill()
                    with pytest.raises(StoreError):
                        c.run_once()
                    disk.free()
                else:
                    c.run_once()
                assert f'queue_depth{{host="h"}} {value}\n' in live.exposition()
                got = [
                    (v, ts // 1000 - int(NOW))
                    for p in stored.passes
                    for n, _, v, ts in p.series()
                    if n == "queue_depth"
                ]
                # the forwarders were handed only what the store took: held passes at
                # their own times once it took them
                want = [(1.0, 15)] if value < 4 else [(1.0, 15), (2.0, 30), (3.0, 45), (4.0, 60)]
                assert got == want
        finally:
            store.close()


def test_the_scrape_listener_answers_metrics_and_health_and_nothing_else() -> None:
    import urllib.error
    import urllib.request

    from signalbox.metrics.forward.scrape import LastPass, ScrapeServer

    last = LastPass()
    server = ScrapeServer(last, "127.0.0.1", 0)
    server.start()
    base = f"http://127.0.0.1:{server.address[1]}"
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert r.status == 200 and r.read() == b""  # nothing collected yet
        last.describe([MetricMeta("jobs_total", "counter", "Jobs.")])
        last.submit(CollectedPass(0, (("host", "h"),), [Sample("jobs_total", (), 3.0)]))
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert r.read().decode() == (
                '# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{host="h"} 3\n'
            )
        with urllib.request.urlopen(base + "/-/healthy", timeout=5) as r:
            assert r.status == 200
        for path, method in (("/", "GET"), ("/metrics", "POST")):
            req = urllib.request.Request(
                base + path, method=method, data=b"" if method == "POST" else None
            )
            try:
                urllib.request.urlopen(req, timeout=5)
            except urllib.error.HTTPError as e:
                assert e.code in (404, 501)
            else:
                raise AssertionError(f"{method} {path} answered")
    finally:
        server.stop()
