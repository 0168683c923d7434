"""Aggregations at one instant over many series read as arrays
(:mod:`signalbox.query.columnar`, :meth:`SQLMetricStore.latest_columns`) answer exactly
what the general path answers, on SQLite and PostgreSQL.

One store holds, for metric ``m``: three spool files' frames (one stops writing, one changes
shape so its lines sit in two layouts, one is ended by a stale marker and one of its lines
revived by a plain sample), plain rows of other series (one ended, one NaN, label values
that look like ``shard="..."`` or are escaped, one without ``shard``), values with NaN
and infinities, frames in two raw partitions of the window, and samples outside it. Every
query is answered twice by the engine, once with the store as is and once with
``latest_columns`` hidden (the general path), and the answers compared to the bit; the
cache of groups is used cold and warm, and after new series arrive.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Sample
from signalbox.metrics.store import Ended, Frame, NewLayout
from signalbox.query import Engine, parse_expr
from signalbox.query.engine import _columns
from signalbox.query.subquery import Grid
from tests.stores import SQL_BACKENDS, sql_metric_store

M = 60_000
T0 = 1_700_000_100_000 - 1_700_000_100_000 % 300_000 + 20_000  # 20 s into a raw partition
HOST = (("host", "h1"),)
NAN, INF = math.nan, math.inf


def _value(f: int, line: int, minute: int) -> float:
    k = (f * 7 + line * 13 + minute) % 23
    if k == 3:
        return NAN
    if f == 2 and line == 5:
        return INF if minute % 2 else -INF  # an infinity: sum/avg overflow, order matters
    return (line * 0.1 + minute) * (1 if k % 2 else -1) * 10 ** (k % 5)


class _Plain:
    """The store with ``latest_columns`` hidden: the engine takes the general path."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "latest_columns":
            raise AttributeError(name)
        return getattr(self._store, name)


def _write(store: Any) -> None:
    files = {0: 400, 1: 300, 2: 260}
    layouts = {f: f"file-{f}".encode() for f in files}
    for minute in range(7):
        ts = T0 + minute * M
        store.clock.set(ts / 1000)
        samples: list[Sample] = []
        new: list[NewLayout] = []
        frames: list[Frame] = []
        for f, n in files.items():
            if f == 1 and minute > 3:
                continue  # file 1 stopped: its last frame is 3 minutes old at the end
            digest, lines = layouts[f], n
            if f == 0 and minute >= 5:  # file 0 changed shape: fewer lines, a new layout
                digest, lines = b"file-0-short", 350
            vals = [_value(f, line, minute) for line in range(lines)]
            if minute == 0 or (f == 0 and minute == 5):
                new.append(NewLayout(digest, len(samples), lines))
                samples += [
                    Sample(
                        "m", (("file", str(f)), ("line", str(line)), ("shard", str(line % 5))), v
                    )
                    for line, v in enumerate(vals)
                ]
            else:
                frames.append(Frame(digest, vals))
        rows = [
            Sample("m", (("row", str(r)), ("shard", str(r % 3))), _value(9, r, minute), ts - 5_000)
            for r in range(120)
            if not (r == 7 and minute > 2)
        ]
        # label values that look like another label, an escaped one, no shard at all
        rows += [
            Sample("m", (("a", "x,shard="), ("row", "h1"), ("shard", "1")), 1.5, ts - 4_000),
            Sample("m", (("a", ",shard="), ("row", "h2")), 2.5, ts - 4_000),
            Sample("m", (("a", 'q",shard="4'), ("row", "h3"), ("shard", "2")), 3.5, ts - 4_000),
            Sample("m", (("a", "=,shard=\\"), ("row", "h4"), ("shard", "0")), 4.5, ts - 4_000),
        ]
        ended = None
        if minute == 4:  # row 7 stopped (ended), and file 2's series with it
            ended = Ended(layouts=[layouts[2]], series=[("m", (("row", "7"), ("shard", "1")))])
        store.write(samples + rows, ts, add_labels=HOST, frames=frames, layouts=new, ended=ended)
    # a line of the ended file revived by a plain sample, a sample past the instant
    store.write(
        [Sample("m", (("file", "2"), ("line", "3"), ("shard", "3")), 42.0, T0 + 6 * M + 1_000)],
        T0 + 6 * M + 1_000,
        add_labels=HOST,
    )
    store.write(
        [Sample("m", (("row", "0"), ("shard", "0")), 1e300, T0 + 9 * M)],
        T0 + 9 * M,
        add_labels=HOST,
    )


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param, tmp_path_factory.mktemp("col"), clock=FrozenClock(T0 / 1000)
    ) as s:
        _write(s)
        yield s


