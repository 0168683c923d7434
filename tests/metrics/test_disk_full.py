"""A full disk, for real, through the entry points: ``collect --once`` (cron) and ``serve``.

SQLite's store lives on a small tmpfs that a filler file makes full (``tests/diskfull.py``);
PostgreSQL's transactions fail half-way with SQLSTATE 53100 from a trigger, as the server
fails them when it cannot extend a file. On both: the pass is refused with one line saying
"disk full" and naming the store, nothing it did is left behind (in the database or in the
writer's caches: the next pass creates the same new series again), and the first pass after
space returns stores the spool's current values and every StatsD value aggregated meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.exceptions import DiskFullError, StoreError
from signalbox.metrics.buffer import utc
from signalbox.metrics.collect import Collector
from signalbox.metrics.samples import Matcher, MetricMeta
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.statsd.aggregate import StatsdAggregator
from signalbox.server.loops import LoopHealth
from signalbox.storage import open_database
from tests.cli.helpers import free_port, run
from tests.diskfull import pg_disk_full, small_disk
from tests.serving import fetch, serve_process, wait_for
from tests.stores import pg_schema_url

NEW_SERIES = 400  # created by the pass that meets the full disk: far more than the room left


@dataclass
class FullStore:
    """A store and a way to make it refuse writes the way a full disk does."""

    url: str
    where: str  # what a disk-full message must name: the file, or the (redacted) URL
    fill: Callable[[], None]
    free: Callable[[], None]
    prepare: Callable[[], None]  # once the store's tables exist


PG = pytest.param("postgresql", marks=pytest.mark.service("postgresql"))
EVERY_WAY = ["sqlite-no-room-to-open", "sqlite-no-room-to-write", PG]
NO_ROOM = pytest.mark.parametrize("full_store", ["sqlite-full", PG], indirect=True)
"""For writes of a few rows (the room of "no-room-to-write" would take them)."""


@pytest.fixture(params=EVERY_WAY)
def full_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullStore]:
    """SQLite on a real tmpfs (filled to the last byte, or with room to open the file and
    start a write but not finish it), or PostgreSQL failing with ``disk_full``."""
    if request.param == "postgresql":
        with pg_schema_url() as url:
            outage = pg_disk_full(url)
            yield FullStore(url, url.split("?")[0], outage.fill, outage.free, outage.install)
        return
    with small_disk(tmp_path / "disk") as disk:
        room = 192 * 1024 if request.param == "sqlite-no-room-to-write" else 0

        def fill() -> None:
            disk.fill()
            disk.leave(room)

        path = disk.path / "metrics.db"
        yield FullStore(f"sqlite:///{path}", str(path), fill, disk.free, lambda: None)


def publish(path: Path, text: str) -> None:
    """As writers must: a temp file renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def jobs_file(done: float, new_series: int = 0) -> str:
    lines = [f"jobs_done={done}"]
    lines += [
        f'queue_depth{{queue="q{i:04d}",region="eu-west-{i % 7}"}}={i}' for i in range(new_series)
    ]
    return "\n".join(lines) + "\n"


def latest(url: str, name: str) -> dict[str, float]:
    """{labels as text: value} of the stored series of ``name``, read by a store of the test's."""
    store = SQLMetricStore(open_database(url))
    try:
        rows = store.latest([Matcher("__name__", "=", name)])
    finally:
        store.close()
    return {",".join(f"{k}={v}" for k, v in labels if k != "host"): v for _, labels, _, v in rows}


