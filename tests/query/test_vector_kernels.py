"""The vector kernels (:mod:`signalbox.query.vectorkernels`) answer what the scalar kernels
(:mod:`signalbox.query.rangefuncs`), the reference, answer: bit for bit, on random series of
raw samples (NaN, ±Inf, negative zero, huge and tiny values where exact sums matter,
counter resets, series starting and ending inside the queried range, windows of 0, 1 and
2 samples), directly and through the engine over SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Matcher, Sample
from signalbox.metrics.sql import rawcolumns
from signalbox.metrics.store import Ended, Frame, NewLayout, SeriesPoints
from signalbox.query import Engine, parse_expr, rawselect, vectorkernels
from signalbox.query.kahan import kahan_sum
from signalbox.query.kernels import KERNELS as SCALAR
from signalbox.query.rangefuncs import windows_for
from signalbox.query.subquery import Grid
from signalbox.query.vectorkernels import KERNELS as VECTOR
from signalbox.query.vectorkernels import RawColumns, grid, values_of
from tests.query.bucketing import bucketize
from tests.stores import SQL_BACKENDS, sql_metric_store

FUNCS = sorted(VECTOR)

# values where the answers are delicate: specials, signed zeros, extremes, fractions
_SPECIAL = st.sampled_from(
    [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 1e-300, 0.1, 2.0**53]
)
_VALUE = st.one_of(
    _SPECIAL,
    st.integers(-1000, 1000).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6).map(lambda v: round(v, 2)),
)


@st.composite
def _series(draw: st.DrawFn, *, special: bool) -> tuple[list[int], list[float]]:
    """Strictly increasing timestamps (irregular gaps, some series starting late or ending
    early) and values: a counter with resets, integers, or anything at all."""
    n = draw(st.integers(1, 40))
    start = draw(st.integers(0, 120)) * 1000
    gaps = draw(st.lists(st.integers(1, 45_000), min_size=n, max_size=n))
    ts: list[int] = []
    t = start
    for gap in gaps:
        t += gap
        ts.append(t)
    kind = draw(st.sampled_from(["counter", "ints", "any"] if special else ["counter", "ints"]))
    if kind == "counter":
        v, vs = 0.0, []
        for _ in range(n):
            v = 0.0 if draw(st.integers(0, 9)) == 0 else v + draw(st.integers(0, 100))
            vs.append(v)
    elif kind == "ints":
        vs = [
            float(x) for x in draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n))
        ]
    else:
        vs = draw(st.lists(_VALUE, min_size=n, max_size=n))
    return ts, vs


def _bits(rows: list[list[float | None]]) -> list[list[bytes | None]]:
    return [[None if v is None else struct.pack("<d", v) for v in row] for row in rows]


def _scalar(
    func: str, series: list[tuple[list[int], list[float]]], ends: list[int], width: int
) -> list[list[float | None]]:
    out = []
    for ts, vs in series:
        sp = SeriesPoints("m", (), ts, vs)
        out.append(SCALAR[func](sp, windows_for(sp, ends, width, width), None))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(_series(special=True), min_size=1, max_size=5),
    first=st.integers(0, 600).map(lambda x: x * 1000),
    step=st.integers(1, 60).map(lambda x: x * 1000),
    steps=st.integers(1, 30),
    width=st.sampled_from([1_000, 15_000, 30_000, 60_000, 300_000, 3_600_000]),
)
def test_vector_kernels_answer_what_the_scalar_kernels_answer(
    series: list[tuple[list[int], list[float]]], first: int, step: int, steps: int, width: int
) -> None:
    ends = [first + i * step for i in range(steps)]
    cols = RawColumns.of(series)
    g = grid(cols, ends, width, width)
    for func in FUNCS:
        got = values_of(*VECTOR[func](cols, g))
        assert _bits(got) == _bits(_scalar(func, series, ends, width)), func


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(
        # the reference's variance overflows past 1e154 (not read here)
        _series(special=True).filter(
            lambda s: all(not abs(v) < math.inf or abs(v) < 1e100 for v in s[1])
        ),
        min_size=1,
        max_size=4,
    ),
    resolution=st.sampled_from([15, 60, 300]),
    first=st.integers(0, 40).map(lambda x: x * 15_000),
    step=st.sampled_from([15_000, 60_000, 120_000, 300_000]),
    steps=st.integers(1, 20),
    width=st.sampled_from([60_000, 300_000, 600_000, 3_600_000]),
    split=st.booleans(),
)
def test_bucket_kernels_answer_what_the_scalar_kernels_answer(
    series: list[tuple[list[int], list[float]]],
    resolution: int,
    first: int,
    step: int,
    steps: int,
    width: int,
    split: bool,
) -> None:
    """rate, increase and delta over rollup buckets (firsts, counts, drops), windows lining
    up with them or splitting them (an estimate, but the scalar path's estimate), and
    ``increase`` rescaled from a widened window."""
    ends = [first + i * step + (7_000 if split else 0) for i in range(steps)]
    buckets = [bucketize(SeriesPoints("m", (), ts, vs), resolution) for ts, vs in series]
    pairs = [(b.timestamps, b.values) for b in buckets]
    stats = [(b.first_ts or [], b.firsts or [], b.counts or [], b.drops) for b in buckets]
    cols = RawColumns.of(pairs, stats)
    for range_ms in {width, width // 2}:
        g = grid(cols, ends, width, range_ms)
        for func in sorted(vectorkernels.BUCKET_KERNELS):
            got = values_of(*VECTOR[func](cols, g))
            want = [SCALAR[func](b, windows_for(b, ends, width, range_ms), None) for b in buckets]
            assert _bits(got) == _bits(want), func


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(
        # the reference's bucket variance overflows past 1e154 (not read here)
        _series(special=True).filter(
            lambda s: all(not abs(v) < math.inf or abs(v) < 1e100 for v in s[1])
        ),
        min_size=1,
        max_size=5,
    ),
    resolution=st.sampled_from([15, 60, 300]),
    first=st.integers(0, 20).map(lambda x: x * 15_000),
    step=st.sampled_from([15_000, 60_000, 120_000, 300_000]),
    steps=st.integers(1, 20),
    width=st.sampled_from([60_000, 300_000, 600_000, 3_600_000]),
    split=st.booleans(),
)
def test_over_time_bucket_kernels_answer_what_the_scalar_kernels_answer(
    series: list[tuple[list[int], list[float]]],
    resolution: int,
    first: int,
    step: int,
    steps: int,
    width: int,
    split: bool,
) -> None:
    """sum/avg/min/max/count/present/last_over_time over rollup buckets (sums with NaN,
    ±Inf, overflow, negative zero; counts), through :func:`vectorkernels.bucket_view`."""
    ends = [first + i * step + (7_000 if split else 0) for i in range(steps)]
    buckets = [bucketize(SeriesPoints("m", (), ts, vs), resolution) for ts, vs in series]
    lengths = np.array([0] + [len(b.timestamps) for b in buckets], dtype=np.int64)
    starts = np.cumsum(lengths)

    def cat(column: str, dtype: Any = np.float64) -> Any:
        return np.array([x for b in buckets for x in getattr(b, column)], dtype=dtype)

    ts, values, first_ts = cat("timestamps", np.int64), cat("values"), cat("first_ts", np.int64)
    stats = {s: cat(s) for s in ("sums", "mins", "maxs", "counts")}
    for func in sorted(vectorkernels.OVER_TIME_BUCKETS):
        cols = vectorkernels.bucket_view(func, ts, values, starts, first_ts, stats)
        g = grid(cols, ends, width, width)
        got = values_of(*vectorkernels.kernel_for(func, cols)(cols, g))
        want = [SCALAR[func](b, windows_for(b, ends, width, width), None) for b in buckets]
        assert _bits(got) == _bits(want), func


def test_window_bounds_are_the_bisects_of_each_series() -> None:
    """Including a span too wide for one key (the per-series search) and ends before,
    between and after every sample."""
    series = [([1, 5, 9], [1.0, 2.0, 3.0]), ([2**61, 2**61 + 10], [4.0, 5.0])]
    cols = RawColumns.of(series)
    ends = [0, 5, 6, 9, 2**61 + 10, 2**61 + 11]
    g = grid(cols, ends, 4, 4)
    for i, (ts, _) in enumerate(series):
        sp = SeriesPoints("m", (), ts, [0.0] * len(ts))
        w = windows_for(sp, ends, 4, 4)
        a = int(cols.starts[i])
        assert (g.lo[i] - a).tolist() == w.los
        assert (g.hi[i] - a).tolist() == w.his


def test_exact_sums_take_the_integer_path_only_when_they_fit() -> None:
    """Multiples of one power of two whose sums fit int64 sum through int64 (0.1 is one:
    a multiple of 2**-56); 0.1 beside 3e5, infinities on the way and sums too wide fall
    back to the scalar sums; all give fsum's answer."""
    series = [
        ([1, 2, 3], [3.0, 0.5, -2.25]),  # multiples of 1/4: integer path
        ([1, 2, 3], [0.1, 0.2, 0.3]),  # multiples of 2**-56, small: integer path too
        ([1, 2, 3], [0.1, 3e5, 0.3]),  # 3e5 * 2**56 is past int64: fsum
        ([1, 2, 3], [1e308, 1e308, -1e308]),  # overflows on the way: the compensated loop
        ([1, 2, 3], [2.0**62, 1.0, -(2.0**62)]),  # sums too wide for int64: fsum
    ]
    cols = RawColumns.of(series)
    _, exact = vectorkernels._exact_scales(cols)
    assert exact.tolist() == [True, True, False, False, False]
    g = grid(cols, [3], 10, 10)
    got = values_of(*vectorkernels.sum_over_time(cols, g))
    assert got == [[kahan_sum(vs)] for _, vs in series]
    assert got[3] == [math.inf]  # the overflow stays infinite, as Prometheus'


def test_sums_of_fractions_take_two_limbs_and_are_fsums() -> None:
    """A gauge of arbitrary fractions (53-bit significands, a few powers of two apart) is
    past one int64 once scaled, not past two limbs: its window sums are still exact."""
    rng = random.Random(3)
    vs = [rng.uniform(10, 100) for _ in range(500)] + [-rng.uniform(0.5, 1) for _ in range(20)]
    cols = RawColumns.of([(list(range(1, len(vs) + 1)), vs)])
    assert vectorkernels._exact_scales(cols)[1].tolist() == [False]
    ends = list(range(7, len(vs) + 40, 13))
    g = grid(cols, ends, 60, 60)
    _, exact = vectorkernels._window_sums(cols, g)
    assert exact.tolist() == [True]
    for func in ("sum_over_time", "avg_over_time"):
        got = values_of(*VECTOR[func](cols, g))
        assert _bits(got) == _bits(_scalar(func, [(list(range(1, len(vs) + 1)), vs)], ends, 60))


_FRACTION = st.one_of(
    st.floats(-1000, 1000, allow_nan=False),
    st.floats(0.25, 4).map(lambda v: v * 2.0**300),
    st.floats(0.25, 4).map(lambda v: v * 2.0**-990),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(
        st.lists(_FRACTION, min_size=1, max_size=40).map(
            lambda vs: (list(range(1_000, 1_000 * (len(vs) + 1), 1_000)), vs)
        ),
        min_size=1,
        max_size=4,
    ),
    width=st.sampled_from([1_000, 5_000, 30_000]),
    step=st.sampled_from([1_000, 3_000, 7_000]),
)
def test_sums_of_any_finite_values_are_the_scalar_sums(
    series: list[tuple[list[int], list[float]]], width: int, step: int
) -> None:
    """Finite values of every scale (fractions, huge, near the subnormals): one limb, two,
    or the scalar sums, always ``math.fsum``'s answer."""
    ends = list(range(step, 45_000, step))
    cols = RawColumns.of(series)
    g = grid(cols, ends, width, width)
    for func in ("sum_over_time", "avg_over_time"):
        got = values_of(*VECTOR[func](cols, g))
        assert _bits(got) == _bits(_scalar(func, series, ends, width)), func


# --- through the engine and a store ---------------------------------------------------------

T0 = 1_700_000_400_000 - 1_700_000_400_000 % 300_000
FRAME_PASSES = 40  # a spool file's passes, 10 s apart, from T0 on


def _frame_value(line: int, n: int) -> float:
    """A counter per line with a reset, a NaN and an infinity among them."""
    if line == 2 and n == 17:
        return math.nan
    if line == 1 and n == 30:
        return math.inf
    return float((n % 25) * (line + 1))


def _write_frames(store: Any) -> None:
    """Series ``vkf{line}`` of one spool file, stored as frames (one row per pass)."""
    for n in range(FRAME_PASSES):
        ts = T0 + n * 10_000
        store.clock.set(ts / 1000)
        vals = [_frame_value(line, n) for line in range(3)]
        if n == 0:
            samples = [Sample("vkf", (("line", str(i)),), v) for i, v in enumerate(vals)]
            store.write(samples, ts, layouts=[NewLayout(b"vk-file", 0, 3)])
        else:
            store.write([], ts, frames=[Frame(b"vk-file", vals)])


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param, tmp_path_factory.mktemp("vk"), clock=FrozenClock(T0 / 1000)
    ) as s:
        _write_frames(s)
        yield s


