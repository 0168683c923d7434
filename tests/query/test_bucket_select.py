"""``max``/``min`` of an instant selector over rollup buckets read as columns
(``query/bucketselect.py``) answer what the general path (``select``'s lists,
``latest_at``, ``aggregate``) answers, bit for bit, warnings included: random gauges past
raw retention with gaps, NaN, ±Inf, zeros of both signs and stale markers, packed units
and rows, raw samples newer than the tier's watermark, steps on and off bucket ends,
offsets; on SQLite and PostgreSQL, and through the HTTP API."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Sample
from signalbox.metrics.store import Ended
from signalbox.query import Engine, bucketselect, parse_expr
from signalbox.query.subquery import Grid
from tests.server.conftest import NOW, open_site
from tests.stores import SQL_BACKENDS, sql_metric_store

HOUR = 3_600_000
T0 = 1_700_006_400_000  # a whole hour
BLOCK = 12 * HOUR  # each example's own stretch of time


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sql_metric_store(
        request.param,
        tmp_path_factory.mktemp("bsel"),
        raw_retention_s=3600,
        tiers=(Tier(60, 30 * 86400), Tier(300, 30 * 86400)),
        clock=FrozenClock(T0 / 1000),
    ) as s:
        yield s


class _Selected:
    """The store without bucket columns: every selector read by ``select``."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("raw_columns", "bucket_columns"):
            raise AttributeError(name)
        return getattr(self._store, name)


def _bits(result: Any) -> list[Any]:
    return [
        (sorted(m.metric.items()), [(t, struct.pack("<d", v)) for t, v in m.points])
        for m in result.matrix
    ]


def _alike(store: Any, query: str, start: int, end: int, step: int, *, columns: bool) -> None:
    grid = Grid(start, end, step, start, end)
    read = bucketselect.read(store, parse_expr(query), grid, 300_000)
    assert bool(read) == columns, query
    got = Engine(store).range(query, start, end, step)
    want = Engine(_Selected(store)).range(query, start, end, step)
    assert _bits(got) == _bits(want), query
    assert got.warnings == want.warnings, query


_VALUE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, -1e300]),
    st.floats(-1e6, 1e6).map(lambda v: round(v, 2)),
    st.integers(-5, 5).map(float),
)


@st.composite
def _gauge(draw: st.DrawFn) -> list[tuple[int, float]]:
    """(ms into the block, value), with gaps of up to 40 minutes."""
    n = draw(st.integers(1, 50))
    gaps = draw(st.lists(st.integers(1_000, 2_400_000), min_size=n, max_size=n))
    t, out = draw(st.integers(0, 600_000)), []
    for gap in gaps:
        t += gap
        if t >= 6 * HOUR:
            break
        out.append((t, draw(_VALUE)))
    return out or [(1_000, 1.0)]


_RUN = iter(range(1, 10**6))


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    series=st.lists(_gauge(), min_size=1, max_size=6),
    groups=st.integers(1, 3),
    ended=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6 * HOUR)), max_size=3),
    step=st.sampled_from([60_000, 300_000, 900_000, 45_000, 420_000]),
    shift=st.sampled_from([0, 0, 20_000, 300_000]),
)
def test_max_and_min_over_buckets_answer_what_select_answers(
    store: Any,
    series: list[list[tuple[int, float]]],
    groups: int,
    ended: list[tuple[int, int]],
    step: int,
    shift: int,
) -> None:
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"bs{k}"

    def labels(i: int) -> tuple[tuple[str, str], ...]:
        return (("g", str(i % groups)), ("s", str(i)))

    writes: dict[int, list[Sample]] = {}
    for i, points in enumerate(series):
        for t, v in points:
            writes.setdefault(base + t, []).append(Sample(name, labels(i), v, base + t))
    marks: dict[int, list[tuple[str, tuple[tuple[str, str], ...]]]] = {}
    for i, t in ended:
        if i < len(series):
            marks.setdefault(base + t + 1, []).append((name, labels(i)))
    for ts in sorted(set(writes) | set(marks)):
        store.clock.set(ts / 1000)
        got = marks.get(ts)
        store.write(writes.get(ts, []), ts, ended=Ended(series=got) if got else None)
    now = base + 9 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)  # buckets built and packed; the raw samples past retention
    # a newer raw sample after the tier's watermark: a bucket of one sample for readers
    store.write([Sample(name, labels(0), 7.0, now + 30_000)], now + 30_000)
    store.clock.set((now + 60_000) / 1000)
    start, end = base + shift, base + 6 * HOUR + shift
    for query in (
        f"max by (g) ({name})",
        f"min by (g) ({name})",
        f"max({name})",
        f"min without (s) ({name} offset 7m)",
        f"max by (g) ({name}) - min by (g) ({name})",
        # any instant use: the selector itself, other aggregations, functions, operators
        name,
        f"{name} offset 7m",
        f"sum by (g) ({name})",
        f"max({name}) + sum({name})",
        f"avg({name}) * 2",
        f"timestamp({name})",
        f"{name} > 0",
    ):
        _alike(store, query, start, end, step, columns=True)
    _alike(store, f"max by (g) ({name})", now - 2 * HOUR, now + 60_000, 60_000, columns=True)
    _alike(store, name, now - 2 * HOUR, now + 60_000, 60_000, columns=True)
    # a range use of the selector, an @, a subquery: the general path
    for query in (
        f"max({name}) + sum(max_over_time({name}[10m]))",
        f"max({name} @ {end // 1000})",
        f"{name} + on(s, g) max_over_time({name}[30m:5m])",
    ):
        _alike(store, query, start, end, step, columns=False)


