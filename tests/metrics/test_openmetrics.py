"""History import: OpenMetrics with timestamps in seconds, streamed, every problem reported."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.parse.lex import LineError, control_char_reason
from signalbox.metrics.parse.openmetrics import iter_openmetrics
from signalbox.metrics.samples import Labels, MetricMeta, Sample
from tests.metrics.test_parse import label_sets, metric_names, norm, text_labels, text_value

Item = Sample | MetricMeta | LineError


def parse(text: str) -> list[Item]:
    return list(iter_openmetrics(text.splitlines(keepends=True), "h.om"))


def samples(items: list[Item]) -> list[Sample]:
    return [i for i in items if isinstance(i, Sample)]


def metas(items: list[Item]) -> list[MetricMeta]:
    return [i for i in items if isinstance(i, MetricMeta)]


def errors(items: list[Item]) -> list[LineError]:
    return [i for i in items if isinstance(i, LineError)]


EXAMPLE = """\
# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds_sum{path="/api/v1",method="GET"} 9036.32 1700000000
acme_http_router_request_seconds_count{path="/api/v1",method="GET"} 807283.0 1700000000
acme_http_router_request_seconds_created{path="/api/v1",method="GET"} 1605281325.0 1700000000
acme_http_router_request_seconds_sum{path="/api/v2",method="POST"} 479.3 1700000000.5
acme_http_router_request_seconds_count{path="/api/v2",method="POST"} 34.0 1700000000.5
# TYPE go_goroutines gauge
# HELP go_goroutines Number of goroutines that currently exist.
go_goroutines 69 1700000000
go_goroutines 70 1700000015
# TYPE process_cpu counter
# UNIT process_cpu seconds
# HELP process_cpu Total user and system CPU time spent in seconds.
process_cpu_total{mode="user"} 1.1e+01 1700000000 # {trace_id="KOO5S4vxi0o"} 0.67
process_cpu_total{mode="user"} 1.2e+01 1700000015
# EOF
"""


def test_a_complete_file_yields_timed_samples_and_metadata_in_order() -> None:
    items = parse(EXAMPLE)
    assert errors(items) == []
    got = samples(items)
    assert len(got) == 9
    assert got[0] == Sample(
        "acme_http_router_request_seconds_sum",
        (("method", "GET"), ("path", "/api/v1")),
        9036.32,
        1_700_000_000_000,
    )
    assert got[3].timestamp_ms == 1_700_000_000_500
    assert all(s.timestamp_ms is not None for s in got)
    assert metas(items) == [
        MetricMeta(
            "acme_http_router_request_seconds",
            "summary",
            "Latency though all of ACME's HTTP request router.",
            "seconds",
        ),
        MetricMeta("go_goroutines", "gauge", "Number of goroutines that currently exist."),
        MetricMeta(
            "process_cpu_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            "seconds",
        ),
    ]
    # each family's meta comes before its first sample
    assert items.index(metas(items)[2]) < items.index(got[7])


def test_exemplars_are_ignored() -> None:
    items = parse('c_total 1 10 # {trace_id="x y # z"} 0.5 9\n# EOF\n')
    assert samples(items) == [Sample("c_total", (), 1.0, 10_000)]


def test_missing_timestamp_is_an_error_that_says_seconds_are_needed() -> None:
    items = parse("a 1 10\nb 2\nc 3 30\n# EOF\n")
    assert [s.name for s in samples(items)] == ["a", "c"]
    (err,) = errors(items)
    assert (err.source, err.line, err.text) == ("h.om", 2, "b 2")
    assert err.reason.startswith("missing timestamp: history import needs every sample timed")
    assert "seconds" in err.reason


def test_millisecond_timestamps_are_refused_with_a_hint() -> None:
    (err,) = errors(parse("a 1 1700000000000\n# EOF\n"))
    assert "OpenMetrics timestamps are seconds, not milliseconds" in err.reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a", "missing value"),
        ("a x 10", "value 'x' is not a number"),
        ("a 1 x", "timestamp 'x' is not a number of seconds since the epoch"),
        ("a 1 NaN", "timestamp 'NaN' is not a number of seconds"),
        ("a 1 10 11", "unexpected text after the timestamp"),
        ("9a 1 10", "invalid metric name '9a'"),
        ('a{b="1" 1 10', "expected ',' or '}' after the value of label 'b'"),
        ('a{__b="1"} 1 10', "reserved label name '__b'"),
        ("# TYPE a flurb", "unknown metric type 'flurb' for 'a'"),
        ("# HELP a bad \\x escape", "invalid escape in # HELP for 'a'"),
        ("# UNIT", "expected '# UNIT NAME ...'"),
        ("a\x00 1 10", "line contains control character \\x00"),
    ],
)
def test_malformed_lines_are_reported_and_the_rest_is_kept(line: str, reason: str) -> None:
    items = parse(f"ok 1 1\n{line}\nok 2 2\n# EOF\n")
    assert [s.value for s in samples(items)] == [1.0, 2.0]
    (err,) = errors(items)
    assert err.line == 2
    assert err.reason.startswith(reason), err.reason


def test_missing_eof_is_reported_at_the_end_without_losing_samples() -> None:
    items = parse("a 1 10\na 2 20\n")
    assert [s.value for s in samples(items)] == [1.0, 2.0]
    assert isinstance(items[-1], LineError)
    assert items[-1].line == 0
    assert items[-1].reason == "missing '# EOF' at the end after line 2: input truncated?"
    assert str(items[-1]) == "h.om: missing '# EOF' at the end after line 2: input truncated?"


def test_content_after_eof_is_an_error() -> None:
    items = parse("a 1 10\n# EOF\n\na 2 20\n")
    assert [s.value for s in samples(items)] == [1.0]
    assert [(e.line, e.reason) for e in errors(items)] == [(4, "content after '# EOF' (line 2)")]


def test_out_of_order_samples_name_series_line_and_both_timestamps() -> None:
    items = parse(
        'a{x="1"} 1 10\na{x="2"} 1 5\na{x="1"} 2 9.5\na{x="1"} 3 10\na{x="1"} 4 11\n# EOF\n'
    )
    assert [(s.labels, s.value) for s in samples(items)] == [
        ((("x", "1"),), 1.0),
        ((("x", "2"),), 1.0),
        ((("x", "1"),), 4.0),
    ]
    assert [(e.line, e.reason) for e in errors(items)] == [
        (3, 'out of order sample for a{x="1"}: timestamp 9.5 is not after 10 (line 1)'),
        (4, 'out of order sample for a{x="1"}: timestamp 10 is not after 10 (line 1)'),
    ]


def test_metadata_types_map_onto_ours_and_counters_are_keyed_by_their_total_series() -> None:
    text = (
        "# TYPE c counter\nc_total 1 1\n"
        '# TYPE i info\ni_info{v="1"} 1 1\n'
        '# TYPE s stateset\ns{s="a"} 1 1\n'
        '# TYPE g gaugehistogram\ng_bucket{le="+Inf"} 1 1\ng_gcount 1 1\n'
        "# TYPE u unknown\nu 1 1\n"
        '# TYPE h histogram\nh_bucket{le="+Inf"} 1 1\nh_count 1 1\nh_sum 1 1\n'
        "# EOF\n"
    )
    items = parse(text)
    assert errors(items) == []
    assert [(m.name, m.type) for m in metas(items)] == [
        ("c_total", "counter"),
        ("i_info", "gauge"),
        ("s", "gauge"),
        ("g", "gauge"),
        ("u", "untyped"),
        ("h", "histogram"),
    ]


def test_samples_outside_a_declared_family_get_an_untyped_meta_once() -> None:
    items = parse("# TYPE a gauge\na 1 1\nb 1 1\nb 2 2\n# EOF\n")
    assert metas(items) == [MetricMeta("a", "gauge"), MetricMeta("b", "untyped")]


def test_second_metadata_line_for_a_family_is_an_error() -> None:
    (err,) = errors(parse("# TYPE a gauge\n# TYPE a counter\na 1 1\n# EOF\n"))
    assert (err.line, err.reason) == (2, "second # TYPE for 'a' (first on line 1)")


def test_blank_lines_comments_crlf_and_unterminated_last_line_are_tolerated() -> None:
    items = list(iter_openmetrics(["# a note\r\n", "\n", "a 1 1\r\n", "# EOF"], "x"))
    assert errors(items) == [] and [s.value for s in samples(items)] == [1.0]


def test_input_is_consumed_lazily() -> None:
    """A multi-GB file must be importable in batches: items come out as lines go in."""
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        for i in range(1_000_000):
            consumed += 1
            yield f"a {i} {i + 1}\n"

    it = iter_openmetrics(lines(), "big.om")
    first = [next(it) for _ in range(3)]
    assert [type(x) for x in first] == [MetricMeta, Sample, Sample]
    assert consumed < 10


# ---------------------------------------------------------------------------------------
# Properties

series = st.lists(
    st.tuples(metric_names, label_sets),
    min_size=1,
    max_size=5,
    unique=True,
)


@given(
    keys=series,
    points=st.lists(
        st.tuples(st.integers(0, 4), st.floats(allow_nan=True, allow_infinity=True)),
        max_size=20,
    ),
    start=st.integers(-(10**9), 10**10),
)
def test_rendered_history_parses_back_to_the_same_samples(
    keys: list[tuple[str, Labels]], points: list[tuple[int, float]], start: int
) -> None:
    lines = []
    expected = []
    for step, (which, value) in enumerate(points):
        name, labels = keys[which % len(keys)]
        ms = start * 1000 + step * 250
        lines.append(f"{name}{text_labels(labels)} {text_value(value)} {ms / 1000!r}\n")
        expected.append(Sample(name, labels, value, ms))
    items = list(iter_openmetrics([*lines, "# EOF\n"], "p.om"))
    assert errors(items) == []
    assert norm(samples(items)) == norm(expected)


def _is_eof(line: str) -> bool:
    body = line.strip(" \t")
    return (
        control_char_reason(line) is None
        and body.startswith("#")
        and (re.split("[ \t]+", body[1:].strip(" \t")) == ["EOF"])
    )


@given(
    lines=st.lists(
        st.text(max_size=40) | st.sampled_from(["a 1 1", "# EOF", 'a 1 2 # {x="1"} 1', "#EOF"]),
        max_size=20,
    )
)
def test_any_text_never_raises_and_each_sample_line_gives_one_item(lines: list[str]) -> None:
    flat = [line.removesuffix("\r") for line in "\n".join(lines).split("\n")]
    items = list(iter_openmetrics([line + "\n" for line in flat], "x"))
    errs = errors(items)
    numbered = [e.line for e in errs if e.line]
    assert len(numbered) == len(set(numbered)), "a line got two errors"
    eof = next((n for n, line in enumerate(flat, 1) if _is_eof(line)), len(flat) + 1)

    def sample_like(n: int) -> bool:
        body = flat[n - 1].strip(" \t")
        return n < eof and bool(body) and not body.startswith("#")

    sample_lines = [n for n in range(1, len(flat) + 1) if sample_like(n)]
    errors_on_sample_lines = [n for n in numbered if sample_like(n)]
    assert len(samples(items)) + len(errors_on_sample_lines) == len(sample_lines)
    assert any(e.line == 0 for e in errs) == (eof > len(flat))
    for n in numbered:  # lines after "# EOF" are errors unless blank
        if n > eof:
            assert flat[n - 1].strip(" \t")
