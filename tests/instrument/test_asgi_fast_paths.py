"""The ASGI adapter's inlined shortcuts give what the plain code gives.

It makes a request's :class:`RequestContext` by setting its slots (a class call and its
``__init__`` cost more), so a slot added to the class must be set there too: this test
fails until it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from signalbox.instrument import ASGIMiddleware
from signalbox.instrument.context import RequestContext, current
from signalbox.instrument.core import Instrument

_TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def _seen_context(headers: list[tuple[bytes, bytes]]) -> RequestContext:
    seen: list[RequestContext] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ctx = current()
        assert ctx is not None
        seen.append(ctx)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    core = Instrument(
        access_log=None,
        format="combined",
        host="h",
        secret_notes=(),
        secret=b"k",
        metrics=False,
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=100,
        buffer_lines=1,
        flush_interval=1.0,
    )
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(ASGIMiddleware(app, core=core)(scope, receive, send))
    return seen[0]


def test_the_adapter_sets_every_slot_of_the_context_as_the_class_would() -> None:
    for headers in ([], [(b"x-request-id", b"given-1"), (b"traceparent", _TRACEPARENT.encode())]):
        ctx = _seen_context(headers)
        plain = RequestContext(ctx.request_id, ctx.trace)
        for name in RequestContext.__slots__:
            assert getattr(ctx, name) == getattr(plain, name), name
    assert ctx.request_id == "given-1"
    assert ctx.trace is not None and ctx.trace.trace_id == "a" * 32
