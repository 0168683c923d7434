"""Packed units of row buckets (``metrics/rowsealed.py``, ``metrics/sql/rowsealing.py``):
every query reading rollups answers the same, bit for bit and warnings included, whether a
closed unit's row buckets are packed or not; a packing interrupted by a failing statement
leaves every unit readable; an import into a packed unit unpacks it and a later compaction
packs it again; a compaction and an import interleaving, with a reader beside them, never
lose or double a bucket. SQLite and PostgreSQL."""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics import rowbuckets, rowsealed
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql import rowsealing
from signalbox.metrics.sql.partitions import packed_table
from signalbox.query import Engine
from tests.stores import SQL_BACKENDS, sql_metric_store

HOUR = 3_600_000
M = 60_000
T0 = 1_700_006_400_000  # a whole hour
BLOCK = 12 * HOUR  # each example's own stretch of time
TIERS = (Tier(60, 60 * 86400), Tier(300, 60 * 86400))


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param,
        tmp_path_factory.mktemp("rowsealed"),
        raw_retention_s=3600,
        tiers=TIERS,
        clock=FrozenClock(T0 / 1000),
    ) as s:
        yield s


_RUN = iter(range(1, 10**6))


class _Selected:
    """The store without its column reads: range functions read ``select``'s points."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("raw_columns", "bucket_columns"):
            raise AttributeError(name)
        return getattr(self._store, name)


def _bits(result: Any) -> list[Any]:
    return [
        (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
        for m in result.matrix
    ]


QUERIES = (
    "rate({n}[5m])",
    "increase({n}[15m])",
    "delta({n}[10m])",
    "irate({n}[5m])",
    "idelta({n}[5m])",
    "deriv({n}[15m])",
    "predict_linear({n}[15m], 600)",
    "changes({n}[10m])",
    "resets({n}[10m])",
    "rate({n}[30s])",  # narrower than a bucket: widened, with a warning
    "sum_over_time({n}[5m])",
    "avg_over_time({n}[10m])",
    "min_over_time({n}[5m])",
    "max_over_time({n}[15m])",
    "count_over_time({n}[5m])",
    "last_over_time({n}[5m])",
    "stddev_over_time({n}[15m])",
    "stdvar_over_time({n}[15m])",
    "quantile_over_time(0.9, {n}[15m])",
    "sum(rate({n}[5m]))",
    "{n}",
)


def _answers(store: Any, name: str, start: int, end: int, step: int) -> list[Any]:
    """Every query through the column reads and through ``select``'s lists."""
    out = []
    for q in QUERIES:
        query = q.format(n=name)
        for reader in (store, _Selected(store)):
            got = Engine(reader).range(query, start, end, step)
            out.append((query, _bits(got), sorted(got.warnings)))
    return out


def _packed(store: Any, lo: int, hi: int, tier: int = 0) -> int:
    """Packed rows with a unit starting in ``[lo, hi]``, of ``tier`` (0: every tier)."""
    parts = store._partitions
    parts.load(fresh=True)
    n = 0
    for lv in store.levels[1:]:
        if tier and lv.tier != tier:
            continue
        for _, table in parts.between(lv, lo, hi):
            got = store.db.query(
                f"SELECT count(*) FROM {packed_table(table)} WHERE ts >= ? AND ts <= ?", (lo, hi)
            )
            n += int(got[0][0])
    return n


def _unpack_all(store: Any, lo: int, hi: int) -> None:
    store._partitions.load(fresh=True)
    with store.db.transaction():
        rowsealing.unseal_range(store._partitions, lo, hi)


_VALUE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e300, 0.1]),
    st.integers(0, 500).map(float),
    st.floats(-1e6, 1e6).map(lambda v: round(v, 2)),
)


