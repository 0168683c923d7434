"""JSON API under ``/api/v1/``: one module per area, each a list of routes relative to it.

Every answer has Prometheus' envelope: ``{"status": "success", "data": ...}`` here, the
error shape in :mod:`signalbox.server.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.responses import Response


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
