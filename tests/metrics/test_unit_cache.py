"""The cache of decoded packed units (``metrics/sql/unitcache.py``): answers with the cache
off, cold and warm are the same bit for bit; another process's import into a packed hour
(its rebuild unpacks it) and its compaction (packs it again) show in the next answer;
retention's drop of a partition, then the same hours written again and packed, never
answer the dropped units; a repack racing a reader in two threads never gives a short or a
doubled answer; the cache stays within its bytes. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.samples import Sample
from signalbox.metrics.sql import rowsealing, unitcache
from signalbox.query import Engine
from tests.metrics import cachecheck
from tests.metrics.test_row_sealed import TIERS, _bits, _counter, _packed
from tests.stores import SQL_BACKENDS

HOUR = 3_600_000
M = 60_000
T0 = 1_700_006_400_000
BLOCK = 12 * HOUR
OPTIONS: dict[str, Any] = {"raw_retention_s": 3600}

QUERIES = (
    "sum(rate({n}[5m]))",
    "rate({n}[5m])",
    "sum by (s) (increase({n}[1h]))",
    "avg_over_time({n}[10m])",
    "max_over_time({n}[15m])",
    "count_over_time({n}[5m])",
    "resets({n}[30m])",
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
    with cachecheck.fresh(unitcache):
        yield opened[0]


def _answers(store: Any, name: str, start: int, end: int, step: int) -> list[Any]:
    return cachecheck.answers(store, QUERIES, name, start, end, step)


def _uncached(store: Any, name: str, start: int, end: int, step: int) -> list[Any]:
    """The answers with no cache, leaving the process's cache as it is."""
    with cachecheck.off(unitcache):
        return _answers(store, name, start, end, step)


def _off_cold_warm(store: Any, name: str, start: int, end: int, step: int) -> list[Any]:
    """The answers with the cache off, cold and warm: the same, and the warm ones from it."""
    return cachecheck.off_cold_warm(unitcache, lambda: _answers(store, name, start, end, step))


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(_counter(), min_size=1, max_size=4),
    step=st.sampled_from([60_000, 300_000, 90_000]),
    shift=st.sampled_from([0, 20_000]),
)
def test_answers_with_the_cache_off_cold_and_warm_are_the_same(
    store: Any, series: list[list[tuple[int, float]]], step: int, shift: int
) -> None:
    """Counters with resets, gaps, NaN and the infinities; then unpacked and packed again
    (the generation moves: nothing cached before is used)."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"uc{k}"
    samples = [
        Sample(name, (("s", str(i)),), v, base + t)
        for i, points in enumerate(series)
        for t, v in points
    ]
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.write(samples, now)
    store.compact(now)
    assert _packed(store, base - 5 * HOUR, now)
    start, end = base + shift, base + 8 * HOUR + shift
    first = _off_cold_warm(store, name, start, end, step)
    store._partitions.load(fresh=True)
    with store.db.transaction():
        rowsealing.unseal_range(store._partitions, base - 5 * HOUR, now)
    assert _answers(store, name, start, end, step) == first
    store.compact(now)
    assert _answers(store, name, start, end, step) == first


def _generation(store: Any) -> int:
    got = store.db.query("SELECT sealed_ms FROM metric_sealed WHERE tier = ?", (unitcache.GEN_KEY,))
    return int(got[0][0])


def _history(store: Any, name: str, base: int, hours: int, series: int = 4) -> None:
    samples = [
        Sample(name, (("s", str(i)),), float(m * (i + 1) % 97), base + m * M + 1_000)
        for i in range(series)
        for m in range(hours * 60)
    ]
    store.write(samples, base + hours * HOUR)


_OTHER = """
import json, sys
from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
a = json.loads(sys.argv[1])
s = SQLMetricStore(open_database(a["url"]), tiers=[Tier(*t) for t in a["tiers"]],
                   clock=FrozenClock(a["now"] / 1000), raw_retention_s=3600)
try:
    if a["what"] == "import":
        s.write([Sample(a["name"], (("s", "0"),), 1e6 + m, a["lo"] + m * 60_000 + 2_000)
                 for m in range(60)], a["now"])
        s.rebuild_rollups(a["lo"], a["lo"] + 3_600_000)
    else:
        s.compact(a["now"])
finally:
    s.close()
