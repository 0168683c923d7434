"""JSON API under ``/api/v1/``: one module per area, each a list of routes relative to it.

Every answer has Prometheus' envelope: ``{"status": "success", "data": ...}`` here, the
error shape in :mod:`signalbox.server.errors`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response


def ok(data: Any) -> Response:
    """The success envelope around ``data`` (JSON)."""
    return Response(
        msgspec.json.encode({"status": "success", "data": data}), media_type="application/json"
    )
