"""Frames and layouts (a spool file's values by position): every store, same behaviour.

The collector registers a clean file's series as a layout on first sight and afterwards
sends only its values; readers must not be able to tell frames from plain samples.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.store import DuplicateSeries, Frame, NewLayout
from tests.contracts.conftest import T0
from tests.contracts.test_metric_store import name

HOST = (("host", "web1"),)
L1, L2 = b"layout-one------", b"layout-two------"


def file_samples(values: list[float]) -> list[Sample]:
    return [
        Sample("jobs", (("queue", "a"),), values[0]),
        Sample("jobs", (("queue", "b"),), values[1]),
        Sample("load", (), values[2]),
    ]


def register(store: Any, values: list[float], ts: int = T0, digest: bytes = L1) -> Any:
    samples = file_samples(values)
    return store.write(samples, ts, add_labels=HOST, layouts=[NewLayout(digest, 0, len(samples))])


def values_at(store: Any, ts: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for sp in store.select([Matcher("__name__", "=~", "jobs|load|other")], ts, ts):
        out[(sp.name, sp.labels)] = sp.values[0]
    return out


def test_a_registered_layout_is_known_only_for_its_added_labels(store: Any) -> None:
    assert store.known_layouts(HOST) == frozenset()
    r = register(store, [1.0, 2.0, 3.0])
    assert r.written == 3 and r.new_series == 3
    assert store.known_layouts(HOST) == {L1}
    assert store.known_layouts((("host", "other"),)) == frozenset()


def test_frames_read_back_like_samples(store: Any) -> None:
    register(store, [1.0, 2.0, 3.0])
    r = store.write([], T0 + 60_000, add_labels=HOST, frames=[Frame(L1, [4.0, 5.0, 6.0])])
    assert r.written == 3 and r.new_series == 0
    assert values_at(store, T0) == {
        ("jobs", (("host", "web1"), ("queue", "a"))): 1.0,
        ("jobs", (("host", "web1"), ("queue", "b"))): 2.0,
        ("load", HOST): 3.0,
    }
    assert values_at(store, T0 + 60_000)[("load", HOST)] == 6.0
    [sp] = store.select([*name("jobs"), Matcher("queue", "=", "b")], T0, T0 + 60_000)
    assert sp.timestamps == [T0, T0 + 60_000] and sp.values == [2.0, 5.0]
    latest = {(n, labels): (ts, v) for n, labels, ts, v in store.latest()}
    assert latest[("load", HOST)] == (T0 + 60_000, 6.0)
    assert [v for n, _, _, v in store.latest(name("jobs"))] == [4.0, 5.0]


def test_frames_and_plain_samples_mix_in_one_write(store: Any) -> None:
    register(store, [1.0, 2.0, 3.0])
    store.write(
        [Sample("other", (), 9.0)], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [7, 8, 9.5])]
    )
    got = values_at(store, T0 + 1000)
    assert got[("other", HOST)] == 9.0 and got[("load", HOST)] == 9.5


def test_a_frame_at_the_same_time_replaces(store: Any) -> None:
    register(store, [1.0, 2.0, 3.0])
    store.write([], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [1.0, 1.0, 1.0])])
    store.write([], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [2.0, 2.0, 2.0])])
    [sp] = store.select(name("load"), T0 + 1, T0 + 2000)
    assert sp.values == [2.0]


def test_nan_and_infinities_survive_in_frames(store: Any) -> None:
    register(store, [1.0, 2.0, 3.0])
    store.write([], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [math.nan, math.inf, -math.inf])])
    got = values_at(store, T0 + 1000)
    assert math.isnan(got[("jobs", (("host", "web1"), ("queue", "a")))])
    assert got[("jobs", (("host", "web1"), ("queue", "b")))] == math.inf
    assert got[("load", HOST)] == -math.inf
    latest = {n + str(labels): v for n, labels, _, v in store.latest()}
    assert latest["load" + str(HOST)] == -math.inf


def test_a_series_twice_in_a_write_with_frames_writes_nothing(store: Any) -> None:
    register(store, [1.0, 2.0, 3.0])
    with pytest.raises(DuplicateSeries):
        store.write(
            [Sample("load", (), 5.0)], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [1, 2, 3])]
        )
    with pytest.raises(DuplicateSeries):  # two files of the same shape: the same series
        store.write(
            [], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [1, 2, 3]), Frame(L1, [4, 5, 6])]
        )
    assert store.select(name("load"), T0 + 1, T0 + 2000) == []


def test_a_frame_must_match_a_known_layout(store: Any) -> None:
    register(store, [1.0, 2.0, 3.0])
    with pytest.raises(StoreError, match="layout"):
        store.write([], T0 + 1000, add_labels=HOST, frames=[Frame(L2, [1, 2, 3])])
    with pytest.raises(StoreError, match="2 values for a layout of 3 series"):
        store.write([], T0 + 1000, add_labels=HOST, frames=[Frame(L1, [1, 2])])
    with pytest.raises(StoreError, match="layout"):  # known, but for another host
        store.write([], T0 + 1000, add_labels=(("host", "x"),), frames=[Frame(L1, [1, 2, 3])])


def test_stamped_samples_never_become_a_layout(store: Any) -> None:
    samples = [Sample("load", (), 1.0, T0 - 5000)]
    store.write(samples, T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 1)])
    assert store.known_layouts(HOST) == frozenset()
    [sp] = store.select(name("load"), T0 - 10_000, T0)
    assert sp.timestamps == [T0 - 5000]


def test_registering_a_known_shape_again_keeps_the_first(store: Any) -> None:
    register(store, [1.0, 2.0, 3.0])
    register(store, [4.0, 5.0, 6.0], ts=T0 + 1000)
    assert store.known_layouts(HOST) == {L1}
    assert values_at(store, T0 + 1000)[("load", HOST)] == 6.0


def test_rollups_include_frames(sql_store: Any) -> None:
    """A 1-minute bucket over two frames and one plain sample of the same series."""
    base = T0 - T0 % 300_000
    register(sql_store, [1.0, 10.0, 100.0], ts=base + 1000)
    sql_store.write([], base + 20_000, add_labels=HOST, frames=[Frame(L1, [3.0, 30.0, 300.0])])
    sql_store.write([Sample("load", (), 200.0)], base + 40_000, add_labels=HOST)
    sql_store.compact(base + 10 * 60_000)
    level = sql_store.levels[1]
    points: dict[str, Any] = {}
    sql_store._select_tier(
        level,
        [sid for sid in sql_store._series.matching_ids(name("load"))],
        base,
        base + 60_000,
        points,
    )
    [sp] = points.values()
    assert sp.resolution == 60
    assert (sp.mins, sp.maxs, sp.sums, sp.counts, sp.values) == (
        [100.0],
        [300.0],
        [600.0],
        [3.0],
        [200.0],
    )


def test_retention_drops_frames_and_then_their_layouts(sql_store: Any) -> None:
    """A layout outlives its raw frames while rollup buckets of it remain (they are stored
    by layout), and goes with the last of them."""
    register(sql_store, [1.0, 2.0, 3.0])
    day = 86400_000
    sql_store.compact(T0 + 2 * day)
    assert not sql_store._partitions.starts[0]  # every raw partition is gone
    sql_store.clock.set((T0 + 2 * day) / 1000)
    [sp] = sql_store.select(name("load"), T0 - 1, T0 + 60_000, step_ms=60_000)
    assert sp.resolution == 60 and sp.values == [3.0]  # from the 1m frame bucket
    assert sql_store.known_layouts(HOST) != frozenset()
    longest = max(lv.retention_ms + lv.span_ms for lv in sql_store.levels)
    sql_store.compact(T0 + longest + day)
    assert sql_store.select(name("load"), T0 - 1, T0 + 1) == []
    assert sql_store.known_layouts(HOST) == frozenset()
    assert sql_store.db.query("SELECT count(*) FROM metric_layout_series") == [(0,)]
    # the shape comes back: registered again, new id, nothing stale read
    register(sql_store, [4.0, 5.0, 6.0], ts=T0 + 2 * day)
    assert values_at(sql_store, T0 + 2 * day)[("load", HOST)] == 6.0


def test_many_series_reads_unpack_frames(sql_store: Any) -> None:
    """Above the IN-list limit, reads scan partitions and unpack frames in Python."""
    n = 700
    samples = [Sample("wide", (("i", str(i)),), float(i)) for i in range(n)]
    sql_store.write(samples, T0, add_labels=HOST, layouts=[NewLayout(L2, 0, n)])
    sql_store.write([], T0 + 1000, add_labels=HOST, frames=[Frame(L2, [i + 0.5 for i in range(n)])])
    got = sql_store.select(name("wide"), T0, T0 + 1000)
    assert len(got) == n
    assert all(
        sp.values == [float(dict(sp.labels)["i"]), float(dict(sp.labels)["i"]) + 0.5] for sp in got
    )
    latest = sql_store.latest(name("wide"))
    assert len(latest) == n and all(ts == T0 + 1000 for _, _, ts, _ in latest)


def test_two_writers_registering_one_shape_share_one_layout(sql_store: Any) -> None:
    """Another process registered the shape after this one loaded the layouts."""
    from signalbox.metrics.labelcodec import encode_labels
    from signalbox.metrics.sql.layouts import Layouts

    register(sql_store, [1.0, 2.0, 3.0])
    extra = encode_labels(HOST)
    first = sql_store._layouts.resolve(L1, extra)
    late = Layouts(sql_store.db)  # knows nothing yet, as a writer that loaded earlier
    with sql_store.db.transaction():
        lid = late.register(L1, extra, list(sql_store._layouts.series_of([first])[first]), T0)
    assert lid == first
    assert sql_store.db.query("SELECT count(*) FROM metric_layouts") == [(1,)]


def _bucket(sql_store: Any, metric: str, start: int) -> tuple[Any, ...]:
    points: dict[int, Any] = {}
    ids = sql_store._series.matching_ids(name(metric))
    sql_store._select_tier(sql_store.levels[1], ids, start, start + 60_000, points)
    [sp] = points.values()
    # the bucket (start, start + 1m], stamped with its last sample's time
    i = next(i for i, t in enumerate(sp.timestamps) if start < t <= start + 60_000)
    return tuple([col[i]] for col in (sp.mins, sp.maxs, sp.sums, sp.counts, sp.values))


def test_a_bucket_of_one_frame_per_file_is_copied_into_the_rollup(sql_store: Any) -> None:
    """The usual minute (one pass): buckets are the values; plain rows beside them too."""
    base = T0 - T0 % 300_000
    register(sql_store, [1.0, 10.0, 100.0], ts=base + 1000)
    sql_store.write(
        [Sample("other", (), 5.0)],
        base + 61_000,
        add_labels=HOST,
        frames=[Frame(L1, [2.0, math.nan, math.inf])],
    )
    sql_store.compact(base + 10 * 60_000)
    assert _bucket(sql_store, "load", base + 60_000) == (
        [math.inf],
        [math.inf],
        [math.inf],
        [1.0],
        [math.inf],
    )
    assert _bucket(sql_store, "other", base + 60_000) == ([5.0], [5.0], [5.0], [1.0], [5.0])


def test_a_file_that_changed_shape_within_a_bucket_counts_both_values(sql_store: Any) -> None:
    """Two layouts sharing a series in one bucket: the general path, not the copy."""
    base = T0 - T0 % 300_000
    register(sql_store, [1.0, 10.0, 100.0], ts=base + 1000)
    grown = [*file_samples([2.0, 20.0, 200.0]), Sample("added", (), 1.0)]
    sql_store.write(grown, base + 30_000, add_labels=HOST, layouts=[NewLayout(L2, 0, 4)])
    sql_store.compact(base + 10 * 60_000)
    assert _bucket(sql_store, "load", base) == ([100.0], [200.0], [300.0], [2.0], [200.0])


def test_a_deleted_layout_leaves_nothing_cached(sql_store: Any) -> None:
    """A long-running writer whose files change shape must not keep every old layout."""
    register(sql_store, [1.0, 2.0, 3.0])
    assert sql_store._layouts.series_of([sql_store._layouts.resolve(L1, 'host="web1"')])
    longest = max(lv.retention_ms + lv.span_ms for lv in sql_store.levels)
    sql_store.compact(T0 + longest + 86400_000)  # past its raw frames and every bucket of it
    assert sql_store._layouts._series == {}
