"""Properties of evaluation over generated data (Hypothesis)."""

from __future__ import annotations

import math
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.query import Engine, parse_expr

T0 = 1_700_000_000_000
S = 1000

timestamps = st.lists(
    st.integers(min_value=0, max_value=3600), min_size=1, max_size=40, unique=True
).map(sorted)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    offsets=timestamps,
    increments=st.lists(st.floats(min_value=0, max_value=1e6), min_size=40, max_size=40),
    start=st.floats(min_value=0, max_value=1e9),
    window_s=st.integers(min_value=1, max_value=1200),
    step_s=st.integers(min_value=1, max_value=300),
)
def test_rate_and_increase_of_a_monotonic_counter_are_never_negative(
    offsets: list[int], increments: list[float], start: float, window_s: int, step_s: int
) -> None:
    store = MemoryMetricStore()
    value, samples = start, []
    for off, inc in zip(offsets, increments, strict=False):
        value += inc
        samples.append(Sample("c_total", (), value, T0 + off * S))
    store.write(samples, T0)
    engine = Engine(store)
    for fn in ("rate", "increase", "irate"):
        r = engine.range(f"{fn}(c_total[{window_s}s])", T0, T0 + 4000 * S, step_s * S)
        for series in r.matrix:
            assert all(v >= 0 for _, v in series.points), (fn, series.points)


label_values = st.sampled_from(["a", "b", "c"])


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(label_values, label_values, st.integers(min_value=-1000, max_value=1000)),
        min_size=1,
        max_size=12,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.sampled_from(["sum", "min", "max", "count", "avg"]),
)
def test_aggregation_by_equals_manual_grouping(rows: list[tuple[str, str, int]], op: str) -> None:
    store = MemoryMetricStore()
    store.write([Sample("m", (("shard", s), ("host", h)), float(v), T0) for s, h, v in rows], T0)
    got = {
        s.metric["shard"]: s.value for s in Engine(store).instant(f"{op} by (shard) (m)", T0).vector
    }
    groups: dict[str, list[float]] = defaultdict(list)
    for s, _, v in rows:
        groups[s].append(float(v))
    manual = {
        "sum": lambda xs: sum(xs),
        "min": min,
        "max": max,
        "count": lambda xs: float(len(xs)),
        "avg": lambda xs: sum(xs) / len(xs),
    }[op]
    assert got == {s: manual(xs) for s, xs in groups.items()}
    without = {
        s.metric["shard"]: s.value
        for s in Engine(store).instant(f"{op} without (host) (m)", T0).vector
    }
    assert without == got


QUERIES = [
    "g",
    "g offset 90s",
    "avg_over_time(g[2m])",
    "max_over_time(g[150s])",
    "count_over_time(g[1m] offset 30s)",
    "sum_over_time(g[3m])",
    "last_over_time(g[45s])",
    "rate(g[2m])",
    "delta(g[3m])",
    "deriv(g[3m])",
    "irate(g[1m])",
    "quantile_over_time(0.25, g[4m])",
    "g > 0",
    "sum(g) - g",
    "absent_over_time(g[30s])",
]


@settings(max_examples=30, deadline=None)
@given(
    offsets=timestamps,
    values=st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=40, max_size=40),
    step_s=st.sampled_from([15, 30, 60, 45, 7]),
    start_s=st.integers(min_value=-100, max_value=600),
)
def test_each_step_of_a_range_query_equals_an_instant_query_at_that_time(
    offsets: list[int], values: list[float], step_s: int, start_s: int
) -> None:
    store = MemoryMetricStore()
    store.write([Sample("g", (), v, T0 + o * S) for o, v in zip(offsets, values, strict=False)], T0)
    engine = Engine(store, lookback_ms=100_000)
    start, end = T0 + start_s * S, T0 + (start_s + 1500) * S
    for query in QUERIES:
        expr = parse_expr(query)
        ranged = engine.range(expr, start, end, step_s * S)
        by_time = {t: v for series in ranged.matrix for t, v in series.points}
        assert len(ranged.matrix) <= 1
        for t in range(start, end + 1, step_s * S):
            inst = engine.instant(expr, t).vector
            if t not in by_time:
                assert inst == [], (query, t)
            else:
                [sample] = inst
                assert sample.value == by_time[t] or (
                    math.isnan(sample.value) and math.isnan(by_time[t])
                ), (query, t)


@settings(max_examples=60)
@given(
    offsets=timestamps,
    values=st.lists(st.integers(min_value=-100, max_value=100), min_size=40, max_size=40),
    window_s=st.integers(min_value=1, max_value=900),
    at_s=st.integers(min_value=0, max_value=4000),
)
def test_over_time_functions_match_a_naive_scan(
    offsets: list[int], values: list[int], window_s: int, at_s: int
) -> None:
    points = [(T0 + o * S, float(v)) for o, v in zip(offsets, values, strict=False)]
    store = MemoryMetricStore()
    store.write([Sample("g", (), v, t) for t, v in points], T0)
    at = T0 + at_s * S
    inside = [v for t, v in points if at - window_s * S < t <= at]
    engine = Engine(store)
    for fn, naive in [
        ("sum_over_time", sum),
        ("min_over_time", min),
        ("max_over_time", max),
        ("count_over_time", len),
        ("avg_over_time", lambda xs: sum(xs) / len(xs)),
        ("last_over_time", lambda xs: xs[-1]),
    ]:
        got = engine.instant(f"{fn}(g[{window_s}s])", at).vector
        if not inside:
            assert got == []
        else:
            assert [s.value for s in got] == [float(naive(inside))], fn
