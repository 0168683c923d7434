"""A Starlette ``Mount`` whose fixed-path routes are found by one dict lookup.

Starlette's router tries its routes in order, each by a regex match and a new scope: a
query API request went through the app's router, the ``/api/v1`` mount's regex, a second
router and the route's own regex and method check before its endpoint ran. For a request
to a fixed path (no path parameters) with a method its route takes, :class:`ExactMount`
hands the request to that route's app directly, with the scope both routers would have
left (``route``, ``endpoint``, ``path_params``, ``root_path``, ``app_root_path``), so
anything downstream (endpoints, error handlers, the access log's route template) sees the
same request. Every other request (a path with parameters, a method the route does not
take: its 405, an unknown path: its 404) goes through the mount as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Receive, Scope, Send

__all__ = ["ExactMount"]


class ExactMount(Mount):
    """``Mount(path, routes=routes)``, its fixed-path routes found without regexes.

    A route is looked up exactly only when no route before it in ``routes`` matches its
    path (Starlette's router would try that one first); the rest keep the order.
    """

    def __init__(self, path: str, routes: Sequence[BaseRoute]) -> None:
        super().__init__(path, routes=routes)
        self._exact: dict[str, Route] = {}
        for i, r in enumerate(routes):
            if not isinstance(r, Route) or r.param_convertors:
                continue
            if any(_may_match(earlier, r.path) for earlier in routes[:i]):
                continue
            self._exact.setdefault(self.path + r.path, r)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            route = self._exact.get(get_route_path(scope))
            if route is not None and (route.methods is None or scope["method"] in route.methods):
                root_path = scope.get("root_path", "")
                # the mount's child scope, then the route's (whose "route" the inner
                # router would have set: the outer one sets this mount's first)
                return Match.FULL, {
                    "path_params": dict(scope.get("path_params", {})),
                    "app_root_path": scope.get("app_root_path", root_path),
                    "root_path": root_path + self.path,
                    "endpoint": route.endpoint,
                    "route": route,
                }
        return super().matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("route")
        if route is not self and isinstance(route, Route):  # found in matches: no 405 here
            await route.app(scope, receive, send)
            return
        await super().handle(scope, receive, send)


def _may_match(route: BaseRoute, path: str) -> bool:
    """Whether ``route`` (a sibling before an exact route) could take a request for ``path``."""
    regex: Any = getattr(route, "path_regex", None)
    return regex is None or regex.match(path) is not None
