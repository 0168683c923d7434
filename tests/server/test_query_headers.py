"""The query API's status line and headers, to the byte and in order, as they were when
each endpoint answered with Starlette's ``Response``: the query endpoints now send their
answer themselves (``prom._Handle``), and a client, proxy or cache must not see a
difference. The app is driven as uvicorn drives it (raw ASGI messages), SQLite and
PostgreSQL, with the results cache on (hits, gzip) and off.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

from signalbox.metrics.samples import Sample
from tests.server.test_resultcache import BACKENDS, Site, open_site

Headers = list[tuple[bytes, bytes]]


@pytest.fixture(params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with open_site(request.param, tmp_path) as s:
        t = (s.t0 - 30) * 1000
        s.store.write([Sample("big", (("i", str(i)),), i / 7, t) for i in range(60)], t)
        yield s


def ask(site: Site, method: str, path: str, params: dict[str, str], gzip: bool) -> Any:
    """(status, raw headers, body) of one request through the app's ASGI interface."""
    query = urllib.parse.urlencode(params).encode()
    headers = [(b"host", b"127.0.0.1:8910")]
    if gzip:
        headers.append((b"accept-encoding", b"gzip"))
    body = b""
    if method == "POST":
        body, query = query, b""
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8910),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        done = asyncio.Event()
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await site.client.app(scope, receive, send)

    asyncio.run(run())
    start, end = sent[0], sent[-1]
    assert start["type"] == "http.response.start" and end["type"] == "http.response.body"
    return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:])


SECURITY: Headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def as_response_wrote(body: bytes, headers: dict[str, str] | None = None) -> Headers:
    """The headers Starlette's ``Response(body, media_type=json, headers=...)`` sends,
    behind which the security headers middleware adds its own."""
    r = Response(body, media_type="application/json", headers=headers)
    return [*r.raw_headers, *SECURITY]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_query_answers_carry_the_headers_response_wrote(site: Site, method: str) -> None:
    # instant at "now" (never cached), plain
    status, headers, body = ask(site, method, "/api/v1/query", {"query": "1"}, gzip=False)
    assert status == 200 and body.startswith(b'{"status":"success"')
    assert headers == as_response_wrote(body, {"Vary": "Accept-Encoding"})
    # a range query, evaluated, then a cache hit, both plain and gzipped
    params = site.range_params("big", back_s=300)
    for gzip in (False, True, False, True):
        status, headers, body = ask(site, method, "/api/v1/query_range", params, gzip)
        assert status == 200
        expected = {"Vary": "Accept-Encoding"}
        if gzip:
            assert body[:2] == b"\x1f\x8b"
            expected["Content-Encoding"] = "gzip"
        assert headers == as_response_wrote(body, expected)


def test_other_read_endpoints_carry_the_headers_response_wrote(site: Site) -> None:
    for path, params in [
        ("/api/v1/series", {"match[]": "big"}),
        ("/api/v1/labels", {}),
        ("/api/v1/status/buildinfo", {}),
        ("/api/v1/metadata", {}),
        ("/api/v1/format_query", {"query": "sum(big)"}),
    ]:
        status, headers, body = ask(site, "GET", path, params, gzip=True)
        assert status == 200 and body.startswith(b'{"status":"success"'), path
        assert headers == as_response_wrote(body), path


def test_errors_keep_their_shape_and_headers(site: Site) -> None:
    status, headers, body = ask(site, "GET", "/api/v1/query", {}, gzip=False)
    assert status == 400
    assert (
        body == b'{"status":"error","errorType":"bad_data","error":"missing parameter \'query\'"}'
    )
    assert headers == as_response_wrote(body)
    status, headers, body = ask(site, "PUT", "/api/v1/query", {"query": "1"}, gzip=False)
    assert status == 405
    assert b'"errorType":"bad_data"' in body and b"method not allowed: PUT /api/v1/query" in body
    allowed = dict(headers)[b"allow"].split(b", ")  # a set's order: Starlette's own
    assert sorted(allowed) == [b"GET", b"HEAD", b"POST"]
