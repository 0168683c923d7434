"""A selector read from rollup buckets is read once per query, already widened for
functions that need whole buckets (``rate`` over a window of one bucket reads one more,
``rollup_buckets``), not read, looked at, and read again wider: the engine asks the store
which level it will read (:meth:`SQLMetricStore.choose_level`) before the read
(:func:`signalbox.query.fetch.bucket_ms`).

The answers, warnings included, are those of the store with ``choose_level`` hidden (the
two reads it took before), to the bit: counters with resets, NaN and infinities, over the
5-minute tier (7 days) and the 1-hour tier (30 days), both through the columns
(``bucket_columns``) and through ``select`` (``max by``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Matcher, Sample
from signalbox.query import Engine
from tests.stores import SQL_BACKENDS, sql_metric_store

DAY = 86400
END_S = 1_700_000_000 // 3600 * 3600
TIERS = (Tier(60, 8 * DAY), Tier(300, 35 * DAY), Tier(3600, 400 * DAY))


class _Counting:
    """The store, counting its reads and the levels it chose; ``hide`` names methods it
    pretends not to have."""

    def __init__(self, store: Any, hide: frozenset[str] = frozenset()) -> None:
        self._store, self._hide = store, hide
        self.reads: Counter[str] = Counter()
        self.levels: Counter[int] = Counter()

    def __getattr__(self, name: str) -> Any:
        if name in self._hide:
            raise AttributeError(name)
        got = getattr(self._store, name)
        if name == "choose_level":

            def choose(*args: Any, **kwargs: Any) -> Any:
                level = got(*args, **kwargs)
                self.levels[level.tier] += 1
                return level

            return choose
        if name not in ("select", "bucket_columns", "raw_columns"):
            return got

        def read(*args: Any, **kwargs: Any) -> Any:
            self.reads[name] += 1
            return got(*args, **kwargs)

        return read


def _value(i: int, t: int) -> float:
    if (t // 300 + i) % 97 == 0:
        return math.nan
    if i == 3 and t % 86400 == 7200:
        return math.inf if (t // 86400) % 2 else -math.inf
    return float((t // 300 * (i + 1)) % 5_000)  # a counter that resets now and then


FIVE_MINUTELY_FROM = END_S - 7 * DAY - 2 * 3600
"""Samples every 5 minutes from here: the 7 days read through the 5-minute tier, and two hours
before them, which their first windows reach into. Before, every 30 minutes (read through the
1-hour tier only, two samples a bucket, counter resets, NaN and the infinities at multiples of
1800 s): each 5-minute span holding a sample is a raw partition, created, rolled up and dropped,
the fixture's cost (every 15 minutes, and every 5 over 8 days, took half as long again)."""


def _stamps(start: int, end: int) -> list[int]:
    return [t for t in range(start, end, 300) if t >= FIVE_MINUTELY_FROM or t % 1800 == 0]


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    days = 31
    tmp = tmp_path_factory.mktemp("one-read")
    with sql_metric_store(
        request.param, tmp, raw_retention_s=DAY, tiers=TIERS, clock=FrozenClock(END_S)
    ) as s:
        start = END_S - days * DAY
        for d in range(days):  # a day and a compaction at a time: raw partitions dropped
            lo, hi = start + d * DAY, start + (d + 1) * DAY
            batch = [
                Sample("c", (("g", str(i % 2)), ("s", str(i))), _value(i, t), t * 1000)
                for i in range(4)
                for t in _stamps(lo, hi)
            ]
            s.write(batch, END_S * 1000)
            s.rebuild_rollups((lo - 60) * 1000, hi * 1000)
            s.compact(END_S * 1000)
        _assert_tiers_hold_what_is_read(s)
        yield s


def _assert_tiers_hold_what_is_read(s: Any) -> None:
    """The buckets of the levels the queries read hold counter resets (between buckets, and
    within the 1-hour ones), NaN and both infinities: the answers compared are over those."""
    for days, step_s, tier in ((30, 3600, 3600), (7, 900, 300)):
        start, end, step = (END_S - days * DAY) * 1000, END_S * 1000, step_s * 1000
        got = s.select([Matcher("__name__", "=", "c")], start, end, step_ms=step, align_ms=step)
        assert got and {sp.resolution for sp in got} == {tier}
        assert any(b < a for sp in got for a, b in itertools.pairwise(sp.values)), tier
        if tier == 3600:
            assert any(n for sp in got for n in sp.resets or ()), tier
        values = [
            v
            for sp in got
            for col in (sp.values, sp.mins or [], sp.maxs or [], sp.sums or [])
            for v in col
        ]
        assert any(math.isnan(v) for v in values), tier
        assert math.inf in values and -math.inf in values, tier


def _bits(result: Any) -> Any:
    return (
        [
            (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
            for m in result.matrix
        ],
        result.warnings,
    )


@pytest.mark.parametrize(
    ("query", "days", "step_s"),
    [
        ("sum(rate(c[1h]))", 30, 3600),
        ("sum by (g) (increase(c[1h]))", 30, 3600),
        ("max by (g) (c)", 30, 3600),
        ("avg_over_time(c[1h])", 30, 3600),
        ("avg_over_time(c[15m])", 7, 900),
        ("sum(rate(c[15m]))", 7, 900),
        ("max by (g) (c)", 7, 900),
    ],
)
def test_each_selector_is_read_once_and_answers_as_two_reads_did(
    store: Any, query: str, days: int, step_s: int
) -> None:
    start = (END_S - days * DAY) // step_s * step_s * 1000
    end = END_S // step_s * step_s * 1000
    one = _Counting(store)
    two = _Counting(store, frozenset({"choose_level"}))
    got = Engine(one).range(query, start, end, step_s * 1000)
    before = Engine(two).range(query, start, end, step_s * 1000)
    assert got.matrix and any(len(m.points) > 1 for m in got.matrix)
    assert _bits(got) == _bits(before)
    assert one.reads["select"] + one.reads["bucket_columns"] == 1, one.reads
    assert set(one.levels) == {3600 if days == 30 else 300}, one.levels  # the tier meant
