"""label_replace, label_join and present_over_time with Prometheus' semantics
(promql/functions.go, promqltest/testdata/functions.test): through the Engine over a
memory store, the refusals through the HTTP API, and present_over_time over real SQLite
rollups, where it must give the answer the raw samples give."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import re2  # type: ignore[import-untyped]
from starlette.testclient import TestClient

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.exceptions import QueryError
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine
from signalbox.query.labelfuncs import expand
from signalbox.query.parse import parse_expr
from signalbox.storage import open_database
from tests.query.test_query_eval import T0, M, S, store_with, vec
from tests.server.conftest import NOW, open_site

Labels = tuple[tuple[str, str], ...]


@pytest.fixture
def engine() -> Engine:
    return Engine(
        store_with(
            (
                "testmetric",
                {"src": "source-value-10", "dst": "original-destination-value"},
                [(0, 0.0)],
            ),
            (
                "testmetric",
                {"src": "source-value-20", "dst": "original-destination-value"},
                [(0, 1.0)],
            ),
            ("joined", {"src": "a", "src1": "b", "src2": "c", "dst": "old"}, [(0, 1.0)]),
            ("multiline", {"text": "line1\nline2"}, [(0, 2.0)]),
        )
    )


def at(engine: Engine, query: str) -> dict[Labels, float]:
    return vec(engine.instant(query, T0 + 10 * S))


def tm(src: str, dst: str | None, value: float, name: str | None = "testmetric") -> Labels:
    pairs = [("src", src)] + ([("dst", dst)] if dst is not None else [])
    if name is not None:
        pairs.append(("__name__", name))
    return tuple(sorted(pairs))


# --- label_replace ------------------------------------------------------------------------


def test_label_replace_sets_the_expansion_and_keeps_the_metric_name(engine: Engine) -> None:
    got = at(
        engine,
        'label_replace(testmetric, "dst", "destination-value-$1", "src", "source-value-(.*)")',
    )
    assert got == {
        tm("source-value-10", "destination-value-10", 0): 0.0,
        tm("source-value-20", "destination-value-20", 1): 1.0,
    }  # fmt: skip


def test_label_replace_leaves_a_series_alone_when_the_regex_does_not_match(engine: Engine) -> None:
    got = at(engine, 'label_replace(testmetric, "dst", "value-$1", "src", "non-matching-(.*)")')
    assert got == {
        tm("source-value-10", "original-destination-value", 0): 0.0,
        tm("source-value-20", "original-destination-value", 1): 1.0,
    }


def test_label_replace_regex_is_fully_anchored(engine: Engine) -> None:
    # "value-(.*)" would match inside "source-value-10" unanchored; Prometheus anchors it
    got = at(engine, 'label_replace(testmetric, "dst", "x-$1", "src", "value-(.*)")')
    assert {dict(k)["dst"] for k in got} == {"original-destination-value"}


def test_an_empty_result_deletes_the_label(engine: Engine) -> None:
    got = at(engine, 'label_replace(testmetric, "dst", "", "dst", ".*")')
    assert got == {tm("source-value-10", None, 0): 0.0, tm("source-value-20", None, 1): 1.0}
    # a group that matched nothing expands to "" too
    got = at(engine, 'label_replace(testmetric, "dst", "$1", "src", "source-value-(x?)\\\\d+")')
    assert all("dst" not in dict(k) for k in got)


def test_a_missing_source_label_reads_as_the_empty_string(engine: Engine) -> None:
    got = at(engine, 'label_replace(testmetric, "dst", "was-empty", "nosuch", "")')
    assert {dict(k)["dst"] for k in got} == {"was-empty"}
    got = at(engine, 'label_replace(testmetric, "dst", "was-empty", "nosuch", ".+")')
    assert {dict(k)["dst"] for k in got} == {"original-destination-value"}


def test_dot_matches_a_newline_as_in_go_s_flag(engine: Engine) -> None:
    got = at(engine, 'label_replace(multiline, "first", "$1", "text", "(.*)\\n.*")')
    assert got == {(("__name__", "multiline"), ("first", "line1"), ("text", "line1\nline2")): 2.0}


def test_named_groups_and_re2_only_syntax(engine: Engine) -> None:
    got = at(
        engine,
        'label_replace(testmetric, "dst", "${kind}:$num", "src", "(?i)(?P<kind>SOURCE)-value-(?P<num>\\\\d+)")',
    )
    assert {dict(k)["dst"] for k in got} == {"source:10", "source:20"}


def test_name_can_be_the_destination_or_the_source(engine: Engine) -> None:
    got = at(engine, 'label_replace(testmetric, "__name__", "renamed_$1", "__name__", "test(.*)")')
    assert set(dict(k)["__name__"] for k in got) == {"renamed_metric"}
    got = at(engine, 'label_replace(rate(testmetric[5m]), "__name__", "rate_of", "", "")')
    assert got == {}  # one sample per series: no rate, nothing to rename
    got = at(engine, 'label_replace(testmetric * 2, "__name__", "doubled", "", "")')
    assert {dict(k)["__name__"] for k in got} == {"doubled"}


def test_duplicate_output_series_are_refused(engine: Engine) -> None:
    with pytest.raises(QueryError, match="vector cannot contain metrics with the same labelset"):
        at(engine, 'label_replace(testmetric, "src", "", "src", ".*")')


def test_series_that_become_alike_at_different_steps_are_joined_in_a_range_query() -> None:
    engine = Engine(
        store_with(
            ("m", {"pod": "a-1"}, [(0, 1.0), (M, 1.0)]),
            ("m", {"pod": "a-2"}, [(10 * M, 2.0), (11 * M, 2.0)]),
        )
    )
    result = engine.range('label_replace(m, "pod", "$1", "pod", "(a)-.*")', T0, T0 + 11 * M, M)
    [series] = result.matrix
    assert series.metric == {"__name__": "m", "pod": "a"}
    values = dict(series.points)
    assert values[T0] == 1.0 and values[T0 + 11 * M] == 2.0
    overlapping = Engine(
        store_with(("m", {"pod": "a-1"}, [(0, 1.0)]), ("m", {"pod": "a-2"}, [(4 * M, 2.0)]))
    )  # both within the 5m lookback at 4m..5m
    with pytest.raises(QueryError, match="same labelset"):
        overlapping.range('label_replace(m, "pod", "$1", "pod", "(a)-.*")', T0, T0 + 11 * M, M)


# --- Go's Regexp.ExpandString ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "ab"),
        ("${1}x", "abx"),
        ("$1x", ""),  # the group named "1x": none, so empty
        ("$name-$2", "ab-cd"),
        ("${name}", "ab"),
        ("$$1", "$1"),
        ("a$", "a$"),  # malformed: the $ is text
        ("${1", "${1"),  # no closing brace: the $ is text
        ("$-", "$-"),
        ("$0", "abcd"),
        ("$3", ""),  # no such group
        ("$01", ""),  # leading zero: a name, not a number
        ("$é", ""),  # letters of any script make a name
    ],
)
def test_expansion_follows_go(template: str, expected: str) -> None:
    compiled = re2.compile("^(?s:(?P<name>ab)(cd))$")
    match = compiled.search("abcd")
    assert expand(template, match, compiled.groupindex) == expected


# --- label_join ---------------------------------------------------------------------------


def test_label_join_joins_the_sources_in_order(engine: Engine) -> None:
    got = at(engine, 'label_join(joined, "dst", "-", "src", "src1", "src2")')
    assert [dict(k)["dst"] for k in got] == ["a-b-c"]
    got = at(engine, 'label_join(joined, "dst", "", "src2", "nosuch", "src", "src")')
    assert [dict(k)["dst"] for k in got] == ["caa"]


def test_label_join_without_sources_deletes_the_destination(engine: Engine) -> None:
    got = at(engine, 'label_join(joined, "dst", ",")')
    assert got == {
        (("__name__", "joined"), ("src", "a"), ("src1", "b"), ("src2", "c")): 1.0,
    }
    got = at(engine, 'label_join(joined, "__name__", "_", "src", "src1")')
    assert [dict(k)["__name__"] for k in got] == ["a_b"]


def test_label_join_refuses_duplicates(engine: Engine) -> None:
    with pytest.raises(QueryError, match="same labelset"):
        at(engine, 'label_join(testmetric, "src", "", "dst")')


# --- parsing: string arguments where declared, and refusals naming the culprit -------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('label_replace(x, "1dst", "", "src", "")', 'invalid destination label name in label_replace\\(\\): "1dst"'),
        ('label_replace(x, "dst", "", "src", "(.*")', 'invalid regular expression in label_replace\\(\\): "\\(\\.\\*"'),
        ('label_replace(x, "dst", "", "src", "(?=x)")', "RE2 syntax"),
        ('label_replace(x, "dst", "", "src", "(a)\\\\1")', "RE2 syntax"),
        ('label_join(x, "a-b", ",", "src")', 'invalid destination label name in label_join\\(\\): "a-b"'),
        ('label_join(x, "dst", ",", "src", "bad label")', 'invalid source label name in label_join\\(\\): "bad label"'),
        ('label_join(x, "dst")', "takes at least 3 arguments, got 2"),
        ('label_replace(x, "dst", "", "src")', "takes 5 arguments, got 4"),
        ('label_replace(x, "dst", 1, "src", "")', "expects a string as argument 3, got scalar"),
        ('label_replace(x, "dst", "", "src", y)', "expects a string as argument 5, got instant vector"),
        ('label_replace("x", "dst", "", "src", "")', "expects an instant vector as argument 1, got string"),
        ('abs("x")', "expects an instant vector as argument 1, got string"),
        ('present_over_time(x)', "expects a range vector"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_while_parsing(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_expr(query)


def test_position_points_at_the_bad_argument() -> None:
    query = 'label_replace(x, "dst", "", "src", "(.*")'
    with pytest.raises(QueryError) as info:
        parse_expr(query)
    assert info.value.position == query.index('"(.*"')


@pytest.mark.parametrize(
    "query",
    [
        'label_replace(x, "dst", "a\\"b\\\\$1\\n", "src", "(.*)")',
        'label_join(rate(x[5m]), "dst", ", ", "a", "b")',
        'label_join(x, "dst", "")',
        "present_over_time(x[5m] offset 1h)",
    ],
)
def test_printing_round_trips(query: str) -> None:
    tree = parse_expr(query)
    assert parse_expr(str(tree)) == tree


# --- present_over_time --------------------------------------------------------------------


def test_present_over_time_is_one_where_the_window_holds_a_sample() -> None:
    engine = Engine(
        store_with(
            ("up", {"job": "a"}, [(0, 1.0), (M, math.nan)]),
            ("up", {"job": "b"}, [(10 * M, 0.0)]),
        )
    )
    got = vec(engine.instant("present_over_time(up[5m])", T0 + 3 * M))
    assert got == {(("job", "a"),): 1.0}  # the name goes, a NaN sample counts
    result = engine.range("present_over_time(up[2m])", T0, T0 + 12 * M, M)
    steps = {tuple(sorted(s.metric.items())): [t for t, _ in s.points] for s in result.matrix}
    assert steps == {
        (("job", "a"),): [T0, T0 + M, T0 + 2 * M],
        (("job", "b"),): [T0 + 10 * M, T0 + 11 * M],
    }
    assert all(v == 1.0 for s in result.matrix for _, v in s.points)


def test_present_over_time_over_sqlite_rollups_equals_the_raw_answer(tmp_path: Path) -> None:
    now = 1_700_006_400_000  # a whole hour
    start = now - 3 * 3600_000
    # bursts with gaps of several minutes, NaNs among them, off the minute grid
    stamps = [start + 7_000 + i * 20_000 for i in range(3 * 180) if (i // 9) % 3 != 1]
    samples = [
        Sample("jobs", (("job", "x"),), math.nan if i % 5 == 0 else float(i), t)
        for i, t in enumerate(stamps)
    ]

    def store(name: str) -> SQLMetricStore:
        return SQLMetricStore(
            open_database(f"sqlite:///{tmp_path / name}"),
            raw_retention_s=3600,
            tiers=(Tier(60, 8 * 86400),),
            clock=FrozenClock(now / 1000),
        )

    raw, rolled = store("raw.sqlite"), store("rolled.sqlite")
    try:
        for s in (raw, rolled):
            s.write(samples, now)
        rolled.compact(now)  # rollups built; raw older than 1 h dropped
        query = "present_over_time(jobs[3m])"
        begin, end = start + 10 * M, now - 70 * M  # only rollups left in this range
        want = Engine(raw).range(query, begin, end, M).matrix
        got = Engine(rolled).range(query, begin, end, M).matrix
        assert [s.points for s in got] == [s.points for s in want]
        assert want and 0 < len(want[0].points) < (end - begin) // M  # gaps show
    finally:
        raw.close()
        rolled.close()


# --- through the HTTP API -----------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with open_site("memory", tmp_path) as site:
        t0 = int(NOW * 1000)
        site.store.write([Sample("http_requests", (("path", "/api/v1/x"),), 3.0, t0 - 10_000)], t0)
        with site.client() as c:
            yield c


def test_label_replace_over_http(api: TestClient) -> None:
    query = 'label_replace(http_requests, "version", "$1", "path", "/api/(v\\\\d+)/.*")'
    r = api.get("/api/v1/query", params={"query": query, "time": str(NOW)})
    assert r.status_code == 200, r.text
    [item] = r.json()["data"]["result"]
    assert item["metric"] == {"__name__": "http_requests", "path": "/api/v1/x", "version": "v1"}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ('label_replace(http_requests, "v", "$1", "path", "(?<!x)y")', "(?<!x)y"),
        ('label_replace(http_requests, "not-a-label", "", "path", "")', "not-a-label"),
        ('label_join(http_requests, "dst", ",", "path", "1x")', "1x"),
    ],
)
def test_bad_regex_or_label_name_is_a_400_naming_it(
    api: TestClient, query: str, named: str
) -> None:
    r = api.get("/api/v1/query", params={"query": query, "time": str(NOW)})
    assert r.status_code == 400
    body = r.json()
    assert body["errorType"] == "bad_data"
    assert re.search(re.escape(f'"{named}"'), body["error"]), body["error"]
