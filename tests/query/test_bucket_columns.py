"""Rollup buckets read as columns (``store.bucket_columns``, ``rawselect``) and fed to the
vector kernels answer what ``select``'s lists answer, bit for bit, warnings included:
random series past raw retention, rows and spool frames, with raw samples newer than the
tier's watermark after them, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.store import BucketSeriesColumns, Frame, NewLayout
from signalbox.query import Engine, parse_expr, rawselect, vectorkernels
from signalbox.query.subquery import Grid
from tests.stores import SQL_BACKENDS, sql_metric_store

HOUR = 3_600_000
T0 = 1_700_006_400_000  # a whole hour
BLOCK = 6 * HOUR  # each example's own stretch of time: written, then compacted past


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param,
        tmp_path_factory.mktemp("bc"),
        raw_retention_s=3600,
        tiers=(Tier(60, 30 * 86400), Tier(300, 30 * 86400)),
        clock=FrozenClock(T0 / 1000),
    ) as s:
        yield s


class _Selected:
    """The store without its column reads: range functions read ``select``'s points."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("raw_columns", "bucket_columns"):
            raise AttributeError(name)
        return getattr(self._store, name)


@contextmanager
def _threshold(windows: int) -> Iterator[None]:
    saved = vectorkernels.VECTOR_MIN_WINDOWS
    vectorkernels.VECTOR_MIN_WINDOWS = windows
    try:
        yield
    finally:
        vectorkernels.VECTOR_MIN_WINDOWS = saved


def _bits(result: Any) -> list[Any]:
    return [
        (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
        for m in result.matrix
    ]


def _alike(store: Any, query: str, start: int, end: int, step: int) -> None:
    """Bucket columns, select's lists through the vector kernels, and the scalar kernels
    (the reference): the same answers and warnings. The first takes the columns path."""
    grid = Grid(start, end, step, start, end)
    read = rawselect.read(store, parse_expr(query), grid)
    assert read and all(isinstance(g, BucketSeriesColumns) for g in read.values()), query
    got = Engine(store).range(query, start, end, step)
    with _threshold(1):
        lists = Engine(_Selected(store)).range(query, start, end, step)
    with _threshold(2**62):
        want = Engine(_Selected(store)).range(query, start, end, step)
    assert _bits(got) == _bits(want), query
    assert _bits(lists) == _bits(want), query
    assert got.warnings == want.warnings == lists.warnings, query


_VALUE = st.one_of(
    st.sampled_from([math.nan, math.inf, 0.0, -0.0, 1e300, 0.1]),
    st.integers(0, 500).map(float),
    st.floats(-1e6, 1e6).map(lambda v: round(v, 2)),
)


@st.composite
def _counter(draw: st.DrawFn) -> list[tuple[int, float]]:
    """(ms into the block, value): mostly rising, with resets and odd values."""
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.integers(1_000, 400_000), min_size=n, max_size=n))
    t, v, out = draw(st.integers(0, 600_000)), 0.0, []
    for gap in gaps:
        t += gap
        if t >= 3 * HOUR:
            break
        kind = draw(st.integers(0, 9))
        v = draw(_VALUE) if kind == 0 else 0.0 if kind == 1 else v + draw(st.integers(0, 50))
        out.append((t, v))
    return out or [(1_000, 1.0)]


_RUN = iter(range(1, 10**6))


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(_counter(), min_size=1, max_size=5),
    step=st.sampled_from([60_000, 300_000, 45_000, 120_000]),
    shift=st.sampled_from([0, 0, 20_000]),
)
def test_bucket_columns_answer_what_select_answers(
    store: Any, series: list[list[tuple[int, float]]], step: int, shift: int
) -> None:
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"bc{k}"
    samples = [
        Sample(name, (("s", str(i)),), v, base + t)
        for i, points in enumerate(series)
        for t, v in points
    ]
    now = base + 5 * HOUR
    store.clock.set(now / 1000)
    store.write(samples, now)
    store.compact(now)  # buckets built; the raw samples are past retention
    # newer raw samples, after the tier's watermark: buckets of one sample for readers
    store.write([Sample(name, (("s", "0"),), 7.0, now + 30_000)], now + 30_000)
    store.clock.set((now + 60_000) / 1000)
    start, end = base + shift, base + 3 * HOUR + shift
    for query in (
        f"rate({name}[5m])",
        f"increase({name}[10m])",
        f"delta({name}[2m])",
        f"rate({name}[30s])",  # narrower than a bucket: widened, with a warning
        f"sum(rate({name}[5m] offset 1m)) / sum(increase({name}[15m]))",
        *_over_time(name),
    ):
        _alike(store, query, start, end, step)
    _alike(store, f"rate({name}[5m])", now - 2 * HOUR, now + 60_000, 60_000)  # + raw tail