def test_zero_signs_keep_pythons_first_of_equals(store: Any) -> None:
    """A group whose maximum is a zero of each sign answers the first member's, as
    Python's ``max`` does (numpy's might not)."""
    k = next(_RUN)
    base, name = T0 + k * BLOCK, f"bz{k}"
    for m in range(120):
        ts = base + m * 60_000 + 1_000
        store.clock.set(ts / 1000)
        store.write(
            [
                Sample(name, (("s", "a"),), -0.0 if m % 2 else 0.0, ts),
                Sample(name, (("s", "b"),), 0.0 if m % 2 else -0.0, ts),
                Sample(name, (("s", "c"),), -1.0, ts),
            ],
            ts,
        )
    now = base + 9 * HOUR
    store.clock.set(now / 1000)
    store.compact(now)
    for query in (f"max({name})", f"min({name})"):
        _alike(store, query, base, base + 2 * HOUR, 60_000, columns=True)


def test_through_the_http_api(store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/api/v1/query_range`` of a served store answers the same body, byte for byte,
    with bucket columns as without (the general path: ``bucketselect.read`` finding none)."""
    backend = store.db.dialect.name
    with open_site(backend, tmp_path) as site:
        now_ms = int(NOW * 1000)
        base = (now_ms - 3 * 86_400_000) // HOUR * HOUR
        for m in range(240):
            ts = base + m * 60_000 + 1_000
            vals = [float((m * (i + 3)) % 17) - 4.5 for i in range(4)]
            vals[1] = math.nan if m % 50 == 7 else vals[1]
            site.store.write(
                [
                    Sample("bh", (("g", str(i % 2)), ("s", str(i))), v, ts)
                    for i, v in enumerate(vals)
                ],
                ts,
            )
        site.store.compact(now_ms)
        client = site.client()
        bodies = []
        for params in (
            {"query": "max by (g) (bh)", "step": "300"},
            {"query": "min(bh)", "step": "420"},
        ):
            params |= {"start": str(base // 1000), "end": str(base // 1000 + 4 * 3600)}
            with monkeypatch.context() as m:
                calls: list[int] = []
                real = bucketselect.read

                def counted(*a: Any, real: Any = real, calls: Any = calls, **k: Any) -> Any:
                    got = real(*a, **k)
                    calls.append(len(got))
                    return got

                m.setattr(bucketselect, "read", counted)
                fast = client.get("/api/v1/query_range", params=params)
                assert calls == [1], params  # the selector was read as bucket columns
            with monkeypatch.context() as m:
                m.setattr(bucketselect, "read", lambda *a, **k: {})
                slow = client.get("/api/v1/query_range", params=params)
            assert fast.status_code == slow.status_code == 200, fast.text
            assert fast.json()["data"]["result"], params
            assert fast.content == slow.content, params
            bodies.append(fast.json())
        assert bodies[0]["data"]["result"] != bodies[1]["data"]["result"]
