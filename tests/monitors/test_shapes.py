"""Queries of one shape share one evaluation: only shapes that map series one to one, and
each query still gets exactly its own answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.store import MetricStore
from signalbox.query import Engine, QueryResult, parse_expr
from signalbox.query.batch import instant_many
from signalbox.query.shapes import Narrower, widen
from tests.monitors.batch_helpers import NOW, SELECTORS, each, memory_store, same, sqlite_store

MIN = 60_000


@pytest.mark.parametrize(
    "query",
    [
        'sum(cpu{host="h1"})',
        'sum by (dc) (cpu{host!="h1"})',
        'cpu{host="h1"} / cpu{host="h2"}',
        'cpu{host="h1"} / on(host) mem',
        'absent(cpu{host="h1"})',
        'scalar(cpu{host="h1"})',
        '{host="h1"}',
        'cpu{host="h1"}[5m]',
        "vector(1)",
        "1 + 2",
    ],
)
def test_widen_refuses_queries_that_do_not_map_series_one_to_one(query: str) -> None:
    assert widen(parse_expr(query)) is None


@pytest.mark.parametrize(
    ("query", "wide"),
    [
        ('cpu{host="h1"}', "cpu"),
        ('avg_over_time(cpu{host="h1", dc="a"}[5m])', "avg_over_time(cpu[5m])"),
        ('rate(req_total{host="h1"}[5m] offset 1h) * 60', "rate(req_total[5m] offset 1h) * 60"),
        ('2 * abs(-cpu{host=~"h[12]"}) > bool 1', "2 * abs(-cpu) > bool 1"),
        ('clamp(cpu{host="h1"}, 0, time())', "clamp(cpu, 0, time())"),
        ('{__name__="cpu", host="h1"} offset -2m', "cpu offset -2m"),
    ],
)
def test_widen_drops_the_label_matchers_and_keeps_the_shape(query: str, wide: str) -> None:
    w = widen(parse_expr(query))
    assert w is not None
    assert str(w.expr) == wide
    assert w.matchers == parse_expr(query).selectors()[0].all_matchers()


def test_a_part_is_the_series_the_original_selector_matches() -> None:
    store = memory_store()
    engine = Engine(store, coarsest_resolution_s=0)
    original = 'avg_over_time(cpu{dc="a", host!="h2"}[10m])'
    w = widen(parse_expr(original))
    assert w is not None
    part = Narrower(engine.instant(w.expr, NOW)).part(w)
    assert part is not None and [s.metric["host"] for s in part.vector] == ["h1"]
    same([part], [engine.instant(original, NOW)])
    gone = widen(parse_expr('avg_over_time(cpu{host="h9"}[10m])'))
    assert gone is not None and Narrower(engine.instant(gone.expr, NOW)).part(gone) is None


WRAPPERS = [
    "{q}",
    "{q} * 100",
    "100 - {q}",
    "{q} > 0.4",
    "-{q}",
    "round({q}, 0.01)",
    "sum by (dc) ({q})",  # not a shape: each evaluated alone
    "count({q})",
]
INNER = [
    "{s}",
    "{s} offset 3m",
    "avg_over_time({s}[5m])",
    "max_over_time({s}[10m] offset 1m)",
    "rate({s}[5m])",
    "quantile_over_time(0.5, {s}[10m])",
    "last_over_time({s}[5m])",
]
BY_HOST = ['cpu{host="h1"}', 'cpu{host="h2"}', 'cpu{host="h3"}', 'cpu{host="h4"}']


@st.composite
def one_shape(draw: st.DrawFn) -> list[str]:
    """Several queries differing only in their selector: the case sharing is made for."""
    wrap, inner = draw(st.sampled_from(WRAPPERS)), draw(st.sampled_from(INNER))
    sels = draw(st.lists(st.sampled_from(BY_HOST + SELECTORS), min_size=2, max_size=8))
    return [wrap.format(q=inner.format(s=s)) for s in sels]


AT = st.sampled_from([NOW, NOW - 6 * MIN, NOW - 40 * MIN])


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(one_shape(), min_size=1, max_size=3), AT)
def test_queries_sharing_a_shape_get_what_each_gets_alone(
    stores: list[MetricStore], groups: list[list[str]], at: int
) -> None:
    qs = [q for g in groups for q in g]
    for store in stores:
        engine = Engine(store, coarsest_resolution_s=600)
        same(instant_many(engine, qs, at), each(engine, qs, at))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[MetricStore]:
    path: Path = tmp_path_factory.mktemp("shapes") / "m.db"
    return [memory_store(), sqlite_store(path)]


def test_a_matcher_on_a_label_an_aggregation_drops_is_not_shared() -> None:
    store = MemoryMetricStore()
    store.write(
        [
            Sample("cpu", (("dc", dc), ("host", h)), v, NOW)
            for dc, h, v in [("a", "h1", 1.0), ("a", "h2", 2.0), ("b", "h3", 4.0)]
        ],
        NOW,
    )
    engine = Engine(store, coarsest_resolution_s=0)
    qs = ['sum by (dc) (cpu{host!="h1"})', 'sum by (dc) (cpu{host="h1"})']
    got = instant_many(engine, qs, NOW)
    same(got, each(engine, qs, NOW))
    first = got[0]
    assert isinstance(first, QueryResult)
    assert [(s.metric, s.value) for s in first.vector] == [({"dc": "a"}, 2.0), ({"dc": "b"}, 4.0)]
