"""Access-log lines: one :class:`AccessRecord` per request, as text and back. Pure: no I/O.

Two formats, chosen by ``[instrument] format`` (``combined`` by default, or ``json``). Every
line is one line: no value a client sends -- a header, a path, a query string, a note -- can
end it, start a forged one, or reach a terminal as an escape sequence.

Combined
--------
Apache's combined format (``%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"``), preceded
by the name of the machine that served the request (as in the seed's ``www394 ...`` line) and
followed by signalbox's fields and the request's notes as ``key=value`` pairs::

    www394 203.0.113.7 - 5555 [14/Dec/2009:04:08:21 +0000] "GET /photos/allspaw?page=2 HTTP/1.1" 200 18233 "-" "Mozilla/5.0 ..." ts=1260763701.123456 request_id="4bf92f3577b34da6a3ce929d0e0e4736" route="/photos/{user}" duration_us=5120 api_method="flickr.photos.search" api_key="fp:1a2b3c4d5e6f7a8b"

Fields, separated by single spaces, in this order:

1. ``host``: the serving machine (``host`` of ``signalbox.toml``), a *token*.
2. ``client``: the client's address, a token.
3. ``-``: identd (``%l``), always ``-`` when written; any token is accepted when read.
4. the ``user_id`` note (``%u``) as a token, ``-`` when there is none. It is not repeated
   among the pairs; :func:`parse_line` puts it back into ``notes["user_id"]``.
5. ``[DD/Mon/YYYY:HH:MM:SS +0000]``: when the request arrived, UTC, English month names.
6. ``"METHOD TARGET PROTOCOL"``: method and protocol are tokens; the target is the path as
   sent (percent-encoding kept) escaped as a quoted value with space written ``\\x20`` and
   ``?`` written ``\\x3f``, then ``?`` and the query string (escaped the same way, its own
   ``?`` kept) when the query is not empty.
7. the status, three digits.
8. the bytes of the response body, ``-`` for none (``%b``).
9. ``"REFERER"`` and ``"USER-AGENT"``: quoted values; ``"-"`` when absent or empty (a value
   that is itself ``-`` is written ``"\\x2d"``).
10. pairs, each `` key=value``: ``ts=`` the arrival time as epoch seconds with six decimals
    (finer than the bracket, so lines order within a second), ``request_id="..."``,
    ``route="..."`` (the route template, ``""`` when none matched), ``duration_us=N``, then
    every note but ``user_id`` in the order noted, ``key="value"``. Note keys match
    ``[A-Za-z_][A-Za-z0-9_]*`` and are never ``ts``, ``request_id``, ``route`` or
    ``duration_us`` (:func:`note_key` renames any other key so it does).

A *quoted value* is written between double quotes with these escapes, and nothing else
escaped: ``\\\\`` (backslash), ``\\"`` (double quote), ``\\xHH`` for every code point below
0x20, 0x7F to 0x9F (DEL, the C1 controls, NEL U+0085 among them), and ``\\uHHHH`` for U+2028
and U+2029 (line and paragraph separators), the bidirectional controls U+200E, U+200F, U+202A
to U+202E and U+2066 to U+2069 (which reorder what a person sees), U+FEFF, and lone surrogates
(so the line is always valid UTF-8). Hex digits are lower case. A *token* is escaped the same
way, and also writes space as ``\\x20`` and ``"`` as ``\\x22``; an empty token is written
``-`` and a token that is itself ``-`` is written ``\\x2d``. Anything else (letters of every
script, emoji) is written as it is, in UTF-8.

A line read back with :func:`parse_line` may also be a plain Apache combined line (no host
field, no pairs): its ``host`` is ``""`` and its signalbox fields are empty.

JSON
----
One JSON object per line, ASCII only (every other character as ``\\uHHHH``, so U+2028 and
friends never reach a file raw), keys in this order::

    {"time": "2009-12-14T04:08:21.123456+00:00", "host": "www394", "client": "203.0.113.7",
     "method": "GET", "path": "/photos/allspaw", "query": "page=2", "protocol": "HTTP/1.1",
     "status": 200, "bytes": 18233, "duration_us": 5120,
     "request_id": "4bf92f3577b34da6a3ce929d0e0e4736", "route": "/photos/{user}",
     "referer": "", "user_agent": "Mozilla/5.0 ...",
     "notes": {"user_id": "5555", "api_key": "fp:1a2b3c4d5e6f7a8b"}}

Note values are always strings in both formats (the middleware turns numbers into their
text, ``True`` into ``true``, lists and dicts into compact JSON, and cuts values longer than
``[instrument] max_note_chars``). The middleware adds notes of its own when there is
something to say: ``error`` (the type of an exception that escaped the app, or ``no
response``), ``disconnect="client"`` (the client went away first; status 499 when no response
had started) and ``trace_id`` (from an incoming W3C ``traceparent``). API keys never reach a line: the middleware logs
the notes named by ``[instrument] secret_notes`` (``api_key`` by default) as
:func:`fingerprint` values, ``fp:`` and 16 hex digits of an HMAC-SHA256 under the install's
key, which ``signalbox logs fp KEY`` computes again to search for one.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

from signalbox.exceptions import ParseError
from signalbox.instrument.accessrecord import (  # the record, apart: readers import it alone
    EXTRA_FIELDS,
    FINGERPRINT_PREFIX,
    AccessRecord,
)

__all__ = [
    "EXTRA_FIELDS",
    "FINGERPRINT_PREFIX",
    "FORMATS",
    "AccessRecord",
    "bracket",
    "bytes_field",
    "check_note_key",
    "combined_line",
    "combined_parts",
    "combined_target",
    "combined_with_pairs",
    "fingerprint",
    "format_combined",
    "format_json",
    "format_line",
    "json_line",
    "note_key",
    "parse_line",
    "quoted_safe",
    "quoted_value",
]

FORMATS = ("combined", "json")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m: i + 1 for i, m in enumerate(_MONTHS)}


# -- fingerprints ----------------------------------------------------------------------------
def fingerprint(key: str, secret: bytes) -> str:
    """``key`` (an API key) as it may appear in a log: ``fp:`` + 16 hex digits of
    HMAC-SHA256(secret, key). Keyed, so a leaked log cannot be checked against guessed keys
    without the install's secret; short, because it only has to tell keys apart."""
    digest = hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return FINGERPRINT_PREFIX + digest[:16]


