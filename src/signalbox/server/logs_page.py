"""The dashboard's request-log page (``/logs``): search the access log, trace one request.

A plain form that reloads the page (``GET /logs?user=5555&status=5xx``), laid out by
``templates/logs.html`` from what ``/api/v1/logs/requests`` and ``/api/v1/logs/trace/{id}``
answer (:mod:`signalbox.server.api.logs`), so the page and the API never disagree. Every value
from a log line -- paths, notes, user agents, application log text -- is shown by Jinja2's
escaping as text, and the page runs no script of its own: nothing in a log can run in it.
A filter the search refuses is said above the results, not answered as an error page. A
search or a trace over logs too big for one answer says the scan stopped early and links to
read on (the API's ``resume``; ``trace_resume`` for the trace).
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from signalbox.exceptions import UsageError
from signalbox.instrument.logsources import ConfiguredLogs
from signalbox.server.api.logs import FILTERS, requests_page, trace_lines

__all__ = ["PAGE_SIZE", "logs", "logs_page_data"]

PAGE_SIZE = 100
"""Requests shown per page; "Older" pages on."""


def logs_page_data(
    logs: ConfiguredLogs | None, params: dict[str, str], now: datetime
) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    values = {k: params.get(k, "") for k in FILTERS}
    out: dict[str, Any] = {"has_logs": logs is not None, "values": values, "error": ""}
    if logs is None:
        return out
    searched = any(values.values()) or "search" in params
    out["searched"] = searched
    trace_id = params.get("trace", "")
    out["trace_id"] = trace_id
    try:
        if trace_id:
            traced = trace_lines(logs, trace_id, params.get("trace_resume") or None)
            out["trace"] = traced
            if traced["resume"]:  # the scan stopped early: read on from where it stopped
                out["trace_read_on"] = "/logs?" + urllib.parse.urlencode(
                    {"trace": trace_id, "trace_resume": traced["resume"]}
                )
        if searched:
            resume = params.get("resume", "")
            found = requests_page(
                logs,
                {
                    **values,
                    "limit": str(PAGE_SIZE),
                    "after": params.get("after", ""),
                    "resume": resume,
                },
                now,
            )
            out["found"] = found
            kept = {k: v for k, v in values.items() if v}
            kept["search"] = "1"
            if found["next_after"]:
                more = {**kept, "after": found["next_after"]}
                if resume:
                    more["resume"] = resume
                out["older"] = "/logs?" + urllib.parse.urlencode(more)
            if found["resume"]:  # the scan stopped early: read on from where it stopped
                out["read_on"] = "/logs?" + urllib.parse.urlencode(
                    {**kept, "resume": found["resume"]}
                )
    except UsageError as e:
        out["error"] = str(e)
    return out


async def logs(request: Request) -> Response:
    from signalbox.server.dashboard import page
    from signalbox.server.services import services

    demo: bool = request.app.state.options.demo
    params = dict(request.query_params.items())
    svc = services(request)
    now = datetime.fromtimestamp(svc.clock.now(), UTC)
    data = await run_in_threadpool(logs_page_data, svc.logs, params, now)
    return HTMLResponse(page("logs.html", "logs", demo, **data))
