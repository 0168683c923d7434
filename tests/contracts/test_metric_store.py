"""One suite, every MetricStore: memory, SQLite and PostgreSQL must behave the same."""

from __future__ import annotations

import math
from typing import Any

from signalbox.metrics.samples import Matcher, MetricMeta, Sample

T0 = 1_700_000_000_000


def name(n: str) -> list[Matcher]:
    return [Matcher("__name__", "=", n)]


def test_written_samples_read_back_in_time_order(store: Any) -> None:
    store.write(
        [Sample("a", (("x", "1"),), 2.0, T0 + 2000), Sample("a", (("x", "1"),), 1.0, T0 + 1000)], T0
    )
    [sp] = store.select(name("a"), T0, T0 + 10_000)
    assert sp.name == "a" and sp.labels == (("x", "1"),)
    assert sp.timestamps == [T0 + 1000, T0 + 2000]
    assert sp.values == [1.0, 2.0]


def test_samples_without_timestamp_get_the_default(store: Any) -> None:
    r = store.write([Sample("a", (), 5.0)], T0)
    assert r.written == 1 and r.new_series == 1
    [sp] = store.select(name("a"), T0, T0)
    assert sp.timestamps == [T0] and sp.values == [5.0]


def test_same_series_and_timestamp_replaces(store: Any) -> None:
    store.write([Sample("a", (), 1.0)], T0)
    r = store.write([Sample("a", (), 9.0)], T0)
    assert r.new_series == 0
    [sp] = store.select(name("a"), T0 - 1, T0 + 1)
    assert sp.values == [9.0]


def test_nan_and_infinities_round_trip(store: Any) -> None:
    store.write(
        [Sample("n", (), math.nan), Sample("p", (), math.inf), Sample("m", (), -math.inf)], T0
    )
    got = {
        sp.name: sp.values[0] for sp in store.select([Matcher("__name__", "=~", "n|p|m")], T0, T0)
    }
    assert math.isnan(got["n"]) and got["p"] == math.inf and got["m"] == -math.inf


def test_label_matchers_select_series(store: Any) -> None:
    store.write(
        [
            Sample("req", (("code", "200"), ("host", "a")), 1.0),
            Sample("req", (("code", "500"), ("host", "a")), 2.0),
            Sample("req", (("code", "503"), ("host", "b")), 3.0),
            Sample("other", (("code", "200"),), 4.0),
        ],
        T0,
    )

    def vals(ms: list[Matcher]) -> list[float]:
        return sorted(sp.values[0] for sp in store.select(ms, T0, T0))

    assert vals([*name("req"), Matcher("code", "=", "200")]) == [1.0]
    assert vals([*name("req"), Matcher("code", "!=", "200")]) == [2.0, 3.0]
    assert vals([*name("req"), Matcher("code", "=~", "5..")]) == [2.0, 3.0]
    assert vals([*name("req"), Matcher("code", "=~", "5")]) == []  # anchored
    assert vals([*name("req"), Matcher("host", "!~", "a")]) == [3.0]
    assert vals([Matcher("code", "=", "200")]) == [1.0, 4.0]
    assert vals([*name("req"), Matcher("missing", "=", "")]) == [1.0, 2.0, 3.0]


def test_select_window_is_inclusive_and_excludes_outside(store: Any) -> None:
    store.write([Sample("a", (), float(i), T0 + i * 1000) for i in range(10)], T0)
    [sp] = store.select(name("a"), T0 + 2000, T0 + 4000)
    assert sp.values == [2.0, 3.0, 4.0]
    assert store.select(name("a"), T0 + 20_000, T0 + 30_000) == []


def test_latest_gives_newest_sample_per_series(store: Any) -> None:
    store.write(
        [Sample("a", (), 1.0, T0), Sample("a", (), 2.0, T0 + 1000), Sample("b", (), 7.0, T0)], T0
    )
    got = {(n, labels): (ts, v) for n, labels, ts, v in store.latest()}
    assert got == {("a", ()): (T0 + 1000, 2.0), ("b", ()): (T0, 7.0)}
    assert [n for n, *_ in store.latest(name("b"))] == ["b"]


def test_series_lists_matching_series(store: Any) -> None:
    store.write([Sample("a", (("k", "1"),), 1.0), Sample("a", (("k", "2"),), 1.0)], T0)
    assert sorted(store.series(name("a"))) == [("a", (("k", "1"),)), ("a", (("k", "2"),))]
    assert store.series([Matcher("k", "=", "2")]) == [("a", (("k", "2"),))]


def test_metadata_last_write_wins(store: Any) -> None:
    store.write_metadata([MetricMeta("a", "gauge", "first")])
    store.write_metadata([MetricMeta("a", "counter", "second", "seconds")])
    assert store.metadata()["a"] == MetricMeta("a", "counter", "second", "seconds")


def test_label_values_with_quotes_backslashes_and_newlines_survive(store: Any) -> None:
    weird = 'a"b\\c\nd,e=f'
    store.write([Sample("a", (("v", weird), ("w", "")), 1.0)], T0)
    [sp] = store.select([Matcher("v", "=", weird)], T0, T0)
    assert dict(sp.labels)["v"] == weird


def test_compact_drops_raw_data_past_retention(store: Any) -> None:
    store.write([Sample("a", (), 1.0, T0)], T0)
    store.compact(T0 + 3 * 86400 * 1000)
    raw = [sp for sp in store.select(name("a"), T0 - 1, T0 + 1, step_ms=0) if sp.resolution == 0]
    assert raw == []


def test_add_labels_are_added_unless_the_sample_sets_them(store: Any) -> None:
    store.write(
        [Sample("a", (), 1.0), Sample("b", (("host", "db7"), ("z", "1")), 2.0)],
        T0,
        add_labels=(("host", "web1"),),
    )
    got = {(n, labels) for n, labels, _, _ in store.latest()}
    assert got == {("a", (("host", "web1"),)), ("b", (("host", "db7"), ("z", "1")))}
