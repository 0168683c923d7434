"""Monitor models and thresholds: parsing, evaluation and the set questions lint asks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.monitors.definitions.model import (
    Monitor,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
    worst,
)
from signalbox.monitors.definitions.threshold import (
    OPERATORS,
    Threshold,
    ThresholdError,
    contradictions,
    find_value,
    format_number,
    parse_threshold,
)

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
thresholds = st.builds(Threshold, st.sampled_from(OPERATORS), finite)


# -- State ------------------------------------------------------------------------------


def test_state_values_are_the_upper_case_names() -> None:
    assert [s.value for s in State] == ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
    assert State("CRITICAL") is State.CRITICAL
    assert isinstance(State.OK, str) and str(State.WARNING) == "WARNING"


def test_severity_orders_ok_unknown_warning_critical() -> None:
    ordered = sorted(State, key=lambda s: s.severity)
    assert ordered == [State.OK, State.UNKNOWN, State.WARNING, State.CRITICAL]


def test_worst_picks_the_most_severe_state_and_ok_for_none() -> None:
    assert worst([State.OK, State.CRITICAL, State.WARNING]) is State.CRITICAL
    assert worst([State.OK, State.UNKNOWN]) is State.UNKNOWN
    assert worst([]) is State.OK


def test_only_warning_and_critical_fire() -> None:
    assert [s for s in State if s.firing] == [State.WARNING, State.CRITICAL]


# -- parse_threshold ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("> 4", ">", 4.0),
        (">= 4", ">=", 4.0),
        ("< 0.5", "<", 0.5),
        ("<=-2", "<=", -2.0),
        ("== 0", "==", 0.0),
        ("!= 0", "!=", 0.0),
        ("  >  1e3 ", ">", 1000.0),
        ("< .25", "<", 0.25),
    ],
)
def test_parse_threshold_accepts_every_operator_and_number_form(
    text: str, op: str, value: float
) -> None:
    t = parse_threshold(text)
    assert (t.op, t.value) == (op, value)


@pytest.mark.parametrize("text", [">>4", "4", "> four", "=> 4", "> 4 5", "", "> ", "~ 4", "= 4"])
def test_parse_threshold_rejects_malformed_text_saying_what_was_expected(text: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse_threshold(text)
    assert str(info.value) == (
        f"bad threshold '{text}': expected an operator (>, >=, <, <=, ==, !=) and a number,"
        ' like "> 4"'
    )
    assert info.value.text == text


def test_parse_threshold_rejects_a_bare_number_asking_for_a_quoted_string() -> None:
    with pytest.raises(ThresholdError, match=r"bad threshold 4: .*quoted string in YAML"):
        parse_threshold(4)


def test_parse_threshold_rejects_infinity() -> None:
    with pytest.raises(ThresholdError, match="finite number"):
        parse_threshold("> 1e999")


def test_threshold_error_is_a_value_error_and_a_signalbox_error() -> None:
    from signalbox.exceptions import SignalboxError

    with pytest.raises(ValueError):
        parse_threshold("x")
    assert issubclass(ThresholdError, SignalboxError)


@given(thresholds)
def test_threshold_text_round_trips_through_the_parser(t: Threshold) -> None:
    parsed = parse_threshold(str(t))
    assert parsed.op == t.op
    assert parsed.value == pytest.approx(t.value, rel=1e-6, abs=1e-6)


@given(thresholds, finite)
def test_threshold_holds_like_the_python_comparison(t: Threshold, x: float) -> None:
    expected = {
        ">": x > t.value,
        ">=": x >= t.value,
        "<": x < t.value,
        "<=": x <= t.value,
        "==": x == t.value,
        "!=": x != t.value,
    }[t.op]
    assert t.holds(x) is expected


@pytest.mark.parametrize("op", OPERATORS)
def test_nan_satisfies_no_threshold(op: str) -> None:
    assert not Threshold(op, 1.0).holds(math.nan)  # type: ignore[arg-type]


def test_direction_of_each_operator() -> None:
    assert [Threshold(op, 0).direction for op in OPERATORS] == [
        "above",
        "above",
        "below",
        "below",
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (8.0, "8"),
        (8.6, "8.6"),
        (-3.0, "-3"),
        (0.001, "0.001"),
        (1e-9, "1e-09"),
        (2 / 3, "0.666667"),
    ],
)
def test_format_number_reads_like_a_person_wrote_it(value: float, text: str) -> None:
    assert format_number(value) == text


# -- set questions ------------------------------------------------------------------------


@given(thresholds, thresholds, finite)
def test_find_value_finds_a_witness_whenever_one_exists(
    a: Threshold, b: Threshold, x: float
) -> None:
    def pred(v: float) -> bool:
        return a.holds(v) and not b.holds(v)

    found = find_value(pred, (a, b))
    if pred(x):
        assert found is not None
    if found is not None:
        assert pred(found)


def test_contradictions_accept_consistent_thresholds() -> None:
    t = parse_threshold
    assert contradictions(t("> 4"), t("> 8"), t("< 3")) == []
    assert contradictions(t("< 0.5"), t("< 0.1"), t(">= 0.6")) == []
    assert contradictions(t("> 4"), t("> 8"), t("<= 4")) == []
    assert contradictions(None, t("== 0"), t("> 0")) == []


def test_contradictions_flag_critical_less_severe_than_warning() -> None:
    [(key, message)] = contradictions(parse_threshold("> 8"), parse_threshold("> 4"), None)
    assert key == "critical"
    assert message.startswith('critical "> 4" fires at 6 where warning "> 8" does not')
    assert "critical must be the stricter condition" in message


def test_contradictions_flag_warning_and_critical_that_fire_together() -> None:
    [(key, message)] = contradictions(parse_threshold(">= 4"), parse_threshold(">= 4"), None)
    assert key == "critical"
    assert "warning could never show" in message


def test_contradictions_flag_recover_on_the_firing_side() -> None:
    [(key, message)] = contradictions(parse_threshold("> 4"), None, parse_threshold("< 9"))
    assert key == "recover"
    assert message.startswith('recover "< 9" overlaps warning "> 4" (both hold at')
    assert "strictly on the OK side" in message


def test_contradictions_compare_recover_with_critical_when_there_is_no_warning() -> None:
    [(key, message)] = contradictions(None, parse_threshold("< 1"), parse_threshold("<= 1"))
    assert key == "recover"
    assert 'overlaps critical "< 1"' in message


# -- checks and rules ---------------------------------------------------------------------


def test_threshold_check_rule_carries_its_thresholds_and_query() -> None:
    check = ThresholdCheck(
        "q", parse_threshold("> 4"), parse_threshold("> 8"), parse_threshold("< 3")
    )
    rule = check.rule()
    assert (rule.subject, str(rule.warning), str(rule.critical), str(rule.recover)) == (
        "q",
        "> 4",
        "> 8",
        "< 3",
    )


def test_stale_spool_file_reads_the_collector_age_metric_with_the_glob_as_regex() -> None:
    check = StaleCheck(600.0, spool_file="photos*.metrics")
    assert check.spool_regex == r"photos[^/]*\.metrics"
    assert check.selector == 'signalbox_spool_file_age_seconds{file=~"photos[^/]*\\\\.metrics"}'
    rule = check.rule()
    assert rule.subject == "age of spool file photos*.metrics"
    assert rule.critical == Threshold(">", 600.0) and rule.warning is None
    assert rule.show(700) == "11m40s" and rule.show_threshold(rule.critical) == "> 10m"


def test_stale_metric_selects_the_metric_and_can_be_only_a_warning() -> None:
    check = StaleCheck(60.0, metric='up{job="db"}', severity=State.WARNING)
    assert check.selector == 'up{job="db"}'
    rule = check.rule()
    assert rule.warning == Threshold(">", 60.0) and rule.critical is None


def test_queue_check_fires_at_high_water_and_recovers_at_low_water() -> None:
    rule = QueueCheck("photos", high=1000, low=10).rule()
    assert rule.critical == Threshold(">=", 1000) and rule.recover == Threshold("<=", 10)
    assert QueueCheck("photos", 1000, 10).selector == 'signalbox_queue_depth{queue="photos"}'


def test_monitor_kind_follows_its_check_and_nagios_has_no_rule() -> None:
    def m(check: object) -> Monitor:
        return Monitor("m", "d", check)  # type: ignore[arg-type]

    assert m(ThresholdCheck("q", critical=Threshold(">", 1))).kind == "threshold"
    assert m(StaleCheck(1, metric="x")).kind == "staleness"
    assert m(QueueCheck("q", 2, 1)).kind == "queue"
    nagios = m(NagiosCheck(("check_dummy", "0")))
    assert nagios.kind == "nagios" and nagios.rule() is None


def test_monitor_equality_ignores_where_it_was_defined() -> None:
    check = ThresholdCheck("q", critical=Threshold(">", 1))
    assert Monitor("m", "d", check, file="a.yaml", line=1) == Monitor(
        "m", "d", check, file="b.yaml"
    )
