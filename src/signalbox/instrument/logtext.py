"""Application and worker log lines as text: the request id in them, their time, and how
to print one safely. The reading side alone (``signalbox logs trace`` imports it without
:mod:`logging`); the format ``serve`` and ``worker`` write theirs in is
:mod:`signalbox.instrument.logline`'s, which re-exports these.

``signalbox logs trace`` finds a request's lines in these logs by the markers the request
filter's documented formats leave (:mod:`signalbox.instrument.logging`), never by a bare
substring, so an id that happens to be part of a longer word or number is not a hit:

* ``[ID]`` -- ``%(request_id)s`` in brackets, as :data:`LOG_FORMAT` writes it;
* ``request_id=ID``, ``request_id="ID"``, ``request_id='ID'`` -- key=value loggers
  (structlog's ``KeyValueRenderer``, logfmt);
* ``"request_id": "ID"`` -- JSON loggers (structlog's ``JSONRenderer``).

A line's time is the ISO 8601 time it starts with (``2024-05-01 12:00:00,123`` as logging's
``asctime`` writes it, or ``2024-05-01T12:00:00.123456Z``), or a JSON line's ``timestamp``,
``time`` or ``asctime``; one without a zone is local time, as ``asctime`` is. A line with no
time (a traceback's) belongs to the line before it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

__all__ = ["line_time", "mentions", "printable"]

_LEADING = re.compile(
    r"\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s?(Z|[+-]\d{2}:?\d{2})?"
)
_JSON_TIME = re.compile(r'"(?:timestamp|time|asctime|@timestamp)"\s*:\s*"([^"]{10,40})"')


@lru_cache(maxsize=64)
def _marker(request_id: str) -> re.Pattern[str]:
    rid = re.escape(request_id)
    after = r"(?![A-Za-z0-9._:@+=/-])"
    return re.compile(
        rf"\[{rid}\]"
        rf"|\brequest_id=(?:\"{rid}\"|'{rid}'|{rid}{after})"
        rf'|"request_id"\s*:\s*"{rid}"'
    )


def mentions(line: str, request_id: str) -> bool:
    """Whether ``line`` carries ``request_id`` by one of the markers above."""
    return request_id in line and _marker(request_id).search(line) is not None


def line_time(line: str, local: tzinfo | None = None) -> datetime | None:
    """The time ``line`` was written (aware, UTC), or None when it does not start with one;
    ``local``: the zone of times written without one (default: this machine's)."""
    m = _LEADING.match(line)
    if m is not None:
        day, hms, frac, zone = m.groups()
        text = f"{day}T{hms}"
        if frac:
            text += "." + (frac + "000000")[:6]
        return _aware(text, zone, local)
    if line.lstrip().startswith("{"):
        j = _JSON_TIME.search(line)
        if j is not None:
            m = _LEADING.match(j.group(1))
            if m is not None and m.end() >= len(j.group(1).rstrip()):
                day, hms, frac, zone = m.groups()
                text = f"{day}T{hms}" + ("." + (frac + "000000")[:6] if frac else "")
                return _aware(text, zone, local)
    return None


def _aware(text: str, zone: str | None, local: tzinfo | None) -> datetime | None:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if zone:
        z = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
        try:
            return datetime.fromisoformat(text + z).astimezone(UTC)
        except ValueError:
            return None
    if local is not None:
        return t.replace(tzinfo=local).astimezone(UTC)
    return t.astimezone(UTC)  # naive: this machine's local time


_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ESC among them), line and
    paragraph separators and bidi controls as ``\\xHH``/``\\uHHHH``. Application logs are
    not escaped by their writers, and a trace prints their lines."""

    def esc(m: re.Match[str]) -> str:
        n = ord(m.group())
        return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"

    return _UNPRINTABLE.sub(esc, text) if _UNPRINTABLE.search(text) else text
