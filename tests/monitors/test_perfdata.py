"""Nagios plugin output parsing and perfdata -> metric samples."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.samples import LABEL_NAME, METRIC_NAME
from signalbox.monitors.nagios.perfdata_metrics import perfdata_metadata, perfdata_to_samples
from signalbox.monitors.nagios.perfdata_parse import (
    PerfDatum,
    Range,
    format_perfdatum,
    format_range,
    parse_perfdata,
    parse_plugin_output,
    parse_range,
)

GUIDELINES_EXAMPLE = """DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968
/ 15272 MB (77%);
/boot 68 MB (69%);
/home 69357 MB (27%);
/var/log 819 MB (84%); | /boot=68MB;88;93;0;98
/home=69357MB;253404;253409;0;253414
/var/log=818MB;970;975;0;980
"""


def test_status_text_alone_has_no_perfdata_and_no_errors() -> None:
    out = parse_plugin_output("OK: all good\n")
    assert (out.status_text, out.long_output, out.perfdata, out.errors) == (
        "OK: all good",
        "",
        (),
        (),
    )


def test_long_output_and_perfdata_continuing_over_following_lines_follow_the_guidelines() -> None:
    out = parse_plugin_output(GUIDELINES_EXAMPLE)
    assert out.status_text == "DISK OK - free space: / 3326 MB (56%);"
    assert (
        out.long_output
        == "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%);"
    )
    assert [d.label for d in out.perfdata] == ["/", "/boot", "/home", "/var/log"]
    assert out.perfdata[3] == PerfDatum(
        "/var/log", 818.0, "MB", Range(0, 970), Range(0, 975), 0.0, 980.0
    )
    assert out.errors == ()


def test_quoted_labels_keep_spaces_and_doubled_quotes_are_one_quote() -> None:
    out = parse_plugin_output("OK | 'free space'=5 'it''s'=6 '='=7")
    assert [(d.label, d.value) for d in out.perfdata] == [
        ("free space", 5.0),
        ("it's", 6.0),
        ("=", 7.0),
    ]


def test_value_u_is_no_sample_and_not_an_error() -> None:
    out = parse_plugin_output("UNKNOWN | rta=U;100;200")
    assert out.perfdata == (PerfDatum("rta", None, "", Range(0, 100), Range(0, 200)),)
    assert out.errors == ()


@pytest.mark.parametrize("item", ["a=1", "a=1;", "a=1;;", "a=1;;;", "a=1;;;;"])
def test_trailing_empty_fields_are_allowed(item: str) -> None:
    assert parse_plugin_output(f"OK | {item}") == parse_plugin_output("OK | a=1")


def test_a_bad_item_is_reported_with_its_line_and_the_others_still_count() -> None:
    out = parse_plugin_output("OK | good=1 bad=abc also=2\nlong | x= y=3", source="check_foo")
    assert [d.label for d in out.perfdata] == ["good", "also", "y"]
    assert [str(e) for e in out.errors] == [
        "check_foo:1: perfdata item 'bad=abc': value 'abc' is not a number or U",
        "check_foo:2: perfdata item 'x=': missing value",
    ]
    assert out.errors[0].text == "bad=abc"


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("noequals", "expected label=value"),
        ("=5", "empty label"),
        ("''=5", "empty label"),
        ("a=1,5", "decimal comma"),
        ("a=5!!", "not a unit"),
        ("a=1e999", "not finite"),
        ("'open=5", "unterminated quoted label"),
        ("'q'x=5", "expected '=' after the quoted label"),
    ],
)
def test_malformed_items_name_the_item_and_the_problem(item: str, reason: str) -> None:
    out = parse_plugin_output(f"OK | {item}")
    assert out.perfdata == ()
    assert len(out.errors) == 1
    assert reason in str(out.errors[0])
    assert item.split()[0] in str(out.errors[0])


def test_a_bad_threshold_drops_only_that_field_and_says_so() -> None:
    out = parse_plugin_output("OK | a=5;x;10;0;nan")
    assert out.perfdata == (PerfDatum("a", 5.0, "", None, Range(0, 10), 0.0, None),)
    assert ["warn range 'x'" in str(e) for e in out.errors] == [True, False]
    assert "max 'nan' is not a finite number" in str(out.errors[1])


def test_more_than_five_fields_keeps_the_datum_and_reports_the_extra() -> None:
    out = parse_plugin_output("OK | a=1;2;3;4;5;6")
    assert out.perfdata == (PerfDatum("a", 1.0, "", Range(0, 2), Range(0, 3), 4.0, 5.0),)
    assert "6 fields" in str(out.errors[0])


def test_unknown_units_are_kept_unconverted_in_a_label() -> None:
    out = parse_plugin_output("OK | fan=1200rpm")
    assert out.perfdata[0].uom == "rpm"
    assert perfdata_to_samples("sensors", out.perfdata) == [
        ("nagios_sensors_fan", (("nagios_uom", "rpm"),), 1200.0, None)
    ]


def test_carriage_returns_are_line_ends() -> None:
    out = parse_plugin_output("OK | a=1\r\nmore\r\n")
    assert (out.status_text, out.long_output, len(out.perfdata)) == ("OK", "more", 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", Range(0, 10)),
        ("10:", Range(10, math.inf, start_given=True)),
        ("~:10", Range(-math.inf, 10)),
        ("10:20", Range(10, 20, start_given=True)),
        ("@10:20", Range(10, 20, inside=True, start_given=True)),
        ("-5.5:1e3", Range(-5.5, 1000, start_given=True)),
    ],
)
def test_ranges_parse_as_the_guidelines_define_them(text: str, expected: Range) -> None:
    assert parse_range(text) == expected
    assert parse_range(format_range(expected)) == expected


@pytest.mark.parametrize("text", ["", "@", "~", "20:10", "a:b", "1:2:3", "inf"])
def test_bad_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="range"):
        parse_range(text)


@pytest.mark.parametrize(
    ("text", "value", "alerts"),
    [
        ("10", 11, True),
        ("10", 10, False),
        ("10", -1, True),
        ("10:", 9, True),
        ("~:10", -100, False),
        ("10:20", 21, True),
        ("@10:20", 15, True),
        ("@10:20", 21, False),
    ],
)
def test_range_alerts_like_a_plugin_would(text: str, value: float, alerts: bool) -> None:
    assert parse_range(text).alerts(value) is alerts


def test_units_are_converted_to_base_units_and_named_by_them() -> None:
    data, errors = parse_perfdata(
        "rta=250ms;100;500;0 tx=2KB;;;0;10 up=90% req=1500c;1000 t=5us big=1TB"
    )
    assert errors == []
    samples = {(s.name, s.value) for s in perfdata_to_samples("ping", data)}
    assert samples == {
        ("nagios_ping_rta_seconds", 0.25),
        ("nagios_ping_rta_warn_seconds", 0.1),
        ("nagios_ping_rta_crit_seconds", 0.5),
        ("nagios_ping_rta_min_seconds", 0.0),
        ("nagios_ping_tx_bytes", 2048.0),
        ("nagios_ping_tx_min_bytes", 0.0),
        ("nagios_ping_tx_max_bytes", 10240.0),
        ("nagios_ping_up_percent", 90.0),
        ("nagios_ping_req_total", 1500.0),
        ("nagios_ping_req_warn", 1000.0),
        ("nagios_ping_t_seconds", 5e-6),
        ("nagios_ping_big_bytes", 1024.0**4),
    }


def test_metadata_types_counters_and_names_units() -> None:
    data, _ = parse_perfdata("req=5c rta=1ms")
    metas = {m.name: (m.type, m.unit) for m in perfdata_metadata("web", data)}
    assert metas == {
        "nagios_web_req_total": ("counter", ""),
        "nagios_web_rta_seconds": ("gauge", "seconds"),
    }


def test_sanitized_labels_keep_the_original_so_series_never_collide() -> None:
    data, _ = parse_perfdata("/=1B /var=2B _var=3B load1=4")
    samples = perfdata_to_samples("check disk", data, labels={"host": "web1"}, timestamp_ms=7)
    assert samples == [
        ("nagios_check_disk_bytes", (("host", "web1"), ("nagios_label", "/")), 1.0, 7),
        ("nagios_check_disk_var_bytes", (("host", "web1"), ("nagios_label", "/var")), 2.0, 7),
        ("nagios_check_disk_var_bytes", (("host", "web1"), ("nagios_label", "_var")), 3.0, 7),
        ("nagios_check_disk_load1", (("host", "web1"),), 4.0, 7),
    ]


def test_thresholds_become_series_with_low_bounds_and_inside_marks() -> None:
    data, _ = parse_perfdata("t=5;10:20;@1:2")
    assert perfdata_to_samples("x", data) == [
        ("nagios_x_t", (), 5.0, None),
        ("nagios_x_t_warn", (), 20.0, None),
        ("nagios_x_t_warn_low", (), 10.0, None),
        ("nagios_x_t_crit", (("nagios_alert", "inside"),), 2.0, None),
        ("nagios_x_t_crit_low", (("nagios_alert", "inside"),), 1.0, None),
    ]


def test_unknown_value_emits_thresholds_but_no_value_sample() -> None:
    data, _ = parse_perfdata("rta=U;100;200")
    assert [s.name for s in perfdata_to_samples("ping", data)] == [
        "nagios_ping_rta_warn",
        "nagios_ping_rta_crit",
    ]


def test_a_label_already_ending_in_its_unit_is_not_suffixed_twice() -> None:
    data, _ = parse_perfdata("time_seconds=2s;5")
    assert [s.name for s in perfdata_to_samples("j", data)] == [
        "nagios_j_time_seconds",
        "nagios_j_time_seconds_warn",
    ]


@given(st.text())
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    out = parse_plugin_output(text)
    for e in out.errors:
        assert e.line >= 1 and e.reason


_labels = st.text(min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and "\n" not in s and "\r" not in s
)
_numbers = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
_uoms = st.sampled_from(["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"])


@st.composite
def _ranges(draw: st.DrawFn) -> Range | None:
    if draw(st.booleans()):
        return None
    a, b = sorted([draw(_numbers), draw(_numbers)])
    shape = draw(st.sampled_from(["end", "start:end", "start:", "~:end"]))
    inside = draw(st.booleans())
    if shape == "end":
        return Range(0.0, abs(b), inside)
    if shape == "start:":
        return Range(a, math.inf, inside, True)
    if shape == "~:end":
        return Range(-math.inf, b, inside)
    return Range(a, b, inside, True)


@st.composite
def _data(draw: st.DrawFn) -> PerfDatum:
    value = None if draw(st.booleans()) and draw(st.booleans()) else draw(_numbers)
    return PerfDatum(
        label=draw(_labels),
        value=value,
        uom="" if value is None else draw(_uoms),
        warn=draw(_ranges()),
        crit=draw(_ranges()),
        min=draw(st.none() | _numbers),
        max=draw(st.none() | _numbers),
    )


@given(st.lists(_data(), max_size=5))
def test_formatted_perfdata_parses_back_to_the_same_data(data: list[PerfDatum]) -> None:
    text = "OK | " + " ".join(format_perfdatum(d) for d in data)
    out = parse_plugin_output(text)
    assert out.errors == ()
    assert list(out.perfdata) == data


@given(st.lists(_data(), max_size=5), st.text(max_size=10))
def test_every_sample_has_a_valid_metric_name_and_label_names(
    data: list[PerfDatum], check: str
) -> None:
    for s in perfdata_to_samples(check, data):
        assert METRIC_NAME.match(s.name), s.name
        assert all(LABEL_NAME.match(k) for k, _ in s.labels)
        assert math.isfinite(s.value)


@given(st.text(max_size=20))
def test_range_parser_only_ever_raises_value_error(text: str) -> None:
    try:
        r = parse_range(text)
    except ValueError:
        return
    assert r.start <= r.end
