"""An import of days of history creates the raw partitions of each batch together, and the
compaction after it drops them together (PostgreSQL: one DDL statement for many tables, not
one each in a savepoint, which was most of an import's time): the same tables and the same
answers, to the bit, as partitions created and dropped one at a time, for far fewer
statements. An import failing half-way leaves no table or registration behind that breaks
the next import; a partition another writer creates meanwhile, or one a reader holds while
retention drops, is handled as it was one at a time. SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.importer import import_openmetrics
from signalbox.metrics.partitions import RAW
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine
from signalbox.storage import open_database
from tests.stores import SQL_BACKENDS, pg_schema_url, sqlite_url

M, H, DAY = 60_000, 3_600_000, 86_400_000
NOW = 1_700_006_400_000  # a whole hour
START = NOW - 8 * H
TIERS = (Tier(60, 8 * 86400), Tier(300, 35 * 86400), Tier(3600, 400 * 86400))
SERIES = ['c_total{s="a"}', 'c_total{s="b"}', 'g{s="a"}', 'g{s="b"}']
QUERIES = [  # (query, start, step): each tier, and raw samples within raw retention
    ("sum(rate(c_total[1h]))", START, H),
    ("max by (s) (g)", START, H),
    ("increase(c_total[15m])", START, 15 * M),
    ("avg_over_time(g[5m])", START, 5 * M),
    ("rate(c_total[2m])", NOW - H, M),
    ("g", NOW - H, M),
]


def _value(i: int, t: int) -> float:
    k = (t - START) // M
    if i >= 2:  # gauges, a NaN now and then
        return math.nan if (k + i) % 89 == 0 else 50 + 30 * math.sin(k / 40) + (k * 31) % 7
    return float((k * (i + 3)) % 7_001)  # a counter that resets now and then


def _history() -> list[str]:
    """Eight hours at 1-minute steps, time-major (every series at t, then t + 1m): each batch
    of an import covers a stretch of time, so later batches make partitions of their own."""
    lines = ["# TYPE c counter\n", "# TYPE g gauge\n"]
    for t in range(START, NOW, M):
        for i, text in enumerate(SERIES):
            v = _value(i, t)
            lines.append(f"{text} {'NaN' if v != v else repr(v)} {t / 1000}\n")
    return [*lines, "# EOF\n"]


HISTORY = _history()
SAMPLES = len(SERIES) * (NOW - START) // M


class Stores:
    """Makes stores of one backend (raw samples kept 2 h), each in a database of its own
    (PostgreSQL: a schema); all closed, and their schemas dropped, afterwards."""

    def __init__(self, backend: str, tmp_path: Path, stack: ExitStack) -> None:
        self.backend, self.tmp_path, self.stack = backend, tmp_path, stack
        self.urls: list[str] = []

    def __call__(self) -> SQLMetricStore:
        if self.backend == "postgresql":
            url = self.stack.enter_context(pg_schema_url())
        else:
            d = self.tmp_path / str(len(self.urls))
            d.mkdir()
            url = sqlite_url(d)
        self.urls.append(url)
        s = SQLMetricStore(
            open_database(url), raw_retention_s=2 * 3600, tiers=TIERS, clock=FrozenClock(NOW / 1000)
        )
        self.stack.callback(s.close)
        return s


@pytest.fixture(params=SQL_BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    with ExitStack() as stack:
        yield Stores(request.param, tmp_path, stack)


@pytest.fixture(params=[p for p in SQL_BACKENDS if p != "sqlite"])
def pg_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """PostgreSQL alone: what is tested there (two writers creating one table, a reader
    holding a table against DROP) does not happen on SQLite, one writer at a time."""
    with ExitStack() as stack:
        yield Stores(request.param, tmp_path, stack)


def _answers(store: SQLMetricStore) -> list[Any]:
    out = []
    for query, start, step in QUERIES:
        got = Engine(store).range(query, start, NOW, step)
        assert got.matrix and any(len(m.points) > 1 for m in got.matrix), query
        out.append(
            (
                query,
                [
                    (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
                    for m in got.matrix
                ],
                got.warnings,
            )
        )
    return out


def _partitions(store: SQLMetricStore) -> set[tuple[int, int, int]]:
    return set(store.db.query("SELECT tier, start_ms, end_ms FROM metric_partitions"))


def _partition_tables(store: SQLMetricStore) -> set[str]:
    prefixes = (
        "samples_raw_",
        "frames_raw_",
        "buckets_r",
        "fbuckets_r",
        "sbuckets_r",
        "pbuckets_r",
    )
    return {t for t in store.db.table_names() if t.startswith(prefixes)}


def _registered_tables(store: SQLMetricStore) -> set[str]:
    """The tables ``metric_partitions`` says exist."""
    out: set[str] = set()
    for lv in store.levels:
        for (start,) in store.db.query(
            "SELECT start_ms FROM metric_partitions WHERE tier = ?", (lv.tier,)
        ):
            t = lv.table(start)
            out |= {t, t.replace("samples_", "frames_", 1)} if lv.tier == RAW else {t}
            if lv.tier != RAW:
                out |= {"f" + t, "s" + t, "p" + t}
    return out


class _DDLCount:
    """Counts the DDL statements a store's database is sent (each ``execute`` is one round
    trip, whatever it holds) and the tables they name."""

    def __init__(self, store: SQLMetricStore) -> None:
        self.sent: Counter[str] = Counter()
        db = store.db
        execute = db.execute

        def counting(sql: str, params: Any = ()) -> Any:
            word = sql.lstrip().split(" ", 1)[0].upper()
            if word in ("CREATE", "DROP", "ALTER"):
                self.sent[word] += 1
            return execute(sql, params)

        db.execute = counting  # type: ignore[method-assign]


def _one_partition_at_a_time(store: SQLMetricStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The history written as before batching: one raw partition a write, so each is created
    by itself (``ensure``), rolled up as an import does, then compacted with retention
    dropping a partition a transaction."""
    from signalbox.metrics.parse.openmetrics import iter_openmetrics
    from signalbox.metrics.sql import partitions

    raw = store.levels[0]
    by_part: dict[int, list[Sample]] = {}
    for item in iter_openmetrics(HISTORY, "history.om"):
        if isinstance(item, Sample):
            assert item.timestamp_ms is not None
            by_part.setdefault(raw.partition_start(item.timestamp_ms), []).append(item)
    for start in sorted(by_part):
        store.write(by_part[start], 0)
    store.rebuild_rollups(START, NOW)
    with monkeypatch.context() as m:
        m.setattr(partitions, "_DROP_BATCH", 1)
        store.compact(NOW)


