"""The line of an ASGI response is made as the app hands the server its last body chunk.

No coroutine of the middleware wraps the server's ``send`` of that chunk (see
``_Exchange.send``): the line is already made when the server gets the chunk, with every
chunk counted; a 5xx still waits for the app to return, so an exception that follows it is
noted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.instrument.conftest import Harness

from signalbox.instrument import ASGIMiddleware, note

SCOPE = {
    "type": "http",
    "method": "GET",
    "path": "/s",
    "raw_path": b"/s",
    "query_string": b"",
    "headers": [],
    "http_version": "1.1",
    "client": ("10.0.0.2", 5000),
}


def _streaming(status: int, chunks: list[bytes], after: BaseException | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        note(user_id=7)
        await send({"type": "http.response.start", "status": status, "headers": []})
        for i, chunk in enumerate(chunks):
            more = i < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
        if after is not None:
            raise after

    return app


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def test_the_line_is_written_when_the_server_gets_the_last_chunk(harness: Harness) -> None:
    seen: list[tuple[bool, int]] = []  # (the chunk is the last, lines written then)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            seen.append((not message.get("more_body", False), len(harness.lines())))

    app = ASGIMiddleware(_streaming(200, [b"ab", b"cde", b"f"]), core=harness.core)
    asyncio.run(app(dict(SCOPE), _receive, send))
    assert seen == [(False, 0), (False, 0), (True, 1)]
    [rec] = harness.records()
    assert (rec.status, rec.bytes, rec.notes["user_id"]) == (200, 6, "7")


def test_a_5xx_line_waits_for_the_app_to_return(harness: Harness) -> None:
    seen: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            seen.append(len(harness.lines()))

    app = ASGIMiddleware(_streaming(503, [b"down"], after=KeyError("x")), core=harness.core)
    with pytest.raises(KeyError):
        asyncio.run(app(dict(SCOPE), _receive, send))
    assert seen == [0]
    [rec] = harness.records()
    assert (rec.status, rec.bytes, rec.notes["error"]) == (503, 4, "KeyError")


def test_a_server_send_that_fails_on_the_last_chunk_escapes_once_logged(
    harness: Harness,
) -> None:
    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            raise OSError("connection reset")

    app = ASGIMiddleware(_streaming(200, [b"abc", b"de"]), core=harness.core)
    with pytest.raises(OSError):
        asyncio.run(app(dict(SCOPE), _receive, send))
    [rec] = harness.records()  # one line: made as the chunk was handed over, not again
    assert (rec.status, rec.bytes, rec.notes["user_id"]) == (200, 5, "7")
    assert "error" not in rec.notes
