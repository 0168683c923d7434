"""The series index of the SQL store keeps a bounded number of decoded label sets: a long
``serve`` that reads a million series once does not keep a million label tuples."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Matcher, Sample
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
