"""The vector kernels (:mod:`signalbox.query.vectorkernels`) answer what the scalar kernels
(:mod:`signalbox.query.rangefuncs`), the reference, answer: bit for bit, on random series of
raw samples (NaN, ±Inf, negative zero, huge and tiny values where exact sums matter,
counter resets, series starting and ending inside the queried range, windows of 0, 1 and
2 samples), directly and through the engine over SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Sample
from signalbox.metrics.store import Ended, SeriesPoints
from signalbox.query import Engine, vectorkernels
from signalbox.query.kahan import kahan_sum
from signalbox.query.kernels import KERNELS as SCALAR
from signalbox.query.rangefuncs import windows_for
from signalbox.query.vectorkernels import KERNELS as VECTOR
from signalbox.query.vectorkernels import RawColumns, grid, values_of
from tests.stores import pg_schema_url, sqlite_url

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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


# --- through the engine and a store ---------------------------------------------------------

T0 = 1_700_000_400_000 - 1_700_000_400_000 % 300_000


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))],
)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.storage import open_database

    clock = FrozenClock(T0 / 1000)
    if request.param == "sqlite":
        s = SQLMetricStore(open_database(sqlite_url(tmp_path_factory.mktemp("vk"))), clock=clock)
        yield s
        s.close()
    else:
        with pg_schema_url() as url:
            s = SQLMetricStore(open_database(url), clock=clock)
            yield s
            s.close()


class _Scalar:
    """Forces the scalar kernels: the reference."""

    def __enter__(self) -> None:
        self.saved = vectorkernels.VECTOR_MIN_WINDOWS
        vectorkernels.VECTOR_MIN_WINDOWS = 2**62

    def __exit__(self, *exc: object) -> None:
        vectorkernels.VECTOR_MIN_WINDOWS = self.saved


def _matrix_bits(result: Any) -> list[Any]:
    return [
        (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
        for m in result.matrix
    ]


_RUN = iter(range(10**6))


@settings(
    max_examples=15,
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
    """Random series written to the store (one ended by a stale marker, which range
    functions ignore), queried with the vector path and the scalar path."""
    run = next(_RUN)
    name = f"vk{run}"
    samples = [
        Sample(name, (("s", str(i)),), v, T0 + t)
        for i, (ts, vs) in enumerate(series)
        for t, v in zip(ts, vs, strict=True)
    ]
    last = T0 + max(ts[-1] for ts, _ in series)
    store.clock.set((last + 1000) / 1000)
    store.write(samples, last + 1000)
    store.write([], last + 2000, ended=Ended(series=[(name, (("s", "0"),))]))
    engine = Engine(store)
    start, end = T0, last + 60_000
    saved = vectorkernels.VECTOR_MIN_WINDOWS
    for query in (
        f"rate({name}[1m])",
        f"increase({name}[5m])",
        f"irate({name}[2m])",
        f"avg_over_time({name}[5m])",
        f"max_over_time({name}[1m])",
        f"sum by (s) (delta({name}[30s]))",
    ):
        vectorkernels.VECTOR_MIN_WINDOWS = 1
        try:
            got = engine.range(query, start, end, step)
        finally:
            vectorkernels.VECTOR_MIN_WINDOWS = saved
        with _Scalar():
            want = engine.range(query, start, end, step)
        assert _matrix_bits(got) == _matrix_bits(want), query
        assert got.warnings == want.warnings
