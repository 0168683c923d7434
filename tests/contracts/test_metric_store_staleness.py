"""Stale markers (a series stopped being reported): every store, same behaviour.

A write given :class:`~signalbox.metrics.store.Ended` records a marker at its time for each
ended series it does not itself store; ``select`` returns the markers of its window in
``SeriesPoints.stale``; ``latest`` leaves out a series whose newest marker is at or after
its newest sample, until a newer sample revives it.
"""

from __future__ import annotations

from typing import Any

import pytest

from signalbox.metrics.samples import Labels, Matcher, Sample
from signalbox.metrics.store import DuplicateSeries, Ended, Frame, NewLayout
from tests.contracts.conftest import T0

HOST = (("host", "web1"),)
L1, L2 = b"layout-one------", b"layout-two------"
M = 60_000
Key = tuple[str, Labels]


def latest(store: Any, *matchers: Matcher, since_ms: int | None = None) -> dict[Key, float]:
    return {(n, ls): v for n, ls, _, v in store.latest(list(matchers), since_ms=since_ms)}


def stale_of(store: Any, name: str, start: int, end: int) -> dict[Labels, list[int] | None]:
    return {
        sp.labels: sp.stale for sp in store.select([Matcher("__name__", "=", name)], start, end)
    }


def two_series(store: Any, ts: int = T0) -> None:
    store.write(
        [Sample("jobs", (("queue", "a"),), 1.0), Sample("jobs", (("queue", "b"),), 2.0)],
        ts,
        add_labels=HOST,
    )


A = ("jobs", (("host", "web1"), ("queue", "a")))
B = ("jobs", (("host", "web1"), ("queue", "b")))


def test_an_ended_series_leaves_latest_and_its_marker_is_selected(store: Any) -> None:
    two_series(store)
    # keys as the writer wrote them: the write's add_labels are added the same way
    store.write([], T0 + M, add_labels=HOST, ended=Ended(series=[("jobs", (("queue", "a"),))]))
    assert latest(store) == {B: 2.0}
    assert latest(store, Matcher("queue", "=", "a")) == {}
    assert latest(store, Matcher("__name__", "=", "jobs"), since_ms=T0) == {B: 2.0}
    got = stale_of(store, "jobs", T0, T0 + 2 * M)
    assert got == {A[1]: [T0 + M], B[1]: None}
    # the samples themselves stay: range functions read them as before
    (sp,) = store.select([Matcher("queue", "=", "a")], T0, T0 + 2 * M)
    assert sp.timestamps == [T0] and sp.values == [1.0]


def test_markers_outside_the_window_are_not_returned(store: Any) -> None:
    two_series(store)
    store.write([], T0 + 5 * M, add_labels=HOST, ended=Ended(series=[("jobs", (("queue", "a"),))]))
    assert stale_of(store, "jobs", T0, T0 + 4 * M) == {A[1]: None, B[1]: None}
    assert stale_of(store, "jobs", T0, T0 + 5 * M)[A[1]] == [T0 + 5 * M]


def test_a_marker_at_the_newest_samples_time_ends_it(store: Any) -> None:
    two_series(store)
    store.write([], T0, add_labels=HOST, ended=Ended(series=[("jobs", (("queue", "b"),))]))
    assert latest(store) == {A: 1.0}


def test_a_newer_sample_revives_the_series(store: Any) -> None:
    two_series(store)
    store.write([], T0 + M, add_labels=HOST, ended=Ended(series=[("jobs", (("queue", "a"),))]))
    store.write([Sample("jobs", (("queue", "a"),), 5.0)], T0 + 2 * M, add_labels=HOST)
    assert latest(store) == {A: 5.0, B: 2.0}
    assert stale_of(store, "jobs", T0, T0 + 3 * M)[A[1]] == [T0 + M]
    # and ends again at a later marker: markers accumulate, the newest decides
    store.write([], T0 + 3 * M, add_labels=HOST, ended=Ended(series=[("jobs", (("queue", "a"),))]))
    assert latest(store) == {B: 2.0}
    assert stale_of(store, "jobs", T0, T0 + 3 * M)[A[1]] == [T0 + M, T0 + 3 * M]


def test_a_series_the_same_write_stores_is_not_ended(store: Any) -> None:
    two_series(store)
    store.write(
        [Sample("jobs", (("queue", "b"),), 3.0)],
        T0 + M,
        add_labels=HOST,
        ended=Ended(series=[("jobs", (("queue", "a"),)), ("jobs", (("queue", "b"),))]),
    )
    assert latest(store) == {B: 3.0}
    assert stale_of(store, "jobs", T0, T0 + M) == {A[1]: [T0 + M], B[1]: None}


def test_unknown_series_and_layouts_are_ignored_and_not_created(store: Any) -> None:
    two_series(store)
    store.write(
        [],
        T0 + M,
        add_labels=HOST,
        ended=Ended(layouts=[b"no-such-layout--"], series=[("never", (("x", "1"),))]),
    )
    assert latest(store) == {A: 1.0, B: 2.0}
    assert store.series([Matcher("__name__", "=", "never")]) == []


