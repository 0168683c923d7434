"""``ExactMount`` answers every request as Starlette's ``Mount`` over the same routes does:
the same status, headers and body, and the endpoint sees the same scope (route, endpoint,
path parameters, root paths), for fixed paths (found by the dict), paths with parameters,
methods a route does not take (405), unknown paths (404), a missing trailing slash
(redirect), a fixed path an earlier route shadows, and under a server's ``root_path``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from signalbox.server.exactmount import ExactMount

SEEN = ("route", "endpoint", "path_params", "root_path", "app_root_path", "path")


class Recorder:
    """A plain ASGI endpoint (as the query API's are) answering with what it saw."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = {k: _name(scope.get(k)) for k in SEEN}
        await JSONResponse({"at": self.name, **seen})(scope, receive, send)


async def by_function(request: Request) -> JSONResponse:
    """A ``Request -> Response`` endpoint (Starlette wraps it)."""
    return JSONResponse({"at": "function", **{k: _name(request.scope.get(k)) for k in SEEN}})


def _name(v: Any) -> Any:
    if isinstance(v, Route):
        return f"Route {v.path}"
    if isinstance(v, Recorder):
        return f"Recorder {v.name}"
    if callable(v):
        return getattr(v, "__name__", type(v).__name__)
    return v


def routes() -> list[BaseRoute]:
    return [
        Route("/query", Recorder("query"), methods=["GET", "POST"]),
        Route("/label/{name}/values", Recorder("values"), methods=["GET"]),
        Route("/label/x/values", Recorder("shadowed"), methods=["GET"]),  # the one above wins
        Route("/both", Recorder("both-get"), methods=["GET"]),
        Route("/both", Recorder("both-post"), methods=["POST"]),
        Route("/fn", by_function, methods=["GET"]),
        Route("/slash/", Recorder("slash"), methods=["GET"]),
        Route("/any", Recorder("any"), methods=None),
    ]


def app(mount: type[Mount]) -> Starlette:
    top = [mount("/api/v1", routes=routes()), Route("/page", Recorder("page"))]
    return Starlette(routes=top)


def call(a: Starlette, method: str, path: str, root_path: str = "") -> Any:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(a(scope, receive, send))
    return sent


REQUESTS = [
    (method, path)
    for path in (
        "/api/v1/query",
        "/api/v1/label/foo/values",
        "/api/v1/label/x/values",
        "/api/v1/both",
        "/api/v1/fn",
        "/api/v1/slash",
        "/api/v1/slash/",
        "/api/v1/any",
        "/api/v1/nothing",
        "/api/v1",
        "/api/v1/",
        "/page",
        "/api/v1/query/",
    )
    for method in ("GET", "POST", "HEAD", "PUT")
]


@pytest.mark.parametrize("root_path", ["", "/behind"])
def test_every_request_is_answered_as_the_mount_answers_it(root_path: str) -> None:
    plain, exact = app(Mount), app(ExactMount)
    for method, path in REQUESTS:
        assert call(exact, method, path, root_path) == call(plain, method, path, root_path), (
            method,
            path,
        )


def test_fixed_paths_are_found_by_the_dict() -> None:
    """The lookup is used (not only the fallback): the shadowed path and the ones with
    parameters are left to the mount's router, the fixed ones are not."""
    m = ExactMount("/api/v1", routes())
    assert sorted(m._exact) == [
        "/api/v1/any",
        "/api/v1/both",
        "/api/v1/fn",
        "/api/v1/query",
        "/api/v1/slash/",
    ]
    assert m._exact["/api/v1/both"].methods == {"GET", "HEAD"}  # the first one's, as routed
    seen = call(app(ExactMount), "POST", "/api/v1/both")
    assert b'"at":"both-post"' in seen[1]["body"]  # a method the first does not take: routed


def test_a_fixed_path_skips_the_mounts_router() -> None:
    a = app(ExactMount)
    mount = a.routes[0]
    assert isinstance(mount, ExactMount)
    inner, routed = mount.app, []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        routed.append(scope["path"])
        await inner(scope, receive, send)

    mount.app = recording
    for method, path in [("GET", "/api/v1/query"), ("POST", "/api/v1/query")]:
        assert b'"at":"query"' in call(a, method, path)[1]["body"]
    assert routed == []
    call(a, "GET", "/api/v1/label/foo/values")
    call(a, "PUT", "/api/v1/query")
    assert routed == ["/api/v1/label/foo/values", "/api/v1/query"]