# -- escaping --------------------------------------------------------------------------------
_UNSAFE_CHARS = (
    '\\\\"\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff'
)
_QUOTED_UNSAFE = re.compile(f"[{_UNSAFE_CHARS}]")
_TOKEN_UNSAFE = re.compile(f"[ \\[\\]{_UNSAFE_CHARS}]")
_TARGET_UNSAFE = re.compile(f"[ ?{_UNSAFE_CHARS}]")
_QUERY_UNSAFE = re.compile(f"[ {_UNSAFE_CHARS}]")
# The same classes as sets, for the hot path's checks: ``isdisjoint`` walks a short string
# in C several times faster than a regex search starts and scans.
_UNSAFE_SET = frozenset(
    '\\"'
    + "".join(
        map(
            chr,
            (
                *range(0x20),
                *range(0x7F, 0xA0),
                0x200E,
                0x200F,
                0x2028,
                0x2029,
                *range(0x202A, 0x202F),
                *range(0x2066, 0x206A),
                0xFEFF,
                *range(0xD800, 0xE000),
            ),
        )
    )
)
_quoted_safe = _UNSAFE_SET.isdisjoint
_target_safe = (_UNSAFE_SET | {" ", "?"}).isdisjoint
_query_safe = (_UNSAFE_SET | {" "}).isdisjoint


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c == "\\":
        return "\\\\"
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def _quoted_char(m: re.Match[str]) -> str:
    c = m.group()
    return '\\"' if c == '"' else _escape_char(m)


def _quoted(s: str) -> str:
    """A quoted value's inside (see the module docstring)."""
    return _QUOTED_UNSAFE.sub(_quoted_char, s) if _QUOTED_UNSAFE.search(s) else s


def _dashed(s: str) -> str:
    """A quoted Apache field: ``-`` for empty, ``\\x2d`` for a real ``-``."""
    if not s:
        return "-"
    if s == "-":
        return "\\x2d"
    return _quoted(s)


def _token(s: str) -> str:
    if not s:
        return "-"
    if s == "-":
        return "\\x2d"
    return _TOKEN_UNSAFE.sub(_escape_char, s) if _TOKEN_UNSAFE.search(s) else s