QUERIES = [
    "sum by (shard) (m)",
    "sum(m)",
    "avg by (shard) (m)",
    "avg without (line) (m)",
    "count by (file) (m)",
    "count without (line, row) (m)",
    "min by (shard) (m)",
    "max by (host) (m)",
    "group by (shard) (m)",
    "stddev by (shard) (m)",
    "stdvar(m)",
    'sum by (shard) (m{shard!="2"})',
    "sum by (shard) (m offset 2m)",
    "sum(m) / count(m)",
    "sum by (shard) (m) > 0",
    "topk(2, sum by (shard) (m))",
    "sum by (shard) (m) + on(shard) count by (shard) (m)",
    "sum(sum by (shard) (m))",
    "sum by (shard) (m) or m",  # m also read whole: the general path for both
]


def _bits(result: Any) -> Any:
    if result.vector is None:
        return struct.pack("<d", result.scalar)
    return [(sorted(s.metric.items()), struct.pack("<d", s.value)) for s in result.vector]


def _same(store: Any, query: str, at: int, columnar: Engine) -> None:
    general = Engine(_Plain(store)).instant(query, at)
    got = columnar.instant(query, at)
    assert _bits(got) == _bits(general), query
    assert got.warnings == general.warnings


@pytest.mark.parametrize("minute", [4, 6, 9])
def test_columnar_answers_are_the_general_paths(store: Any, minute: int) -> None:
    at = T0 + minute * M + 30_000
    store.clock.set(at / 1000)
    engine = Engine(store)
    columns = store.latest_columns([], at, 300_000)  # every series: many, in a raw window
    assert columns is not None and len(columns.ids) > 500
    for query in QUERIES:
        read = _columns(engine, parse_expr(query), Grid(at, at, 0, at, at))
        assert bool(read) == (not query.endswith(" or m")), query  # the path under test
        _same(store, query, at, engine)  # cold: groups decoded
        _same(store, query, at, engine)  # warm: groups from the cache


def test_new_series_join_their_groups(store: Any) -> None:
    at = T0 + 6 * M + 30_000
    store.clock.set(at / 1000)
    engine = Engine(store)
    _same(store, "sum by (shard) (m)", at, engine)
    _same(store, "stddev by (shard) (m)", at, engine)  # ranked
    store.write(
        [Sample("m", (("row", "new"), ("shard", "9")), 5.0, at - 1_000)], at, add_labels=HOST
    )
    _same(store, "sum by (shard) (m)", at, engine)
    _same(store, "stddev by (shard) (m)", at, engine)
    _same(store, "count without (row) (m)", at, engine)


def test_a_few_series_or_an_old_window_take_the_general_path(store: Any) -> None:
    at = T0 + 6 * M + 30_000
    store.clock.set(at / 1000)
    assert store.latest_columns([], at, 300_000) is not None
    from signalbox.metrics.samples import Matcher

    assert store.latest_columns([Matcher("file", "=", "1")], at, 300_000) is None  # 300
    store.clock.set((at + 2 * 86_400_000) / 1000)  # the window is past raw retention
    assert store.latest_columns([], at, 300_000) is None
    assert store.latest_columns([], T0 - 3_600_000, 300_000) is None  # nothing in the window
