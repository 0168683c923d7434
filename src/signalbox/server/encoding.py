"""gzip for the query API's answers, when the client asks for it (``Accept-Encoding``).

Prometheus compresses its API's answers for clients that accept gzip, and its clients do
ask: Grafana's data source and promtool are Go programs, whose HTTP client sends
``Accept-Encoding: gzip`` and decompresses by itself. A 1-hour ``rate`` over 100 series is
about 800 kB of JSON; gzip at level 1 makes it about a tenth, which is what a dashboard
across a network waits for. The results cache keeps the compressed answer beside the plain
one, so a repeated query is compressed once, not at every hit; a fresh answer is
compressed in its query thread, never on the event loop.

Small answers go plain (the gzip header and the CPU are not worth it), and so does every
answer to a client that did not ask (``wrk``, ``curl`` without ``--compressed``).
"""

from __future__ import annotations

import zlib

from starlette.types import Scope

__all__ = ["GZIP_MIN_BYTES", "accepts_gzip", "gzip_body"]

GZIP_MIN_BYTES = 1024
"""Answers shorter than this are sent plain even to a client that accepts gzip."""

_LEVEL = 1  # the fastest: most of what JSON of numbers loses, at a fraction of level 6's CPU


def accepts_gzip(scope: Scope) -> bool:
    """Whether the request's ``Accept-Encoding`` names gzip (or x-gzip) with a q above 0."""
    for key, value in scope["headers"]:
        if key.lower() != b"accept-encoding":
            continue
        for item in value.decode("latin-1").split(","):
            coding, _, params = item.partition(";")
            if coding.strip().lower() not in ("gzip", "x-gzip"):
                continue
            q = params.strip().lower()
            if not q.startswith("q="):
                return True
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
    return False


def gzip_body(body: bytes) -> bytes | None:
    """``body`` as one gzip member (mtime 0: the same bytes each time), or None when it is
    too short to be worth it."""
    if len(body) < GZIP_MIN_BYTES:
        return None
    return zlib.compress(body, _LEVEL, wbits=31)
