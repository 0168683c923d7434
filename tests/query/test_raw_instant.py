"""Instant selectors of range queries read as raw columns (:mod:`signalbox.query.rawinstant`,
``rawselect.instant``) answer what ``select`` and ``lookback.latest_at`` answer, bit for
bit: random series (NaN, ±Inf, signed zeros, gaps longer than the lookback, series starting
and ending inside the range, stale markers with samples after them) on SQLite and
PostgreSQL, through the engine with and without the store's ``raw_columns``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Sample
from signalbox.metrics.store import Ended
from signalbox.query import Engine, parse_expr, rawinstant, rawselect
from signalbox.query.lookback import latest_at
from signalbox.query.subquery import Grid
from tests.stores import SQL_BACKENDS, sql_metric_store

T0 = 1_700_000_400_000 - 1_700_000_400_000 % 300_000

_VALUE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, 5e-324]),
    st.integers(-1000, 1000).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def _series(draw: st.DrawFn) -> tuple[list[int], list[float], list[int]]:
    """Strictly increasing times (gaps up to 7 minutes: past the 5-minute lookback), values,
    and stale markers (times not on a sample), some followed by more samples."""
    n = draw(st.integers(1, 30))
    t = draw(st.integers(0, 600)) * 1000
    ts: list[int] = []
    for gap in draw(st.lists(st.integers(1, 420_000), min_size=n, max_size=n)):
        t += gap
        ts.append(t)
    vs = draw(st.lists(_VALUE, min_size=n, max_size=n))
    after = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 90_000)), max_size=3))
    marks = sorted({ts[j] + d for j, d in after} - set(ts))  # soon after a sample: they matter
    return ts, vs, marks


class _Selected:
    """The store without ``raw_columns``: every selector read by ``select`` (the reference)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "raw_columns":
            raise AttributeError(name)
        return getattr(self._store, name)


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param, tmp_path_factory.mktemp("rawinstant"), clock=FrozenClock(T0 / 1000)
    ) as s:
        yield s


def _bits(result: Any) -> Any:
    return (
        [
            (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
            for m in result.matrix
        ],
        result.warnings,
    )


_RUN = iter(range(10**6))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(_series(), min_size=1, max_size=5),
    step=st.sampled_from([5_000, 15_000, 60_000]),
)
def test_instant_selectors_answer_as_select_does(
    store: Any, series: list[tuple[list[int], list[float], list[int]]], step: int
) -> None:
    name = f"ri{next(_RUN)}"
    last = T0 + max(ts[-1] for ts, _, _ in series)
    store.clock.set((last + 1000) / 1000)
    for i, (ts, vs, marks) in enumerate(series):
        labels = (("g", str(i % 2)), ("s", str(i)))
        store.write(
            [Sample(name, labels, v, T0 + t) for t, v in zip(ts, vs, strict=True)], last + 1000
        )
        for m in marks:  # each marker in its own write, some with samples after them
            store.write([], T0 + m, ended=Ended(series=[(name, labels)]))
    start, end = T0 - 60_000, last + 420_000
    for query in (
        name,
        f"max by (g) ({name})",
        f"{name} offset 30s",
        f"timestamp({name})",
        f"absent({name})",
        f"rate({name}[1m]) + on(s) {name}",  # one read for both uses
        f"{name} * 2 > 0",
    ):
        grid = Grid(start, end, step, start, end)
        marked = rawselect.read(store, parse_expr(query), grid, lookback_ms=300_000)
        assert any(isinstance(c, rawselect.MarkedColumns) for c in marked.values()), query
        got = Engine(store).range(query, start, end, step)
        want = Engine(_Selected(store)).range(query, start, end, step)
        assert _bits(got) == _bits(want), query


def test_edges_of_the_lookback_and_a_marker() -> None:
    """A sample exactly ``lookback`` before an end is outside it; one at the end is in; a
    marker at an end ends the series there until the next sample."""
    one = np.array([0, 2], dtype=np.int64)
    edge = rawinstant.rows(
        np.array([1_000, 2_000]), np.array([1.0, 2.0]), one, [7], {}, [301_000, 302_000], 300_000
    )
    assert edge == [[2.0, None]]  # at 302_000 the sample at 2_000 is exactly 5 minutes old
    ended = rawinstant.rows(
        np.array([1_000, 306_000]), np.array([1.0, 2.0]), one, [7], {7: [150_000]},
        [100_000, 150_000, 200_000, 306_000], 300_000,
    )  # fmt: skip
    assert ended == [[1.0, None, None, 2.0]]
    assert ended == [
        latest_at([1_000, 306_000], [1.0, 2.0], [100_000, 150_000, 200_000, 306_000], 300_000,
                  stale=[150_000])
    ]  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        "max_over_time(x[1m:10s])",  # in a subquery: select
        "x @ 100",  # @: select
        "x + rate(x[1m] @ 100)",  # one use select's: select for every use
    ],
)
def test_selectors_select_reads_stay_with_it(store: Any, query: str) -> None:
    store.write([Sample("x", (), 1.0, T0 + 1_000)], T0 + 2_000)
    grid = Grid(T0, T0 + 60_000, 5_000, T0, T0 + 60_000)
    assert rawselect.read(store, parse_expr(query), grid, lookback_ms=300_000) == {}
    assert rawselect.read(store, parse_expr("x"), grid) == {}  # no lookback: fetch's


@settings(max_examples=300, deadline=None)
@given(
    series=st.lists(_series(), min_size=1, max_size=6),
    first=st.integers(-100_000, 2_000_000),
    step=st.integers(1, 120_000),
    k=st.integers(1, 40),
    lookback=st.integers(1, 600_000),
    times=st.booleans(),
)
def test_rows_are_latest_at_per_series(
    series: list[tuple[list[int], list[float], list[int]]],
    first: int,
    step: int,
    k: int,
    lookback: int,
    times: bool,
) -> None:
    """The pure search against ``latest_at``, series by series, with the one-key search
    and the per-series fallback (times too far apart for one key) alike."""
    ends = [first + i * step for i in range(k)]
    ts = np.array([t for s, _, _ in series for t in s], dtype=np.int64)
    vs = np.array([v for _, s, _ in series for v in s], dtype=np.float64)
    starts = np.cumsum([0] + [len(s) for s, _, _ in series]).astype(np.int64)
    ids = list(range(len(series)))
    stale = {i: marks for i, (_, _, marks) in enumerate(series) if marks}
    want = [
        latest_at(t, [x / 1000.0 for x in t] if times else v, ends, lookback, stale=m or None)
        for t, v, m in series
    ]
    got = rawinstant.rows(ts, vs, starts, ids, stale, ends, lookback, times=times)
    pack = lambda rows: [[None if v is None else struct.pack("<d", v) for v in r] for r in rows]  # noqa: E731
    assert pack(got) == pack(want)
    saved = rawinstant._KEY_MAX
    rawinstant._KEY_MAX = 0  # every key "too far apart": the per-series search
    try:
        assert pack(
            rawinstant.rows(ts, vs, starts, ids, stale, ends, lookback, times=times)
        ) == pack(want)
    finally:
        rawinstant._KEY_MAX = saved