def file_samples(values: list[float]) -> list[Sample]:
    return [
        Sample("jobs", (("queue", "a"),), values[0]),
        Sample("jobs", (("queue", "b"),), values[1]),
        Sample("load", (), values[2]),
    ]


def test_ending_a_layout_ends_its_series_but_those_of_the_new_shape(store: Any) -> None:
    """A file that lost a line: its old layout ends, the lines it kept (a new layout in the
    same write) go on."""
    store.write(file_samples([1, 2, 3]), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 3)])
    store.write([], T0 + M, add_labels=HOST, frames=[Frame(L1, [4, 5, 6])])  # frames path
    kept = file_samples([7, 8, 9])[:2]  # "load" is gone
    store.write(kept, T0 + 2 * M, add_labels=HOST, layouts=[NewLayout(L2, 0, 2)], ended=Ended([L1]))
    assert latest(store) == {A: 7.0, B: 8.0}
    assert stale_of(store, "load", T0, T0 + 2 * M) == {HOST: [T0 + 2 * M]}
    # the next pass sends the new layout as a frame and ends nothing more
    store.write([], T0 + 3 * M, add_labels=HOST, frames=[Frame(L2, [10, 11])])
    assert latest(store) == {A: 10.0, B: 11.0}
    assert stale_of(store, "jobs", T0, T0 + 3 * M) == {A[1]: None, B[1]: None}


def test_ending_a_layout_while_framing_another_keeps_the_framed_series(store: Any) -> None:
    store.write(file_samples([1, 2, 3]), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 3)])
    two = file_samples([1, 2, 3])[:2]
    store.write(two, T0 + M, add_labels=HOST, layouts=[NewLayout(L2, 0, 2)], ended=Ended([L1]))
    store.write([], T0 + 2 * M, add_labels=HOST, frames=[Frame(L2, [4, 5])], ended=Ended([L1]))
    assert latest(store) == {A: 4.0, B: 5.0}
    assert stale_of(store, "jobs", T0, T0 + 2 * M) == {A[1]: None, B[1]: None}


def test_a_layout_is_ended_only_for_the_writer_that_registered_it(store: Any) -> None:
    store.write(file_samples([1, 2, 3]), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 3)])
    store.write([], T0 + M, add_labels=(("host", "other"),), ended=Ended([L1]))
    assert len(latest(store)) == 3


def test_a_refused_write_records_no_marker(store: Any) -> None:
    store.write(file_samples([1, 2, 3]), T0, add_labels=HOST, layouts=[NewLayout(L1, 0, 3)])
    two_series(store, T0 - M)
    with pytest.raises(DuplicateSeries):
        store.write(
            [Sample("load", (), 9.0)],
            T0 + M,
            add_labels=HOST,
            frames=[Frame(L1, [4, 5, 6])],
            ended=Ended(series=[("jobs", (("queue", "a"),))]),
        )
    assert latest(store)[A] == 1.0
    assert stale_of(store, "jobs", T0, T0 + M)[A[1]] is None


def test_markers_are_kept_with_their_samples_and_dropped_past_retention(store: Any) -> None:
    two_series(store)
    store.write([], T0 + M, add_labels=HOST, ended=Ended(series=[("jobs", (("queue", "a"),))]))
    store.compact(T0 + 10 * M)  # within every retention: the marker still ends the series
    assert latest(store) == {B: 2.0}
    assert stale_of(store, "jobs", T0, T0 + 2 * M)[A[1]] == [T0 + M]
    store.compact(T0 + 500 * 86400_000)  # past the longest retention of every store
    # a sample written again before the old marker's time is no longer ended by it
    store.write([Sample("jobs", (("queue", "a"),), 3.0)], T0 + M // 2, add_labels=HOST)
    assert latest(store, Matcher("queue", "=", "a")) == {A: 3.0}
    assert stale_of(store, "jobs", T0, T0 + 2 * M)[A[1]] is None


def test_spool_file_states_are_kept_per_writer_and_changed_by_writes(store: Any) -> None:
    assert store.spool_files(HOST) == {}
    store.write(
        [Sample("x", (), 1.0)],
        T0,
        add_labels=HOST,
        spool_files={"a.metrics": L1, "b.prom": "up 1\n"},
    )
    assert store.spool_files(HOST) == {"a.metrics": L1, "b.prom": "up 1\n"}
    assert store.spool_files((("host", "other"),)) == {}
    store.write([], T0 + M, add_labels=HOST, spool_files={"a.metrics": None, "b.prom": L2})
    assert store.spool_files(HOST) == {"b.prom": L2}
    with pytest.raises(DuplicateSeries):  # a refused write changes no state either
        store.write(
            [Sample("x", (), 1.0), Sample("x", (), 2.0)],
            T0 + 2 * M,
            add_labels=HOST,
            frames=[],
            layouts=[NewLayout(L1, 0, 2)],
            spool_files={"b.prom": None},
        )
    assert store.spool_files(HOST) == {"b.prom": L2}
