"""GET /metrics text: valid for Prometheus, clean for promtool, and it round-trips."""

from __future__ import annotations

import math
import subprocess

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from signalbox.metrics.expose import DEFAULT_HELP, format_value, render
from signalbox.metrics.parse.promtext import parse_prometheus
from signalbox.metrics.samples import Labels, MetricMeta, Sample
from tests.metrics.test_parse import label_sets, metric_names, norm, sample_values

Row = tuple[str, Labels, int, float]


def row(name: str, value: float, ts: int = 1_700_000_000_000, **labels: str) -> Row:
    return (name, tuple(sorted(labels.items())), ts, value)


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (3.0, "3"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1e20, "1e+20"),
        (1.7e-9, "1.7e-09"),
    ],
)
def test_values_are_formatted_the_prometheus_way(value: float, text: str) -> None:
    assert format_value(value) == text


def test_families_get_one_help_and_type_header_sorted_and_without_timestamps() -> None:
    out = render(
        [row("b_total", 5, code="200"), row("a", 1), row("b_total", 7, code="500")],
        {"b_total": MetricMeta("b_total", "counter", "Bees.")},
    )
    assert out == (
        f"# HELP a {DEFAULT_HELP}\n"
        "# TYPE a untyped\n"
        "a 1\n"
        "# HELP b_total Bees.\n"
        "# TYPE b_total counter\n"
        'b_total{code="200"} 5\n'
        'b_total{code="500"} 7\n'
    )


def test_help_and_label_values_are_escaped() -> None:
    out = render(
        [row("m", 1, path='C:\\dir\\"x"\nnext')],
        {"m": MetricMeta("m", "gauge", "multi\nline \\ help")},
    )
    assert "# HELP m multi\\nline \\\\ help\n" in out
    assert 'm{path="C:\\\\dir\\\\\\"x\\"\\nnext"} 1\n' in out


@pytest.mark.parametrize(
    ("name", "kind", "labels", "exposed"),
    [
        ("jobs_total", "counter", {}, "counter"),
        ("jobs_done", "counter", {}, "untyped"),  # lint: counters end in _total
        ("queue_depth", "gauge", {}, "gauge"),
        ("requests_total", "gauge", {}, "untyped"),  # lint: _total is for counters
        ("jobs_count", "gauge", {}, "untyped"),  # lint: reserved histogram suffix
        ("temps", "gauge", {"le": "5"}, "untyped"),  # lint: le is for histograms
        ("temps", "gauge", {"quantile": "5"}, "untyped"),
        ("free", "untyped", {}, "untyped"),
        ("nometa", None, {}, "untyped"),
    ],
)
def test_types_are_kept_only_when_promtool_lint_accepts_them(
    name: str, kind: str | None, labels: dict[str, str], exposed: str
) -> None:
    meta = {} if kind is None else {name: MetricMeta(name, kind)}  # type: ignore[arg-type]
    out = render([row(name, 1, **labels)], meta)
    assert f"# TYPE {name} {exposed}\n" in out


def test_histograms_are_grouped_under_one_family_with_buckets_in_numeric_order() -> None:
    rows = [
        row("lat_seconds_count", 10, path="/a"),
        row("lat_seconds_bucket", 10, path="/a", le="+Inf"),
        row("lat_seconds_bucket", 3, path="/a", le="10"),
        row("lat_seconds_bucket", 1, path="/a", le="2.5"),
        row("lat_seconds_sum", 42.5, path="/a"),
        row("lat_seconds_bucket", 0, path="/b", le="1"),
    ]
    out = render(rows, {"lat_seconds": MetricMeta("lat_seconds", "histogram", "Latency.")})
    assert out == (
        "# HELP lat_seconds Latency.\n"
        "# TYPE lat_seconds histogram\n"
        'lat_seconds_bucket{le="2.5",path="/a"} 1\n'
        'lat_seconds_bucket{le="10",path="/a"} 3\n'
        'lat_seconds_bucket{le="+Inf",path="/a"} 10\n'
        'lat_seconds_sum{path="/a"} 42.5\n'
        'lat_seconds_count{path="/a"} 10\n'
        'lat_seconds_bucket{le="1",path="/b"} 0\n'
    )


