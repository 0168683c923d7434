"""MemoryMetricStore: raw samples in memory, same observable behaviour as the SQL store."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.exceptions import StoreError
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Matcher, MetricMeta, Sample

T0 = 1_700_000_000_000


def named(name: str) -> list[Matcher]:
    return [Matcher("__name__", "=", name)]


def test_out_of_order_writes_are_kept_sorted() -> None:
    store = MemoryMetricStore()
    store.write([Sample("a", (), 3.0, T0 + 3000), Sample("a", (), 1.0, T0 + 1000)], T0)
    store.write([Sample("a", (), 2.0, T0 + 2000), Sample("a", (), 4.0, T0 + 4000)], T0)
    [sp] = store.select(named("a"), T0, T0 + 10_000)
    assert sp.timestamps == [T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000]
    assert sp.values == [1.0, 2.0, 3.0, 4.0]
    assert sp.resolution == 0 and sp.mins is None


def test_same_series_and_timestamp_replaces_the_value() -> None:
    store = MemoryMetricStore()
    first = store.write(
        [Sample("a", (("k", "v"),), 1.0, T0), Sample("a", (("k", "v"),), 2.0, T0 + 1)], T0
    )
    again = store.write([Sample("a", (("k", "v"),), 9.0, T0)], T0)
    assert (first.written, first.new_series) == (2, 1)
    assert (again.written, again.new_series) == (1, 0)
    [sp] = store.select(named("a"), T0, T0 + 1)
    assert sp.values == [9.0, 2.0]


def test_samples_without_timestamp_get_the_default() -> None:
    store = MemoryMetricStore()
    store.write([Sample("a", (), 5.0)], T0 + 7)
    assert store.latest(named("a")) == [("a", (), T0 + 7, 5.0)]


def test_select_is_inclusive_and_omits_series_without_points_in_the_window() -> None:
    store = MemoryMetricStore()
    store.write(
        [Sample("a", (), 1.0, T0), Sample("a", (), 2.0, T0 + 10), Sample("b", (), 1.0, T0 - 100)],
        T0,
    )
    [sp] = store.select([Matcher("__name__", "=~", "a|b")], T0, T0 + 10)
    assert (sp.name, sp.timestamps) == ("a", [T0, T0 + 10])
    assert store.select(named("a"), T0 + 1, T0 + 9) == []


def test_matchers_filter_series_and_results_are_sorted() -> None:
    store = MemoryMetricStore()
    store.write(
        [
            Sample("req", (("code", "500"), ("host", "b")), 1.0, T0),
            Sample("req", (("code", "200"), ("host", "a")), 1.0, T0),
            Sample("req", (("host", "c"),), 1.0, T0),
            Sample("other", (("code", "200"),), 1.0, T0),
        ],
        T0,
    )
    assert store.series([*named("req"), Matcher("code", "=~", "2..|5..")]) == [
        ("req", (("code", "200"), ("host", "a"))),
        ("req", (("code", "500"), ("host", "b"))),
    ]
    assert store.series([Matcher("code", "=", "")]) == [
        ("req", (("host", "c"),))
    ]  # absent label reads as ""
    assert [n for n, _ in store.series()] == ["other", "req", "req", "req"]


def test_latest_gives_the_newest_sample_per_series() -> None:
    store = MemoryMetricStore()
    store.write(
        [Sample("a", (), 1.0, T0), Sample("a", (), 2.0, T0 + 5), Sample("b", (), 7.0, T0 + 1)], T0
    )
    assert store.latest() == [("a", (), T0 + 5, 2.0), ("b", (), T0 + 1, 7.0)]


def test_compact_drops_samples_past_raw_retention_and_empty_series() -> None:
    store = MemoryMetricStore(raw_retention_s=60)
    store.write(
        [Sample("a", (), 1.0, T0), Sample("a", (), 2.0, T0 + 30_000), Sample("b", (), 3.0, T0)], T0
    )
    store.compact(T0 + 90_000)  # cutoff T0 + 30 s: older samples go
    assert store.select([Matcher("__name__", "=~", ".+")], 0, T0 + 10**6)[0].timestamps == [
        T0 + 30_000
    ]
    assert store.series() == [("a", ())]


def test_compact_without_retention_keeps_everything() -> None:
    store = MemoryMetricStore()
    store.write([Sample("a", (), 1.0, 0)], 0)
    store.compact(T0)
    assert store.latest() == [("a", (), 0, 1.0)]


def test_bad_retention_is_refused() -> None:
    with pytest.raises(StoreError, match="raw_retention_s must be positive"):
        MemoryMetricStore(raw_retention_s=0)


def test_metadata_last_write_wins() -> None:
    store = MemoryMetricStore()
    store.write_metadata([MetricMeta("a", "counter", "first")])
    store.write_metadata([MetricMeta("a", "gauge", "second"), MetricMeta("b")])
    assert store.metadata() == {"a": MetricMeta("a", "gauge", "second"), "b": MetricMeta("b")}


def test_concurrent_writers_lose_nothing() -> None:
    store = MemoryMetricStore()

    def writer(n: int) -> None:
        for i in range(500):
            store.write([Sample("a", (("w", str(n)),), float(i), T0 + i)], T0)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(sp.timestamps) for sp in store.select(named("a"), T0, T0 + 500)) == 2000


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(allow_nan=False)), max_size=60))
def test_points_stay_sorted_and_unique_with_last_write_winning(
    writes: list[tuple[int, float]],
) -> None:
    store = MemoryMetricStore()
    for ts, v in writes:
        store.write([Sample("a", (), v, ts)], 0)
    expected = dict(writes)
    got = store.select(named("a"), 0, 50)
    if not expected:
        assert got == []
        return
    [sp] = got
    assert sp.timestamps == sorted(expected)
    assert sp.values == [expected[t] for t in sorted(expected)]
