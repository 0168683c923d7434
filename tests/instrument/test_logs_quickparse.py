"""The reading side's quick parse answers what ``accesslog.parse_line`` answers: the same
record (field for field, notes in the same order) or the same error, over hostile records in
both formats and over lines broken by hand, character by character."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.exceptions import ParseError
from signalbox.instrument import quickparse
from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json, parse_line
from signalbox.instrument.quickparse import parse

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
_HOSTILE = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),  # quick way
    st.text(
        st.one_of(
            st.characters(codec="utf-8"),
            st.sampled_from(list(' "\\=[]-?\r\n\x1b\u2028\u202e\x85{}:0123456789')),
        ),
        max_size=12,
    ),
)
_KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda k: k not in ("ts", "request_id", "route", "duration_us")
)
RECORDS = st.builds(
    AccessRecord,
    time=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    host=_HOSTILE,
    client=_HOSTILE,
    method=st.one_of(st.sampled_from(["GET", "POST", "-", ""]), _HOSTILE),
    path=_HOSTILE,
    query=_HOSTILE,
    protocol=st.one_of(st.just("HTTP/1.1"), _HOSTILE),
    status=st.integers(100, 599),
    bytes=st.integers(0, 10**12),
    duration_us=st.integers(0, 10**9),
    request_id=_HOSTILE,
    route=_HOSTILE,
    referer=_HOSTILE,
    user_agent=_HOSTILE,
    notes=st.dictionaries(st.one_of(_KEY, st.just("user_id")), _HOSTILE, max_size=4),
)


def outcome(f: object, line: str) -> tuple[str, object]:
    try:
        r = f(line, "x.log", 7)  # type: ignore[operator]
    except ParseError as e:
        return "error", str(e)
    return "record", (r, list(r.notes.items()), r.to_dict())


@settings(max_examples=300, deadline=None)
@given(r=RECORDS, fmt=st.sampled_from([format_combined, format_json]))
def test_a_written_line_parses_to_the_same_record(r: AccessRecord, fmt: object) -> None:
    line = fmt(r)  # type: ignore[operator]
    assert outcome(parse, line) == outcome(parse_line, line)


@settings(max_examples=400, deadline=None)
@given(
    r=RECORDS,
    edits=st.lists(
        st.tuples(
            st.integers(0, 400),
            st.integers(0, 3),
            st.sampled_from(list(' "\\=[]-x9+:/\r\x00é')),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_a_broken_line_gives_the_same_answer_or_the_same_error(
    r: AccessRecord, edits: list[tuple[int, int, str]]
) -> None:
    line = format_combined(r)
    for at, drop, put in edits:
        at %= len(line) + 1
        line = line[:at] + put + line[at + drop :]
    assert outcome(parse, line) == outcome(parse_line, line)


def test_plain_apache_lines_and_odd_numbers_answer_the_same() -> None:
    base = format_combined(AccessRecord(T0, host="www1", client="10.0.0.1", method="GET",
                                        path="/a", protocol="HTTP/1.1", status=200,
                                        request_id="r1", notes={"user_id": "5"}))  # fmt: skip
    lines = [
        '10.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 200 - "-" "-"',
        '10.0.0.1 - bob [01/May/2024:12:00:00 -0700] "GET / HTTP/1.1" 200 5 "-" "-"',
        '10.0.0.1 - - [31/Apr/2024:12:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "-"',
        '10.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET /" 200 5 "-" "-"',
        base.replace("ts=", "ts=9" + "9" * 11 + "x"),
        base.replace("ts=", "ts=99999999999"),
        base.replace("duration_us=0", "duration_us=" + "1" * 5000),
        base.replace("duration_us=0", "duration_us=-1"),
        base + ' ts="1714564800.000000"',
        base + ' a=b c="d" e=',
        base + " a=b  c=d",
        base.replace("200 0", "200 " + "9" * 5000),
        base,
        base + "\r\n",
    ]
    for line in lines:
        assert outcome(parse, line) == outcome(parse_line, line), line


def test_the_lines_signalbox_writes_take_the_quick_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a timing: that the quick path is the one taken (else the tests above would hold
    for nothing). ``bench/logs_grep.py`` measures the time."""
    line = format_combined(AccessRecord(T0 + timedelta(microseconds=5), host="www1",
                                        client="10.1.2.3", method="GET", path="/photos/u1",
                                        query="a=1", protocol="HTTP/1.1", status=200,
                                        bytes=17468, duration_us=4001,
                                        request_id="36bad1fd9ebe6b4f", route="/photos/{user}",
                                        user_agent="Mozilla/5.0 (X11)",
                                        notes={"user_id": "u1", "api_key": "fp:0123456789abcdef",
                                               "api_method": "p.s", "empty": ""}))  # fmt: skip
    want = parse_line(line)

    def refused(*_: object) -> AccessRecord:
        raise AssertionError("handed to parse_line")

    monkeypatch.setattr(quickparse, "_parse_line", refused)
    assert parse(line) == want and list(parse(line).notes) == list(want.notes)
