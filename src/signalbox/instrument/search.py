"""Which requests an operator asks for: filters over :class:`AccessRecord`, pages, trace order.

Pure: no I/O, "now" passed in. ``signalbox logs grep``, ``/api/v1/logs/requests`` and the
dashboard's request-log page build one :class:`RequestQuery` from what they were given
(:func:`parse_status`, :func:`parse_time_bound` name what is wrong in a value) and keep the
records it :meth:`~RequestQuery.matches`; :mod:`signalbox.instrument.logfiles` reads them.

Pages go newest first by :func:`record_key` -- the arrival time in microseconds, then a
digest of the line's text -- so a cursor (``next_after``) stays valid while the log grows
and when logrotate renames or compresses its files: a line's text never changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from signalbox.exceptions import UsageError
from signalbox.instrument.accessrecord import FINGERPRINT_PREFIX, AccessRecord

__all__ = [
    "LITERAL",
    "LineFinder",
    "RequestQuery",
    "format_cursor",
    "parse_cursor",
    "parse_status",
    "parse_time_bound",
    "record_key",
]

LITERAL = re.compile(r"[A-Za-z0-9._:@+=/-]+\Z")
"""Values written as they are in both line formats (a quick substring test finds them)."""
_STATUS = re.compile(r"([1-5])([0-9]{2}|xx|XX)\Z")
_FP = re.compile(re.escape(FINGERPRINT_PREFIX) + r"[0-9a-f]{16}\Z")
_CURSOR = re.compile(r"([0-9]{1,19})-([0-9a-f]{16})\Z")
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}\Z")
_STATUS_IN_LINE = re.compile(r'(?:" |"status":\s*)([1-5][0-9]{2})\b')
"""Where a status is written: after the request's closing quote (combined), or as JSON's."""
MAX_VALUE_CHARS = 1000


def parse_status(text: str, what: str = "--status") -> tuple[int, int]:
    """``500`` -> (500, 500); ``5xx`` -> (500, 599)."""
    m = _STATUS.match(text.strip())
    if m is None:
        raise UsageError(
            f"{what} {text[:40]!r}: expected a status like 503 or a class like 5xx (1xx to 5xx)"
        )
    if m.group(2).lower() == "xx":
        lo = int(m.group(1)) * 100
        return lo, lo + 99
    code = int(m.group(0))
    return code, code


def parse_time_bound(text: str, now: datetime, what: str = "--since") -> datetime:
    """``1h`` (that long before ``now``) or an ISO 8601 time (UTC unless it says)."""
    s = text.strip()
    if not s:
        raise UsageError(
            f"{what}: empty; expected a duration like 1h or a time like 2024-05-01T12:00Z"
        )
    if s[0].isdigit() and not re.match(r"\d{4}-", s):
        from signalbox.durations import parse_duration  # not imported by a grep without

        try:
            return now - timedelta(seconds=parse_duration(s))
        except ValueError as e:
            raise UsageError(f"{what} {s[:40]!r}: {e}") from None
    try:
        t = datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        raise UsageError(
            f"{what} {s[:40]!r}: expected a duration like 1h or a time like 2024-05-01T12:00:00Z"
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class LineFinder:
    """Finds, in a block of lines as bytes, the lines that hold what a query asks for: a
    text every matching line holds as it is (``literal``, found by ``bytes.find``) or else a
    ``pattern`` every matching line holds (a status of the range where a status is written,
    the method where it is written). Lines it does not find are not decoded, so not parsed
    either; those it finds are still judged by :meth:`RequestQuery.matches`."""

    literal: bytes | None = None
    pattern: re.Pattern[bytes] | None = None

    def hit(self, line: bytes) -> bool:
        """Whether one line (no line break) holds it."""
        if self.literal is not None:
            return self.literal in line
        return self.pattern is not None and self.pattern.search(line) is not None

    def lines(self, block: bytes, before: int) -> tuple[list[tuple[int, bytes]], int]:
        """``(number, bytes)`` of each line of ``block`` (whole lines, each ending with a
        line break, which ``before`` lines precede) that holds it, in order; and how many
        lines the block has (counted on the way: each byte once)."""
        find = block.find
        count = block.count
        found: list[tuple[int, bytes]] = []
        counted, n = 0, before  # lines before offset ``counted``
        pos = 0
        while True:
            if self.literal is not None:
                i = find(self.literal, pos)
            else:
                assert self.pattern is not None
                m = self.pattern.search(block, pos)
                i = -1 if m is None else m.start()
            if i < 0:
                return found, n - before + count(b"\n", counted)
            start = block.rfind(b"\n", pos, i) + 1 or pos
            end = find(b"\n", i)
            n += count(b"\n", counted, start) + 1
            counted = end + 1
            found.append((n, block[start:end]))
            pos = end + 1


def _value(text: str | None, what: str) -> str | None:
    if text is None or text == "":
        return None
    if len(text) > MAX_VALUE_CHARS:
        raise UsageError(f"{what}: longer than {MAX_VALUE_CHARS} characters")
    return text


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """What a record must have to be shown; None: anything.

    ``api_key_fp`` matches any of ``secret_notes`` (the notes logged as fingerprints);
    ``status`` is an inclusive range; ``since``/``until`` bound the arrival time (since
    inclusive, until exclusive).
    """

    request_id: str | None = None
    user: str | None = None
    api_key_fp: str | None = None
    method: str | None = None
    status: tuple[int, int] | None = None
    since: datetime | None = None
    until: datetime | None = None
    secret_notes: tuple[str, ...] = ("api_key",)

    @classmethod
    def build(
        cls,
        *,
        request_id: str | None = None,
        user: str | None = None,
        api_key_fp: str | None = None,
        method: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        now: datetime,
        secret_notes: tuple[str, ...] = ("api_key",),
        names: dict[str, str] | None = None,
    ) -> RequestQuery:
        """A query from text as users type it; ``names`` maps each field to what the caller
        calls it (``--api-key-fp``, ``api_key_fp``) so errors name the right thing."""
        n = {
            "request_id": "request_id",
            "user": "user",
            "api_key_fp": "api_key_fp",
            "method": "method",
            "status": "status",
            "since": "since",
            "until": "until",
            **(names or {}),
        }
        fp = _value(api_key_fp, n["api_key_fp"])
        if fp is not None and not _FP.match(fp):
            raise UsageError(
                f"{n['api_key_fp']} {fp[:40]!r}: expected a fingerprint like "
                f"{FINGERPRINT_PREFIX}1a2b3c4d5e6f7a8b (`signalbox logs fp KEY` prints a key's)"
            )
        m = _value(method, n["method"])
        if m is not None and not _METHOD.match(m):
            raise UsageError(f"{n['method']} {m[:40]!r}: expected an HTTP method like GET")
        t0 = parse_time_bound(since, now, n["since"]) if since else None
        t1 = parse_time_bound(until, now, n["until"]) if until else None
        if t0 is not None and t1 is not None and t1 <= t0:
            raise UsageError(f"{n['until']} must be after {n['since']}")
        return cls(
            request_id=_value(request_id, n["request_id"]),
            user=_value(user, n["user"]),
            api_key_fp=fp,
            method=m.upper() if m else None,
            status=parse_status(status, n["status"]) if status else None,
            since=t0,
            until=t1,
            secret_notes=secret_notes,
        )

    def literals(self) -> tuple[str, ...]:
        """Texts every matching line holds as they are (a cheap test before parsing one)."""
        out = []
        for v in (self.request_id, self.user, self.api_key_fp):
            if v is not None and LITERAL.match(v):
                out.append(v)
        return tuple(out)

    def finder(self) -> LineFinder | None:
        """The quickest test a line of a block must pass to be parsed at all (None: every
        line is parsed): a literal value (the request id, then the key's fingerprint, then
        the user), else the status where each format writes it (after the request's closing
        quote; JSON's ``"status":``), else the method (after the request's opening quote;
        JSON's ``"method":``). Every line :meth:`matches` can accept, written as
        :mod:`~signalbox.instrument.accesslog` writes it, passes (a property test checks)."""
        for v in (self.request_id, self.api_key_fp, self.user):
            if v is not None and LITERAL.match(v):
                return LineFinder(literal=v.encode())
        if self.status is not None:
            lo, hi = self.status
            if lo == hi:
                codes = str(lo)
            elif lo % 100 == 0 and hi == lo + 99:
                codes = f"{lo // 100}[0-9][0-9]"
            else:
                codes = "(?:" + "|".join(str(c) for c in range(lo, hi + 1)) + ")"
            return LineFinder(pattern=re.compile(rb'(?:" |"status": *)' + codes.encode() + rb"\b"))
        if self.method is not None:
            m = re.escape(self.method).encode()
            return LineFinder(pattern=re.compile(rb'(?i:"' + m + rb' |"method": *"' + m + rb'")'))
        return None

    def might_match(self, line: str) -> bool:
        """False only for a line no record matching this query can be written as (either
        format): a quick test that spares parsing most lines of a big log. A line holding
        an escaped look-alike still passes, to be parsed and checked by :meth:`matches`."""
        for v in self.literals():
            if v not in line:
                return False
        if self.status is not None:
            lo, hi = self.status
            codes = [int(m.group(1)) for m in _STATUS_IN_LINE.finditer(line)]
            if codes and not any(lo <= c <= hi for c in codes):
                return False  # none: not an access line's shape, parsed to say why
        if self.method is not None and not line.startswith("{"):
            # combined: the request opens with '"METHOD ' (any case: matches() ignores it)
            m = f'"{self.method} '
            if m not in line and m not in line.upper():
                return False
        return True

    def matches(self, r: AccessRecord) -> bool:
        if self.request_id is not None and r.request_id != self.request_id:
            return False
        if self.user is not None and r.notes.get("user_id") != self.user:
            return False
        if self.api_key_fp is not None and not any(
            r.notes.get(k) == self.api_key_fp for k in self.secret_notes
        ):
            return False
        if self.method is not None and r.method.upper() != self.method:
            return False
        if self.status is not None and not self.status[0] <= r.status <= self.status[1]:
            return False
        if self.since is not None and r.time < self.since:
            return False
        return not (self.until is not None and r.time >= self.until)


def record_key(r: AccessRecord, text: str) -> tuple[int, str]:
    """Where a record sorts among pages: arrival time (µs), then its line's digest."""
    t = r.time
    us = int(t.timestamp()) * 1_000_000 + t.microsecond
    import hashlib  # here: a grep does not need it (record_key sorts the API's pages)

    digest = hashlib.blake2b(text.rstrip("\r\n").encode("utf-8", "surrogatepass"), digest_size=8)
    return us, digest.hexdigest()


def format_cursor(key: tuple[int, str]) -> str:
    return f"{key[0]}-{key[1]}"


def parse_cursor(text: str | None, what: str = "after") -> tuple[int, str] | None:
    if text is None or text == "":
        return None
    m = _CURSOR.match(text)
    if m is None:
        raise UsageError(
            f"invalid parameter {what!r}: expected the next_after of the page before "
            f"(like 1714564800000000-0123456789abcdef), got {text[:40]!r}"
        )
    return int(m.group(1)), m.group(2)
