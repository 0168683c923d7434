"""Route templates from frameworks whose router the middleware cannot see.

Starlette and FastAPI need nothing (the ASGI middleware reads ``scope["route"]``). Flask:
``flask_routes(app)`` after wrapping ``app.wsgi_app``. Django (WSGI or ASGI): add
``"signalbox.instrument.frameworks.DjangoRoutes"`` to ``MIDDLEWARE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from signalbox.instrument.context import set_route

__all__ = ["DjangoRoutes", "flask_routes"]


def flask_routes(app: Any) -> None:
    """Report each request's ``url_rule`` (``/items/<int:id>``) as its route."""
    from flask import request  # imported here: Flask is the application's dependency

    def route_of_request() -> None:
        rule = request.url_rule
        if rule is not None:
            set_route(rule.rule)

    app.before_request(route_of_request)


class DjangoRoutes:
    """Django middleware reporting ``resolver_match.route`` (``items/<int:id>/``, shown
    with a leading ``/``) as the route; works under WSGI and ASGI."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_view(self, request: Any, view: Any, args: Any, kwargs: Any) -> None:
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None)
        if route:
            set_route(route if route.startswith("/") else "/" + route)