def test_an_import_creates_and_drops_its_partitions_in_batches_with_the_same_answers(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    batched, single = stores(), stores()
    sent, sent_single = _DDLCount(batched).sent, _DDLCount(single).sent
    report = import_openmetrics(batched, HISTORY, "history.om")
    assert report.samples == SAMPLES and not report.errors
    batched.compact(NOW)
    _one_partition_at_a_time(single, monkeypatch)
    assert _partitions(batched) == _partitions(single)
    assert _partition_tables(batched) == _partition_tables(single) == _registered_tables(batched)
    assert _answers(batched) == _answers(single)
    # 96 raw partitions of two tables made, the 72 past retention dropped: PostgreSQL
    # sends one CREATE for them all (and a few per rollup partition) and a DROP per 50
    # partitions, not one statement per table; SQLite one per table, as before
    if batched.db.dialect.name == "postgresql":
        assert sent["CREATE"] * 4 < sent_single["CREATE"], (sent, sent_single)
        assert sent["DROP"] * 20 < sent_single["DROP"], (sent, sent_single)
    else:
        assert sent == sent_single


def test_an_import_failing_half_way_leaves_nothing_that_breaks_the_next(stores: Stores) -> None:
    """A batch whose transaction fails (a table of another version stands where one of its
    partitions goes) undoes that batch's tables and registrations, keeps the earlier
    batches', and the store's caches forget what it created; once the table is gone, the
    import run again answers as an import that never failed."""
    store, clean = stores(), stores()
    raw = store.levels[0]
    bad = raw.table(raw.partition_start(NOW - H))  # in the import's last batch
    store.db.execute(f"CREATE TABLE {bad} (series_id BIGINT NOT NULL, ts BIGINT NOT NULL)")
    seen: list[int] = []
    with pytest.raises(Exception, match="value"):
        import_openmetrics(
            store, HISTORY, "history.om", progress=lambda r: seen.append(r.samples), batch_size=500
        )
    assert 0 < seen[-1] < SAMPLES  # batches before the failing one committed
    # no orphans: every partition table but the stranger is registered, every registered one exists
    assert _partition_tables(store) - {bad} == _registered_tables(store)
    committed = {start for tier, start, _ in _partitions(store) if tier == RAW}
    assert committed and max(committed) < raw.partition_start(NOW - H)
    assert set(store._partitions.starts[RAW]) <= committed  # the cache holds no undone partition
    store.db.execute(f"DROP TABLE {bad}")
    again = import_openmetrics(store, HISTORY, "history.om", batch_size=500)
    assert again.samples == SAMPLES and not again.errors
    store.compact(NOW)
    import_openmetrics(clean, HISTORY, "history.om")
    clean.compact(NOW)
    assert _partitions(store) == _partitions(clean)
    assert _partition_tables(store) == _partition_tables(clean) == _registered_tables(store)
    assert _answers(store) == _answers(clean)


def test_a_partition_another_writer_creates_meanwhile_is_taken_as_created(
    pg_stores: Stores,
) -> None:
    """PostgreSQL: two writers creating one table at once, the loser fails on the catalog
    instead of seeing it; the batch is undone and its partitions made one at a time."""
    store = pg_stores()
    import psycopg

    raw = store.levels[0]
    starts = [NOW - DAY + k * raw.span_ms for k in range(6)]
    taken = raw.table(starts[3])
    other = psycopg.connect(pg_stores.urls[-1])  # autocommit off: its CREATE is not committed yet
    try:
        other.execute(store._partitions._create_sql(raw, taken))
        done: list[BaseException | None] = []

        def write() -> None:
            try:
                store.write([Sample("m", (), float(k), s) for k, s in enumerate(starts)], 0)
                done.append(None)
            except BaseException as e:  # handed to the test thread
                done.append(e)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)  # the writer's batch waits on the other's uncommitted table
        other.commit()
        writer.join(30)
    finally:
        other.close()
    assert done == [None]
    assert {s for t, s, _ in _partitions(store) if t == RAW} == set(starts)
    got = store.db.query(f"SELECT ts, value FROM {taken}")
    assert got == [(starts[3], 3.0)]
    assert _partition_tables(store) == _registered_tables(store)