def test_summaries_are_grouped_with_quantiles_first() -> None:
    rows = [row("rpc_sum", 5), row("rpc", 2, quantile="0.99"), row("rpc", 1, quantile="0.5")]
    out = render(rows, {"rpc": MetricMeta("rpc", "summary")})
    assert out.splitlines()[1:] == [
        "# TYPE rpc summary",
        'rpc{quantile="0.5"} 1',
        'rpc{quantile="0.99"} 2',
        "rpc_sum 5",
    ]


def test_a_broken_histogram_is_exposed_as_untyped_series_rather_than_invalid_text() -> None:
    rows = [row("h_bucket", 1), row("h_sum", 2), row("h", 3)]
    out = render(rows, {"h": MetricMeta("h", "histogram")})
    for name in ("h", "h_bucket", "h_sum"):
        assert f"# TYPE {name} untyped\n" in out
    assert out.count("# TYPE") == 3


def test_a_series_listed_twice_keeps_its_last_value() -> None:
    out = render([row("m", 1), row("m", 2)], {})
    assert out.count("\nm ") + out.startswith("m ") == 1 and "m 2\n" in out


def test_nothing_to_expose_is_an_empty_document() -> None:
    assert render([], {}) == ""


def test_render_output_parses_back_to_the_same_values() -> None:
    rows = [
        row("a_total", 3, code="200"),
        row("lat_bucket", 1, le="0.5"),
        row("lat_bucket", 2, le="+Inf"),
        row("lat_sum", 0.75),
        row("lat_count", 2),
        row("t", math.nan, unit="°C ☃"),
        row("t", -math.inf, unit='q"uote'),
    ]
    meta = {"a_total": MetricMeta("a_total", "counter"), "lat": MetricMeta("lat", "histogram")}
    parsed = parse_prometheus(render(rows, meta), "metrics")
    assert parsed.errors == []
    expected = [Sample(n, lab, v) for n, lab, _, v in rows]
    assert sorted(norm(parsed.samples), key=repr) == sorted(norm(expected), key=repr)
    assert {(m.name, m.type) for m in parsed.metas} >= {
        ("a_total", "counter"),
        ("lat", "histogram"),
    }


# ---------------------------------------------------------------------------------------
# The real promtool

TRICKY = [
    row("photos_resize_seconds_total", 12.5, host="web-1", note='say "cheese"'),
    row("photos_resize_seconds_total", 3, host="web-2", note="back\\slash \\n not newline"),
    row("photos_resize_seconds_total", 4, host="web-3", note="real\nnewline"),
    row("photos_resize_seconds_total", 5, host="web-4", note="ünïcödé ☃ 日本語 🎉"),
    row("queue_depth", math.nan, queue="photos"),
    row("queue_depth", math.inf, queue="thumbs"),
    row("queue_depth", -math.inf, queue="videos"),
    row("image_processed", 30),
    row("jobs_done", 7),  # a counter without _total
    row("requests_total", 9),  # a gauge with _total
    row("resize_duration_seconds_bucket", 1, le="0.5"),
    row("resize_duration_seconds_bucket", 4, le="+Inf"),
    row("resize_duration_seconds_sum", 2.5),
    row("resize_duration_seconds_count", 4),
    row("rpc_latency_seconds", 0.2, quantile="0.5"),
    row("rpc_latency_seconds_sum", 9),
    row("rpc_latency_seconds_count", 40),
    row("broken_hist_bucket", 1),  # histogram without le
]
TRICKY_META = {
    "photos_resize_seconds_total": MetricMeta(
        "photos_resize_seconds_total", "counter", 'Help with "quotes", \\ and\nnewline ☃'
    ),
    "queue_depth": MetricMeta("queue_depth", "gauge", "  "),
    "image_processed": MetricMeta("image_processed", "gauge"),
    "jobs_done": MetricMeta("jobs_done", "counter"),
    "requests_total": MetricMeta("requests_total", "gauge"),
    "resize_duration_seconds": MetricMeta("resize_duration_seconds", "histogram", "Resize time."),
    "rpc_latency_seconds": MetricMeta("rpc_latency_seconds", "summary", "RPC time."),
    "broken_hist": MetricMeta("broken_hist", "histogram"),
}


