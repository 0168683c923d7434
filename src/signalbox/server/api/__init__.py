"""JSON API under ``/api/v1/``: one module per area, each a list of routes relative to it.

Every answer has Prometheus' envelope: ``{"status": "success", "data": ...}`` here, the
error shape in :mod:`signalbox.server.errors`. Write routes read their JSON body with
:func:`read_json`: at most :data:`MAX_BODY_BYTES` (413 past it, before the rest is read),
``Content-Type: application/json`` (415 otherwise), decoded into a msgspec Struct that
refuses unknown fields, so every 400 names the field that was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from signalbox.exceptions import UsageError

MAX_BODY_BYTES = 64 * 1024
"""The largest request body a route reads."""

B = TypeVar("B", bound=msgspec.Struct)


def ok(data: Any) -> Response:
    """The success envelope around ``data`` (JSON)."""
    return Response(success_body(data), media_type="application/json")


_CHUNK = 64  # result entries per encode call


def success_body(data: Any, warnings: Sequence[str] = ()) -> bytes:
    """``{"status": "success", "data": data}`` as JSON bytes, with Prometheus' top-level
    ``warnings`` list when there are any.

    A query result's ``result`` list is encoded a few entries at a time: one encode call of a
    big result holds the GIL for its whole length (msgspec does not let it go), and the event
    loop answering ``/-/healthy`` needs it meanwhile; between chunks, other threads run.
    """
    envelope: dict[str, Any] = {"status": "success", "data": data}
    if warnings:
        envelope["warnings"] = list(warnings)
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list) or len(result) <= _CHUNK:
        return msgspec.json.encode(envelope)
    enc = msgspec.json.encode
    head = enc({**envelope, "data": {**data, "result": []}})
    cut = head.rindex(b"[]")
    parts = [enc(result[i : i + _CHUNK])[1:-1] for i in range(0, len(result), _CHUNK)]
    return b"".join((head[:cut], b"[", b",".join(parts), b"]", head[cut + 2 :]))


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (by its
    ``Content-Length``, or while it streams in when it has none)."""
    too_big = HTTPException(413, f"request body over {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UsageError(f"invalid Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, body_type: type[B]) -> B:
    """The JSON body as ``body_type`` (an empty body is ``{}``); errors name the field."""
    body = await read_body(request)
    if not body.strip():
        body = b"{}"
    else:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            raise HTTPException(
                415, f"expected Content-Type: application/json, got {media[:60] or 'none'!r}"
            )
    try:
        return msgspec.json.decode(body, type=body_type)
    except msgspec.ValidationError as e:
        raise UsageError(f"invalid request body: {e}") from None
    except msgspec.DecodeError as e:
        raise UsageError(f"invalid JSON in the request body: {e}") from None