def _target(path: str, query: str) -> str:
    p = _TARGET_UNSAFE.sub(_escape_char, path) if _TARGET_UNSAFE.search(path) else path
    if not p:
        p = "-" if not query else ""
    elif p == "-":
        p = "\\x2d"
    if query:
        q = _QUERY_UNSAFE.sub(_escape_char, query) if _QUERY_UNSAFE.search(query) else query
        return f"{p}?{q}"
    return p


_ESCAPE_SEQ = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|(.))", re.DOTALL)


def _unescape_seq(m: re.Match[str]) -> str:
    hx, ux, other = m.groups()
    if hx is not None:
        return chr(int(hx, 16))
    if ux is not None:
        return chr(int(ux, 16))
    if other in ('"', "\\"):
        return other
    raise ValueError(f"unknown escape \\{other}")


def _unescape(s: str) -> str:
    return _ESCAPE_SEQ.sub(_unescape_seq, s) if "\\" in s else s


def _untoken(s: str) -> str:
    return "" if s == "-" else _unescape(s)


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_]")


def note_key(key: str) -> str:
    """``key`` as a note name the combined format can carry: other characters become ``_``,
    a leading digit or a name signalbox writes itself gets ``note_`` in front."""
    if _KEY.match(key) and key not in EXTRA_FIELDS:
        return key
    k = _KEY_BAD.sub("_", key)[:100] or "_"
    if k[0].isdigit() or k in EXTRA_FIELDS:
        k = "note_" + k
    return k


# -- formatting ------------------------------------------------------------------------------
def _apache_time(t: datetime) -> str:
    u = t.astimezone(UTC) if t.tzinfo is not UTC else t
    return (
        f"{u.day:02d}/{_MONTHS[u.month - 1]}/{u.year:04d}:"
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d} +0000"
    )


def _epoch_us(t: datetime) -> int:
    u = t.astimezone(UTC) if t.tzinfo is not UTC else t
    return calendar.timegm(u.timetuple()) * 1_000_000 + u.microsecond


def format_combined(r: AccessRecord) -> str:
    """``r`` as one combined-format line, without its newline (see the module docstring).

    Raises ValueError for a note key :func:`note_key` would change (the middleware only
    makes records whose keys pass).
    """
    return combined_line(
        _epoch_us(r.time),
        r.host,
        r.client,
        r.method,
        r.path,
        r.query,
        r.protocol,
        r.status,
        r.bytes,
        r.referer,
        r.user_agent,
        r.request_id,
        r.route,
        r.duration_us,
        r.notes,
    )


_tokens: dict[str, str] = {}  # recent tokens (hosts, addresses, methods) -> escaped
_quotes: dict[str, str] = {}  # recent quoted values (user agents, routes) -> escaped
_CACHE_MAX = 4096
_good_keys: set[str] = set()
# the last second formatted, (second, bracket, iso, "SECOND."): one tuple, replaced whole, so
# a thread never reads one second's bracket with another's time
_second: list[tuple[int, str, str, str]] = [(-1, "", "", "")]
_STATUS = {n: str(n) for n in range(100, 600)}  # int to text was a tenth of a line's cost


def _tok(s: str) -> str:
    t = _tokens.get(s)
    if t is None:
        t = _token(s)
        if len(_tokens) < _CACHE_MAX:
            _tokens[s] = t
    return t


def _quo(s: str) -> str:
    t = _quotes.get(s)
    if t is None:
        t = _dashed(s)
        if len(_quotes) < _CACHE_MAX:
            _quotes[s] = t
    return t


def _times(sec: int) -> tuple[int, str, str, str]:
    cached = _second[0]
    if cached[0] != sec:
        u = datetime.fromtimestamp(sec, UTC)
        cached = (sec, _apache_time(u), u.isoformat()[:19], f"{sec}.")
        _second[0] = cached
    return cached


