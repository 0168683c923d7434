"""Spool file parsers: every good line counts, every bad line is one clear error."""

from __future__ import annotations

import math
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.exceptions import ParseError
from signalbox.metrics.parse.keyvalue import _keyvalue_batch, _keyvalue_lines, parse_keyvalue
from signalbox.metrics.parse.lex import LineError, Parsed
from signalbox.metrics.parse.promtext import _prometheus_batch, _prometheus_lines, parse_prometheus
from signalbox.metrics.samples import (
    Labels,
    MetricMeta,
    Sample,
    escape_label_value,
    labels_of,
    sanitize_name,
)

# ---------------------------------------------------------------------------------------
# Strategies (also used by test_openmetrics and test_expose).

_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:"
_NAME_REST = _NAME_START + "0123456789"

metric_names = st.builds(
    str.__add__, st.sampled_from(_NAME_START), st.text(_NAME_REST, max_size=10)
)
graphite_names = st.builds(
    str.__add__, st.sampled_from(_NAME_START + ".-/"), st.text(_NAME_REST + ".-/", max_size=10)
)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9]{0,6}", fullmatch=True)


def _label_char_ok(c: str) -> bool:
    cat = unicodedata.category(c)
    return c in "\n\t" or (cat not in ("Cc", "Cs") and c != "\ufffd")


label_values = st.text(
    st.characters(codec="utf-8").filter(_label_char_ok) | st.sampled_from('"\\\n{}=,# '),
    min_size=1,
    max_size=12,
)
label_sets = st.dictionaries(label_names, label_values, max_size=3).map(labels_of)
sample_values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53).map(
    float
)


def norm(samples: list[Sample]) -> list[tuple[object, ...]]:
    """Samples made comparable: NaN != NaN would make equal parses look different."""
    return [
        (s.name, s.labels, "NaN" if math.isnan(s.value) else s.value, s.timestamp_ms)
        for s in samples
    ]


def norm_parsed(p: Parsed) -> tuple[object, ...]:
    return norm(p.samples), p.metas, p.errors


def text_labels(labels: Labels, *, spaced: bool = False, trailing_comma: bool = False) -> str:
    if not labels:
        return ""
    sep = ", " if spaced else ","
    inner = sep.join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
    return "{" + inner + ("," if trailing_comma else "") + "}"


def text_value(v: float, style: int = 0) -> str:
    if math.isnan(v):
        return ("NaN", "nan")[style % 2]
    if math.isinf(v):
        return ("+Inf", "Inf", "inf")[style % 3] if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15 and style % 2:
        return str(int(v))
    return repr(v)


def lines_of(text: str) -> list[str]:
    text = text.removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines[-1] == "" else lines


# ---------------------------------------------------------------------------------------
# *.metrics: the good path


def test_seed_example_is_a_gauge_sample() -> None:
    p = parse_keyvalue("image_processed=30\n", "photos.metrics")
    assert p.samples == [Sample("image_processed", (), 30.0)]
    assert p.metas == [MetricMeta("image_processed", "gauge", "")]
    assert p.errors == []


def test_labels_are_parsed_sorted_and_unescaped() -> None:
    p = parse_keyvalue('key{shard="7",dc="x \\"q\\" \\\\ \\n"}=1\n', "f.metrics")
    assert p.errors == []
    assert p.samples == [Sample("key", (("dc", 'x "q" \\ \n'), ("shard", "7")), 1.0)]


def test_blanks_around_equals_and_label_tokens_are_allowed() -> None:
    text = 'a = 1\nb\t=\t2\n  c=3  \nd { x = "1" , y="2", } = 4\n'
    p = parse_keyvalue(text, "f")
    assert p.errors == []
    assert [(s.name, s.labels, s.value) for s in p.samples] == [
        ("a", (), 1.0),
        ("b", (), 2.0),
        ("c", (), 3.0),
        ("d", (("x", "1"), ("y", "2")), 4.0),
    ]


def test_comments_blank_lines_crlf_bom_and_missing_final_newline_are_fine() -> None:
    text = "\ufeff# written by cron\r\n\r\n  # indented comment\r\na=1\r\n\r\nb=2"
    p = parse_keyvalue(text, "f")
    assert p.errors == []
    assert [(s.name, s.value) for s in p.samples] == [("a", 1.0), ("b", 2.0)]


