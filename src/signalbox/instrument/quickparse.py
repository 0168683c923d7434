"""Parsing access lines on the reading side, quicker: what ``signalbox logs`` and
``/api/v1/logs`` parse each found line with.

:func:`parse` answers exactly what :func:`~signalbox.instrument.accesslog.parse_line`
answers (the same record, or the same :class:`~signalbox.exceptions.ParseError`; a property
test holds them equal over hostile lines), a few times quicker on the lines signalbox writes
in the combined format: ASCII, without a backslash (so nothing to unescape), every quoted
value matched by one unrolled pattern and the pairs checked by one ``fullmatch`` and taken by
one ``findall``, instead of a match a pair. Any other line -- JSON (parsed by C already), an
escape, a letter outside ASCII, anything that does not match -- is handed to ``parse_line``,
which parses it or says what is wrong, so an error is never this module's own.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import MappingProxyType

from signalbox.instrument.accessrecord import EXTRA_FIELDS, AccessRecord

__all__ = ["parse"]

_COMBINED = re.compile(
    r'(?:([^ "\[]+) )?([^ "\[]+) [^ "\[]+ ([^ "\[]+) \[([^\]]*)\] "([^"\\]*)" '
    r'(\d{3}) (\d+|-) "([^"\\]*)" "([^"\\]*)"'
)
"""``accesslog._COMBINED`` for a line without a backslash: ``(?:[^"\\]|\\.)*`` can only
match ``[^"\\]*`` there, and the rest is the same pattern (so the same match)."""
_PAIRS = re.compile(r'(?: [A-Za-z_][A-Za-z0-9_]*=(?:"[^"\\]*"|[^ "]*))*')
_PAIR = re.compile(r' ([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"\\]*)"|([^ "]*))')
_APACHE_TIME = re.compile(r"(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) \+0000\Z")
_TS = re.compile(r"(\d{1,12})\.(\d{6})\Z")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
_EXTRA = frozenset(EXTRA_FIELDS)
_times: dict[str, datetime | None] = {}  # a log's lines share their second: parsed once


def _time(text: str) -> datetime | None:
    """The bracket's time when it is in UTC and valid (None: let ``parse_line`` judge)."""
    t = _times.get(text, _times)
    if t is not _times:
        return t  # type: ignore[return-value]
    m = _APACHE_TIME.match(text)
    got: datetime | None = None
    if m is not None and m.group(2) in _MONTHS:
        day, mon, year, hh, mm, ss = m.groups()
        try:
            got = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
        except ValueError:
            got = None
    if len(_times) >= 4096:
        _times.clear()
    _times[text] = got
    return got


def _parse_line(text: str, source: str, line: int) -> AccessRecord:
    """``accesslog.parse_line``, imported when a line first needs it: a grep whose lines are
    all plain does not import the writing side (its escaping, fingerprints, JSON encoder)."""
    from signalbox.instrument.accesslog import parse_line

    return parse_line(text, source, line)


def parse(text: str, source: str = "(line)", line: int = 0) -> AccessRecord:
    """What ``parse_line(text, source, line)`` returns (or raises), sooner."""
    s = text[:-1] if text.endswith("\n") else text
    if s.endswith("\r"):
        s = s[:-1]
    if s.startswith("{") or "\\" in s or not s.isascii():
        return _parse_line(text, source, line)
    m = _COMBINED.match(s)
    if m is None:
        return _parse_line(text, source, line)
    when, request = m.group(4, 5)
    parts = request.split(" ")
    pos = m.end()
    time = _time(when)
    if len(parts) != 3 or time is None or _PAIRS.fullmatch(s, pos) is None:
        return _parse_line(text, source, line)
    try:
        return _record(s, m, parts, pos, time)
    except (ValueError, OverflowError, OSError):  # a number too big, say: let it say so
        return _parse_line(text, source, line)


def _record(s: str, m: re.Match[str], parts: list[str], pos: int, time: datetime) -> AccessRecord:
    host, client, user, _, _, status, size, referer, agent = m.groups()
    notes: dict[str, str] = {}
    if user != "-":
        notes["user_id"] = user
    extras: dict[str, str] = {}
    for key, quoted, bare in _PAIR.findall(s, pos):
        at = pos + len(key) + 2  # where the value starts, after " key="
        if s.startswith('"', at):  # findall says "" for a group that took no part
            value, pos = quoted, at + len(quoted) + 2
        else:
            value, pos = bare, at + len(bare)
        if key in _EXTRA:
            extras[key] = value
        else:
            notes[key] = value
    if "ts" in extras:
        ts = _TS.match(extras["ts"])
        if ts is None:
            raise ValueError("ts")
        time = datetime.fromtimestamp(int(ts.group(1)), UTC).replace(microsecond=int(ts.group(2)))
    duration = extras.get("duration_us", "0")
    if not duration.isdigit():
        raise ValueError("duration_us")
    method, target, protocol = parts
    path, _, query = target.partition("?")
    if path == "-" and not query:
        path = ""
    return AccessRecord(
        time=time,
        host="" if host is None or host == "-" else host,
        client="" if client == "-" else client,
        method="" if method == "-" else method,
        path=path,
        query=query,
        protocol="" if protocol == "-" else protocol,
        status=int(status),
        bytes=0 if size == "-" else int(size),
        duration_us=int(duration),
        request_id=extras.get("request_id", ""),
        route=extras.get("route", ""),
        referer="" if referer == "-" else referer,
        user_agent="" if agent == "-" else agent,
        notes=MappingProxyType(notes),
    )