"""


def _other_process(url: str, **args: Any) -> None:
    """``import`` or ``compact`` by another process on the same store."""
    args |= {"url": url, "tiers": [[t.resolution, t.retention] for t in TIERS]}
    cachecheck.other_process(_OTHER, args)


def test_another_process_importing_into_a_packed_hour_shows_in_the_next_answer(
    opened: tuple[Any, str], store: Any
) -> None:
    url = opened[1]
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"uci{k}"
    _history(store, name, base, 8)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    hour = base + 3 * HOUR
    assert _packed(store, hour, hour + HOUR - 1, tier=60)
    start, end = base, base + 8 * HOUR
    before = _off_cold_warm(store, name, start, end, 60_000)
    # another process overwrites series 0's samples of a packed hour and rebuilds it
    _other_process(url, what="import", name=name, lo=hour, now=now)
    after = _answers(store, name, start, end, 60_000)
    assert after != before
    assert _uncached(store, name, start, end, 60_000) == after
    _other_process(url, what="compact", now=now)  # packed again, by the other process
    assert _packed(store, hour, hour + HOUR - 1, tier=60)
    assert _answers(store, name, start, end, 60_000) == after  # the old decodings not used
    assert _off_cold_warm(store, name, start, end, 60_000) == after


def test_retention_dropping_packed_units_leaves_nothing_stale(store: Any) -> None:
    """Retention drops a 1-minute partition (retention's own drop, in its transaction);
    the same hours are written again with other values and packed: the answers are the
    new ones, never the cached decodings of the dropped units."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"ucr{k}"
    _history(store, name, base, 8)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    start, end = base, base + 8 * HOUR
    before = _off_cold_warm(store, name, start, end, 60_000)
    parts = store._partitions
    parts.load(fresh=True)
    lv = store.levels[1]
    dropped = [s for s, _ in parts.between(lv, base + 2 * HOUR, base + 4 * HOUR)]
    assert dropped
    gen = _generation(store)
    for s in dropped:
        parts._drop(lv, s, 5.0)
    assert _generation(store) == gen + len(dropped)  # in the drop's own transaction
    gen = _generation(store)
    lv5 = store.levels[2]
    assert parts._drop_batch(lv5, [s for s, _ in parts.between(lv5, 0, base - 4 * HOUR)], 5.0)
    assert _generation(store) == gen + 1
    parts.load(fresh=True)
    gone = _answers(store, name, start, end, 60_000)
    assert _uncached(store, name, start, end, 60_000) == gone
    assert gone != before
    samples = [  # those hours again, other numbers
        Sample(name, (("s", str(i)),), float(7 * m + i), base + 2 * HOUR + m * M + 1_000)
        for i in range(4)
        for m in range(120)
    ]
    store.write(samples, now)
    store.rebuild_rollups(base + 2 * HOUR, base + 4 * HOUR)
    with store.db.transaction():  # packing resumes from there (rebuilt, nothing to unpack)
        for tier in (60, 300):
            rowsealing._set_packed(parts, tier, base)
    store.compact(now)
    assert _packed(store, base + 2 * HOUR, base + 4 * HOUR - 1, tier=60)
    again = _answers(store, name, start, end, 60_000)  # the cache as the drop left it
    assert again != before
    assert _uncached(store, name, start, end, 60_000) == again
    assert _off_cold_warm(store, name, start, end, 60_000) == again


def test_a_repack_racing_a_reader_never_gives_a_short_or_doubled_answer(
    store: Any,
) -> None:
    """One thread unpacks and packs the same hours over and over (the data never change),
    one reads them through the cache all along: every answer is the first, bit for bit."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"ucw{k}"
    _history(store, name, base, 8, series=6)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    start, end = base, base + 8 * HOUR
    query = f"sum(count_over_time({name}[1h]))"
    want = _bits(Engine(store).range(query, start, end, 300_000))
    assert want and want[0][1]
    errors: list[BaseException] = []
    done = threading.Event()
    answers: list[Any] = []
    repacks = [0]

    def repacker() -> None:
        try:
            for _ in range(8):
                store._partitions.load(fresh=True)
                with store.db.transaction():
                    rowsealing.unseal_range(store._partitions, base + HOUR, base + 6 * HOUR)
                store.compact(now)
                repacks[0] += 1
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                answers.append(_bits(Engine(store).range(query, start, end, 300_000)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (repacker, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert repacks[0] == 8
    assert len(answers) > 1
    for got in answers:
        assert got == want
    assert _bits(Engine(store).range(query, start, end, 300_000)) == want


def test_the_cache_stays_within_its_bytes(store: Any) -> None:
    """A bound that holds the largest partition's block but not every block: the answers
    are the same, the bytes within the bound, the blocks used least recently gone."""
    k = next(_RUN)
    next(_RUN)  # this block and the next: 8 hours across a midnight (two partitions a tier)
    day = 24 * HOUR
    base, name = ((T0 + k * BLOCK) // day + 1) * day - 4 * HOUR, f"ucm{k}"
    _history(store, name, base, 8, series=10)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    off = _uncached(store, name, base, base + 8 * HOUR, 60_000)
    unitcache.CACHE.clear()
    assert _answers(store, name, base, base + 8 * HOUR, 60_000) == off
    blocks = list(unitcache.CACHE._d.values())
    assert len(blocks) >= 2
    cap = max(b.nbytes for b in blocks) + 1
    assert sum(b.nbytes for b in blocks) > cap
    unitcache.CACHE.resize(cap)
    assert 0 < unitcache.CACHE.bytes <= cap
    for _ in range(2):
        assert _answers(store, name, base, base + 8 * HOUR, 60_000) == off
        assert 0 < unitcache.CACHE.bytes <= cap
        assert 0 < len(unitcache.CACHE) < len(blocks)
    unitcache.CACHE.resize(3 * 60 * 18 * 8)  # three units decoded whole: fewer than a read needs
    assert _answers(store, name, base, base + 8 * HOUR, 60_000) == off
    assert not len(unitcache.CACHE)


def test_a_block_holds_only_the_columns_its_reads_ask_for(store: Any) -> None:
    """``max_over_time`` and ``rate`` over the same partitions keep blocks of the columns
    each reads (ts first), not all 18: each answers as uncached, cold and warm."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"ucc{k}"
    _history(store, name, base, 8, series=4)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    held = {}
    for q in ("max_over_time({n}[15m])", "rate({n}[5m])"):
        query = q.format(n=name)
        with cachecheck.off(unitcache):
            off = _bits(Engine(store).range(query, base, base + 8 * HOUR, 60_000))
        unitcache.CACHE.clear()
        assert _bits(Engine(store).range(query, base, base + 8 * HOUR, 60_000)) == off  # cold
        hits = unitcache.CACHE.hits
        assert _bits(Engine(store).range(query, base, base + 8 * HOUR, 60_000)) == off  # warm
        assert unitcache.CACHE.hits > hits
        blocks = list(unitcache.CACHE._d.values())
        (names,) = {b.names for b in blocks}
        assert names[0] == "ts" and len(names) < 18
        assert all(len(b.grid) == len(names) for b in blocks)
        held[q] = set(names)
    # two blocks for one partition, each of what its function reads
    assert "max" in held["max_over_time({n}[15m])"] - held["rate({n}[5m])"], held
    assert "first" in held["rate({n}[5m])"] - held["max_over_time({n}[15m])"], held


def _block(gen: int, n: int) -> unitcache.Block:
    z = np.zeros(n, dtype=np.int64)
    return unitcache.Block(gen, z[:1], z[:1], z[:1], z[:1] + n, np.zeros((18, n), np.int64))


def test_least_recently_used_blocks_go_first() -> None:
    size = _block(7, 100).nbytes
    c = unitcache.UnitCache(3 * size)
    for t in range(3):
        c.put(("db", f"t{t}"), _block(7, 100))
    assert c.get(("db", "t0"), 7) is not None  # t0 used last now
    c.put(("db", "t3"), _block(7, 100))
    got = [c.get(("db", f"t{t}"), 7) is not None for t in range(4)]
    assert got == [True, False, True, True]
    assert c.get(("db", "t0"), 8) is None  # another generation: not used
    assert c.bytes == 3 * size
    c.put(("db", "t9"), _block(7, 10**5))  # bigger than the bound: kept out
    assert len(c) == 3 and c.bytes == 3 * size
    c.put(("db", "t0"), _block(8, 10**5))  # replacing one with a too big one: the old gone too
    assert len(c) == 2 and c.bytes == 2 * size


def test_many_series_read_by_the_partitions_range(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past IN_LIST_MAX series both statements read the partition's range and keep the
    series asked: the same answers, another name's units beside them never mixed in."""
    from signalbox.metrics.sql import partitions

    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"ucn{k}"
    _history(store, name, base, 8, series=5)
    _history(store, f"{name}x", base, 8, series=3)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    want = _uncached(store, name, base, base + 8 * HOUR, 60_000)
    monkeypatch.setattr(partitions, "IN_LIST_MAX", 2)
    assert _off_cold_warm(store, name, base, base + 8 * HOUR, 60_000) == want