def test_graphite_style_keys_are_sanitized() -> None:
    p = parse_keyvalue("image.processed=1\napi-hits=2\nweb/requests=3\n", "f")
    assert [s.name for s in p.samples] == ["image_processed", "api_hits", "web_requests"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30", 30.0),
        ("-4", -4.0),
        ("2.5", 2.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("-2.5E-3", -0.0025),
        ("+Inf", math.inf),
        ("-Inf", -math.inf),
        ("Inf", math.inf),
    ],
)
def test_numeric_value_forms_are_accepted(text: str, value: float) -> None:
    p = parse_keyvalue(f"m={text}\n", "f")
    assert p.errors == [] and p.samples[0].value == value


def test_nan_is_accepted() -> None:
    p = parse_keyvalue("m=NaN\n", "f")
    assert p.errors == [] and math.isnan(p.samples[0].value)


@pytest.mark.parametrize("value", ["true", "1,5", "abc", "1_000", "\u0661\u0662", "0x10", "1 2"])
def test_non_numbers_are_refused_naming_the_value(value: str) -> None:
    p = parse_keyvalue(f"m={value}\n", "f.metrics")
    assert p.samples == []
    assert [(e.line, e.reason) for e in p.errors] == [(1, f"value '{value}' is not a number")]


def test_empty_label_value_is_the_same_series_as_no_label() -> None:
    p = parse_keyvalue('m{a=""}=1\n', "f")
    assert p.samples == [Sample("m", (), 1.0)]


def test_empty_label_set_is_allowed() -> None:
    assert parse_keyvalue("m{}=1\n", "f").samples == [Sample("m", (), 1.0)]


# ---------------------------------------------------------------------------------------
# *.metrics: every error reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("image_processed", "expected NAME=VALUE"),
        ("m=", "missing value: expected NAME=VALUE"),
        ("=3", "missing metric name: expected NAME=VALUE"),
        (
            "9x=1",
            "invalid metric name '9x': must match [a-zA-Z_:][a-zA-Z0-9_:]* "
            "('.', '-' and '/' are turned into '_')",
        ),
        ("a b=1", "invalid metric name 'a b': must match [a-zA-Z_:][a-zA-Z0-9_:]* "),
        ('m{a="1",a="2"}=1', "duplicate label 'a'"),
        ('m{a="1}=1', "unterminated label value for 'a'"),
        ('m{a="1"', "unterminated label set: expected ',' or '}'"),
        ('m{a="1"=1', "expected ',' or '}' after the value of label 'a', found '='"),
        ('m{__name__="x"}=1', "reserved label name '__name__'"),
        ('m{9a="1"}=1', "invalid label name '9a': must match [a-zA-Z_][a-zA-Z0-9_]*"),
        ('m{a="\\t"}=1', "invalid escape '\\t' in the value of label 'a'"),
        ("m{a=1}=1", "expected '\"' to start the value of label 'a'"),
        ('m{a "1"}=1', "expected '=' after label name 'a'"),
        ('m{a="1" b="2"}=1', "expected ',' or '}' after the value of label 'a', found 'b'"),
        ("m{,}=1", "expected a label name or '}' at column 3, found ','"),
        ('m{a="1"} x=1', "expected '=' after the label set: NAME{LABELS}=VALUE"),
    ],
)
def test_each_bad_line_gets_a_reason_saying_what_was_expected(line: str, reason: str) -> None:
    p = parse_keyvalue(f"good=1\n{line}\n", "f.metrics")
    assert p.samples == [Sample("good", (), 1.0)]
    assert len(p.errors) == 1
    err = p.errors[0]
    assert (err.source, err.line) == ("f.metrics", 2)
    assert err.reason.startswith(reason), err.reason
    assert err.text == line


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a=\x001", "line contains control character \\x00 at column 3"),
        ("a=1\x1b", "line contains control character \\x1b at column 4"),
        ("a\ufffd=1", "line contains bytes that are not valid UTF-8 text (U+FFFD) at column 2"),
        ("a=1\r2", "line contains a carriage return (\\r) at column 4"),
        ("# comment \x07", "line contains control character \\x07 at column 11"),
    ],
)
def test_control_characters_and_undecodable_bytes_make_an_error_line(raw: str, reason: str) -> None:
    p = parse_keyvalue(f"ok=1\n{raw}\nok2=2\n", "f")
    assert [s.name for s in p.samples] == ["ok", "ok2"]
    assert [(e.line, e.reason) for e in p.errors] == [(2, reason)]
    assert "\x00" not in p.errors[0].text and "\x1b" not in p.errors[0].text


