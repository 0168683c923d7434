"""The series index of the SQL store keeps a bounded number of decoded label sets: a long
``serve`` that reads a million series once does not keep a million label tuples."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.labelcodec import encode_labels
from signalbox.metrics.samples import Matcher, Sample, merge_labels
from signalbox.metrics.sql import series as sqlseries
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.stores import sqlite_url

T0 = 1_700_000_000_000


def test_decoded_labels_stay_bounded_and_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlseries, "DECODED_MAX", 50)
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    try:
        store.write(
            [
                Sample("x", (("i", str(i)), ("q", 'a"b' if i % 7 == 0 else "c")), float(i))
                for i in range(400)
            ],
            T0,
        )
        for _ in range(2):  # every series read twice: decoded, dropped, decoded again
            got = store.select([Matcher("__name__", "=", "x")], T0 - 1000, T0)
            assert sorted(int(dict(sp.labels)["i"]) for sp in got) == list(range(400))
            assert all(
                dict(sp.labels)["q"] == ('a"b' if int(dict(sp.labels)["i"]) % 7 == 0 else "c")
                for sp in got
            )
            assert len(store._series._decoded) <= 50
    finally:
        store.close()


def test_equality_matchers_find_exactly_their_series(tmp_path: Path) -> None:
    """The label text is searched for the pair first: a pair inside another label's name
    or value is not a match, an escaped value is found as written."""
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    labelsets = [
        (("b", "1"),),
        (("ab", "1"),),
        (("a", 'b="1"'),),
        (("a", "zb=1"), ("c", "2")),
        (("b", 'q"1'), ("c", "2")),
        (("b", "1"), ("c", "2")),
    ]
    try:
        store.write([Sample("x", labels, 1.0) for labels in labelsets], T0)

        def found(*ms: Matcher) -> list[dict[str, str]]:
            got = store.series([Matcher("__name__", "=", "x"), *ms])
            return sorted((dict(labels) for _, labels in got), key=sorted)

        assert found(Matcher("b", "=", "1")) == [{"b": "1"}, {"b": "1", "c": "2"}]
        assert found(Matcher("a", "=", 'b="1"')) == [{"a": 'b="1"'}]
        assert found(Matcher("b", "=", 'q"1')) == [{"b": 'q"1', "c": "2"}]
        assert found(Matcher("b", "=", "1"), Matcher("c", "=", "2")) == [{"b": "1", "c": "2"}]
        assert found(Matcher("c", "=", "2"), Matcher("b", "!=", "1")) == [
            {"a": "zb=1", "c": "2"},
            {"b": 'q"1', "c": "2"},
        ]
    finally:
        store.close()


class Unbindable:
    """A value no driver binds: the write fails at its sample rows, after its series were
    registered in the same transaction."""


def _labelled(n: int, value: float = 1.0) -> list[Sample]:
    return [Sample("req", (("line", str(i)), ("shard", str(i % 7))), value + i) for i in range(n)]


def _table(store: SQLMetricStore) -> dict[str, int]:
    return dict(store.db.query("SELECT name || '{' || labels, id FROM series"))


def _snapshot(store: SQLMetricStore) -> dict[str, int]:
    import msgspec

    rows = store.db.query("SELECT data FROM series_ids_snapshot WHERE id = 1")
    return msgspec.msgpack.decode(bytes(rows[0][0]), type=dict[str, int]) if rows else {}


HOST = (("host", "h"),)


def test_a_first_pass_failing_half_way_registers_nothing_and_the_retry_gives_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batches of a first pass are inserted before its samples: a failure after them
    leaves no series, no snapshot, and a write map that knows none of them; the same pass
    again gives the ids in order, as if the first had never run."""
    monkeypatch.setattr(sqlseries, "_CREATE_CHUNK", 1000)  # batches, as a million makes
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    try:
        samples = _labelled(4500)
        with pytest.raises(Exception) as failed:
            store.write([*samples, Sample("bad", (), Unbindable())], T0, add_labels=HOST)  # type: ignore[arg-type]
        assert not isinstance(failed.value, AssertionError)
        assert _table(store) == {} and _snapshot(store) == {}
        assert not store._series._ids  # nothing of the rolled-back pass in memory
        got = store.write(samples, T0 + 1000, add_labels=HOST)
        assert got.new_series == 4500
        table = _table(store)
        assert _snapshot(store) == table
        assert [table[f'req{{host="h",line="{i}",shard="{i % 7}"'] for i in range(4500)] == list(
            range(1, 4501)
        )
    finally:
        store.close()


