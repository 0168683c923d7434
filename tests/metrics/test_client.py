"""The application-side metrics client: values, atomic files, threads, processes, never raising."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.metrics import client as metrics
from signalbox.metrics.client import Client
from signalbox.metrics.parse.keyvalue import parse_keyvalue
from signalbox.metrics.samples import format_series


class ManualClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read(path: Path) -> dict[str, float]:
    """Parse a spool file with the collector's own parser; it must have no bad lines."""
    parsed = parse_keyvalue(path.read_text(encoding="utf-8"), path.name)
    assert parsed.errors == []
    return {format_series(s.name, s.labels): s.value for s in parsed.samples}


MakeClient = Callable[..., Client]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Clients writing to ``tmp_path`` as ``app-<pid>.metrics``, closed after the test.

    By default without the ``pid`` label and without a writer thread (values are published
    by ``flush()``), so what a test reads is exactly what it flushed.
    """
    made: list[Client] = []

    def make(spool_dir: Path = tmp_path, **kw: Any) -> Client:
        kw.setdefault("environ", {})
        kw.setdefault("prog", "app")
        kw.setdefault("pid_label", None)
        kw.setdefault("background", False)
        c = Client(spool_dir, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# ---------------------------------------------------------------------------------------
# what the file says


def test_file_holds_counters_gauges_and_timers(make_client: MakeClient, tmp_path: Path) -> None:
    clock = ManualClock()
    c = make_client(clock=clock)
    c.incr("jobs_total")
    c.incr("jobs_total", 2)
    c.incr("jobs_total", 5, queue="photos")
    c.gauge("queue.depth", 7)
    c.gauge("queue.depth", 3.25)
    with c.timer("resize"):
        clock.now += 0.5
    with c.timer("resize"):
        clock.now += 0.25
    assert c.flush()
    assert c.path == tmp_path / f"app-{os.getpid()}.metrics"
    assert read(c.path) == {
        "jobs_total": 3,
        'jobs_total{queue="photos"}': 5,
        "queue_depth": 3.25,
        "resize_seconds_count": 2,
        "resize_seconds_sum": 0.75,
        "resize_seconds_last": 0.25,
        "signalbox_client_errors_total": 0,
    }
    assert c.path.read_text().startswith("# signalbox client: prog=app pid=")


def test_label_values_are_escaped_per_prometheus_rules(make_client: MakeClient) -> None:
    c = make_client()
    c.incr("odd_total", path='C:\\dir "x"\nnext', tab="a\tb", eq="a=b}", num=7)
    c.flush()
    assert read(c.path) == {
        format_series(
            "odd_total",
            (("eq", "a=b}"), ("num", "7"), ("path", 'C:\\dir "x"\nnext'), ("tab", "a\tb")),
        ): 1,
        "signalbox_client_errors_total": 0,
    }


def test_label_order_and_empty_values_do_not_make_new_series(make_client: MakeClient) -> None:
    c = make_client()
    c.incr("hits_total", a="1", b="2")
    c.incr("hits_total", b="2", a="1")
    c.incr("hits_total", a="1", b="2", c="")
    c.flush()
    assert read(c.path)['hits_total{a="1",b="2"}'] == 3


def test_timer_seconds_suffix_is_not_doubled(make_client: MakeClient) -> None:
    clock = ManualClock()
    c = make_client(clock=clock)
    with c.timer("request_seconds", route="/"):
        clock.now += 2
    c.flush()
    assert read(c.path)['request_seconds_count{route="/"}'] == 1


def test_pid_label_keeps_processes_apart_by_default(tmp_path: Path) -> None:
    c = Client(tmp_path, prog="app", environ={})
    try:
        c.incr("jobs_total")
        c.flush()
        pid = os.getpid()
        assert read(c.path) == {
            f'jobs_total{{pid="{pid}"}}': 1,
            f'signalbox_client_errors_total{{pid="{pid}"}}': 0,
        }
    finally:
        c.close()


def test_timer_as_decorator_records_calls_and_exceptions(make_client: MakeClient) -> None:
    clock = ManualClock()
    c = make_client(clock=clock)

    @c.timer("work", kind="sync")
    def work(seconds: float, fail: bool = False) -> str:
        clock.now += seconds
        if fail:
            raise ValueError("boom")
        return "done"

    assert work(1.5) == "done"
    with pytest.raises(ValueError, match="boom"):
        work(0.5, fail=True)
    assert work.__name__ == "work"
    c.flush()
    got = read(c.path)
    assert got['work_seconds_count{kind="sync"}'] == 2
    assert got['work_seconds_sum{kind="sync"}'] == 2.0
    assert got['work_seconds_last{kind="sync"}'] == 0.5


def test_timer_decorates_coroutines_and_times_the_await(make_client: MakeClient) -> None:
    clock = ManualClock()
    c = make_client(clock=clock)

    @c.timer("fetch")
    async def fetch() -> int:
        await asyncio.sleep(0)
        clock.now += 3
        return 42

    assert asyncio.run(fetch()) == 42
    c.flush()
    assert read(c.path)["fetch_seconds_sum"] == 3.0


def test_one_timer_object_can_be_nested_and_reused(make_client: MakeClient) -> None:
    clock = ManualClock()
    c = make_client(clock=clock)
    t = c.timer("step")
    with t:
        clock.now += 1
        with t:
            clock.now += 2
        clock.now += 4
    c.flush()
    got = read(c.path)
    assert (got["step_seconds_count"], got["step_seconds_sum"]) == (2, 9.0)  # 2 + (1+2+4)


# ---------------------------------------------------------------------------------------
# never raising, always counting


def test_bad_input_is_counted_and_logged_once_never_raised(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    c = make_client()
    c.incr("ok_total")
    bad_calls: list[Callable[[], object]] = [
        lambda: c.incr("bad name"),
        lambda: c.incr("bad name"),  # same problem: counted again, logged once
        lambda: c.incr("ok_total", -1),
        lambda: c.incr("ok_total", float("nan")),
        lambda: c.incr("ok_total", "3"),  # type: ignore[arg-type]
        lambda: c.incr(None),  # type: ignore[arg-type]
        lambda: c.gauge("temp", None),  # type: ignore[arg-type]
        lambda: c.gauge("temp", float("inf")),
        lambda: c.gauge("temp", 1, **{"bad-label": "x"}),
        lambda: c.gauge("temp", 1, __name__="x"),
        lambda: c.gauge("temp", 1, shard=["unhashable"]),
        lambda: c.gauge("temp", 1, note="bell\x07"),
        lambda: c.gauge("ok_total", 1),  # already a counter
        lambda: c.timer("9lives"),
    ]
    for call in bad_calls:
        call()
    assert c.errors == len(bad_calls)
    with caplog.at_level(logging.WARNING, logger="signalbox"):
        assert c.flush()
    assert read(c.path) == {"ok_total": 1, "signalbox_client_errors_total": len(bad_calls)}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(bad_calls) - 1  # the repeated problem is logged once
    assert any("invalid metric name 'bad name'" in m for m in messages)
    assert any("'ok_total': already used as a counter" in m for m in messages)
    assert any("invalid label name 'bad-label'" in m for m in messages)


def test_refused_timer_records_nothing_and_still_runs_the_code(make_client: MakeClient) -> None:
    c = make_client()

    @c.timer("not valid")
    def f() -> int:
        return 1

    assert f() == 1
    with c.timer("also not valid"):
        pass
    assert c.errors == 2
    c.flush()
    assert read(c.path) == {"signalbox_client_errors_total": 2}


def test_series_beyond_the_cap_are_refused_and_counted(make_client: MakeClient) -> None:
    c = make_client(max_series=3)
    for shard in range(5):
        c.incr("jobs_total", shard=shard)
    c.incr("jobs_total", shard=0)
    c.flush()
    got = read(c.path)
    assert got == {'jobs_total{shard="0"}': 2, 'jobs_total{shard="1"}': 1, 'jobs_total{shard="2"}': 1,
                   "signalbox_client_errors_total": 2}  # fmt: skip


# (A read-only dir cannot be simulated as root, which CI runs as; both cases below take the
# same OSError path in the writer.)
@pytest.mark.parametrize("how", ["missing dir", "path through a file"])
def test_a_failing_write_is_logged_rate_limited_and_retried(
    tmp_path: Path, make_client: MakeClient, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    spool = tmp_path / "spool"
    if how == "path through a file":
        spool.write_text("not a dir")
    clock = ManualClock()
    c = make_client(spool, clock=clock)
    with caplog.at_level(logging.WARNING, logger="signalbox"):
        c.incr("jobs_total")
        assert c.flush() is False
        clock.now += 1
        c.incr("jobs_total")
        assert c.flush() is False
        assert len(caplog.records) == 1, "one log line per minute, not per attempt"
        assert "cannot write" in caplog.records[0].getMessage()
        assert "2 failed" not in caplog.records[0].getMessage()
        clock.now += 61
        assert c.flush() is False
        assert len(caplog.records) == 2
        assert "3 failed write(s) so far" in caplog.records[-1].getMessage()
        if how == "path through a file":
            spool.unlink()
        spool.mkdir()
        c.incr("jobs_total")
        assert c.flush() is True
    assert "works again" in caplog.records[-1].getMessage()
    assert read(c.path)["jobs_total"] == 3
    assert [p.name for p in spool.iterdir()] == [c.path.name]


def test_missing_spool_dir_hint_names_the_fix(
    tmp_path: Path, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    c = make_client(tmp_path / "nope")
    c.gauge("x", 1)
    with caplog.at_level(logging.WARNING, logger="signalbox"):
        c.flush()
    message = caplog.records[0].getMessage()
    assert str(tmp_path / "nope") in message
    assert "signalbox init" in message
    assert not (tmp_path / "nope").exists(), "the client never creates the spool dir"


# ---------------------------------------------------------------------------------------
# concurrency: threads, readers, processes


def test_threads_lose_no_increments(make_client: MakeClient) -> None:
    c = make_client(background=True, flush_interval=0.001)  # the writer races them too
    barrier = threading.Barrier(8)

    def hammer(i: int) -> None:
        barrier.wait()
        for _ in range(10_000):
            c.incr("hits_total")
            c.incr("by_thread_total", t=i % 2)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.flush()
    got = read(c.path)
    assert got["hits_total"] == 80_000
    assert got['by_thread_total{t="0"}'] + got['by_thread_total{t="1"}'] == 80_000


def test_readers_never_see_a_partial_file(make_client: MakeClient) -> None:
    c = make_client()
    series = 200
    generations = 100
    done = threading.Event()

    def writer() -> None:
        for g in range(1, generations + 1):
            for i in range(series):
                c.gauge("level", g, i=i)
            c.flush()
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    seen: set[float] = set()
    while not done.is_set() or reads == 0:
        try:
            got = read(c.path)
        except FileNotFoundError:
            continue  # before the first write
        values = {v for k, v in got.items() if k.startswith("level")}
        assert len(got) == series + 1, "every series in every read"
        assert len(values) == 1, "one generation per file, never a mix"
        seen |= values
        reads += 1
    thread.join()
    assert reads > 0
    assert read(c.path)['level{i="0"}'] == generations
    assert len(seen) > 1 or reads == 1
    assert [p.name for p in c.path.parent.iterdir()] == [c.path.name], "no temp file left"


def test_the_writer_thread_publishes_without_flush(make_client: MakeClient) -> None:
    c = make_client(background=True, flush_interval=0.01)
    c.incr("jobs_total", 5)
    deadline = time.monotonic() + 10
    while not c.path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert read(c.path)["jobs_total"] == 5


def test_writes_are_coalesced_to_one_per_interval(make_client: MakeClient) -> None:
    c = make_client(background=True, flush_interval=3600)
    c.incr("jobs_total")  # starts the writer thread, which writes once, then waits an hour
    deadline = time.monotonic() + 10
    while not c.path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    first = read(c.path)["jobs_total"]
    for _ in range(100):
        c.incr("jobs_total")
    assert read(c.path)["jobs_total"] == first, "no write per call"
    c.flush()
    assert read(c.path)["jobs_total"] == 101


_CHILD = """
import os, threading
os.environ["SIGNALBOX_SPOOL"] = {spool!r}
from signalbox.metrics import client as m
m.configure(prog="worker")
def work():
    for _ in range({n}):
        m.incr("jobs_total")
