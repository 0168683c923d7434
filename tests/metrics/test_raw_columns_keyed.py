"""``rawcolumns.read`` reads series and time as one integer key (``series_id * 2**32 +
(ts - lo)``) where that is exact, and answers, to the bit, what the partitions' plain rows
hold: every sample of the asked series in the window, sorted by series then time, on SQLite
and PostgreSQL; with the key out of reach (a series id from 2**31 on, a window of 2**32 ms
or more) it reads three columns and answers alike."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql import rawcache, rawcolumns
from tests.metrics import cachecheck
from tests.stores import SQL_BACKENDS, sql_metric_store

T0 = 1_800_000_000_000  # ms, on a 5-minute partition boundary
SPAN = 40 * 60_000  # eight raw partitions


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param, tmp_path_factory.mktemp("rck"), clock=FrozenClock((T0 + SPAN) / 1000)
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def _store_read_paths() -> Iterator[None]:
    """The store's own read paths, not the raw samples cache in front of them (which
    serves whole partitions it read once; tests/metrics/test_raw_cache.py checks it
    against these paths)."""
    with cachecheck.off(rawcache):
        yield


def reference(store: Any, ids: list[int], lo: int, hi: int) -> list[tuple[int, int, bytes]]:
    """Each partition's plain rows in the window, the asked series', sorted."""
    parts = store._partitions
    parts.load(fresh=True)
    rows = [
        (int(sid), int(ts), struct.pack("<d", math.nan if v is None else v))
        for _, table in parts.between(store.levels[0], lo, hi)
        for sid, ts, v in parts.read(
            f"SELECT series_id, ts, value FROM {table} WHERE ts >= ? AND ts <= ?", (lo, hi)
        )
        if sid in set(ids)
    ]
    return sorted(rows)


def read(store: Any, ids: list[int], lo: int, hi: int) -> list[tuple[int, int, bytes]]:
    parts = store._partitions
    parts.load(fresh=True)
    got, starts, ts, val = rawcolumns.read(parts, store.levels[0], ids, lo, hi)
    out = []
    for i, sid in enumerate(got.tolist()):
        for j in range(int(starts[i]), int(starts[i + 1])):
            out.append((sid, int(ts[j]), struct.pack("<d", float(val[j]))))
    return out


VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e300]),
)
_RUN = iter(range(10**6))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(
        st.lists(st.tuples(st.integers(0, SPAN // 1000 - 1), VALUE), min_size=1, max_size=30),
        min_size=1,
        max_size=5,
    ),
    window=st.tuples(st.integers(-SPAN, SPAN), st.integers(0, 2 * SPAN)),
    wide=st.booleans(),
)
def test_keyed_rows_are_the_partitions_rows(
    store: Any, series: list[list[tuple[int, float]]], window: tuple[int, int], wide: bool
) -> None:
    name = f"rck{next(_RUN)}"
    samples = [
        Sample(name, (("s", str(i)),), v, T0 + t * 1000)
        for i, points in enumerate(series)
        for t, v in dict(points).items()  # one sample a second and series
    ]
    store.write(samples, T0 + SPAN)
    ids = list(store._series.matching_ids([Matcher("__name__", "=", name)]))
    lo = T0 + window[0]
    hi = lo + window[1]
    if wide:  # 2**32 ms: three columns
        lo = hi - (1 << 32)
    want = reference(store, ids, lo, hi)
    assert read(store, ids, lo, hi) == want
    # an id of 2**31 asked too (none stored): three columns, the same rows
    assert read(store, [*ids, 1 << 31], lo, hi) == want


def test_window_and_id_edges_of_the_key(store: Any, tmp_path: Path) -> None:
    """A window of 2**32 - 1 ms is keyed, 2**32 not; a series id of 2**31 - 1 is keyed,
    2**31 not (rows put in a partition by hand): each answers the partition's rows."""
    hi = T0 + 10_000
    store.write([Sample("rckedge", (), 1.5, hi)], T0 + SPAN)
    parts = store._partitions
    parts.load(fresh=True)
    [(_, table)] = parts.between(store.levels[0], hi, hi)
    with store.db.transaction():
        store.db.execute(
            f"INSERT INTO {table} (series_id, ts, value) VALUES (?, ?, ?), (?, ?, ?)",
            ((1 << 31) - 1, hi, 2.5, 1 << 31, hi, -3.5),
        )
    top = [(1 << 31) - 1]
    for lo in (hi - (1 << 32) + 1, hi - (1 << 32)):
        assert read(store, top, lo, hi) == reference(store, top, lo, hi)
        assert read(store, top, lo, hi) == [((1 << 31) - 1, hi, struct.pack("<d", 2.5))]
        assert read(store, [1 << 31], lo, hi) == [(1 << 31, hi, struct.pack("<d", -3.5))]