def test_after_a_first_pass_the_write_map_is_left_to_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first pass keeps no map of its million keys in memory: the next write that needs
    the whole map (more keys than a lookup by name takes) loads the snapshot and finds
    every series it made, creating only the new one."""
    monkeypatch.setattr(sqlseries, "_BY_NAME_MAX_KEYS", 500)
    monkeypatch.setattr(sqlseries, "_CREATE_CHUNK", 200)
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    try:
        samples = _labelled(510)
        assert store.write(samples, T0, add_labels=HOST).new_series == len(samples)
        assert store._series._ids is None
        before = _table(store)
        more = [*_labelled(len(samples), 5.0), Sample("req", (("line", "new"),), 1.0)]
        assert store.write(more, T0 + 1000, add_labels=HOST).new_series == 1
        after = _table(store)
        assert {k: v for k, v in after.items() if k in before} == before
        assert len(after) == len(before) + 1 and _snapshot(store) == after
        got = store.select([Matcher("line", "=", "3")], T0, T0 + 1000)
        assert [(sp.timestamps, sp.values) for sp in got] == [([T0, T0 + 1000], [4.0, 8.0])]
    finally:
        store.close()


def test_a_writer_whose_empty_map_is_stale_shares_the_ids_another_writer_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers on one SQLite file: ``b`` loaded an empty map (its first pass failed),
    then ``a`` registered the same series; ``b``'s pass finds them by key, creates none
    twice, and both read every series under one id."""
    monkeypatch.setattr(sqlseries, "_CREATE_CHUNK", 1000)
    url = sqlite_url(tmp_path)
    clock = FrozenClock(T0 / 1000)
    a = SQLMetricStore(open_database(url), clock=clock)
    b = SQLMetricStore(open_database(url), clock=clock)
    try:
        samples = _labelled(3000)
        with pytest.raises(Exception):  # noqa: B017 - the driver's own error
            b.write([*samples, Sample("bad", (), Unbindable())], T0, add_labels=HOST)  # type: ignore[arg-type]
        assert b._series._ids == {}
        assert a.write(samples[:2000], T0, add_labels=HOST).new_series == 2000
        assert b.write(samples, T0 + 1000, add_labels=HOST).new_series == 1000
        table = _table(a)  # a's ids kept; b's new ones after them (gaps are allowed)
        assert len(table) == 3000 and len(set(table.values())) == 3000
        assert sorted(table.values())[:2000] == list(range(1, 2001))
        for s in (a, b):
            got = s.select([Matcher("__name__", "=", "req")], T0, T0 + 1000)
            assert len(got) == 3000
            assert sum(len(sp.values) for sp in got) == 2000 * 2 + 1000
        assert all(table.get(k) == v for k, v in _snapshot(b).items())
    finally:
        a.close()
        b.close()


def _key_index(store: SQLMetricStore) -> list[str]:
    return [r[0] for r in store.db.query("SELECT sql FROM sqlite_master WHERE name = 'series_key'")]


@pytest.fixture
def unindexed(monkeypatch: pytest.MonkeyPatch) -> None:
    """First passes of a few thousand series take the path of a million: the unique key
    built after the rows (see SeriesIndex._create_unindexed)."""
    monkeypatch.setattr(sqlseries, "_UNINDEXED_MIN", 1)
    monkeypatch.setattr(sqlseries, "_CREATE_CHUNK", 1000)


@pytest.mark.usefixtures("unindexed")
def test_a_first_pass_building_the_key_after_its_rows_gives_the_ids_in_order(
    tmp_path: Path,
) -> None:
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    try:
        samples = _labelled(4500)
        assert store.write(samples, T0, add_labels=HOST).new_series == 4500
        table = _table(store)
        assert [table[f'req{{host="h",line="{i}",shard="{i % 7}"'] for i in range(4500)] == list(
            range(1, 4501)
        )
        assert _snapshot(store) == table
        assert _key_index(store) == [sqlseries.SERIES_KEY_INDEX]
        with pytest.raises(Exception, match="UNIQUE"):  # the key holds again
            store.db.execute(
                "INSERT INTO series (name, labels, created_ms) SELECT name, labels, 0 "
                "FROM series WHERE id = 1"
            )
        assert store.write(_labelled(4500, 2.0), T0 + 1000, add_labels=HOST).new_series == 0
        got = store.select([Matcher("line", "=", "7")], T0, T0 + 1000)
        assert [(sp.timestamps, sp.values) for sp in got] == [([T0, T0 + 1000], [8.0, 9.0])]
    finally:
        store.close()


@pytest.mark.usefixtures("unindexed")
def test_a_first_pass_with_a_series_twice_falls_back_to_inserts_through_the_key(
    tmp_path: Path,
) -> None:
    """The same series at two times in one write (held StatsD flushes): the key cannot be
    built over the rows, so the attempt is taken back whole and the batches go through the
    key, which skips the second; both samples are stored under one id."""
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    try:
        samples = _labelled(2500)
        twice = Sample("req", (("line", "5"), ("shard", "5")), 99.0, T0 - 1000)
        assert store.write([*samples, twice], T0, add_labels=HOST).new_series == 2500
        table = _table(store)
        assert len(table) == 2500 and sorted(table.values()) == list(range(1, 2501))
        assert _snapshot(store) == table and _key_index(store) == [sqlseries.SERIES_KEY_INDEX]
        got = store.select([Matcher("line", "=", "5")], T0 - 1000, T0)
        assert [(sp.timestamps, sp.values) for sp in got] == [([T0 - 1000, T0], [99.0, 6.0])]
    finally:
        store.close()


