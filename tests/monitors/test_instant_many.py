"""Many instant queries from one read: exactly the answers (and errors) of one query each.

The reference is the engine itself, one query at a time, over the same store. The stores
hold raw points, stale series, gaps and (SQLite) coarse rollups past a short raw retention,
so the property covers the copy's reads, the probe further back for empty windows, rollup
windows evaluated on their own, and queries sharing one whole-metric evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Matcher
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import SeriesPoints
from signalbox.query import Engine, QueryResult, VectorSelector, parse_expr
from signalbox.query.batch import instant_many, latest_many, query_many
from tests.monitors.batch_helpers import (
    HOSTS,
    MIN,
    NOW,
    SELECTORS,
    each,
    history,
    memory_store,
    same,
    sqlite_store,
)

OFFSETS = ["", " offset 3m", " offset 30m", " offset -2m"]
RANGES = ["1m", "5m", "10m", "1h", "2h"]
RANGE_FUNCS = [
    "avg_over_time",
    "max_over_time",
    "last_over_time",
    "count_over_time",
    "rate",
    "increase",
]


@st.composite
def queries(draw: st.DrawFn) -> str:
    sel = draw(st.sampled_from(SELECTORS))
    off = draw(st.sampled_from(OFFSETS))
    if draw(st.booleans()):
        inner = f"{sel}{off}"
    else:
        func = draw(st.sampled_from(RANGE_FUNCS))
        inner = f"{func}({sel}[{draw(st.sampled_from(RANGES))}]{off})"
    wrap = draw(
        st.sampled_from(
            [
                "{q}",
                "{q} * 100",
                "1 - {q}",
                "{q} > 0.5",
                "{q} > bool 0.5",
                "abs(-{q})",
                "clamp_max({q}, 0.7)",
                "round({q}, 0.1)",
                "sum by (dc) ({q})",
                "count({q})",
                "scalar(sum({q}))",
                "{q} / on(host) cpu",
                "{q} and cpu",
                "absent({q})",
            ]
        )
    )
    return wrap.format(q=inner)


AT = st.sampled_from(
    [NOW, NOW - 6 * MIN, NOW - 10 * MIN, NOW - 25 * MIN, NOW - 50 * MIN, NOW - 120 * MIN]
)


@pytest.fixture(scope="module")
def mem() -> MemoryMetricStore:
    return memory_store()


@pytest.fixture(scope="module")
def sql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLMetricStore]:
    s = sqlite_store(tmp_path_factory.mktemp("instant_many") / "m.db")
    yield s
    s.close()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(queries(), min_size=1, max_size=14), AT)
def test_instant_many_answers_what_each_query_answers_alone_in_memory(
    mem: MemoryMetricStore, qs: list[str], at: int
) -> None:
    engine = Engine(mem, coarsest_resolution_s=600)
    same(instant_many(engine, qs, at), each(engine, qs, at))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(queries(), min_size=1, max_size=14), AT)
def test_instant_many_answers_what_each_query_answers_alone_over_rollups(
    sql: SQLMetricStore, qs: list[str], at: int
) -> None:
    engine = Engine(sql, coarsest_resolution_s=600)
    same(instant_many(engine, qs, at), each(engine, qs, at))


def test_a_probe_past_an_empty_window_finds_the_rollup_the_engine_finds(
    sql: SQLMetricStore,
) -> None:
    # h4 is quiet for the last 12 minutes: 6 minutes ago its 5m window is empty, and the
    # engine's probe 20 minutes further back reaches the 10-minute buckets (raw retention
    # is 30 minutes). Their last samples' times are exact, so h4 has no value, as in
    # Prometheus; the batch must agree, h1 and h2 included.
    engine = Engine(sql, coarsest_resolution_s=600)
    qs = ['cpu{host="h4"}', 'cpu{host="h1"}', 'cpu{host="h2"}']
    at = NOW - 6 * MIN
    assert not sql.select([Matcher("host", "=", "h4")], at - 5 * MIN, at)
    alone = each(engine, qs, at)
    assert isinstance(alone[0], QueryResult) and not alone[0].vector
    assert isinstance(alone[1], QueryResult) and alone[1].vector
    same(instant_many(engine, qs, at), alone)


class CountingStore(MemoryMetricStore):
    """A memory store that records every read it serves."""

    def __init__(self) -> None:
        super().__init__()
        self.selects: list[tuple[tuple[Matcher, ...], int, int]] = []
        self.latests: list[tuple[Matcher, ...]] = []

    def select(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool = True,
        align_ms: int = 0,
    ) -> list[SeriesPoints]:
        self.selects.append((tuple(matchers), start_ms, end_ms))
        return super().select(
            matchers, start_ms, end_ms, step_ms=step_ms, aggregates=aggregates, align_ms=align_ms
        )

    def latest(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels, int, float]]:
        self.latests.append(tuple(matchers))
        return super().latest(matchers)


def test_windows_up_to_an_hour_share_one_read_and_a_longer_one_reads_alone() -> None:
    store = CountingStore()
    store.write(history(), NOW)
    qs = [f'avg_over_time(cpu{{host="{h}"}}[5m])' for h in HOSTS[:3]] + [
        'max_over_time(mem{host="h2"}[1h])',
        'max_over_time(cpu{host="h1"}[3h])',
    ]
    got = instant_many(Engine(store, coarsest_resolution_s=0), qs, NOW)
    assert [(start, end) for _, start, end in store.selects] == [
        (NOW - 60 * MIN, NOW),
        (NOW - 180 * MIN, NOW),
    ]
    same(got, each(Engine(memory_store(), coarsest_resolution_s=0), qs, NOW))


def test_a_negative_offset_reads_past_the_evaluation_time() -> None:
    store = CountingStore()
    store.write(history(), NOW)
    engine = Engine(store, coarsest_resolution_s=0)
    qs = ['cpu{host="h1"} offset -3m', 'cpu{host="h2"}']
    at = NOW - 10 * MIN
    got = instant_many(engine, qs, at)
    assert store.selects[0][1:] == (at - 5 * MIN, at + 3 * MIN)
    assert len(store.selects) == 1
    same(got, each(engine, qs, at))


def test_a_query_that_fails_fails_alone() -> None:
    store = memory_store()
    engine = Engine(store)
    qs = ['cpu{host="h1"}', "sum(", "cpu / on(dc) cpu", 'cpu{host="h2"} * 2']
    got = instant_many(engine, qs, NOW)
    assert [type(r).__name__ for r in got] == [
        "QueryResult",
        "QueryError",
        "QueryError",
        "QueryResult",
    ]
    same(got, each(engine, qs, NOW))
    with pytest.raises(Exception, match="many"):
        query_many(store, qs[2:], NOW)


def test_a_store_that_cannot_be_read_is_the_error_of_every_query_that_reads_it(
    tmp_path: Path,
) -> None:
    broken = sqlite_store(tmp_path / "m.db")
    broken.close()
    qs = ['cpu{host="h1"}', "avg_over_time(mem[5m])", "vector(1)", "time() - 60"]
    got = instant_many(Engine(broken), qs, NOW)
    assert [isinstance(r, Exception) for r in got] == [True, True, False, False]
    same(got[2:], each(Engine(memory_store()), qs[2:], NOW))
    rows = latest_many(broken, ["cpu", "mem"])
    assert all(isinstance(r, Exception) for r in rows) and len(rows) == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([*SELECTORS, "sum(cpu)", "cpu{"]), min_size=1, max_size=8))
def test_latest_many_answers_what_each_latest_read_answers(sels: list[str]) -> None:
    store = memory_store()
    got = latest_many(store, sels)
    for s, rows in zip(sels, got, strict=True):
        try:
            sel = parse_expr(s)
        except Exception as e:
            assert isinstance(rows, Exception) and str(rows) == str(e)
            continue
        if not isinstance(sel, VectorSelector):
            assert isinstance(rows, ValueError)
            continue
        assert not isinstance(rows, Exception)
        want = store.latest(sel.all_matchers())
        assert [(n, lb, t, repr(v)) for n, lb, t, v in rows] == [
            (n, lb, t, repr(v)) for n, lb, t, v in want
        ]


def test_latest_many_reads_once_for_many_selectors() -> None:
    store = CountingStore()
    store.write(history(), NOW)
    got = latest_many(store, ['cpu{host="h1"}', 'mem{host="h2"}', "old", 'cpu{host="h4"}'])
    assert len(store.latests) == 1
    h4 = got[3]
    assert not isinstance(h4, Exception) and [t for _, _, t, _ in h4] == [NOW - 12 * MIN]
