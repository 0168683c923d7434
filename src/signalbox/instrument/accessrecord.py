"""The access log's record, apart from its formats (:mod:`signalbox.instrument.accesslog`):
what the reading side (``signalbox logs``, ``/api/v1/logs``) needs to hold a line it found,
without importing the writing side's escaping, fingerprints and JSON encoder, so a ``logs
grep`` starts quicker. :mod:`~signalbox.instrument.accesslog` re-exports all of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

TYPE_CHECKING = False  # typing itself is not imported for this (a grep's start)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import Any

__all__ = ["EXTRA_FIELDS", "FINGERPRINT_PREFIX", "AccessRecord"]

EXTRA_FIELDS = ("ts", "request_id", "route", "duration_us")
"""Pair keys signalbox writes itself after the user agent; notes never use them."""
FINGERPRINT_PREFIX = "fp:"
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request as the access log keeps it.

    ``time`` is when the request arrived (aware, UTC, microseconds kept); ``path`` is the
    path as sent and ``query`` the query string without its ``?``; ``bytes`` counts the
    response body; ``notes`` map note names to their text (secret ones fingerprinted).
    """

    time: datetime
    host: str = ""
    client: str = ""
    method: str = ""
    path: str = ""
    query: str = ""
    protocol: str = ""
    status: int = 0
    bytes: int = 0
    duration_us: int = 0
    request_id: str = ""
    route: str = ""
    referer: str = ""
    user_agent: str = ""
    notes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def to_dict(self) -> dict[str, Any]:
        """The JSON format's object (also the shape ``/api/v1/logs`` can return)."""
        return {
            "time": self.time.isoformat(timespec="microseconds"),
            "host": self.host,
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "protocol": self.protocol,
            "status": self.status,
            "bytes": self.bytes,
            "duration_us": self.duration_us,
            "request_id": self.request_id,
            "route": self.route,
            "referer": self.referer,
            "user_agent": self.user_agent,
            "notes": dict(self.notes),
        }
