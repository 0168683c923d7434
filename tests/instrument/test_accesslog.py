"""The access-log formats: escaping, round trips over hostile text, the parser's errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.exceptions import ParseError
from signalbox.instrument.accesslog import (
    EXTRA_FIELDS,
    AccessRecord,
    fingerprint,
    format_combined,
    format_json,
    note_key,
    parse_line,
)

T = datetime(2009, 12, 14, 4, 8, 21, 123456, tzinfo=UTC)

HOSTILE = [
    "a\nb",
    "a\r\nforged 1.2.3.4 - - [x]",
    'quote " inside',
    "back\\slash",
    "esc \x1b[31mred\x1b[0m",
    "csi \x9b31m",
    "nel \x85 here",
    "ls \u2028 ps \u2029",
    "bidi \u202e reversed",
    "nul \x00 del \x7f",
    "lone \ud800 surrogate",
    "-",
    "",
    " ",
    "[01/Jan/2000:00:00:00 +0000]",
    '" 200 0 "-" "-" request_id="forged',
    "日本語 ☃ 🚀",
]

# Text as clients can make it: every code point, hostile ones weighted in.
hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(
        alphabet=st.one_of(
            st.characters(codec=None, exclude_categories=()),
            st.sampled_from(list('\n\r"\\ ?-[]\x1b\x85\u2028\u2029\x9b\ud800=')),
        ),
        max_size=12,
    ),
)
note_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda k: k not in EXTRA_FIELDS
)
records = st.builds(
    AccessRecord,
    time=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    host=hostile_text,
    client=hostile_text,
    method=hostile_text,
    path=hostile_text,
    query=hostile_text,
    protocol=hostile_text,
    status=st.integers(100, 999),
    bytes=st.integers(0, 2**40),
    duration_us=st.integers(0, 2**40),
    request_id=hostile_text,
    route=hostile_text,
    referer=hostile_text,
    user_agent=hostile_text,
    notes=st.dictionaries(note_keys, hostile_text, max_size=5),
)

LINE_BREAKERS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _assert_one_safe_line(line: str) -> None:
    assert not any(c in line for c in LINE_BREAKERS), repr(line)
    assert "\x1b" not in line and "\x9b" not in line
    assert all(not (0xD800 <= ord(c) <= 0xDFFF) for c in line)
    line.encode("utf-8")  # always valid UTF-8


def _same(a: AccessRecord, b: AccessRecord) -> None:
    assert b.to_dict() == a.to_dict()


@settings(max_examples=100, deadline=None)
@given(records)
def test_combined_round_trips_any_record_on_one_safe_line(r: AccessRecord) -> None:
    line = format_combined(r)
    _assert_one_safe_line(line)
    _same(r, parse_line(line + "\n"))


@settings(max_examples=100, deadline=None)
@given(records)
def test_json_round_trips_any_record_on_one_ascii_line(r: AccessRecord) -> None:
    line = format_json(r)
    _assert_one_safe_line(line)
    assert line.isascii()
    _same(r, parse_line(line))


def test_combined_line_follows_apache_combined_then_the_pairs() -> None:
    r = AccessRecord(
        time=T,
        host="www394",
        client="123.45.67.89",
        method="GET",
        path="/photos/allspaw",
        query="page=2",
        protocol="HTTP/1.1",
        status=200,
        bytes=18233,
        duration_us=5120,
        request_id="abc123",
        route="/photos/{user}",
        user_agent="Mozilla/5.0 (Macintosh)",
        notes={"user_id": "5555", "api_method": "flickr.photos.search"},
    )
    assert format_combined(r) == (
        'www394 123.45.67.89 - 5555 [14/Dec/2009:04:08:21 +0000] "GET /photos/allspaw?page=2 '
        'HTTP/1.1" 200 18233 "-" "Mozilla/5.0 (Macintosh)" ts=1260763701.123456 '
        'request_id="abc123" route="/photos/{user}" duration_us=5120 '
        'api_method="flickr.photos.search"'
    )


def test_hostile_values_are_escaped_visibly() -> None:
    r = AccessRecord(
        time=T,
        path="/a b?c",
        query="x=\r\n1",
        user_agent='ua" 200 1 "forged',
        notes={"n": "\x1b[2J\u2028"},
    )
    line = format_combined(r)
    assert '"- /a\\x20b\\x3fc?x=\\x0d\\x0a1 -"' in line
    assert '"ua\\" 200 1 \\"forged"' in line
    assert 'n="\\x1b[2J\\u2028"' in line


def test_a_note_user_id_fills_the_apache_user_field_and_comes_back_as_a_note() -> None:
    r = AccessRecord(time=T, notes={"user_id": "alice smith"})
    line = format_combined(r)
    assert " - alice\\x20smith [" in line and "user_id=" not in line
    assert parse_line(line).notes == {"user_id": "alice smith"}
    empty = parse_line(format_combined(AccessRecord(time=T, notes={"user_id": ""})))
    assert empty.notes == {"user_id": ""}


def test_a_plain_apache_combined_line_is_read_too() -> None:
    line = (
        '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
        '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
    )
    r = parse_line(line)
    assert (r.host, r.client, r.method, r.path, r.status, r.bytes) == (
        "",
        "127.0.0.1",
        "GET",
        "/apache_pb.gif",
        200,
        2326,
    )
    assert r.time == datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert r.notes == {"user_id": "frank"}
    assert r.referer == "http://www.example.com/start.html"


def test_json_time_keeps_its_offset_and_microseconds() -> None:
    r = AccessRecord(time=T.astimezone(UTC) + timedelta(microseconds=1), status=500)
    obj = json.loads(format_json(r))
    assert obj["time"] == "2009-12-14T04:08:21.123457+00:00" and obj["status"] == 500


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("", "not an access-log line"),
        ("garbage", "not an access-log line"),
        ('h c - - [99/Foo/2000:00:00:00 +0000] "GET / HTTP/1.1" 200 - "-" "-"', "time"),
        ('h c - - [10/Oct/2000:13:55:36 +0000] "GET /" 200 - "-" "-"', "METHOD TARGET"),
        ('h c - - [10/Oct/2000:13:55:36 +0000] "GET / H" 200 - "-" "-" x', "key=value"),
        ('h c - - [10/Oct/2000:13:55:36 +0000] "GET / H" 200 - "-" "-" ts=12', "ts=12"),
        ('h c - - [10/Oct/2000:13:55:36 +0000] "GET / H" 200 - "-" "-" duration_us="x"', "dur"),
        ('h c - - [10/Oct/2000:13:55:36 +0000] "GET / H" 200 - "-" "-" n="\\q"', "escape"),
        ("{not json", "not valid JSON"),
        ("[1]", "not an access-log line"),
        ('{"time": "2020-01-01T00:00:00"}', "offset"),
        ('{"time": "2020-01-01T00:00:00+00:00", "status": "200"}', '"status"'),
        ('{"time": "2020-01-01T00:00:00+00:00", "path": 1}', '"path"'),
        ('{"time": "2020-01-01T00:00:00+00:00", "notes": {"a": 1}}', '"notes"'),
    ],
)
def test_malformed_lines_raise_a_parse_error_saying_what_is_wrong(line: str, why: str) -> None:
    with pytest.raises(ParseError) as e:
        parse_line(line, "access.log", 7)
    assert e.value.source == "access.log" and e.value.line == 7
    assert why in e.value.reason


def test_fingerprint_is_keyed_recognisable_and_short() -> None:
    fp = fingerprint("sk_live_123", b"secret")
    assert fp.startswith("fp:") and len(fp) == 19 and "sk_live" not in fp
    assert fp == fingerprint("sk_live_123", b"secret")
    assert fp != fingerprint("sk_live_123", b"other")
    assert fp != fingerprint("sk_live_124", b"secret")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("user_id", "user_id"),
        ("a b", "a_b"),
        ("9lives", "note_9lives"),
        ("route", "note_route"),
        ("", "_"),
        ("é", "_"),
    ],
)
def test_note_key_makes_any_name_writable(key: str, expected: str) -> None:
    assert note_key(key) == expected


def test_a_record_with_an_unwritable_note_key_is_refused() -> None:
    with pytest.raises(ValueError, match="note key"):
        format_combined(AccessRecord(time=T, notes=MappingProxyType({"a b": "x"})))
