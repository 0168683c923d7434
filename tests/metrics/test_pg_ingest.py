"""PostgreSQL's bulk ingest: array parameters built by hand, series by COPY, layouts in one go.

The contracts run these paths with tame text; here the text is hostile (COPY and array
literals each have their own escaping), the COPY meets a key another writer committed, a
write fails after its series went in, and new layouts come in the shapes the batch handles
apart (ids not consecutive, a shape another writer registered meanwhile).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql import series as sqlseries
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database, pgarrays
from tests.stores import pg_schema_url

pytestmark = pytest.mark.service("postgresql")

T0 = 1_700_000_000_000
HOST = (("host", "h"),)
HOSTILE = [
    "tab\there",
    "new\nline",
    "cr\r\nlf",
    "back\\slash",
    "ends with \\",
    '"quoted"',
    '\\"',
    "{brace,comma}",
    "NULL",
    "",
    " spaced ",
    "ünïcødé €",
    "emoji 😀",
    "'single'",
    "\\N",
    "a=b,c=d",
]


@pytest.fixture
def url() -> Iterator[str]:
    with pg_schema_url() as u:
        yield u


def open_store(url: str) -> SQLMetricStore:
    return SQLMetricStore(open_database(url), clock=FrozenClock(T0 / 1000))


def rows(store: SQLMetricStore) -> dict[str, int]:
    return dict(store.db.query("SELECT name || '{' || labels, id FROM series"))


def latest(store: SQLMetricStore) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(n, labels): v for n, labels, _, v in store.latest()}


def fresh_latest(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a new process reads (nothing cached), without the collector's own metrics."""
    store = open_store(url)
    try:
        return {k: v for k, v in latest(store).items() if not k[0].startswith("signalbox_")}
    finally:
        store.close()


# -- array parameters ---------------------------------------------------------------------
def test_arrays_carry_every_value_exactly(url: str) -> None:
    import psycopg

    floats = [1.5, -0.0, math.inf, -math.inf, 1e308, 5e-324, -2.5e-310, 3, 0.1]
    with psycopg.connect(url, autocommit=True) as conn:
        pgarrays.bind(conn)
        got = conn.execute(
            "SELECT %s::float8[], %s::float8[], %s::bigint[], %s::text[], %s::bytea[], "
            "%s::float8[], %s::bigint[], %s::text[], %s::bytea[]",
            (
                pgarrays.float8_array(floats),
                pgarrays.float8_array([1.0, None, math.nan], nulls=True),
                pgarrays.int8_array([0, 1, -1, 2**63 - 1, -(2**63)]),
                pgarrays.text_array(HOSTILE),
                pgarrays.bytea_array([b"", b"\x00\xff", b"\\x00"]),
                pgarrays.float8_array([]),
                pgarrays.int8_array([]),
                pgarrays.text_array([]),
                pgarrays.bytea_array([]),
            ),
        ).fetchone()
    assert got is not None
    assert [repr(v) for v in got[0]] == [repr(float(v)) for v in floats]  # -0.0 stays -0.0
    assert got[1][:2] == [1.0, None] and math.isnan(got[1][2])
    assert got[2] == [0, 1, -1, 2**63 - 1, -(2**63)]
    assert got[3] == HOSTILE
    assert got[4] == [b"", b"\x00\xff", b"\\x00"]
    assert got[5:] == ([], [], [], [])


def test_text_with_a_nul_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"NUL character.*'b\\x00c'"):
        pgarrays.text_array(["a", "b\x00c"])


def test_a_frame_value_that_is_not_a_number_is_refused_as_float_refuses_it() -> None:
    with pytest.raises(TypeError):
        pgarrays.float8_array([1.0, None])  # a frame holds numbers only (NaN, not NULL)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))))
