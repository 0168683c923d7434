"""The ASGI application of ``signalbox serve``: Prometheus read API, ``/metrics``, health.

Built by a factory from a store so tests run it in-process with httpx and the CLI runs it
under uvicorn; no logic lives here beyond wiring routes to library calls.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from signalbox import __version__
from signalbox.metrics.expose import render
from signalbox.metrics.samples import Matcher, format_series
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.server.api import prom

EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATE_NAMES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def create_app(
    store: SQLMetricStore, *, stale_after_s: float = 300.0, demo: bool = False
) -> Starlette:
    def get_store() -> SQLMetricStore:
        return store

    async def metrics(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        def build() -> str:
            now_ms = int(store.clock.now() * 1000)
            latest = store.latest(since_ms=now_ms - int(stale_after_s * 1000))
            return render(latest, store.metadata())

        return Response(await run_in_threadpool(build), media_type=EXPOSITION_TYPE)

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("signalbox is healthy.\n")

    async def index(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        names = sorted({n for n, _ in await run_in_threadpool(store.series)})
        now_ms = int(store.clock.now() * 1000)
        states = await run_in_threadpool(
            lambda: store.latest(
                [Matcher("__name__", "=", "signalbox_monitor_state")],
                since_ms=now_ms - int(stale_after_s * 1000),
            )
        )
        rows = "".join(
            f"<tr><td>{html.escape(dict(labels).get('monitor', ''))}</td>"
            f"<td>{html.escape(format_series('', tuple(kv for kv in labels if kv[0] != 'monitor')))}</td>"
            f"<td class=s{int(v) if v == v else 3}>{_STATE_NAMES.get(int(v) if v == v else 3, '?')}</td></tr>"
            for _, labels, _, v in sorted(
                states, key=lambda r: (-(r[3] if r[3] == r[3] else 3), r[1])
            )
        )
        monitors = (
            f"<h2>Monitors</h2><table><tr><th>monitor</th><th>series</th><th>state</th></tr>{rows}</table>"
            if rows
            else ""
        )
        items = "".join(
            f'<li><a href="/api/v1/query?query={html.escape(n)}">{html.escape(n)}</a></li>'
            for n in names
        )
        banner = (
            "<p><b>Demo mode</b>: a simulated photo service is writing spool files and StatsD.</p>"
            if demo
            else ""
        )
        page = (
            f"<!doctype html><html><head><meta charset=utf-8><title>signalbox</title>"
            f"<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 12px;text-align:left}}"
            f".s0{{color:#080}}.s1{{color:#a60}}.s2{{color:#c00;font-weight:bold}}.s3{{color:#666}}</style>"
            f"</head><body><h1>signalbox {html.escape(__version__)}</h1>{banner}{monitors}"
            f'<p><a href="/metrics">/metrics</a> · Prometheus API: <code>/api/v1/query</code>, '
            f"<code>/api/v1/query_range</code>, <code>/api/v1/series</code></p>"
            f"<h2>{len(names)} metrics</h2><ul>{items}</ul></body></html>"
        )
        return HTMLResponse(page)

    route_list: list[Route] = [
        Route("/", index),
        Route("/metrics", metrics),
        Route("/-/healthy", healthy),
        Route("/-/ready", healthy),
        *prom.routes(get_store),
    ]
    return Starlette(routes=route_list)


AppFactory = Callable[[SQLMetricStore], Starlette]