@pytest.mark.usefixtures("unindexed")
def test_a_first_pass_failing_after_its_key_was_dropped_leaves_the_table_as_it_was(
    tmp_path: Path,
) -> None:
    """The write fails at its sample rows, after its series went in without the key and the
    key was built: the rollback leaves no series, no snapshot and the key as the migration
    made it; the same pass again gives the ids in order."""
    store = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(T0 / 1000))
    try:
        samples = _labelled(3000)
        with pytest.raises(Exception) as failed:
            store.write([*samples, Sample("bad", (), Unbindable())], T0, add_labels=HOST)  # type: ignore[arg-type]
        assert not isinstance(failed.value, AssertionError)
        assert _table(store) == {} and _snapshot(store) == {}
        assert _key_index(store) == [sqlseries.SERIES_KEY_INDEX]
        assert store.write(samples, T0 + 1000, add_labels=HOST).new_series == 3000
        assert sorted(_table(store).values()) == list(range(1, 3001))
    finally:
        store.close()


@pytest.mark.usefixtures("unindexed")
def test_a_stale_empty_map_on_the_unindexed_path_shares_the_other_writers_ids(
    tmp_path: Path,
) -> None:
    """``b``'s map is empty and stale; ``a`` made 2,000 of the 3,000 series ``b`` writes.
    ``b``'s table is small enough for the unindexed path, whose key build then meets
    ``a``'s rows: taken back, and the batches find them by key."""
    url = sqlite_url(tmp_path)
    clock = FrozenClock(T0 / 1000)
    a = SQLMetricStore(open_database(url), clock=clock)
    b = SQLMetricStore(open_database(url), clock=clock)
    try:
        samples = _labelled(3000)
        with pytest.raises(Exception):  # noqa: B017 - the driver's own error
            b.write([*samples, Sample("bad", (), Unbindable())], T0, add_labels=HOST)  # type: ignore[arg-type]
        assert b._series._ids == {}
        assert a.write(samples[:2000], T0, add_labels=HOST).new_series == 2000
        assert b.write(samples, T0 + 1000, add_labels=HOST).new_series == 1000
        table = _table(a)
        assert len(table) == 3000 and sorted(table.values())[:2000] == list(range(1, 2001))
        assert _key_index(a) == [sqlseries.SERIES_KEY_INDEX]
        for s in (a, b):
            got = s.select([Matcher("__name__", "=", "req")], T0, T0 + 1000)
            assert sum(len(sp.values) for sp in got) == 2000 * 2 + 1000
    finally:
        a.close()
        b.close()


_ODD = st.text(
    alphabet=st.sampled_from(['"', "\\", "\n", "\x7f", "{", "}", ",", "=", "a", "é", "\x01"]),
    max_size=6,
)


@settings(max_examples=25, deadline=None)
@given(values=st.lists(_ODD, min_size=1, max_size=30, unique=True), unindexed=st.booleans())
def test_label_values_of_any_text_are_stored_exactly_as_the_codec_writes_them(
    tmp_path_factory: pytest.TempPathFactory, values: list[str], unindexed: bool
) -> None:
    """Quotes, backslashes, newlines and the character that stands for a quote in the
    inserts' JSON: every label text stored is the codec's, on both first-pass paths and
    on a later write through the key."""
    path = tmp_path_factory.mktemp("odd")
    store = SQLMetricStore(open_database(sqlite_url(path)), clock=FrozenClock(T0 / 1000))
    old = sqlseries._UNINDEXED_MIN
    sqlseries._UNINDEXED_MIN = 1 if unindexed else 10**9
    try:
        first = [Sample("x", (("v", v),), 1.0) for v in values]
        assert store.write(first, T0, add_labels=HOST).new_series == len(values)
        later = [Sample("y", (("v", v), ("w", v)), 1.0) for v in values]
        assert store.write(later, T0 + 1000, add_labels=HOST).new_series == len(values)
        want = {(s.name, encode_labels(merge_labels(s.labels, HOST))) for s in [*first, *later]}
        assert set(store.db.query("SELECT name, labels FROM series")) == want
        got = {(n, labels) for n, labels in store.series()}
        assert got == {(s.name, merge_labels(s.labels, HOST)) for s in [*first, *later]}
    finally:
        sqlseries._UNINDEXED_MIN = old
        store.close()
