"""The cache of raw partitions' samples (``metrics/sql/rawcache.py``): answers with the cache
off, cold and warm are the same bit for bit (counters with resets, gaps, NaN and the
infinities, rows and spool frames); a write into a cached partition, by this process or
another, shows in the next answer; retention's drop of a partition, then the same minutes
written again, never answers the dropped samples; a writer racing a reader never leaves a
stale answer; a partition's versions go with it; the cache stays within its bytes.
SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.exceptions import DiskFullError
from signalbox.metrics.collect import Collector
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql import rawcache
from signalbox.metrics.sql.partitions import frames_table
from signalbox.query import Engine
from tests.diskfull import pg_disk_full, small_disk
from tests.metrics import cachecheck
from tests.metrics.test_row_sealed import _bits, _counter
from tests.stores import SQL_BACKENDS, sql_metric_store

M = 60_000
HOUR = 3_600_000
T0 = 1_700_006_400_000
BLOCK = 3 * HOUR  # each test's own hours
TIERS = (Tier(60, 8 * 86400), Tier(300, 35 * 86400))
OPTIONS: dict[str, Any] = {"raw_retention_s": 30 * 86400}
SPAN = 300_000  # the raw partitions' span

QUERIES = (
    'rate({n}{{s="1"}}[5m])',  # a series first, then all (a block grows), then a few again
    "sum(rate({n}[5m]))",
    "increase({n}[1h])",
    "avg_over_time({n}[10m])",
    "max_over_time({n}[2m])",
    "count_over_time({n}[5m])",
    "max by (s) ({n})",
    'sum_over_time({n}{{s=~"0|2"}}[3m])',
)

_RUN = iter(range(1, 10**6))


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def opened(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str]]:
    """(store, its URL for another process)."""
    yield from cachecheck.open_store(request, tmp_path_factory, TIERS, T0, **OPTIONS)


@pytest.fixture
def store(opened: tuple[Any, str]) -> Iterator[Any]:
    with cachecheck.fresh(rawcache):
        yield opened[0]


def _answers(store: Any, name: str, start: int, end: int, step: int) -> list[Any]:
    out = cachecheck.answers(store, QUERIES, name, start, end, step)
    # the arrays themselves, over a window that cuts partitions anywhere
    cols = store.raw_columns([Matcher("__name__", "=", name)], start + 7_001, end - 13_003)
    if cols is not None:
        arrays = (cols.ids, cols.starts, cols.timestamps, cols.values)
        out.append(("raw_columns", [a.tobytes() for a in arrays], []))
    return out


def _uncached(store: Any, name: str, start: int, end: int, step: int) -> list[Any]:
    """The answers with no cache, leaving the process's cache as it is."""
    with cachecheck.off(rawcache):
        return _answers(store, name, start, end, step)


def _off_cold_warm(store: Any, name: str, start: int, end: int, step: int) -> list[Any]:
    """The answers with the cache off, cold and warm: the same, and the warm ones from it."""
    return cachecheck.off_cold_warm(rawcache, lambda: _answers(store, name, start, end, step))


