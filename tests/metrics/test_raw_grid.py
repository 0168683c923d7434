"""``rawcolumns.read`` of a few series reads SQLite's seekable partitions as grids (a row per
written timestamp, a column per series: ``rawgrid``) and answers, to the bit, what the
partitions' plain rows hold: series with gaps (absent cells), NaN samples (the cell-by-cell
path), infinities, series split over several grids and partitions over several statements,
and a partition dropped under the read. PostgreSQL reads rows as before: same answers."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql import rawcache, rawgrid
from tests.metrics import cachecheck
from tests.metrics.test_raw_columns_keyed import read, reference
from tests.stores import SQL_BACKENDS, sql_metric_store

T0 = 1_800_000_000_000  # ms, on a 5-minute partition boundary
SPAN = 30 * 60_000  # six raw partitions
STEP = 60_000


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param, tmp_path_factory.mktemp("rgrid"), clock=FrozenClock((T0 + SPAN) / 1000)
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def _store_read_paths() -> Iterator[None]:
    """The store's own read paths, not the raw samples cache in front of them (which
    serves whole partitions it read once; tests/metrics/test_raw_cache.py checks it
    against these paths)."""
    with cachecheck.off(rawcache):
        yield


VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.5, 1e300]),
)
_RUN = iter(range(10**6))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(
        st.dictionaries(st.integers(0, SPAN // STEP - 1), VALUE, min_size=1, max_size=30),
        min_size=1,
        max_size=6,
    ),
    window=st.tuples(st.integers(-SPAN // 4, SPAN), st.integers(0, SPAN)),
    joins=st.sampled_from([1, 2, 60]),
    cells=st.sampled_from([1, 3, 1200]),
    nan=st.booleans(),
)
def test_grids_answer_the_partitions_rows(
    store: Any,
    monkeypatch: pytest.MonkeyPatch,
    series: list[dict[int, float]],
    window: tuple[int, int],
    joins: int,
    cells: int,
    nan: bool,
) -> None:
    name = f"rgrid{next(_RUN)}"
    samples = [
        Sample(name, (("s", str(i)),), v if nan or not math.isnan(v) else 2.5, T0 + t * STEP)
        for i, points in enumerate(series)
        for t, v in points.items()
    ]
    store.write(samples, T0 + SPAN)
    ids = sorted(store._series.matching_ids([Matcher("__name__", "=", name)]))
    lo = T0 + window[0]
    hi = lo + window[1]
    monkeypatch.setattr(rawgrid, "JOINS_MAX", joins)
    monkeypatch.setattr(rawgrid, "CELLS_MAX", cells)
    want = reference(store, ids, lo, hi)
    assert read(store, ids, lo, hi) == want
    # a series asked that has no sample at all: an all-absent column
    assert read(store, [*ids, max(ids) + 10**6], lo, hi) == want


def test_nan_samples_read_as_numpys_nan(store: Any) -> None:
    """A NaN sample beside values, infinities and absent cells: numpy's NaN, at its time."""
    store.write(
        [
            Sample("rgridnan", (("s", "a"),), math.nan, T0 + STEP),
            Sample("rgridnan", (("s", "a"),), math.inf, T0 + 2 * STEP),
            Sample("rgridnan", (("s", "b"),), -0.5, T0 + 2 * STEP),
            Sample("rgridnan", (("s", "b"),), 7.0, T0 + 3 * STEP),
        ],
        T0 + SPAN,
    )
    a, b = sorted(store._series.matching_ids([Matcher("__name__", "=", "rgridnan")]))
    got = read(store, [a, b], T0, T0 + SPAN)
    assert got == [
        (a, T0 + STEP, struct.pack("<d", math.nan)),
        (a, T0 + 2 * STEP, struct.pack("<d", math.inf)),
        (b, T0 + 2 * STEP, struct.pack("<d", -0.5)),
        (b, T0 + 3 * STEP, struct.pack("<d", 7.0)),
    ]
    assert struct.pack("<d", math.nan) == np_nan_bytes()


def np_nan_bytes() -> bytes:
    import numpy as np

    return np.array([np.nan]).tobytes()


def test_a_partition_dropped_under_the_read_reads_as_empty(store: Any) -> None:
    """A partition listed but its table gone (retention dropped it meanwhile): the others
    are read one at a time, the dropped one empty."""
    t1 = T0 + SPAN + 7 * 300_000  # two partitions of their own, after the others
    store.write(
        [
            Sample("rgriddrop", (("s", "a"),), 1.0, t1 + STEP),
            Sample("rgriddrop", (("s", "a"),), 2.0, t1 + 300_000 + STEP),
        ],
        t1 + 600_000,
    )
    (a,) = store._series.matching_ids([Matcher("__name__", "=", "rgriddrop")])
    parts = store._partitions
    parts.load(fresh=True)
    first = parts.levels[0].table(t1)
    with store.db.transaction():
        store.db.execute(f"DROP TABLE {first}")
    try:
        got = read(store, [a], t1, t1 + 600_000)
    finally:
        # the table back (empty) for the module's store
        store.db.create_table_if_missing(parts._create_sql(parts.levels[0], first))
    assert got == [(a, t1 + 300_000 + STEP, struct.pack("<d", 2.0))]