def combined_line(
    epoch_us: int,
    host: str,
    client: str,
    method: str,
    path: str,
    query: str,
    protocol: str,
    status: int,
    nbytes: int,
    referer: str,
    user_agent: str,
    request_id: str,
    route: str,
    duration_us: int,
    notes: Mapping[str, str],
) -> str:
    """A combined line from its fields (what :func:`format_combined` writes, for a hot path
    that has no :class:`AccessRecord` to build); ``epoch_us``: the arrival time."""
    request_id = quoted_value(request_id)
    if not notes:
        return combined_with_pairs(
            epoch_us, host, client, method, path, query, protocol, status, nbytes, referer,
            user_agent, request_id, route, duration_us, "", "",
        )  # fmt: skip
    user = notes.get("user_id", "")
    parts = []
    good = _good_keys
    for k, v in notes.items():
        if k == "user_id" and user:
            continue
        if k not in good:
            check_note_key(k)
        parts.append(f' {k}="{v if _quoted_safe(v) else _QUOTED_UNSAFE.sub(_quoted_char, v)}"')
    return combined_with_pairs(
        epoch_us, host, client, method, path, query, protocol, status, nbytes, referer,
        user_agent, request_id, route, duration_us, user, "".join(parts),
    )  # fmt: skip


def check_note_key(key: str) -> None:
    """Raise ValueError unless ``key`` can be written as a note name (see :func:`note_key`)."""
    if key in _good_keys:
        return
    if not _KEY.match(key) or key in EXTRA_FIELDS:
        raise ValueError(f"note key {key!r} cannot be written (see note_key)")
    if len(_good_keys) < _CACHE_MAX:
        _good_keys.add(key)


quoted_safe = _quoted_safe
"""True when :func:`quoted_value` would write ``value`` as it is (nothing to escape)."""


def quoted_value(value: str) -> str:
    """``value`` escaped as the inside of a quoted value (see the module docstring)."""
    return value if _quoted_safe(value) else _QUOTED_UNSAFE.sub(_quoted_char, value)


def combined_with_pairs(
    epoch_us: int,
    host: str,
    client: str,
    method: str,
    path: str,
    query: str,
    protocol: str,
    status: int,
    nbytes: int,
    referer: str,
    user_agent: str,
    request_id: str,
    route: str,
    duration_us: int,
    user: str,
    pairs: str,
) -> str:
    """:func:`combined_line` with the notes already written: ``user`` the ``user_id`` note
    (``""``: none; written as the ``%u`` field), ``pairs`` every other note as written, each
    `` key="value"`` (a key :func:`check_note_key` accepts, a value through
    :func:`quoted_value`). The middleware writes its notes as it converts them, in one pass.
    ``request_id`` is written as it is: escape it first (:func:`quoted_value`) unless it is
    known to be a sane token, as the middleware's are (made here, or matching ``REQUEST_ID``
    of :mod:`~signalbox.instrument.context`, whose characters need no escape)."""
    sec = epoch_us // 1_000_000
    second = _second[0]
    if second[0] != sec:
        second = _times(sec)
    _, bracket, _, ts_sec = second
    if path and path != "-" and _target_safe(path):
        if not query:
            target = path
        elif _query_safe(query):
            target = f"{path}?{query}"
        else:
            target = _target(path, query)
    else:
        target = _target(path, query)
    tokens, quotes = _tokens, _quotes
    h = tokens.get(host) or _tok(host)
    c = tokens.get(client) or _tok(client)
    m = tokens.get(method) or _tok(method)
    p = tokens.get(protocol) or _tok(protocol)
    ua = (quotes.get(user_agent) or _quo(user_agent)) if user_agent else "-"
    ref = (quotes.get(referer) or _quo(referer)) if referer else "-"
    ro = (quotes.get(route) or _quo(route)) if route else ""
    u = (tokens.get(user) or _tok(user)) if user else "-"
    # str() and slicing, not format specs (03d, 06d): the same digits at a third of the cost
    return (
        f'{h} {c} - {u} [{bracket}] "{m} {target} {p}" '
        f"{_STATUS.get(status) or f'{status:03d}'} {nbytes if nbytes else '-'} "
        f'"{ref}" "{ua}" ts={ts_sec}{str(1_000_000 + epoch_us % 1_000_000)[1:]} '
        f'request_id="{request_id}" route="{ro}" duration_us={duration_us}{pairs}'
    )


def combined_parts(
    host: str, client: str, method: str, protocol: str, referer: str, user_agent: str, route: str
) -> tuple[str, str, str, str, str]:
    """The parts of a combined line that these fields alone decide, escaped, for a caller
    that keeps them per combination (a site's requests share a few): the text before the
    ``%u`` field, after the time bracket's date up to the target, after the target up to
    the status, after the bytes up to the ``ts`` value, and after the request id up to the
    duration. :func:`combined_with_pairs` writes the same text."""
    return (
        f"{_tok(host)} {_tok(client)} - ",
        f'] "{_tok(method)} ',
        f' {_tok(protocol)}" ',
        f' "{_dashed(referer)}" "{_dashed(user_agent)}" ts=',
        f'" route="{_dashed(route) if route else ""}" duration_us=',
    )