threads = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
"""  # no flush(): the atexit hook must publish the last values


def test_spawned_processes_each_publish_their_own_file_and_the_sum_is_exact(
    tmp_path: Path,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = 5_000
    procs = [
        ctx.Process(target=exec, args=(_CHILD.format(spool=str(tmp_path), n=n), {}))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    files = sorted(tmp_path.glob("worker-*.metrics"))
    assert {f.name for f in files} == {f"worker-{p.pid}.metrics" for p in procs}
    total = 0.0
    for f in files:
        pid = f.stem.split("-")[1]
        got = read(f)
        assert got[f'jobs_total{{pid="{pid}"}}'] == 2 * n
        total += got[f'jobs_total{{pid="{pid}"}}']
    assert total == 4 * 2 * n


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork is POSIX only")
def test_a_forked_child_writes_only_its_own_counts_to_its_own_file(
    make_client: MakeClient, tmp_path: Path
) -> None:
    c = make_client(pid_label="pid")
    c.incr("jobs_total", 5)
    pid = os.fork()
    if pid == 0:  # child: report through the exit code, never through pytest
        try:
            c.incr("jobs_total", 7)
            os._exit(0 if c.flush() else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    c.incr("jobs_total")
    c.flush()
    assert read(tmp_path / f"app-{pid}.metrics")[f'jobs_total{{pid="{pid}"}}'] == 7
    assert read(c.path)[f'jobs_total{{pid="{os.getpid()}"}}'] == 6


def test_multiprocessing_fork_children_publish_on_exit(
    make_client: MakeClient, tmp_path: Path
) -> None:
    c = make_client(pid_label="pid")
    c.incr("jobs_total", 5)

    def child() -> None:
        for _ in range(1000):
            c.incr("jobs_total")
        # no flush(): multiprocessing leaves through os._exit; the client must still write

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    for p in procs:
        assert read(tmp_path / f"app-{p.pid}.metrics")[f'jobs_total{{pid="{p.pid}"}}'] == 1000


# ---------------------------------------------------------------------------------------
# configuration and the module-level API


def test_spool_env_var_wins_over_configuration(tmp_path: Path) -> None:
    env_dir, conf_dir = tmp_path / "env", tmp_path / "conf"
    c = Client(conf_dir, environ={"SIGNALBOX_SPOOL": str(env_dir)}, prog="p")
    try:
        assert c.spool_dir == env_dir
        c.configure(spool_dir=tmp_path / "other")
        assert c.spool_dir == env_dir
    finally:
        c.close()
    c2 = Client(environ={}, prog="p")
    try:
        assert c2.spool_dir == Path(".signalbox/spool")
        c2.configure(spool_dir=conf_dir)
        assert c2.spool_dir == conf_dir
    finally:
        c2.close()


def test_module_functions_use_the_default_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIGNALBOX_SPOOL", raising=False)
    metrics.reset()
    try:
        metrics.configure(spool_dir=tmp_path, prog="mod", pid_label=None)
        metrics.incr("jobs_total", 2, queue="q")
        metrics.gauge("depth", 4)
        with metrics.timer("step"):
            pass
        assert metrics.flush()
        got = read(tmp_path / f"mod-{os.getpid()}.metrics")
        assert got['jobs_total{queue="q"}'] == 2
        assert got["depth"] == 4
        assert got["step_seconds_count"] == 1
    finally:
        metrics.reset()