def _over_time(name: str) -> tuple[str, ...]:
    """The ``*_over_time`` with bucket kernels: each statistic they read, a window
    narrower than a bucket (widened, warned), and uses reading different statistics of
    one selector (one read of their union)."""
    return (
        f"sum_over_time({name}[5m])",
        f"avg_over_time({name}[10m])",
        f"avg_over_time({name}[30s])",
        f"min_over_time({name}[5m])",
        f"max_over_time({name}[15m])",
        f"count_over_time({name}[5m])",
        f"present_over_time({name}[2m])",
        f"last_over_time({name}[5m])",
        f"max_over_time({name}[5m]) - min_over_time({name}[5m] offset 2m)",
        f"sum(avg_over_time({name}[5m])) + sum(rate({name}[5m])) + sum(count_over_time({name}[10m]))",
    )


def _frame_value(line: int, n: int) -> float:
    """A counter per line with resets, a NaN and an infinity among them."""
    if (line, n) == (1, 17):
        return math.nan
    if (line, n) == (2, 40):
        return math.inf
    return float((n % 37) * (line + 1))


@pytest.mark.parametrize("lines", [3, 7])  # a few positions of a layout, and many
def test_frame_buckets_and_rows_read_as_columns_alike(store: Any, lines: int) -> None:
    """Series stored as spool frames (their buckets are frame buckets, sealed or not)
    beside a series of rows under one name."""
    base = T0 + next(_RUN) * BLOCK  # a stretch of its own, after the ones before
    name, layout = f"bcf{lines}", f"bc-file-{lines}".encode()
    for n in range(120):  # 30 s apart: an hour
        ts = base + n * 30_000
        store.clock.set(ts / 1000)
        vals = [_frame_value(line, n) for line in range(lines)]
        if n == 0:
            samples = [Sample(name, (("line", str(i)),), v) for i, v in enumerate(vals)]
            store.write(samples, ts, layouts=[NewLayout(layout, 0, lines)])
        else:
            store.write([], ts, frames=[Frame(layout, vals)])
        store.write([Sample(name, (("line", "rows"),), float(n % 50), ts + 7_000)], ts + 7_000)
    now = base + 4 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    got = store.bucket_columns([Matcher("__name__", "=", name)], base, base + HOUR)
    assert got is not None and got.resolution == 60
    assert sorted(dict(labels)["line"] for _, labels in got.keys) == [
        *map(str, range(lines)),
        "rows",
    ]
    for query in (f"rate({name}[5m])", f"sum(increase({name}[10m]))", f"delta({name}[3m])"):
        for step, shift in ((60_000, 0), (90_000, 15_000)):
            _alike(store, query, base + shift, base + HOUR + shift, step)
    for query in _over_time(name):
        _alike(store, query, base + 15_000, base + HOUR + 15_000, 90_000)


def test_other_uses_and_functions_stay_with_select(store: Any) -> None:
    """A selector also read another way, or by a function without a bucket kernel, is
    not read as bucket columns."""
    base = T0 + next(_RUN) * BLOCK
    store.clock.set(base / 1000)
    store.write([Sample("bco", (), float(i), base + i * 15_000) for i in range(240)], base)
    now = base + 5 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    grid = Grid(base, base + HOUR, 60_000, base, base + HOUR)
    assert rawselect.read(store, parse_expr("rate(bco[5m])"), grid)
    assert rawselect.read(store, parse_expr("max_over_time(bco[5m])"), grid)
    for query in ("rate(bco[5m]) + bco", "deriv(bco[5m])", "stddev_over_time(bco[5m])"):
        assert not rawselect.read(store, parse_expr(query), grid), query