def test_binary_garbage_decoded_with_replace_is_reported_not_raised() -> None:
    data = b"good=1\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\nalso_good=2\n"
    p = parse_keyvalue(data.decode("utf-8", errors="replace"), "f")
    assert [s.name for s in p.samples] == ["good", "also_good"]
    assert [e.line for e in p.errors] == [2, 3, 4]


def test_error_text_is_truncated_and_escaped() -> None:
    p = parse_keyvalue("x" * 500 + "\x01\n", "f")
    (err,) = p.errors
    assert len(err.text) <= 210 and err.text.endswith("...")
    p = parse_keyvalue("bad\x02line\n", "f")
    assert p.errors[0].text == "bad\\x02line"


def test_duplicate_series_later_line_wins_and_earlier_line_is_reported() -> None:
    text = 'a=1\nb{x="1"}=1\na=2\nb{x="1"}=5\na=3\n'
    p = parse_keyvalue(text, "f")
    assert [(s.name, s.value) for s in p.samples] == [("b", 5.0), ("a", 3.0)]
    assert [(e.line, e.reason) for e in p.errors] == [
        (1, "duplicate series a: line 3 overrides line 1 (the later line wins)"),
        (2, 'duplicate series b{x="1"}: line 4 overrides line 2 (the later line wins)'),
        (3, "duplicate series a: line 5 overrides line 3 (the later line wins)"),
    ]


def test_sanitized_names_that_collide_are_duplicates() -> None:
    p = parse_keyvalue("a.b=1\na_b=2\n", "f")
    assert p.samples == [Sample("a_b", (), 2.0)]
    assert p.errors[0].line == 1


def test_one_meta_per_name_in_order_of_first_appearance() -> None:
    p = parse_keyvalue('b{x="1"}=1\na=2\nb{x="2"}=3\n', "f")
    assert p.metas == [MetricMeta("b", "gauge", ""), MetricMeta("a", "gauge", "")]


def test_line_error_converts_to_a_parse_error_naming_file_and_line() -> None:
    err = parse_keyvalue("oops\n", "spool/x.metrics").errors[0]
    assert str(err) == "spool/x.metrics:1: expected NAME=VALUE"
    exc = err.to_exception()
    assert isinstance(exc, ParseError)
    assert (exc.source, exc.line, exc.reason, exc.text) == (
        "spool/x.metrics",
        1,
        "expected NAME=VALUE",
        "oops",
    )


def test_clean_files_take_the_batch_path() -> None:
    """The fast path must not silently fall back for ordinary files (that is the perf budget)."""
    files = [
        "".join(f"image_processed_{i}={i}\n" for i in range(50)),
        "# cron job\n\n" + "".join(f'req{{shard="{i}",dc="x"}} = {i}.5\n' for i in range(50)),
        "".join(f"app.host{i}.hits-total={i}\r\n" for i in range(50)),
        'a=1\nb{x="1"}=2\nc{y="2",z="3"}=NaN\n',
    ]
    for text in files:
        fast = _keyvalue_batch(text)
        assert fast is not None
        assert norm_parsed(fast) == norm_parsed(_keyvalue_lines(text, "f"))


# ---------------------------------------------------------------------------------------
# *.prom

NODE_EXPORTER_STYLE = """\
# HELP node_textfile_backup_last_success_timestamp_seconds Last successful backup.
# TYPE node_textfile_backup_last_success_timestamp_seconds gauge
node_textfile_backup_last_success_timestamp_seconds 1.7e+09
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9
# Minimalistic line:
metric_without_timestamp_and_labels 12.47
# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045
# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"""


def test_the_exposition_format_documentation_example_parses_completely() -> None:
    p = parse_prometheus(NODE_EXPORTER_STYLE, "f.prom")
    assert p.errors == []
    assert len(p.samples) == 15
    by_key = {s.key: s for s in p.samples}
    s = by_key[("http_requests_total", (("code", "400"), ("method", "post")))]
    assert (s.value, s.timestamp_ms) == (3.0, 1395066363000)
    s = by_key[
        (
            "msdos_file_access_time_seconds",
            (("error", 'Cannot find file:\n"FILE.TXT"'), ("path", "C:\\DIR\\FILE.TXT")),
        )
    ]
    assert s.value == 1.458255915e9
    assert by_key[("something_weird", (("problem", "division by zero"),))].timestamp_ms == -3982045
    assert {m.name: m.type for m in p.metas} == {
        "node_textfile_backup_last_success_timestamp_seconds": "gauge",
        "http_requests_total": "counter",
        "http_request_duration_seconds": "histogram",
        "rpc_duration_seconds": "summary",
        "msdos_file_access_time_seconds": "untyped",
        "metric_without_timestamp_and_labels": "untyped",
        "something_weird": "untyped",
    }
    help_of = {m.name: m.help for m in p.metas}
    assert help_of["http_requests_total"] == "The total number of HTTP requests."


