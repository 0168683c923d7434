"""Vector matching: ``group_left``/``group_right`` and ``and``/``or``/``unless`` with
``on``/``ignoring``. Cases follow Prometheus' ``operators.test``, as our own tests."""

from __future__ import annotations

import pytest

from signalbox.exceptions import QueryError
from signalbox.query import Engine, parse_expr
from tests.query.test_at_modifier import M, counting, load, vec


def lab(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


@pytest.fixture(scope="module")
def nodes() -> Engine:
    return load(
        300,
        [
            ("node_var", {"instance": "abc", "job": "node"}, [2.0]),
            ("node_mem", {"instance": "abc", "job": "node"}, [5.0]),
            ("node_role", {"instance": "abc", "job": "node", "role": "prometheus"}, [1.0]),
            ("node_cpu", {"instance": "abc", "job": "node", "mode": "idle"}, [3.0]),
            ("node_cpu", {"instance": "abc", "job": "node", "mode": "user"}, [1.0]),
            ("node_cpu", {"instance": "def", "job": "node", "mode": "idle"}, [8.0]),
            ("node_cpu", {"instance": "def", "job": "node", "mode": "user"}, [2.0]),
            ("random", {"foo": "bar"}, [1.0]),
            ("threshold", {"instance": "abc", "job": "node", "target": "a@b.com"}, [0.0]),
        ],
    )


ROLE = lab(instance="abc", job="node", role="prometheus")


@pytest.mark.parametrize(
    "query",
    [
        "node_role * on (instance) group_right (role) node_var",
        "node_var * on (instance) group_left (role) node_role",
        "node_var * ignoring (role) group_left (role) node_role",
        "node_role * ignoring (role) group_right (role) node_var",
    ],
)
def test_group_modifiers_copy_labels_from_the_one_side(nodes: Engine, query: str) -> None:
    assert vec(nodes.instant(query, M)) == {ROLE: 2.0}


def test_many_to_one_keeps_the_many_sides_labels(nodes: Engine) -> None:
    want = {
        lab(instance="abc", job="node", mode="idle", role="prometheus"): 3.0,
        lab(instance="abc", job="node", mode="user", role="prometheus"): 1.0,
    }
    assert vec(
        nodes.instant("node_cpu * ignoring (role, mode) group_left (role) node_role", M)
    ) == (want)
    assert vec(nodes.instant("node_cpu * on (instance) group_left (role) node_role", M)) == want


@pytest.mark.parametrize(
    "query",
    [
        "node_cpu / on (instance) group_left sum by (instance,job)(node_cpu)",
        "node_cpu / ignoring (mode) group_left sum without (mode)(node_cpu)",
        "node_cpu / ignoring (mode) group_left(dummy) sum without (mode)(node_cpu)",
    ],
)
def test_ratio_of_total(nodes: Engine, query: str) -> None:
    assert vec(nodes.instant(query, M)) == {
        lab(instance="abc", job="node", mode="idle"): 0.75,
        lab(instance="abc", job="node", mode="user"): 0.25,
        lab(instance="def", job="node", mode="idle"): 0.8,
        lab(instance="def", job="node", mode="user"): 0.2,
    }


@pytest.mark.parametrize(
    "query",
    [
        "sum by (mode, job)(node_cpu) / on (job) group_left sum by (job)(node_cpu)",
        "sum without (instance)(node_cpu) / ignoring (mode) group_left "
        "sum without (instance, mode)(node_cpu)",
    ],
)
def test_ratio_of_total_after_aggregation(nodes: Engine, query: str) -> None:
    assert vec(nodes.instant(query, M)) == {
        lab(job="node", mode="idle"): pytest.approx(0.7857142857142857),
        lab(job="node", mode="user"): pytest.approx(0.21428571428571427),
    }
    assert vec(nodes.instant(f"sum({query})", M)) == {(): pytest.approx(1.0)}


def test_copy_a_label_from_a_series_sharing_no_labels(nodes: Engine) -> None:
    got = vec(nodes.instant("node_cpu + on(dummy) group_left(foo) random*0", M))
    assert got == {
        lab(instance="abc", job="node", mode="idle", foo="bar"): 3.0,
        lab(instance="abc", job="node", mode="user", foo="bar"): 1.0,
        lab(instance="def", job="node", mode="idle", foo="bar"): 8.0,
        lab(instance="def", job="node", mode="user", foo="bar"): 2.0,
    }


def test_a_filter_keeps_the_many_sides_name_and_value(nodes: Engine) -> None:
    got = vec(nodes.instant("node_cpu > on(job, instance) group_left(target) threshold", M))
    assert got == {
        lab(__name__="node_cpu", instance="abc", job="node", mode="idle", target="a@b.com"): 3.0,
        lab(__name__="node_cpu", instance="abc", job="node", mode="user", target="a@b.com"): 1.0,
    }
    # a default threshold of 1 where none is set, through "or on"
    got = vec(
        nodes.instant(
            "node_cpu > on(job, instance) group_left(target) "
            "(threshold or on (job, instance) (sum by (job, instance)(node_cpu) * 0 + 1))",
            M,
        )
    )
    assert got == {
        lab(__name__="node_cpu", instance="abc", job="node", mode="idle", target="a@b.com"): 3.0,
        lab(__name__="node_cpu", instance="abc", job="node", mode="user", target="a@b.com"): 1.0,
        lab(__name__="node_cpu", instance="def", job="node", mode="idle"): 8.0,
        lab(__name__="node_cpu", instance="def", job="node", mode="user"): 2.0,
    }


def test_group_right_filter_keeps_the_left_value_and_the_right_labels(nodes: Engine) -> None:
    # Prometheus swaps the sides: the value compared and kept is the left (one) side's
    got = vec(nodes.instant("node_var < on (instance) group_right node_cpu", M))
    assert got == {
        lab(__name__="node_cpu", instance="abc", job="node", mode="idle"): 2.0,
    }


def test_many_to_many_is_refused_naming_the_match_group_and_both_series(nodes: Engine) -> None:
    with pytest.raises(QueryError) as e:
        nodes.instant("node_var * on (job) group_left node_cpu", M)
    msg = str(e.value)
    assert 'found duplicate series for the match group {job="node"} on the right hand-side' in msg
    assert "many-to-many matching not allowed" in msg and "node_cpu{" in msg
    with pytest.raises(QueryError, match="on the left hand-side"):
        nodes.instant("node_cpu * on (job) group_right node_var", M)


def test_one_to_one_with_many_on_the_left_needs_a_group_modifier(nodes: Engine) -> None:
    with pytest.raises(QueryError, match="many-to-one matching must be explicit"):
        nodes.instant("node_cpu * on (instance) node_var", M)


def test_grouping_labels_must_make_results_unique(nodes: Engine) -> None:
    with pytest.raises(QueryError, match="grouping labels must ensure unique matches"):
        # node_var and node_mem differ only by name, which "*" drops: two results alike
        nodes.instant(
            '{__name__=~"node_var|node_mem"} * on (instance) group_left '
            "sum by (instance) (node_cpu)",
            M,
        )


def test_no_error_at_steps_where_a_side_is_empty() -> None:
    # duplicates on the "one" side while the other side is empty: nothing to match
    engine = load(60, [("a", {"x": "1"}, [1.0]), ("a", {"x": "2"}, [2.0])])
    assert vec(engine.instant("nothing * on () group_left a", 0)) == {}


def test_group_left_over_a_range_query_follows_changing_one_side_labels() -> None:
    # the "one" side's label changes mid-range: each step copies the value it has then
    engine = load(
        60,
        [
            ("cpu", {"host": "h"}, counting(1, 1, 4)),
            ("info", {"host": "h", "rack": "r1"}, [1.0, 1.0, None, None, None]),
            ("info", {"host": "h", "rack": "r2"}, [None, None, 1.0, 1.0, 1.0]),
        ],
    )
    engine.lookback_ms = 30_000
    got = engine.range("cpu * on (host) group_left (rack) info", 0, 4 * M, M)
    by_rack = {s.metric["rack"]: s.points for s in got.matrix}
    assert by_rack == {
        "r1": [(0, 1.0), (M, 2.0)],
        "r2": [(2 * M, 3.0), (3 * M, 4.0), (4 * M, 5.0)],
    }


# --- and / or / unless ---------------------------------------------------------------


@pytest.fixture(scope="module")
def requests() -> Engine:
    series = []
    k = 1
    for job in ("api-server", "app-server"):
        for group in ("production", "canary"):
            for instance in ("0", "1"):
                labels = {"job": job, "instance": instance, "group": group}
                series.append(("http_requests_total", labels, counting(0, 10 * k, 10)))
                k += 1
    series.append(("vector_matching_a", {"l": "x"}, counting(0, 1, 100)))
    series.append(("vector_matching_a", {"l": "y"}, counting(0, 2, 50)))
    series.append(("vector_matching_b", {"l": "x"}, counting(0, 4, 25)))
    return load(300, series)


def req(job: str, instance: str, group: str) -> tuple[tuple[str, str], ...]:
    return lab(__name__="http_requests_total", job=job, instance=instance, group=group)


AT = 50 * M


def test_unless_with_and_without_matching_labels(requests: Engine) -> None:
    canary_1 = {req("api-server", "1", "canary"): 400.0, req("app-server", "1", "canary"): 800.0}
    q = 'http_requests_total{group="canary"} unless MATCHING http_requests_total{instance="0"}'
    assert vec(requests.instant(q.replace("MATCHING", ""), AT)) == canary_1
    assert vec(requests.instant(q.replace("MATCHING", "on(job, instance)"), AT)) == canary_1
    assert vec(requests.instant(q.replace("MATCHING", "ignoring(group)"), AT)) == canary_1
    assert vec(requests.instant(q.replace("MATCHING", "on(job)"), AT)) == {}
    assert vec(requests.instant(q.replace("MATCHING", "ignoring(group, instance)"), AT)) == {}


def test_and_on_a_label_nobody_has_matches_everything(requests: Engine) -> None:
    for q in (
        "http_requests_total AND ON (dummy) vector(1)",
        "http_requests_total AND IGNORING (group, instance, job) vector(1)",
    ):
        assert len(vec(requests.instant(q, AT))) == 8


def test_and_keeps_left_samples_whose_signature_the_right_has(requests: Engine) -> None:
    got = vec(
        requests.instant(
            'http_requests_total{group="canary"} and http_requests_total{instance="0"}', AT
        )
    )
    assert got == {req("api-server", "0", "canary"): 300.0, req("app-server", "0", "canary"): 700.0}
    got = vec(
        requests.instant(
            'http_requests_total{group="canary"} and on(job) http_requests_total{instance="0"}',
            AT,
        )
    )
    assert len(got) == 4


def test_or_adds_right_samples_whose_signature_the_left_lacks(requests: Engine) -> None:
    got = vec(
        requests.instant(
            'http_requests_total{group="canary"} or http_requests_total{group="production"}', AT
        )
    )
    assert len(got) == 8
    got = vec(
        requests.instant(
            '(http_requests_total{group="canary"} + 1) or on(instance) '
            "(http_requests_total or cpu_count or vector_matching_a)",
            AT,
        )
    )
    assert got == {
        lab(job="api-server", instance="0", group="canary"): 301.0,
        lab(job="api-server", instance="1", group="canary"): 401.0,
        lab(job="app-server", instance="0", group="canary"): 701.0,
        lab(job="app-server", instance="1", group="canary"): 801.0,
        lab(__name__="vector_matching_a", l="x"): 10.0,
        lab(__name__="vector_matching_a", l="y"): 20.0,
    }
    got = vec(requests.instant("vector_matching_a or vector_matching_b", AT))
    assert got == {
        lab(__name__="vector_matching_a", l="x"): 10.0,
        lab(__name__="vector_matching_a", l="y"): 20.0,
    }


def test_set_operators_work_per_step_in_a_range_query() -> None:
    engine = load(
        60,
        [
            ("a", {"k": "1"}, [1.0, 1.0, None, None, 1.0]),
            ("b", {"k": "1"}, [2.0, None, 2.0, None, 2.0]),
        ],
    )
    engine.lookback_ms = 30_000

    def points(q: str) -> dict[str, list[tuple[int, float]]]:
        return {s.metric.get("__name__", ""): s.points for s in engine.range(q, 0, 4 * M, M).matrix}

    assert points("a and b") == {"a": [(0, 1.0), (4 * M, 1.0)]}
    assert points("a unless b") == {"a": [(M, 1.0)]}
    assert points("a or b") == {"a": [(0, 1.0), (M, 1.0), (4 * M, 1.0)], "b": [(2 * M, 2.0)]}


@pytest.mark.parametrize(
    "text",
    [
        "a * on (x) group_left (y, z) b",
        "a / ignoring (x) group_right b",
        "a > bool on (x) group_left () b",
        "a and on (x) b",
        "a or ignoring (x) b unless c",
    ],
)
def test_matching_prints_back_to_the_same_tree(text: str) -> None:
    tree = parse_expr(text)
    assert parse_expr(str(tree)) == tree