def test_retention_drops_in_batches_and_one_at_a_time_past_a_held_partition(
    pg_stores: Stores,
) -> None:
    """A reader holding one expired partition fails its batch's DROP at the lock timeout; the
    partitions before it are dropped one at a time, the held one and those after are kept
    for a later compaction, which drops them."""
    store = pg_stores()
    import psycopg

    raw = store.levels[0]
    old = [NOW - 3 * DAY + k * raw.span_ms for k in range(5)]
    store.write([Sample("m", (), 1.0, t) for t in [*old, NOW - M]], 0)
    held = raw.table(old[2])
    parts = store._partitions
    with psycopg.connect(pg_stores.urls[-1]) as holder:  # its read opens a transaction
        holder.execute(f"SELECT count(*) FROM {held}").fetchall()
        started = time.monotonic()
        parts.load(fresh=True)
        parts.drop_expired(NOW, lock_timeout_s=0.3)
        assert time.monotonic() - started < 5
        names = store.db.table_names()
        assert {raw.table(s) for s in old[:2]}.isdisjoint(names)
        assert {raw.table(s) for s in old[2:]} <= names
        assert _partition_tables(store) == _registered_tables(store)
        holder.rollback()
    store.compact(NOW)
    assert {raw.table(s) for s in old}.isdisjoint(store.db.table_names())
    assert {s for t, s, _ in _partitions(store) if t == RAW} == {raw.partition_start(NOW - M)}
    assert _partition_tables(store) == _registered_tables(store)