def test_histogram_series_are_plain_series_with_the_type_on_the_base_name() -> None:
    p = parse_prometheus(NODE_EXPORTER_STYLE, "f.prom")
    names = {s.name for s in p.samples}
    assert {
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
    } <= names
    assert "http_request_duration_seconds_bucket" not in {m.name for m in p.metas}


def test_help_text_escapes_are_decoded() -> None:
    p = parse_prometheus('# HELP m Line one\\nback\\\\slash "q"\nm 1\n', "f")
    assert p.metas == [MetricMeta("m", "untyped", 'Line one\nback\\slash "q"')]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("m\n", 1, "missing value: expected NAME[{LABELS}] VALUE [TIMESTAMP]"),
        ("m 1 2 3\n", 1, "unexpected text after the timestamp"),
        ("m abc\n", 1, "value 'abc' is not a number"),
        ("m 1 1.5\n", 1, "timestamp '1.5' is not an integer (milliseconds since the epoch)"),
        ("m 1 99999999999999999999\n", 1, "timestamp '99999999999999999999' is out of range"),
        ("9m 1\n", 1, "invalid metric name '9m': must match [a-zA-Z_:][a-zA-Z0-9_:]*"),
        ("m.dot 1\n", 1, "invalid metric name 'm.dot'"),
        ('{a="1"} 1\n', 1, "missing metric name before '{'"),
        ('m{a="1" 1\n', 1, "expected ',' or '}' after the value of label 'a'"),
        ('m{a="1",a="2"} 1\n', 1, "duplicate label 'a'"),
        ('m{__a="1"} 1\n', 1, "reserved label name '__a'"),
        ("# TYPE m flurb\nm 1\n", 1, "unknown metric type 'flurb' for 'm'"),
        ("# TYPE m gauge\n# TYPE m gauge\nm 1\n", 2, "second # TYPE for 'm' (first on line 2)"),
        ("# HELP m a\n# HELP m b\nm 1\n", 2, "second # HELP for 'm' (first on line 2)"),
        ("m 1\n# TYPE m gauge\n", 2, "# TYPE for 'm' comes after its samples (line 2)"),
        ("# HELP m bad \\t escape\nm 1\n", 1, "invalid escape in # HELP for 'm'"),
        ("# HELP\n", 1, "expected '# HELP NAME ...': metric name missing"),
        ("# TYPE 1m gauge\n", 1, "invalid metric name '1m' in # TYPE"),
        ("# TYPE h histogram\nh_bucket 1\n", 2, "histogram 'h': sample 'h_bucket' needs a 'le'"),
        ('# TYPE h histogram\nh_bucket{le="x"} 1\n', 2, "histogram 'h': le value 'x' is not"),
        ("# TYPE s summary\ns 1\n", 2, "summary 's': sample 's' needs a 'quantile' label"),
        ("m\x00 1\n", 1, "line contains control character \\x00 at column 2"),
    ],
)
def test_prom_bad_lines_get_one_error_each(text: str, line: int, reason: str) -> None:
    p = parse_prometheus("good 1\n" + text, "f.prom")
    assert Sample("good", (), 1.0) in p.samples
    assert [e.line for e in p.errors] == [line + 1], p.errors
    assert p.errors[0].reason.startswith(reason), p.errors[0].reason


def test_ordinary_comments_and_indented_lines_are_fine() -> None:
    p = parse_prometheus("# just a note\n#HELPER is not HELP\n   m 1\n\t# indented\n", "f")
    assert p.errors == [] and p.samples == [Sample("m", (), 1.0)]