@st.composite
def _counter(draw: st.DrawFn) -> list[tuple[int, float]]:
    """(ms into the block, value): mostly rising, with resets, gaps and odd values."""
    n = draw(st.integers(1, 80))
    gaps = draw(st.lists(st.integers(1_000, 900_000), min_size=n, max_size=n))
    t, v, out = draw(st.integers(0, 600_000)), 0.0, []
    for gap in gaps:
        t += gap
        if t >= 7 * HOUR:
            break
        kind = draw(st.integers(0, 9))
        v = draw(_VALUE) if kind == 0 else 0.0 if kind == 1 else v + draw(st.integers(0, 50))
        out.append((t, v))
    return out or [(1_000, 1.0)]


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
def test_packed_units_answer_what_row_buckets_answer(
    store: Any, series: list[list[tuple[int, float]]], step: int, shift: int
) -> None:
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rs{k}"
    samples = [
        Sample(name, (("s", str(i)),), v, base + t)
        for i, points in enumerate(series)
        for t, v in points
    ]
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.write(samples, now)
    store.compact(now)  # buckets built and packed; the raw samples past retention
    assert _packed(store, base - 5 * HOUR, now)  # the 1-minute hours, the 5-minute units
    start, end = base + shift, base + 8 * HOUR + shift
    packed = _answers(store, name, start, end, step)
    _unpack_all(store, base - 5 * HOUR, now)
    assert not _packed(store, base - 5 * HOUR, now)
    assert _answers(store, name, start, end, step) == packed
    store.compact(now)  # packed again
    assert _packed(store, base - 5 * HOUR, now)
    assert _answers(store, name, start, end, step) == packed


def test_pack_and_unpack_give_the_buckets_back_exactly() -> None:
    """NaN, infinities, a missing ``prev_ts`` and units of different sizes."""
    rng = np.random.default_rng(7)
    sids = np.repeat(np.array([3, 5, 9], dtype=np.int64), [60, 17, 1])
    n = len(sids)
    cols: dict[str, Any] = {"series_id": sids}
    for name in rowbuckets.FINER[1:]:
        if name in rowsealed.INTS:
            cols[name] = rng.integers(-1, 2**40, n, dtype=np.int64)
        else:
            cols[name] = rng.normal(size=n) * 1e3
    cols["sum"][[0, 5, 70]] = [math.nan, math.inf, -math.inf]
    cols["prev_ts"][[1, 2]] = -1
    ids, blobs = rowsealed.pack(cols)
    assert ids.tolist() == [3, 5, 9] and [rowsealed.buckets(b) for b in blobs] == [60, 17, 1]
    back = rowsealed.unpack(ids.tolist(), blobs)
    for name in rowbuckets.FINER:
        assert back[name].tobytes() == np.asarray(cols[name]).tobytes(), name
    # in any order of blobs (three headers: three groups), each blob's buckets together
    got_ids, grid = rowsealed.unpack_many(ids.tolist()[::-1], blobs[::-1], ordered=False)
    order = np.lexsort((rowsealed.column(grid, "ts"), got_ids))
    want = np.lexsort((cols["ts"], sids))
    assert got_ids[order].tolist() == sids[want].tolist()
    for name in rowbuckets.FINER[1:]:
        got = rowsealed.column(grid, name)[order]
        assert got.tobytes() == np.asarray(cols[name])[want].tobytes(), name
    # as rows: what a bucket table reads (NULL for NaN and for no prev_ts)
    rows = rowsealed.as_rows(blobs[0], ["ts", "sum", "prev_ts", "count"], -(2**62), 2**62)
    assert rows[0][1] is None and rows[5][1] == math.inf and rows[1][2] is None
    assert [r[3] for r in rows] == cols["count"][:60].tolist()