@pytest.mark.peer("promtool")
def test_promtool_check_metrics_accepts_tricky_output_without_lint_problems() -> None:
    text = render(TRICKY, TRICKY_META)
    result = promtool(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), text


safe_words = st.sampled_from(
    ["http", "requests", "queue", "depth", "photos", "resize", "jobs", "errors", "cache"]
)
safe_names = st.lists(safe_words, min_size=1, max_size=3).map("_".join)
safe_series_names = st.tuples(
    safe_names, st.sampled_from(["", "_total", "_bucket", "_sum", "_count"])
).map("".join)
safe_label_sets = st.dictionaries(
    st.sampled_from(["host", "queue", "shard", "le", "quantile"]),
    st.text(min_size=1, max_size=8) | st.sampled_from(["0.5", "1", "+Inf", "1e3"]),
    max_size=2,
).map(lambda d: tuple(sorted(d.items())))
kinds = st.sampled_from(["counter", "gauge", "untyped", "histogram", "summary", None])


@pytest.mark.peer("promtool")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(safe_series_names, safe_label_sets, sample_values),
        max_size=8,
    ),
    types=st.dictionaries(safe_names, kinds, max_size=4),
)
# found by Hypothesis: a quantile label inside a histogram family
@example(
    rows=[("http", (), 0.0), ("http_http_sum", (("quantile", "0"),), 0.0)],
    types={"http_http": "histogram"},
)
def test_promtool_finds_nothing_wrong_with_any_rendering_of_well_named_series(
    rows: list[tuple[str, Labels, float]], types: dict[str, str | None]
) -> None:
    meta = {n: MetricMeta(n, k) for n, k in types.items() if k is not None}  # type: ignore[arg-type]
    text = render([(n, lab, 0, v) for n, lab, v in rows], meta)
    result = promtool(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), text


@pytest.mark.peer("promtool")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(metric_names, label_sets, sample_values), max_size=8),
    types=st.dictionaries(metric_names, kinds, max_size=4),
)
def test_promtool_can_always_parse_the_output_whatever_the_names(
    rows: list[tuple[str, Labels, float]], types: dict[str, str | None]
) -> None:
    """Names users chose may draw lints (camelCase, ':'), never a parse error."""
    meta = {n: MetricMeta(n, k) for n, k in types.items() if k is not None}  # type: ignore[arg-type]
    text = render([(n, lab, 0, v) for n, lab, v in rows], meta)
    result = promtool(text)
    assert result.returncode in (0, 3), (result.stdout, result.stderr, text)
    assert "parsing error" not in result.stdout + result.stderr, text
    assert "error while linting" not in result.stdout + result.stderr, text


@given(
    rows=st.lists(st.tuples(metric_names, label_sets, sample_values), max_size=12),
    types=st.dictionaries(metric_names, kinds, max_size=6),
)
def test_render_then_parse_gives_back_every_latest_value(
    rows: list[tuple[str, Labels, float]], types: dict[str, str | None]
) -> None:
    meta = {n: MetricMeta(n, k) for n, k in types.items() if k is not None}  # type: ignore[arg-type]
    text = render([(n, lab, 0, v) for n, lab, v in rows], meta)
    parsed = parse_prometheus(text, "metrics")
    assert parsed.errors == []
    latest = {(n, lab): v for n, lab, v in rows}
    got = {s.key: s.value for s in parsed.samples}
    assert got.keys() == latest.keys()
    for key, value in latest.items():
        assert got[key] == value or (math.isnan(got[key]) and math.isnan(value))
    assert all(s.timestamp_ms is None for s in parsed.samples)
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert families == sorted(set(families))