def test_prom_duplicate_series_later_wins_earlier_reported() -> None:
    p = parse_prometheus('m{a="1"} 1\nm{a="1"} 2 1000\n', "f")
    assert p.samples == [Sample("m", (("a", "1"),), 2.0, 1000)]
    assert [(e.line, e.reason) for e in p.errors] == [
        (1, 'duplicate series m{a="1"}: line 2 overrides line 1 (the later line wins)')
    ]


def test_type_without_samples_and_help_only_families_still_yield_metadata() -> None:
    p = parse_prometheus("# TYPE a counter\n# HELP b Bee.\nb 1\nc 2\n", "f")
    assert p.metas == [
        MetricMeta("a", "counter", ""),
        MetricMeta("b", "untyped", "Bee."),
        MetricMeta("c", "untyped", ""),
    ]


def test_clean_prom_files_take_the_batch_path() -> None:
    assert _prometheus_batch(NODE_EXPORTER_STYLE) is not None
    mixed = '# TYPE a gauge\na 1\nb{x="1"} 2 1000\nc 3\nb{x="2"} 4\n'
    fast = _prometheus_batch(mixed)
    assert fast is not None
    assert norm_parsed(fast) == norm_parsed(_prometheus_lines(mixed, "f"))


# ---------------------------------------------------------------------------------------
# Properties

keyvalue_samples = st.lists(
    st.tuples(graphite_names, label_sets, sample_values),
    max_size=12,
    unique_by=lambda t: (sanitize_name(t[0]), t[1]),
)


@given(
    rows=keyvalue_samples,
    style=st.integers(0, 5),
    comments=st.lists(st.integers(0, 12), max_size=3),
    crlf=st.booleans(),
    final_newline=st.booleans(),
)
def test_rendered_keyvalue_files_parse_back_to_the_same_samples(
    rows: list[tuple[str, Labels, float]],
    style: int,
    comments: list[int],
    crlf: bool,
    final_newline: bool,
) -> None:
    lines = []
    for i, (name, labels, value) in enumerate(rows):
        if i in comments:
            lines.append("# a comment with = and {braces}")
            lines.append("")
        eq = (" = ", "=", "\t=  ")[style % 3]
        lab = text_labels(labels, spaced=style == 4, trailing_comma=style == 5)
        lines.append(f"{name}{lab}{eq}{text_value(value, style)}")
    text = ("\r\n" if crlf else "\n").join(lines) + ("\n" if final_newline and lines else "")
    p = parse_keyvalue(text, "f.metrics")
    assert p.errors == []
    expected = [Sample(sanitize_name(n), labels, v) for n, labels, v in rows]
    assert norm(p.samples) == norm(expected)
    assert [m.name for m in p.metas] == list(dict.fromkeys(s.name for s in expected))
    assert norm_parsed(p) == norm_parsed(_keyvalue_lines(text, "f.metrics"))


prom_samples = st.lists(
    st.tuples(metric_names, label_sets, sample_values, st.none() | st.integers(-(2**62), 2**62)),
    max_size=12,
    unique_by=lambda t: (t[0], t[1]),
)


@given(rows=prom_samples, style=st.integers(0, 5))
def test_rendered_prom_files_parse_back_to_the_same_samples(
    rows: list[tuple[str, Labels, float, int | None]], style: int
) -> None:
    lines = ["# a comment"]
    for name, labels, value, ts in rows:
        lab = text_labels(labels, spaced=style == 4, trailing_comma=style == 5)
        stamp = "" if ts is None else f" {ts}"
        lines.append(f"{name}{lab}{'  ' if style == 3 else ' '}{text_value(value, style)}{stamp}")
    text = "\n".join(lines) + "\n"
    p = parse_prometheus(text, "f.prom")
    assert p.errors == []
    assert norm(p.samples) == norm([Sample(*row) for row in rows])
    assert norm_parsed(p) == norm_parsed(_prometheus_lines(text, "f.prom"))


