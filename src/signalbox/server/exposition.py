"""``GET /metrics``: the latest value of every fresh series, in Prometheus text format.

A series whose newest sample is older than ``stale_after_s`` is left out, as Prometheus
drops a target's series that stopped being scraped; the text itself is built by
:func:`signalbox.metrics.expose.render`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from signalbox.metrics.expose import render
from signalbox.server.services import Services, services

EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition(svc: Services, stale_after_s: float) -> str:
    since_ms = svc.now_ms() - int(stale_after_s * 1000)
    reader = svc.metrics
    return render(reader.latest(since_ms=since_ms), reader.metadata())


async def metrics(request: Request) -> Response:
    stale_after_s: float = request.app.state.options.stale_after_s
    text = await run_in_threadpool(exposition, services(request), stale_after_s)
    return Response(text, media_type=EXPOSITION_TYPE)