def _history(store: Any, name: str, base: int, minutes: int, series: int = 4, k: int = 1) -> None:
    samples = [
        Sample(name, (("s", str(i)),), float(k * m * (i + 1) % 97), base + m * M + 1_000)
        for i in range(series)
        for m in range(minutes)
    ]
    store.write(samples, base + minutes * M)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(_counter(), min_size=1, max_size=4),
    step=st.sampled_from([60_000, 15_000, 90_000]),
    shift=st.sampled_from([0, 20_000, 150_000]),
)
def test_answers_with_the_cache_off_cold_and_warm_are_the_same(
    store: Any, series: list[list[tuple[int, float]]], step: int, shift: int
) -> None:
    """Counters with resets, gaps, NaN and the infinities, windows that cut partitions
    anywhere; then more samples written into the partitions read: the new answers."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rc{k}"
    samples = [
        Sample(name, (("s", str(i)),), v, base + t)
        for i, points in enumerate(series)
        for t, v in points
        if t < 2 * HOUR
    ]
    store.write(samples, base + 2 * HOUR)
    start, end = base + shift, base + 2 * HOUR + shift
    first = _off_cold_warm(store, name, start, end, step)
    # a series more, and a sample more of series 0, into partitions already cached
    store.write([Sample(name, (("s", "9"),), 5.0, base + 30 * M + 7)], base + 2 * HOUR)
    store.write([Sample(name, (("s", "0"),), 1e9, base + 61 * M + 3)], base + 2 * HOUR)
    again = _answers(store, name, start, end, step)
    assert again != first
    assert _uncached(store, name, start, end, step) == again


def test_spool_frames_and_rows_answer_as_uncached(tmp_path: Path, store: Any) -> None:
    """Series stored as spool frames (one row per file and pass) beside series stored as
    rows: both kept, both answered as the store answers them."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rcf{k}"
    spool = tmp_path / "spool"
    spool.mkdir()
    for m in range(40):
        at = (base + m * M + 500) / 1000
        lines = "".join(f'{name}{{s="f{i}"}} {(m * (i + 3)) % 50}\n' for i in range(5))
        (spool / "app.prom").write_text(lines)
        os.utime(spool / "app.prom", (at, at))
        Collector(store, spool_dir=spool, host="h", clock=FrozenClock(at)).run_once()
    _history(store, name, base, 40, series=3)
    table = frames_table(store.levels[0].table((base + 10 * M) // SPAN * SPAN))
    assert store.db.query(f"SELECT count(*) FROM {table}")[0][0], "spool series: frames"
    _off_cold_warm(store, name, base, base + 40 * M, 30_000)


_OTHER = """
import json, sys
from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
a = json.loads(sys.argv[1])
s = SQLMetricStore(open_database(a["url"]), tiers=[Tier(*t) for t in a["tiers"]],
                   clock=FrozenClock(a["now"] / 1000), raw_retention_s=30 * 86400)
try:
    s.write([Sample(a["name"], (("s", "0"),), 1e6 + m, a["lo"] + m * 60_000 + 2_000)
             for m in range(10)], a["now"])
finally:
    s.close()
"""


def test_another_process_writing_into_a_cached_partition_shows_in_the_next_answer(
    opened: tuple[Any, str], store: Any
) -> None:
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rco{k}"
    _history(store, name, base, 120)
    start, end = base, base + 2 * HOUR
    before = _off_cold_warm(store, name, start, end, 60_000)
    args = {
        "url": opened[1],
        "tiers": [[t.resolution, t.retention] for t in TIERS],
        "name": name,
        "lo": base + 40 * M,  # series 0's values of two partitions overwritten
        "now": base + 2 * HOUR,
    }
    cachecheck.other_process(_OTHER, args)
    after = _answers(store, name, start, end, 60_000)
    assert after != before
    assert _uncached(store, name, start, end, 60_000) == after
    assert _off_cold_warm(store, name, start, end, 60_000) == after


def _versions(store: Any, lo: int, hi: int) -> dict[int, int]:
    rows = store.db.query(
        "SELECT start_ms, sum(version) FROM metric_raw_versions "
        "WHERE start_ms >= ? AND start_ms <= ? GROUP BY start_ms",
        (lo, hi),
    )
    return {int(s): int(v) for s, v in rows}


def test_retention_drops_versions_and_rewritten_minutes_never_answer_the_dropped(
    store: Any,
) -> None:
    """A write moves the versions of the partitions it writes, in its transaction; retention
    drops partitions and their versions; the same minutes written again with other values
    answer the new ones, never what was kept of the dropped partitions."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rcr{k}"
    _history(store, name, base, 60)
    v1 = _versions(store, base, base + HOUR)
    assert sorted(v1) == [base + i * SPAN for i in range(12)]
    _history(store, name, base + 20 * M, 5, k=3)  # one partition written again
    v2 = _versions(store, base, base + HOUR)
    assert {s for s in v1 if v1[s] != v2[s]} == {base + 20 * M}
    start, end = base, base + HOUR
    before = _off_cold_warm(store, name, start, end, 60_000)
    parts = store._partitions
    raw = store.levels[0]
    dropped = [s for s, _ in parts.between(raw, base + 10 * M, base + 25 * M - 1)]
    assert len(dropped) == 3
    parts._drop(raw, dropped[0], 5.0)
    assert parts._drop_batch(raw, dropped[1:], 5.0)
    assert not set(_versions(store, base, base + HOUR)) & set(dropped)
    parts.load(fresh=True)
    gone = _answers(store, name, start, end, 60_000)
    assert gone != before
    assert _uncached(store, name, start, end, 60_000) == gone
    _history(store, name, base + 10 * M, 15, k=5)  # those minutes again, other numbers
    again = _answers(store, name, start, end, 60_000)
    assert again not in (before, gone)
    assert _uncached(store, name, start, end, 60_000) == again


def test_a_writer_racing_a_reader_leaves_no_stale_answer(store: Any) -> None:
    """One thread writes into the partitions being read, one reads them through the cache
    all along: once the writes are done, the next answer is the store's, cached or not."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rcw{k}"
    _history(store, name, base, 60, series=6)
    start, end = base, base + HOUR
    query = f"sum(sum_over_time({name}[5m]))"
    errors: list[BaseException] = []
    done = threading.Event()
    answers = [0]

    def writer() -> None:
        try:
            for r in range(48):
                _history(store, name, base + r % 12 * 5 * M, 5, series=6, k=r + 2)
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                Engine(store).range(query, start, end, 60_000)
                answers[0] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (writer, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert answers[0] > 1
    got = _bits(Engine(store).range(query, start, end, 60_000))
    with cachecheck.off(rawcache):
        want = _bits(Engine(store).range(query, start, end, 60_000))
    assert got == want


def test_the_cache_stays_within_its_bytes(store: Any) -> None:
    """A bound that holds some partitions' blocks, not all: the same answers, the bytes
    within the bound, fewer blocks kept; the cache off keeps nothing."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rcm{k}"
    _history(store, name, base, 60, series=10)
    start, end = base, base + HOUR
    off = _off_cold_warm(store, name, start, end, 60_000)
    blocks = list(rawcache.CACHE._d.values())
    assert len(blocks) >= 12
    cap = 4 * max(b.nbytes for b in blocks)
    rawcache.CACHE.resize(cap)
    for _ in range(2):
        assert _answers(store, name, start, end, 60_000) == off
        assert 0 < rawcache.CACHE.bytes <= cap
        assert 0 < len(rawcache.CACHE) < len(blocks)
    rawcache.configure(0)
    assert not len(rawcache.CACHE)
    assert _answers(store, name, start, end, 60_000) == off
    assert not len(rawcache.CACHE)


@contextlib.contextmanager
def _full_disk_store(backend: str, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A store on a disk that can fill for real (SQLite: a small tmpfs), or on PostgreSQL
    with its disk_full trigger installed (also on the version rows: the write's last
    statement), and the switch: ``fill()`` / ``free()``."""
    options = {"tiers": TIERS, "clock": FrozenClock(T0 / 1000), **OPTIONS}
    if backend == "sqlite":
        with (
            small_disk(tmp_path / "disk") as disk,
            sql_metric_store("sqlite", disk.path, **options) as s,
        ):
            yield s, disk
        return
    with sql_metric_store("postgresql", tmp_path, **options) as s:
        outage = pg_disk_full(s.db.url)
        outage.install()
        outage.guard(["metric_raw_versions"])
        yield s, outage


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_write_failing_half_way_leaves_no_cached_block_wrong(
    backend: str, tmp_path: Path
) -> None:
    """The disk fills while a write into cached partitions is under way: it is refused and
    rolled back, the versions do not move, every answer, cached or not, is the one before;
    once space returns the same write shows in the next answer, cached and not."""
    with _full_disk_store(backend, tmp_path) as (store, disk), cachecheck.fresh(rawcache):
        base, name = T0 + HOUR, "rcd"
        _history(store, name, base, 60)
        start, end = base, base + HOUR
        before = _off_cold_warm(store, name, start, end, 60_000)
        versions = _versions(store, base, base + HOUR)
        disk.fill()
        try:
            with pytest.raises(DiskFullError):
                _history(store, name, base + 20 * M, 10, k=7)
        finally:
            disk.free()
        assert _versions(store, base, base + HOUR) == versions
        assert _answers(store, name, start, end, 60_000) == before  # the cached blocks
        assert _uncached(store, name, start, end, 60_000) == before
        _history(store, name, base + 20 * M, 10, k=7)
        after = _answers(store, name, start, end, 60_000)
        assert after != before
        assert _uncached(store, name, start, end, 60_000) == after


def test_two_writers_into_the_same_partitions_leave_no_stale_block(
    opened: tuple[Any, str], store: Any
) -> None:
    """Two stores (two connections; on PostgreSQL two version rows of one partition) write
    into the same partitions at once while this one reads through its cache: afterwards
    every answer, cached or not, is the store's."""
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.storage import open_database

    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rc2w{k}"
    _history(store, name, base, 60)
    start, end = base, base + HOUR
    _off_cold_warm(store, name, start, end, 60_000)
    others = [
        SQLMetricStore(
            open_database(opened[1]), tiers=TIERS, clock=FrozenClock(T0 / 1000), **OPTIONS
        )
        for _ in range(2)
    ]
    errors: list[BaseException] = []

    def writer(s: Any, series: int) -> None:
        try:
            for r in range(6):
                s.write(
                    [
                        Sample(
                            name, (("s", str(series)),), float(r * 100 + m), base + m * M + 1_000
                        )
                        for m in range(60)
                    ],
                    base + HOUR,
                )
                _answers(store, name, start, end, 60_000)  # reads meanwhile
        except BaseException as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=writer, args=(s, i)) for i, s in enumerate(others)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        for s in others:
            s.close()
    assert not errors, errors
    if store.db.dialect.name == "postgresql":  # a version row per writing connection
        writers = store.db.query(
            "SELECT count(DISTINCT writer) FROM metric_raw_versions WHERE start_ms = ?", (base,)
        )
        assert writers[0][0] >= 3
    got = _answers(store, name, start, end, 60_000)
    assert got == _uncached(store, name, start, end, 60_000)
    assert _off_cold_warm(store, name, start, end, 60_000) == got