def combined_target(path: str, query: str) -> str:
    """The request target as a combined line writes it (path, and ``?query`` when any)."""
    if path and path != "-" and _target_safe(path):
        if not query:
            return path
        if _query_safe(query):
            return f"{path}?{query}"
    return _target(path, query)


def bracket(second: int) -> str:
    """The time bracket's inside without its ``]`` for ``second`` (epoch seconds, UTC)."""
    return _times(second)[1]


_NUMBERS: dict[int, str] = {}


def bytes_field(n: int) -> str:
    """The ``%b`` field: ``-`` for no body, else its size (sizes seen recently kept)."""
    t = _NUMBERS.get(n)
    if t is None:
        t = str(n) if n else "-"
        if len(_NUMBERS) >= _CACHE_MAX:
            _NUMBERS.clear()
        _NUMBERS[n] = t
    return t


def json_line(
    epoch_us: int,
    host: str,
    client: str,
    method: str,
    path: str,
    query: str,
    protocol: str,
    status: int,
    nbytes: int,
    referer: str,
    user_agent: str,
    request_id: str,
    route: str,
    duration_us: int,
    notes: Mapping[str, str],
) -> str:
    """A JSON line from its fields (what :func:`format_json` writes)."""
    iso = f"{_times(epoch_us // 1_000_000)[2]}.{epoch_us % 1_000_000:06d}+00:00"
    return _json_encode(
        {
            "time": iso,
            "host": host,
            "client": client,
            "method": method,
            "path": path,
            "query": query,
            "protocol": protocol,
            "status": status,
            "bytes": nbytes,
            "duration_us": duration_us,
            "request_id": request_id,
            "route": route,
            "referer": referer,
            "user_agent": user_agent,
            "notes": dict(notes),
        }
    )


_json_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def format_json(r: AccessRecord) -> str:
    """``r`` as one JSON line, ASCII only, without its newline."""
    return _json_encode(r.to_dict())


def format_line(r: AccessRecord, fmt: str) -> str:
    """``r`` in ``fmt`` (``combined`` or ``json``)."""
    return format_json(r) if fmt == "json" else format_combined(r)


# -- parsing ---------------------------------------------------------------------------------
_Q = r'"((?:[^"\\]|\\.)*)"'
_COMBINED = re.compile(
    r"(?:(?P<host>[^ \"\[]+) )?(?P<client>[^ \"\[]+) (?P<ident>[^ \"\[]+) (?P<user>[^ \"\[]+) "
    r"\[(?P<time>[^\]]*)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" '
    r"(?P<status>\d{3}) (?P<bytes>\d+|-) " + _Q + " " + _Q,
    re.DOTALL,
)
_PAIR = re.compile(r' ([A-Za-z_][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|([^ "]*))', re.DOTALL)
_APACHE_TIME = re.compile(r"(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\Z")
_TS = re.compile(r"(\d{1,12})\.(\d{6})\Z")
_JSON_STR = ("host", "client", "method", "path", "query", "protocol")
_JSON_STR2 = ("request_id", "route", "referer", "user_agent")


def parse_line(text: str, source: str = "(line)", line: int = 0) -> AccessRecord:
    """The record of one line in either format (a trailing newline is allowed).

    Raises :class:`~signalbox.exceptions.ParseError` naming ``source``:``line`` and what is
    wrong; the reader reports and skips such a line.
    """
    s = text[:-1] if text.endswith("\n") else text
    if s.endswith("\r"):
        s = s[:-1]
    try:
        if s.startswith("{"):
            try:
                return _parse_json(s)
            except ValueError as not_json:
                try:  # a combined line whose host token starts with "{"
                    return _parse_combined(s)
                except ValueError:
                    raise not_json from None
        return _parse_combined(s)
    except ValueError as e:
        raise ParseError(source, line, str(e), text[:500]) from None