# -- collect --once ---------------------------------------------------------------------------
def test_collect_once_on_a_full_disk_exits_2_with_one_line_and_stores_after_space_returns(
    full_store: FullStore, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    spool = root / "spool"
    spool.mkdir(parents=True)
    (root / "signalbox.toml").write_text(
        f'store = "{full_store.url}"\nhost = "h"\n[collect]\nspool_dir = "{spool}"\n'
    )
    publish(spool / "jobs.metrics", jobs_file(1))
    first = run("collect", "--once", cwd=root)
    assert first.returncode == 0, first.stderr
    full_store.prepare()

    full_store.fill()
    publish(spool / "jobs.metrics", jobs_file(2, NEW_SERIES))
    for _ in range(2):  # and again: a refused pass leaves nothing that breaks the next
        refused = run("collect", "--once", cwd=root)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stdout == ""
        lines = refused.stderr.splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith(f"signalbox: disk full: cannot write to {full_store.where}")
        assert "nothing was lost" in lines[0]
    assert (spool / "jobs.metrics").read_text() == jobs_file(2, NEW_SERIES)  # kept for the next

    full_store.free()
    if full_store.url.startswith("postgresql"):  # nothing of the refused passes is stored
        assert latest(full_store.url, "jobs_done") == {"": 1.0}
        assert latest(full_store.url, "queue_depth") == {}
    stored = run("collect", "--once", cwd=root)
    assert stored.returncode == 0, stored.stderr
    got = re.match(r"stored (\d+) samples \((\d+) new series\)", stored.stdout)
    assert got is not None, stored.stdout
    assert int(got[2]) >= NEW_SERIES
    assert latest(full_store.url, "jobs_done") == {"": 2.0}
    depth = latest(full_store.url, "queue_depth")
    assert len(depth) == NEW_SERIES
    assert depth["queue=q0399,region=eu-west-0"] == 399.0


# -- the collector itself: what it holds for the next pass --------------------------------------
T0 = 1_800_000_000  # the start of a raw partition (5 minutes) and of a rollup bucket


@NO_ROOM
def test_the_collector_holds_statsd_flushes_of_refused_passes_within_its_bound(
    full_store: FullStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In-process, for what the end-to-end tests cannot see: how much is held, the bound,
    a refused pass that opened a new partition, a refused compaction."""
    clock = FrozenClock(float(T0))
    store = SQLMetricStore(open_database(full_store.url), clock=clock)
    full_store.prepare()
    agg = StatsdAggregator()
    spool = tmp_path / "spool"
    spool.mkdir()
    collector = Collector(store, spool_dir=spool, host="h", sources=[agg], clock=clock)
    try:
        agg.add_packet(b"c:1|c", "test")
        collector.run_once()
        full_store.fill()
        clock.set(T0 + 300.0)  # the next partition: created by the refused pass, rolled back
        with pytest.raises(DiskFullError):  # a closed bucket to roll up: refused too
            store.compact(int(clock.now() * 1000))
        caplog.set_level(logging.WARNING, "signalbox.collect")
        for members in (b"s:a|s", b"s:b|s\nu:b|s", b"s:c|s"):  # a new series in the second
            agg.add_packet(b"c:1|c\nt:5|ms\n" + members, "test")
            with pytest.raises(DiskFullError) as refused:
                collector.run_once()
            assert str(refused.value).startswith(f"disk full: cannot write to {full_store.where}")
            if members == b"s:a|s":  # room for two such flushes, not three
                one = collector.held_samples
                assert one > 0
                collector.max_held_samples = 2 * one + 2
            clock.advance(10)
        assert 2 * one <= collector.held_samples <= 2 * one + 2
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert len(dropped) == 1 and f"of 1 pass(es) at {utc((T0 + 300) * 1000)};" in dropped[0]

        full_store.free()
        collector.run_once()
        assert collector.held_samples == 0
        assert latest(full_store.url, "c_total") == {"": 4.0}
        assert latest(full_store.url, "u") == {"": 0.0}  # the flush that created it is stored
        meta = store.metadata()
        assert meta["u"] == MetricMeta(
            "u", "gauge", "StatsD set: distinct members per flush interval"
        )
        ms = T0 * 1000
        sets = store.select([Matcher("__name__", "=", "s")], ms, ms + 330_000)
        assert dict(zip(sets[0].timestamps, sets[0].values, strict=True)) == {
            # ms + 300_000: the oldest flush, dropped at the bound (and logged)
            ms + 310_000: 1.0,  # held through two refused passes, at its own time
            ms + 320_000: 1.0,
            ms + 330_000: 0.0,
        }
        store.compact(int(clock.now() * 1000))  # the rollup refused before: built now
        minute = store.levels[1]
        assert store.db.query(
            f"SELECT r.last FROM {minute.table(minute.partition_start(ms))} AS r "
            "JOIN series AS s ON s.id = r.series_id WHERE s.name = 'c_total' AND r.ts = ?",
            (ms,),
        ) == [(1.0,)]
    finally:
        store.close()


@NO_ROOM
def test_metadata_a_refused_write_could_not_store_is_written_by_the_next_call(
    full_store: FullStore,
) -> None:
    store = SQLMetricStore(open_database(full_store.url))
    full_store.prepare()
    try:
        store.write_metadata([MetricMeta("before", "gauge", "stored")])
        full_store.fill()
        with pytest.raises(DiskFullError):
            store.write_metadata([MetricMeta("jobs_done", "counter", "Jobs done.")])
        full_store.free()
        store.write_metadata([MetricMeta("jobs_done", "counter", "Jobs done.")])
        assert store.metadata()["jobs_done"] == MetricMeta("jobs_done", "counter", "Jobs done.")
    finally:
        store.close()


# -- serve ------------------------------------------------------------------------------------
def query(base: str, expr: str) -> dict[str, float]:
    status, body = fetch(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    return {
        ",".join(
            f"{k}={v}" for k, v in sorted(r["metric"].items()) if k not in ("host", "__name__")
        ): float(r["value"][1])
        for r in json.loads(body)["data"]["result"]
    }


def statsd(port: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(payload, ("127.0.0.1", port))


@contextlib.contextmanager
def serving(full_store: FullStore, root: Path, output: list[str]) -> Iterator[tuple[str, int]]:
    port, udp = free_port(), free_port(socket.SOCK_DGRAM)
    (root / "spool").mkdir(parents=True)
    (root / "monitors").mkdir()
    (root / "signalbox.toml").write_text(
        f'store = "{full_store.url}"\nhost = "h"\n[collect]\ninterval = "1s"\n'
        f'spool_dir = "{root / "spool"}"\n[statsd]\nlisten = "127.0.0.1:{udp}"\n'
        f"[server]\nport = {port}\n"
    )
    with serve_process(root, port, output) as base:
        yield base, udp


def test_serve_on_a_full_disk_stays_up_says_why_and_stores_everything_once_space_returns(
    full_store: FullStore, tmp_path: Path
) -> None:
    output: list[str] = []
    root = tmp_path / "project"
    with serving(full_store, root, output) as (base, udp):
        spool = root / "spool"
        full_store.prepare()
        publish(spool / "jobs.metrics", jobs_file(1))
        statsd(udp, b"c:1|c\nt:5|ms\ns:a|s")
        wait_for(
            lambda: query(base, "jobs_done") == {"": 1.0} and query(base, "c_total") == {"": 1.0}
        )

        full_store.fill()
        publish(spool / "jobs.metrics", jobs_file(2, NEW_SERIES))  # new series: refused
        body = wait_for(lambda: (r := fetch(base + "/-/ready"))[0] == 503 and r[1])
        reason = json.loads(body)["error"]
        assert reason.startswith("not ready: store writes: collect failing since ")
        assert f"disk full: cannot write to {full_store.where}" in reason
        # values aggregated while passes are refused: one interval's set and timer
        statsd(udp, b"c:2|c\nt:7|ms\ns:b|s\ns:c|s")
        time.sleep(2.0)  # two more refused passes (one at least), holding that flush
        assert fetch(base + "/-/healthy")[0] == 200
        assert fetch(base + "/-/ready")[0] == 503
        assert query(base, "jobs_done") == {"": 1.0}  # reads go on meanwhile

        full_store.free()
        wait_for(lambda: fetch(base + "/-/ready")[0] == 200)
        wait_for(lambda: query(base, "jobs_done") == {"": 2.0})
        assert len(query(base, "queue_depth")) == NEW_SERIES
        assert query(base, "c_total") == {"": 3.0}
        assert query(base, "max_over_time(t_seconds_max[5m])") == {"": 0.007}
        assert query(base, "max_over_time(s[5m])") == {"": 2.0}  # the refused interval's set
    log = output[0]
    assert "KeyError" not in log
    failed = [ln for ln in log.splitlines() if "collect failed" in ln]
    assert len(failed) == 1, log  # one line for the whole outage (a reminder only after 5 min)
    assert f"disk full: cannot write to {full_store.where}" in failed[0]
    assert re.search(r"collect works again after \d+ failed run\(s\)", log), log
    assert re.search(r"stored \d+ samples of \d+ pass\(es\) at .* each at its own time", log), log
    assert len([ln for ln in log.splitlines() if "not ready: " in ln]) == 1, log


# -- what the loops of serve/agent log --------------------------------------------------------
def test_a_loop_failing_pass_after_pass_logs_once_then_reminds_then_says_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = LoopHealth(remind_every_s=3600)
    full = DiskFullError("/data/metrics.db", "database or disk is full")
    caplog.set_level(logging.INFO, "signalbox.serve")
    for _ in range(5):
        health.failed("collect", full)
    with pytest.raises(
        StoreError, match=r"^collect failing since .*: disk full: cannot write to /data/metrics.db "
    ):
        health.probe()
    health.remind_every_s = 0.0
    health.failed("collect", full)
    health.failed("compact", RuntimeError("a bug"))  # not the store's: a traceback, once
    health.failed("compact", RuntimeError("a bug"))
    health.succeeded("collect")
    health.succeeded("collect")  # nothing to say twice
    said = [
        (r.levelname, r.getMessage(), bool(r.exc_info and r.exc_info[1])) for r in caplog.records
    ]
    assert said[0] == (
        "ERROR",
        "collect failed: disk full: cannot write to /data/metrics.db (database or disk is full); "
        "nothing was lost, free space and the next pass stores it; will retry next interval",
        False,
    )
    assert said[1][:2] == ("ERROR", f"collect still failing (6 runs in a row): {full}")
    assert said[2] == ("ERROR", "compact failed; will retry next interval", True)
    assert said[3] == ("ERROR", "compact still failing (2 runs in a row): a bug", False)
    assert said[4][0] == "WARNING" and said[4][1].startswith(
        "collect works again after 6 failed run(s) over "
    )
    assert len(said) == 5
    health.probe()  # compact's failure is no store error: ready as far as writes go
