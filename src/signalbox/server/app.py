"""The ASGI application of ``signalbox serve``: the HTTP API, ``/metrics``, pages, health.

Built by :func:`create_app` from :class:`~signalbox.server.services.Services`, so tests run
it in-process over any store and ``serve`` runs it under uvicorn; no logic lives here
beyond wiring. The shape every later area follows:

* one list of routes per area under ``/api/v1`` (``signalbox.server.api.<area>.routes``),
  mounted only when the area's service is present;
* one error shape for every route (:mod:`signalbox.server.errors`);
* access control (:mod:`signalbox.server.auth`): with a token store in the services, the
  auth middleware resolves every caller (``options.reads_need_token``: reads need a token
  even on loopback); without one (in-process tests) reads are open and writes refused;
* a middleware slot: pure ASGI middleware (request logging) given to
  :func:`create_app`, never ``BaseHTTPMiddleware`` (it breaks contextvars and streaming).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.routing import BaseRoute, Route

from signalbox.server import dashboard, exposition, health
from signalbox.server.api import flags, monitors, openapi, prom, tasks, tokens
from signalbox.server.api.logs import routes as logs_routes
from signalbox.server.auth import pages as login_pages
from signalbox.server.auth.middleware import AuthMiddleware
from signalbox.server.errors import EXCEPTION_HANDLERS, ErrorShapeMiddleware
from signalbox.server.exactmount import ExactMount
from signalbox.server.headers import SecurityHeadersMiddleware
from signalbox.server.querygate import QueryGate
from signalbox.server.services import Services

__all__ = ["AppOptions", "create_app"]


@dataclass(frozen=True, slots=True)
class AppOptions:
    """How the app presents what it serves (resolved by ``serve`` from ``signalbox.toml``).

    Args:
        stale_after_s: ``/metrics`` leaves out series with no sample this recent.
        demo: the index says a simulated service is writing the data.
        reads_need_token: ``[server] auth = "required"``: loopback reads need a token too.
    """

    stale_after_s: float = 300.0
    demo: bool = False
    reads_need_token: bool = False


def api_routes(svc: Services) -> list[BaseRoute]:
    """Every area's routes, relative to ``/api/v1``."""
    out = prom.routes()
    if svc.monitors is not None:
        out += monitors.routes(writes=svc.monitor_writes is not None)
    if svc.tokens is not None:
        out += tokens.routes()
    if svc.queue is not None:
        out += tasks.routes()
    if svc.flags is not None:
        out += flags.routes()
    if svc.logs is not None:
        out += logs_routes()
    return out


def create_app(
    services: Services,
    options: AppOptions | None = None,
    *,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """The server's ASGI app over ``services``.

    Args:
        services: stores and sources the routes read (on ``app.state.services``).
        options: presentation settings (on ``app.state.options``).
        middleware: pure ASGI middleware, outermost first, run inside the error shape
            (so what they raise is answered in it) and outside every route.

    Raises:
        TypeError: a middleware is a ``BaseHTTPMiddleware``.
    """
    for m in middleware:
        if isinstance(m.cls, type) and issubclass(m.cls, BaseHTTPMiddleware):
            raise TypeError(
                f"{m.cls.__name__} is a BaseHTTPMiddleware; give create_app pure ASGI middleware"
            )
    routes: list[BaseRoute] = [
        # the API first: the router tries routes in order, and the query API is what is
        # asked most often (no page path lies under /api/v1); its fixed paths are found
        # by a dict lookup (signalbox.server.exactmount)
        ExactMount("/api/v1", api_routes(services)),
        *dashboard.routes(),
        *login_pages.routes(),
        Route("/metrics", exposition.metrics),
        Route("/-/healthy", health.healthy),
        Route("/-/ready", health.ready),
        Route("/openapi.json", openapi.endpoint),
    ]
    options = options or AppOptions()
    auth: list[Middleware] = []
    if services.tokens is not None:
        auth.append(
            Middleware(
                AuthMiddleware,
                tokens=services.tokens,
                clock=services.clock,
                reads_need_token=options.reads_need_token,
            )
        )
    app = Starlette(
        routes=routes,
        # headers outermost: error pages and auth refusals carry them too
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(ErrorShapeMiddleware),
            *auth,
            *middleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.services = services
    app.state.query_gate = QueryGate(services.limits)
    app.state.options = options
    return app