class _Selected:
    """The store with ``raw_columns`` hidden: range functions read ``select``'s points."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "raw_columns":
            raise AttributeError(name)
        return getattr(self._store, name)


@contextmanager
def _threshold(windows: int) -> Iterator[None]:
    """The vector path from this many windows on (2**62: never, the scalar reference)."""
    saved = vectorkernels.VECTOR_MIN_WINDOWS
    vectorkernels.VECTOR_MIN_WINDOWS = windows
    try:
        yield
    finally:
        vectorkernels.VECTOR_MIN_WINDOWS = saved


def _matrix_bits(result: Any) -> list[Any]:
    return [
        (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
        for m in result.matrix
    ]


def _three_ways(store: Any, query: str, start: int, end: int, step: int) -> None:
    """Raw columns and vector kernels, ``select`` and vector kernels, ``select`` and the
    scalar kernels (the reference): the same answers."""
    got = Engine(store).range(query, start, end, step)
    with _threshold(1):
        selected = Engine(_Selected(store)).range(query, start, end, step)
    with _threshold(2**62):
        want = Engine(_Selected(store)).range(query, start, end, step)
    assert _matrix_bits(got) == _matrix_bits(want), query
    assert _matrix_bits(selected) == _matrix_bits(want), query
    assert got.warnings == want.warnings == selected.warnings


_RUN = iter(range(10**6))


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(_series(special=True), min_size=2, max_size=6),
    step=st.sampled_from([5_000, 15_000, 60_000]),
)
def test_engine_vector_path_matches_scalar_path_on_stores(
    store: Any, series: list[tuple[list[int], list[float]]], step: int
) -> None:
    """Random series written to the store as rows (one ended by a stale marker, which
    range functions ignore), queried three ways."""
    name = f"vk{next(_RUN)}"
    samples = [
        Sample(name, (("s", str(i)),), v, T0 + t)
        for i, (ts, vs) in enumerate(series)
        for t, v in zip(ts, vs, strict=True)
    ]
    last = T0 + max(ts[-1] for ts, _ in series)
    store.clock.set((last + 1000) / 1000)
    store.write(samples, last + 1000)
    store.write([], last + 2000, ended=Ended(series=[(name, (("s", "0"),))]))
    for query in (
        f"rate({name}[1m])",
        f"increase({name}[5m])",
        f"irate({name}[2m])",
        f"avg_over_time({name}[5m])",
        f"max_over_time({name}[1m])",
        f"sum by (s) (delta({name}[30s]))",
        f"rate({name}[1m]) / rate({name}[5m] offset 30s)",  # one read for both windows
    ):
        _three_ways(store, query, T0, last + 60_000, step)


@pytest.mark.parametrize(
    ("query", "as_columns"),
    [
        ("rate(vkf[1m])", True),
        ("sum(increase(vkf[2m]))", True),
        ("sum_over_time(vkf[45s])", True),
        ("last_over_time(vkf[20s])", True),
        ("idelta(vkf[30s])", True),
        ("rate(vkf[1m]) + on(line) vkf", False),  # also an instant selector: select for both
        ("rate(vkf[1m] @ 200)", False),  # @: select
        ("max_over_time(rate(vkf[30s])[2m:10s])", False),  # in a subquery: select
        ("deriv(vkf[1m])", False),  # no vector kernel
    ],
)
def test_spool_frames_read_as_columns_answer_alike(
    store: Any, query: str, as_columns: bool
) -> None:
    start, end, step = T0 - 60_000, T0 + FRAME_PASSES * 10_000 + 30_000, 5_000
    store.clock.set((T0 + FRAME_PASSES * 10_000) / 1000)
    grid = Grid(start, end, step, start, end)
    assert bool(rawselect.read(store, parse_expr(query), grid)) == as_columns  # the path
    _three_ways(store, query, start, end, step)


def test_columns_come_from_rows_and_frames(store: Any) -> None:
    """The store's raw columns: frames and rows, each series oldest first, within the
    window asked for; None past the data."""
    store.clock.set((T0 + FRAME_PASSES * 10_000) / 1000)
    got = store.raw_columns([Matcher("__name__", "=", "vkf")], T0 + 50_000, T0 + 100_000, 5_000)
    assert got is not None
    assert [dict(labels)["line"] for _, labels in got.keys] == ["0", "1", "2"]
    assert got.starts.tolist() == [0, 6, 12, 18]
    assert got.timestamps[:6].tolist() == [T0 + n * 10_000 for n in range(5, 11)]
    assert got.values[:6].tolist() == [_frame_value(0, n) for n in range(5, 11)]
    none = store.raw_columns([Matcher("__name__", "=", "vkf")], T0 + 10**7, T0 + 10**7 + 1, 0)
    assert none is None


def test_many_series_and_many_stamps_read_alike(store: Any) -> None:
    """More series than an IN list takes (a range scan per partition, filtered), and a
    partition with more written timestamps than seeks pay for (an import: a range scan
    with the series listed), against the general path."""
    t0 = T0 + 3_600_000
    many = [
        Sample("vkmany", (("i", str(i)),), float((i * 7 + k) % 11), t0 + k * 15_000)
        for i in range(rawcolumns.IN_LIST_MAX + 20)
        for k in range(6)
    ]
    dense = [Sample("vkdense", (), float(k % 97), t0 + 1_000 + k * 10) for k in range(2_100)]
    store.clock.set((t0 + 120_000) / 1000)
    store.write(many + dense, t0 + 120_000)
    start, end = t0, t0 + 120_000
    grid = Grid(start, end, 5_000, start, end)
    for query in ("sum(rate(vkmany[1m]))", "max_over_time(vkmany[30s])", "rate(vkdense[10s])"):
        assert rawselect.read(store, parse_expr(query), grid)  # the path under test
        _three_ways(store, query, start, end, 5_000)
    assert len(store.raw_columns([Matcher("__name__", "=", "vkdense")], start, end).values) == 2_100


def test_extremes_of_nan_only_windows_are_the_scalar_paths_nan() -> None:
    """A window of NaN only: min/max answer the scalar pick's NaN, not the bits of a NaN
    read (a negative NaN, as hypothesis found)."""
    negative_nan = struct.unpack("<d", bytes.fromhex("000000000000f8ff"))[0]
    series = [([1_000, 2_000], [negative_nan, negative_nan]), ([1_000], [negative_nan])]
    cols = RawColumns.of(series)
    g = grid(cols, [2_000], 5_000, 5_000)
    for func in ("min_over_time", "max_over_time"):
        got = values_of(*VECTOR[func](cols, g))
        assert _bits(got) == _bits(_scalar(func, series, [2_000], 5_000)), func