@given(
    rows=prom_samples,
    declared=st.dictionaries(
        metric_names,
        st.tuples(
            st.sampled_from(["counter", "gauge", "histogram", "summary", "untyped"]),
            st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=10),
        ),
        max_size=4,
    ),
    suffixes=st.lists(st.sampled_from(["", "_bucket", "_sum", "_count"]), max_size=12),
)
def test_prom_metadata_and_families_agree_between_batch_and_line_parsers(
    rows: list[tuple[str, Labels, float, int | None]],
    declared: dict[str, tuple[str, str]],
    suffixes: list[str],
) -> None:
    lines = [f"# HELP {n} {h}\n# TYPE {n} {t}" for n, (t, h) in declared.items()]
    names = list(declared) or ["m"]
    for i, (name, labels, value, ts) in enumerate(rows):
        if i < len(suffixes):  # make some samples members of declared families
            name = names[i % len(names)] + suffixes[i]
            if suffixes[i] == "_bucket" or (not suffixes[i] and i % 2):
                labels = (*labels, ("le", "0.5"), ("quantile", "0.9"))
                labels = tuple(sorted(dict(labels).items()))
        stamp = "" if ts is None else f" {ts}"
        lines.append(f"{name}{text_labels(labels)} {text_value(value)}{stamp}")
    text = "\n".join(lines) + "\n"
    reference = _prometheus_lines(text, "f.prom")
    assert norm_parsed(parse_prometheus(text, "f.prom")) == norm_parsed(reference)
    fast = _prometheus_batch(text)
    if fast is not None:
        assert norm_parsed(fast) == norm_parsed(reference)


def _line_accounting(text: str, p: Parsed, *, comments_can_be_meta: bool) -> None:
    """Every line is a sample, an ignorable line, or exactly one error: nothing dropped."""
    lines = lines_of(text)
    error_lines = [e.line for e in p.errors]
    assert len(error_lines) == len(set(error_lines)), "a line got two errors"
    assert all(1 <= n <= len(lines) for n in error_lines)
    ignorable = 0
    for n, line in enumerate(lines, 1):
        stripped = line.strip(" \t")
        if n in error_lines:
            continue
        if not stripped or (stripped.startswith("#")):
            ignorable += 1
    assert len(p.samples) + len(p.errors) + ignorable == len(lines)
    if not comments_can_be_meta:  # key=value comments are never errors unless corrupt
        for e in p.errors:
            stripped = lines[e.line - 1].strip(" \t")
            if stripped.startswith("#"):
                assert e.reason.startswith("line contains")


line_soup = st.lists(
    st.sampled_from(
        [
            "a=1",
            "a=2",
            'b{x="1"}=3',
            'b{ x="1" }=3',
            'b{x="1",}=4',
            'c{x="a\\"b"}=1',
            "c=NaN",
            "# comment",
            "",
            "  ",
            "a",
            "=1",
            "a=x",
            "a==1",
            'd{x="1"=1',
            "d{x=1}=2",
            "a b 1",
            "m 1",
            'm{x="1"} 2',
            "m 1 1000",
            "m 1 1.5",
            "# TYPE m gauge",
            "# HELP m help",
            "# TYPE h histogram",
            'h_bucket{le="1"} 1',
            "h_bucket 1",
            "h_sum 2",
            "h 3",
            "# TYPE bad_type flurb",
            "\x00",
            "\ufffd=1",
            "\u00a0m 1",
            "m\u00a01",
        ]
    )
    | st.text(max_size=30),
    max_size=25,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(lines=line_soup, crlf=st.booleans())
def test_any_keyvalue_text_is_fully_accounted_for_and_both_paths_agree(
    lines: list[str], crlf: bool
) -> None:
    text = ("\r\n" if crlf else "\n").join(lines)
    p = parse_keyvalue(text, "f")
    _line_accounting(text, p, comments_can_be_meta=False)
    reference = _keyvalue_lines(text, "f")
    assert norm_parsed(p) == norm_parsed(reference)
    fast = _keyvalue_batch(text)
    if fast is not None:
        assert norm_parsed(fast) == norm_parsed(reference)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(lines=line_soup, crlf=st.booleans())
def test_any_prom_text_is_fully_accounted_for_and_both_paths_agree(
    lines: list[str], crlf: bool
) -> None:
    text = ("\r\n" if crlf else "\n").join(lines)
    p = parse_prometheus(text, "f")
    _line_accounting(text, p, comments_can_be_meta=True)
    reference = _prometheus_lines(text, "f")
    assert norm_parsed(p) == norm_parsed(reference)
    fast = _prometheus_batch(text)
    if fast is not None:
        assert norm_parsed(fast) == norm_parsed(reference)


@given(data=st.binary(max_size=300))
def test_binary_garbage_never_raises(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    for parse in (parse_keyvalue, parse_prometheus):
        p = parse(text, "f")
        assert all(isinstance(e, LineError) for e in p.errors)
        _line_accounting(text, p, comments_can_be_meta=parse is parse_prometheus)