def test_a_unit_of_one_sample_buckets_keeps_a_few_columns() -> None:
    """Constant columns are kept once, a column equal to an earlier one not at all: an
    hour of a series scraped each minute packs to a fraction of its 18 columns."""
    ts = np.arange(1, 61, dtype=np.int64) * 60_000 - 30_000
    values = np.arange(60, dtype=np.float64) * 1.5
    values[7] = math.nan
    cols = rowbuckets.from_samples(np.full(60, 4, dtype=np.int64), ts, values, 60_000)
    ids, blobs = rowsealed.pack(cols)
    assert ids.tolist() == [4] and rowsealed.buckets(blobs[0]) == 60
    assert len(blobs[0]) < 0.3 * 8 * 60 * rowsealed.WIDTH
    back = rowsealed.unpack([4], blobs)
    for name in rowbuckets.FINER:
        assert back[name].tobytes() == np.asarray(cols[name]).tobytes(), name


def _write_history(store: Any, name: str, base: int, hours: int, series: int = 6) -> int:
    """A counter a minute per series over ``hours``; returns the samples written."""
    samples = [
        Sample(name, (("s", str(i)),), float((m * (i + 1)) % 97), base + m * M + 1_000)
        for i in range(series)
        for m in range(hours * 60)
    ]
    store.write(samples, base + hours * HOUR)
    return len(samples)


def _total(store: Any, name: str, start: int, end: int) -> float:
    """Every sample of ``name`` in ``(start, end]`` counted from the 1-minute buckets."""
    res = store.select(
        [_eq(name)],
        start + 1,
        end,
        step_ms=60_000,
        align_ms=60_000,
        aggregates=frozenset({"counts"}),
    )
    return float(sum(sum(sp.counts) for sp in res))


def _eq(name: str) -> Any:
    from signalbox.metrics.samples import Matcher

    return Matcher("__name__", "=", name)


