"""Monitor states, read from the monitor store (the same answers as ``monitors status``).

``GET /api/v1/monitors``: every monitor with its series, silences, lint errors and the
outbox, exactly the JSON of ``signalbox monitors status --json``.
``GET /api/v1/monitors/{name}?since=1d&limit=100``: one monitor and its newest history.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from signalbox.durations import parse_duration
from signalbox.exceptions import NotFoundError, UsageError
from signalbox.monitors.status import history_json
from signalbox.server.api import ok
from signalbox.server.services import MonitorStatusSource, services

MAX_HISTORY = 1000


def _source(request: Request) -> MonitorStatusSource:
    src = services(request).monitors
    if src is None:  # the area is only mounted with a source; a guard, not a path
        raise NotFoundError("area", "monitors", "this server has no monitor store")
    return src


def parse_since(text: str | None) -> float:
    """``since`` as seconds (default one day); a bad value names the parameter."""
    if text is None or text == "":
        return 86400.0
    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"invalid parameter 'since': {e}") from None


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return 100
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_HISTORY:
        raise UsageError(
            f"invalid parameter 'limit': expected a whole number from 1 to {MAX_HISTORY}, got {text!r}"
        )
    return n


async def list_monitors(request: Request) -> Response:
    src, now = _source(request), services(request).now_ms()
    report = await run_in_threadpool(src.status, now)
    return ok(report.to_dict())


async def one_monitor(request: Request) -> Response:
    name = str(request.path_params["name"])
    since_s = parse_since(request.query_params.get("since"))
    limit = parse_limit(request.query_params.get("limit"))
    src, now = _source(request), services(request).now_ms()

    def read() -> dict[str, Any]:
        report = src.status(now)
        found = next((m for m in report.monitors if m.name == name), None)
        if found is None:
            known = ", ".join(sorted(m.name for m in report.monitors)) or "none"
            raise NotFoundError("monitor", name, f"known: {known}")
        entries = src.history(name, since_ms=now - round(since_s * 1000), limit=limit)
        return {
            "at_ms": report.at_ms,
            "monitor": found.to_dict(),
            "history": [history_json(e) for e in entries],
        }

    return ok(await run_in_threadpool(read))


def routes() -> list[BaseRoute]:
    """This area's routes, relative to ``/api/v1``."""
    return [
        Route("/monitors", list_monitors, methods=["GET"]),
        Route("/monitors/{name}", one_monitor, methods=["GET"]),
    ]
