"""``select`` over many raw partitions (one statement for their rows, one for their frames)
answers what it answers one partition at a time (a statement per partition), bit for bit:
rows and frames, NaN, infinities and -0.0, stale markers, more series than an IN list
takes, and raw samples read as one-sample buckets after a tier; and so do the queries
(instant selectors, aggregations) the engine answers from it, warnings included."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql.partitions import IN_LIST_MAX
from signalbox.metrics.store import Ended, Frame, NewLayout, SeriesPoints
from signalbox.query import Engine
from tests.stores import SQL_BACKENDS, sql_metric_store

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000  # on an hour: partitions start on it
STEP = 10_000
MINUTES = 40  # eight 5-minute raw partitions
PASSES = MINUTES * 60_000 // STEP
ENDED_AT = T0 + 17 * 60_000 + 10_000  # "sp{i=1}" is dropped, then comes back at minute 25
BACK_AT = T0 + 25 * 60_000


def _row_value(i: int, n: int) -> float:
    """Rows: a NaN, an infinity and a negative zero among ordinary values (SQLite stores
    -0.0 as 0; PostgreSQL keeps it, and both paths read what is stored)."""
    if (i, n) == (0, 33):
        return math.nan
    if (i, n) == (2, 77):
        return -math.inf
    if (i, n) == (3, 120):
        return -0.0
    return (n * 7 + i) % 13 / 3


def _frame_value(line: int, n: int) -> float:
    return math.nan if (line, n) == (1, 50) else float((n % 17) * (line + 2)) / 7


def _fill(store: Any) -> None:
    """Rows of ``sp{i}``, frames of ``spf{line}`` and, every fifth pass, more ``spmany``
    series than an IN list takes; ``sp{i="1"}`` ended by a stale marker for a while."""
    for n in range(PASSES):
        ts = T0 + n * STEP
        store.clock.set(ts / 1000)
        rows = [
            Sample("sp", (("i", str(i)),), _row_value(i, n))
            for i in range(4)
            if not (i == 1 and ENDED_AT <= ts < BACK_AT)
        ]
        if n % 5 == 0:
            rows += [
                Sample("spmany", (("k", str(k)),), float(k + n)) for k in range(IN_LIST_MAX + 5)
            ]
        vals = [_frame_value(line, n) for line in range(3)]
        ended = Ended(series=[("sp", (("i", "1"),))]) if ts == ENDED_AT else None
        if n == 0:
            rows += [Sample("spf", (("line", str(j)),), v) for j, v in enumerate(vals)]
            store.write(rows, ts, layouts=[NewLayout(b"sp-file", len(rows) - 3, 3)])
        else:
            store.write(rows, ts, frames=[Frame(b"sp-file", vals)], ended=ended)


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param, tmp_path_factory.mktemp("sp"), clock=FrozenClock(T0 / 1000)
    ) as s:
        _fill(s)
        yield s


def _bits(points: Sequence[SeriesPoints]) -> list[Any]:
    """Every list of every series, floats as their bytes (NaN and -0.0 compare)."""

    def col(xs: list[Any]) -> list[Any]:
        return [struct.pack("<d", x) if isinstance(x, float) else x for x in xs]

    return [
        (
            sp.name,
            sp.labels,
            sp.resolution,
            sp.approximate,
            sp.stale,
            [(c, col(getattr(sp, c))) for c in sp.columns()],
        )
        for sp in sorted(points, key=lambda sp: (sp.name, sp.labels))
    ]


class _ByPartition:
    """The store with every ``select`` split at raw partition edges: each piece one
    partition, read by the statement-per-partition path; the pieces' points joined."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("raw_columns", "latest_columns", "bucket_columns"):
            raise AttributeError(name)
        return getattr(self._store, name)

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, **kw: Any
    ) -> list[SeriesPoints]:
        span = self._store.levels[0].span_ms
        joined: dict[tuple[str, Any], SeriesPoints] = {}
        lo = start_ms
        while lo <= end_ms:
            hi = min(end_ms, lo - lo % span + span - 1)
            for sp in self._store.select(matchers, lo, hi, **kw):
                have = joined.setdefault((sp.name, sp.labels), sp)
                if have is not sp:
                    for c in sp.columns():
                        getattr(have, c).extend(getattr(sp, c))
                    have.stale = [*(have.stale or []), *(sp.stale or [])] or have.stale
            lo = hi + 1
        return list(joined.values())


def _now(store: Any) -> None:
    store.clock.set((T0 + MINUTES * 60_000) / 1000)


@pytest.mark.parametrize("name", ["sp", "spf", "spmany"])
def test_a_select_over_partitions_reads_what_each_partition_holds(store: Any, name: str) -> None:
    _now(store)
    start, end = T0 + 2 * 60_000 + 1, T0 + 37 * 60_000
    assert len(store._partitions.between(store.levels[0], start, end)) > 5  # the path under test
    got = store.select([Matcher("__name__", "=", name)], start, end, aggregates=False)
    want = _ByPartition(store).select(
        [Matcher("__name__", "=", name)], start, end, aggregates=False
    )
    assert got and _bits(got) == _bits(want)
    assert sum(len(sp.timestamps) for sp in got) > 200


def test_stale_markers_and_special_values_survive_the_one_statement_read(store: Any) -> None:
    _now(store)
    got = {
        dict(sp.labels)["i"]: sp
        for sp in store.select([Matcher("__name__", "=", "sp")], T0, T0 + MINUTES * 60_000)
    }
    assert got["1"].stale == [ENDED_AT]
    assert got["0"].stale is None or got["0"].stale == []
    assert math.isnan(got["0"].values[33]) and got["2"].values[77] == -math.inf
    assert got["3"].values[120] == 0.0  # -0.0: SQLite stores it as 0, PostgreSQL keeps the sign
    assert len(got["0"].timestamps) == PASSES


def test_raw_samples_after_a_tier_read_alike(store: Any) -> None:
    """A window past raw retention on a store never compacted: the 1-minute tier answers,
    from raw samples each a bucket of one (``_select_raw`` with a resolution)."""
    store.clock.set((T0 + 2 * 86_400_000) / 1000)
    try:
        for name in ("sp", "spf"):
            m = [Matcher("__name__", "=", name)]
            got = store.select(m, T0, T0 + 30 * 60_000, step_ms=60_000)
            want = _ByPartition(store).select(m, T0, T0 + 30 * 60_000, step_ms=60_000)
            assert got and all(sp.resolution == 60 for sp in got)
            assert _bits(got) == _bits(want)
    finally:
        _now(store)


@pytest.mark.parametrize(
    "query",
    ["sp", "max by (i) (sp)", "sum(spf)", "count(spmany)", "sp offset 3m", "sp @ end()"],
)
def test_queries_answer_as_one_partition_at_a_time(store: Any, query: str) -> None:
    _now(store)
    start, end = T0 + 5 * 60_000, T0 + MINUTES * 60_000
    got = Engine(store).range(query, start, end, 30_000)
    want = Engine(_ByPartition(store)).range(query, start, end, 30_000)

    def bits(result: Any) -> list[Any]:
        return [
            (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
            for m in result.matrix
        ]

    assert got.matrix and bits(got) == bits(want)
    assert got.warnings == want.warnings