def _fail_deletes_from(store: Any, table: str, from_sid: int) -> Any:
    """A trigger failing every delete of ``table``'s rows of series ``from_sid`` on, as a
    full disk fails a statement half-way through a transaction; returns its remover."""
    db = store.db
    if db.dialect.name == "sqlite":
        db.execute(
            f"CREATE TRIGGER test_fail_pack BEFORE DELETE ON {table} "
            f"WHEN OLD.series_id >= {from_sid} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        return lambda: db.execute("DROP TRIGGER test_fail_pack")
    db.execute(
        "CREATE OR REPLACE FUNCTION test_fail_pack() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'No space left on device' USING ERRCODE = 'disk_full'; END $$"
    )
    db.execute(
        f"CREATE TRIGGER test_fail_pack BEFORE DELETE ON {table} FOR EACH ROW "
        f"WHEN (OLD.series_id >= {from_sid}) EXECUTE FUNCTION test_fail_pack()"
    )
    return lambda: db.execute(f"DROP TRIGGER test_fail_pack ON {table}")


def test_a_packing_that_fails_half_way_leaves_every_unit_readable(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second chunk of series of an hour fails in its DELETE, after its INSERT: the
    first chunk stays packed, the rest stay rows, and every bucket reads once; the next
    compaction finishes the job."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rsf{k}"
    n = _write_history(store, name, base, 3)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    sids = sorted(store._series.matching_ids([_eq(name)]))
    monkeypatch.setattr(rowsealing, "CHUNK_SERIES", 2)
    store._partitions.load(fresh=True)
    first_table = store.levels[1].table(store.levels[1].partition_start(base + HOUR))
    remove = None
    try:
        with monkeypatch.context() as m:  # build the tiers without packing, then fail one
            m.setattr(rowsealing, "seal_closed", lambda parts, budget=0: 0)
            store.compact(now)
        remove = _fail_deletes_from(store, first_table, sids[2])
        with pytest.raises(Exception):  # noqa: B017 (SQLite's and PostgreSQL's own errors)
            store.compact(now)
        assert _total(store, name, base, base + 3 * HOUR) == n
        assert _packed(store, base, base + 3 * HOUR) > 0
        before = _answers(store, name, base, base + 3 * HOUR, 60_000)
    finally:
        if remove is not None:
            remove()
    store.compact(now)
    assert _total(store, name, base, base + 3 * HOUR) == n
    got = store.db.query(
        f"SELECT count(*) FROM {first_table} WHERE ts >= ? AND ts < ?",
        (base + HOUR, base + 2 * HOUR),
    )
    assert got[0][0] == 0  # every series of that hour packed now
    assert _answers(store, name, base, base + 3 * HOUR, 60_000) == before


def test_an_import_into_a_packed_unit_unpacks_it_and_compaction_packs_it_again(
    store: Any,
) -> None:
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rsi{k}"
    n = _write_history(store, name, base, 6)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    hour = (base + 2 * HOUR, base + 3 * HOUR - 1)
    assert _packed(store, *hour, tier=60) == 6
    # an import of a new series into that hour: samples, then the rollups rebuilt
    extra = [
        Sample(name, (("s", "new"),), float(m), base + 2 * HOUR + m * M + 2_000) for m in range(30)
    ]
    store.write(extra, now)
    store.rebuild_rollups(base + 2 * HOUR, base + 3 * HOUR)
    assert _packed(store, *hour, tier=60) == 0  # unpacked to be rebuilt
    assert _total(store, name, base, base + 6 * HOUR) == n + 30
    unpacked = _answers(store, name, base, base + 6 * HOUR, 60_000)
    store.compact(now)
    assert _packed(store, *hour, tier=60) == 7
    assert _answers(store, name, base, base + 6 * HOUR, 60_000) == unpacked


def test_a_compaction_and_an_import_interleaving_never_lose_or_double_a_bucket(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread imports hour after hour into packed history (each rebuild unpacks), one
    compacts (packing a few series at a time), one reads the total count all along: it is
    always what was written by then, never a unit missing or read twice."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"rsw{k}"
    n = _write_history(store, name, base, 8, series=8)
    now = base + 11 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    monkeypatch.setattr(rowsealing, "CHUNK_SERIES", 3)
    monkeypatch.setattr(rowsealing, "ROWS_PER_PASS", 200)
    # retention would drop the raw partitions an import writes before its rebuild reads them
    monkeypatch.setattr(store._partitions, "drop_expired", lambda *a, **k: None)
    written = [n]
    errors: list[BaseException] = []
    done = threading.Event()

    def importer() -> None:
        try:
            for h in range(1, 7):
                lo = base + h * HOUR
                extra = [
                    Sample(name, (("s", f"imp{h}"),), float(m), lo + m * M + 3_000)
                    for m in range(10)
                ]
                store.write(extra, now)
                store.rebuild_rollups(lo, lo + HOUR)
                written[0] += len(extra)
        except BaseException as e:
            errors.append(e)

    def compactor() -> None:
        try:
            while not done.is_set():
                store.compact(now)
        except BaseException as e:
            errors.append(e)

    seen: list[tuple[float, int, int]] = []

    def reader() -> None:
        try:
            while not done.is_set():
                lo, hi = written[0], 0
                got = _total(store, name, base, base + 9 * HOUR)
                hi = written[0]
                seen.append((got, lo, hi))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (compactor, reader)]
    for t in threads:
        t.start()
    imp = threading.Thread(target=importer)
    imp.start()
    imp.join(120)
    done.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert seen
    for got, lo, hi in seen:  # an import adds its samples before its rebuild shows them
        assert lo <= got <= hi + 10, (got, lo, hi)
    monkeypatch.setattr(rowsealing, "ROWS_PER_PASS", 10**6)
    store.compact(now)
    assert _total(store, name, base, base + 9 * HOUR) == written[0]
    assert _packed(store, base, base + 8 * HOUR - 1) > 0
    packed = _answers(store, name, base, base + 9 * HOUR, 300_000)
    _unpack_all(store, base - 5 * HOUR, now)
    assert _answers(store, name, base, base + 9 * HOUR, 300_000) == packed