@functools.lru_cache(maxsize=4096)  # a log's lines share their second: parsed once each
def _parse_time(text: str) -> datetime:
    m = _APACHE_TIME.match(text)
    if not m or m.group(2) not in _MONTH_NUMBER:
        raise ValueError(f"time [{text[:40]}] is not DD/Mon/YYYY:HH:MM:SS +ZZZZ")
    day, mon, year, hh, mm, ss, zone = m.groups()
    offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * (-60 if zone[0] == "-" else 60)
    try:  # datetime checks the ranges (day 31 of April, hour 24) as strptime did
        t = datetime(
            int(year),
            _MONTH_NUMBER[mon],
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=timezone(timedelta(seconds=offset)) if offset else UTC,
        )
    except ValueError as e:
        raise ValueError(f"time [{text[:40]}]: {e}") from None
    return t.astimezone(UTC)


def _parse_combined(s: str) -> AccessRecord:
    m = _COMBINED.match(s)
    if m is None:
        raise ValueError(
            'not an access-log line: expected [HOST] CLIENT - USER [TIME] "REQUEST" STATUS '
            'BYTES "REFERER" "USER-AGENT" [key=value ...] or a JSON object'
        )
    request = m.group("request")
    parts = request.split(" ")
    if len(parts) != 3:
        raise ValueError(f'request "{request[:80]}" is not "METHOD TARGET PROTOCOL"')
    method, target, protocol = parts
    path, _, query = target.partition("?")
    if path == "-" and not query:
        path = ""
    time = _parse_time(m.group("time"))
    notes: dict[str, str] = {}
    user = _untoken(m.group("user"))
    if user:
        notes["user_id"] = user
    extras: dict[str, str] = {}
    pos = m.end()
    while pos < len(s):
        p = _PAIR.match(s, pos)
        if p is None:
            raise ValueError(f"after the user agent, column {pos + 1}: expected key=value")
        key, quoted, bare = p.groups()
        value = _unescape(quoted) if quoted is not None else bare
        if key in EXTRA_FIELDS:
            extras[key] = value
        else:
            notes[key] = value
        pos = p.end()
    if "ts" in extras:
        ts = _TS.match(extras["ts"])
        if ts is None:
            raise ValueError(f"ts={extras['ts'][:40]} is not epoch seconds with six decimals")
        us = int(ts.group(1)) * 1_000_000 + int(ts.group(2))
        time = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    duration = extras.get("duration_us", "0")
    if not duration.isdigit():
        raise ValueError(f"duration_us={duration[:40]} is not a whole number")
    b = m.group("bytes")
    return AccessRecord(
        time=time,
        host=_untoken(m.group("host") or "-"),
        client=_untoken(m.group("client")),
        method=_untoken(method),
        path=_unescape(path),
        query=_unescape(query),
        protocol=_untoken(protocol),
        status=int(m.group("status")),
        bytes=0 if b == "-" else int(b),
        duration_us=int(duration),
        request_id=extras.get("request_id", ""),
        route=extras.get("route", ""),
        referer=_untoken(m.group(9)),
        user_agent=_untoken(m.group(10)),
        notes=MappingProxyType(notes),
    )


def _parse_json(s: str) -> AccessRecord:
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError("a JSON line must be an object")
    try:
        time = datetime.fromisoformat(obj["time"])
        if time.tzinfo is None:
            raise ValueError("no UTC offset")
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f'"time" {str(obj.get("time"))[:40]!r} is not an ISO 8601 time with its offset'
        ) from None
    time = time.astimezone(UTC)
    strs: dict[str, str] = {}
    for k in (*_JSON_STR, *_JSON_STR2):
        v = obj.get(k, "")
        if not isinstance(v, str):
            raise ValueError(f'"{k}" must be a string, not {type(v).__name__}')
        strs[k] = v
    ints: dict[str, int] = {}
    for k in ("status", "bytes", "duration_us"):
        v = obj.get(k, 0)
        if type(v) is not int or v < 0:
            raise ValueError(f'"{k}" must be a whole number of at least 0, not {v!r}'[:120])
        ints[k] = v
    notes = obj.get("notes", {})
    if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
        raise ValueError('"notes" must be an object of strings')
    return AccessRecord(
        time=time,
        status=ints["status"],
        bytes=ints["bytes"],
        duration_us=ints["duration_us"],
        notes=MappingProxyType(notes),
        **strs,
    )