def test_any_text_goes_through_a_text_array_unchanged(url: str, texts: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute("SELECT %s::text[]", (pgarrays.text_array(texts),)).fetchone()
    assert got is not None and got[0] == texts


# -- series by COPY -------------------------------------------------------------------------
def hostile_samples(value: float) -> list[Sample]:
    return [
        Sample("weird_total", (("v", text), ("i", str(i))), value + i)
        for i, text in enumerate(HOSTILE)
    ]


def test_hostile_label_text_goes_in_by_copy_and_is_found_by_key(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COPY's text format escapes tabs, newlines and backslashes; the lookup's array literal
    escapes quotes and backslashes: a second process must find every series the first made,
    under the same id, and read every label back as written."""
    a = open_store(url)
    b = open_store(url)
    try:
        first = a.write(hostile_samples(1.0), T0, add_labels=HOST)
        assert first.new_series == len(HOSTILE)
        made = rows(a)
        monkeypatch.setattr(sqlseries, "_BY_NAME_MAX_KEYS", 0)  # not by name: by key
        again = b.write(hostile_samples(100.0), T0 + 1000, add_labels=HOST)
        assert again.new_series == 0  # every key found stored
        assert rows(b) == made  # found by key: nothing created twice
        got = {dict(labels)["v"]: v for (_, labels), v in fresh_latest(url).items()}
        assert got == {text: 100.0 + i for i, text in enumerate(HOSTILE)}
        assert b.db.query("SELECT count(*) FROM series_ids_snapshot") == [(0,)]
    finally:
        a.close()
        b.close()


def test_a_key_another_writer_committed_after_the_lookup_takes_the_insert_instead(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between b's lookup and its COPY, a commits some of the same series (as two hosts'
    first passes racing): the COPY fails on the unique key, its savepoint takes it back,
    and the INSERT that skips existing keys gives b a's ids for those and new ones for the
    rest, in the same transaction."""
    a = open_store(url)
    b = open_store(url)
    try:
        shared = [Sample("m", (("k", str(i)),), 1.0) for i in range(50)]
        a.write(shared, T0, add_labels=HOST)
        before = rows(a)
        looked: list[int] = []
        real = sqlseries.SeriesIndex._lookup_pg

        def stale_first_lookup(self: Any, keys: list[str]) -> dict[str, int]:
            looked.append(len(keys))
            return {} if len(looked) == 1 else real(self, keys)  # a's rows not seen yet

        monkeypatch.setattr(sqlseries.SeriesIndex, "_lookup_pg", stale_first_lookup)
        monkeypatch.setattr(sqlseries, "_BY_NAME_MAX_KEYS", 0)  # by key, not by name
        mine = [Sample("m", (("k", str(i)),), 2.0) for i in range(25, 80)]
        got_b = b.write(mine, T0 + 1000, add_labels=HOST)
        assert got_b.new_series == 55  # none was found stored when b looked
        assert len(looked) == 2  # the COPY was refused, the skipped keys read back
        after = rows(b)
        assert len(after) == 80 and len(set(after.values())) == 80
        assert {k: after[k] for k in before} == before
        got = fresh_latest(url)
        assert len(got) == 80
        assert got[("m", (("host", "h"), ("k", "30")))] == 2.0
        assert got[("m", (("host", "h"), ("k", "3")))] == 1.0
    finally:
        a.close()
        b.close()


def test_a_label_holding_a_nul_is_refused_naming_the_series(url: str) -> None:
    """The spool parsers refuse control characters; a direct write of one is refused by
    PostgreSQL (SQLite stores it), whole, naming the series, on an empty table (COPY) and
    a filled one (the lookup), and the store goes on."""
    from signalbox.exceptions import StoreError

    store = open_store(url)
    try:
        nul = [Sample("m", (("k", f"a\x00b{i}"),), 1.0) for i in range(60)]
        with pytest.raises(StoreError, match=r"series \['m\{k=\"a\\x00b0\"'.*NUL"):
            store.write(nul, T0)
        store.write([Sample("ok", (), 1.0)], T0)
        with pytest.raises(StoreError, match=r"NUL character.*'m\{k=\"a\\x00b0\"'"):
            store.write(nul, T0 + 1000)
        assert fresh_latest(url) == {("ok", ()): 1.0}
    finally:
        store.close()


class Unbindable:
    """A value that is not a number: the write fails at its sample rows, after its series
    (and any layouts) went in within the same transaction."""


def test_a_write_failing_after_its_series_went_in_leaves_nothing(url: str) -> None:
    store = open_store(url)
    try:
        samples = [Sample("req", (("line", str(i)),), float(i)) for i in range(300)]
        with pytest.raises(TypeError):
            store.write([*samples, Sample("bad", (), Unbindable())], T0, add_labels=HOST)  # type: ignore[arg-type]
        assert store.db.query("SELECT count(*) FROM series") == [(0,)]
        assert not store._series._ids  # nothing of the rolled-back write in memory
        got = store.write(samples, T0 + 1000, add_labels=HOST)
        assert got.new_series == 300
        assert len(rows(store)) == 300
        assert latest(store)[("req", (("host", "h"), ("line", "7")))] == 7.0
    finally:
        store.close()


# -- layouts registered in one go -----------------------------------------------------------
def spool_pass(store: SQLMetricStore, spool: Path, t: float) -> None:
    for p in spool.iterdir():
        os.utime(p, (t, t))
    report = Collector(store, spool_dir=spool, host="h", clock=FrozenClock(t)).run_once()
    assert not [p for p in report.problems if p.kind != "ignored"], report.problems


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


def test_new_shapes_of_series_that_exist_in_another_order_keep_their_positions(
    url: str, spool: Path
) -> None:
    """Files whose series exist already, in another order: their layouts' ids are not
    consecutive, so positions come from one array of every id; each value lands on its
    series."""
    (spool / "a.metrics").write_text("".join(f"m{i}={i}\n" for i in range(40)))
    store = open_store(url)
    try:
        spool_pass(store, spool, T0 / 1000)
        (spool / "a.metrics").unlink()
        (spool / "b.metrics").write_text("".join(f"m{i}={i + 100}\n" for i in range(39, -1, -2)))
        (spool / "c.metrics").write_text("".join(f"m{i}={i + 100}\n" for i in range(38, -1, -2)))
        spool_pass(store, spool, T0 / 1000 + 60)
        assert len(store.known_layouts(HOST)) == 3
        got = fresh_latest(url)
        assert {n: v for (n, _), v in got.items() if n.startswith("m")} == {
            f"m{i}": i + 100.0 for i in range(40)
        }
        (spool / "b.metrics").write_text("".join(f"m{i}={i + 200}\n" for i in range(39, -1, -2)))
        (spool / "c.metrics").write_text("".join(f"m{i}={i + 200}\n" for i in range(38, -1, -2)))
        spool_pass(store, spool, T0 / 1000 + 120)  # the known shapes: frames only
        got = fresh_latest(url)
        assert {n: v for (n, _), v in got.items() if n.startswith("m")} == {
            f"m{i}": i + 200.0 for i in range(40)
        }
    finally:
        store.close()


def test_shapes_another_writer_registered_meanwhile_are_shared(
    url: str, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b does not see the layouts a committed (as if it had read them just before): its
    batch skips them on the unique key and takes a's layouts, which hold the same series."""
    for f in range(3):
        (spool / f"f{f}.metrics").write_text("".join(f"s{f}_{i}={i}\n" for i in range(20)))
    a = open_store(url)
    b = open_store(url)
    try:
        spool_pass(a, spool, T0 / 1000)
        monkeypatch.setattr(b._layouts, "load", lambda: None)  # b's view: no layouts yet
        (spool / "f3.metrics").write_text("".join(f"s3_{i}={i}\n" for i in range(20)))
        for f in range(4):
            (spool / f"f{f}.metrics").write_text("".join(f"s{f}_{i}={i + 50}\n" for i in range(20)))
        spool_pass(b, spool, T0 / 1000 + 60)
        assert a.db.query("SELECT count(*) FROM metric_layouts") == [(4,)]
        assert (
            a.db.query("SELECT count(*) FROM metric_layout_series GROUP BY layout_id ORDER BY 1")
            == [(20,)] * 4
        )
        got = fresh_latest(url)
        assert {n: v for (n, _), v in got.items() if n.startswith("s")} == {
            f"s{f}_{i}": i + 50.0 for f in range(4) for i in range(20)
        }
    finally:
        a.close()
        b.close()


def test_a_pass_written_twice_at_one_time_keeps_the_last_frames(url: str, spool: Path) -> None:
    """A replayed pass (its commit landed, its answer was lost) writes its frames again at
    the same time: the upsert replaces them."""
    (spool / "a.metrics").write_text("x=1\ny=2\n")
    store = open_store(url)
    try:
        spool_pass(store, spool, T0 / 1000)
        (spool / "a.metrics").write_text("x=10\ny=20\n")
        spool_pass(store, spool, T0 / 1000 + 60)
        (spool / "a.metrics").write_text("x=11\ny=21\n")
        spool_pass(store, spool, T0 / 1000 + 60)
        got = store.select([Matcher("__name__", "=~", "x|y")], T0, T0 + 60_000)
        assert {sp.name: (sp.timestamps, sp.values) for sp in got} == {
            "x": ([T0, T0 + 60_000], [1.0, 11.0]),
            "y": ([T0, T0 + 60_000], [2.0, 21.0]),
        }
    finally:
        store.close()
