"""WSGIMiddleware with a real Flask app, and both middlewares with a real Django app (WSGI and
ASGI), configured in-process: ids, notes, route templates, errors, streaming, hostile input."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context
from tests.instrument.conftest import SECRET, Harness
from werkzeug.test import Client as WerkzeugClient
from werkzeug.test import EnvironBuilder, run_wsgi_app

from signalbox.instrument import (
    ASGIMiddleware,
    DjangoRoutes,
    WSGIMiddleware,
    flask_routes,
    note,
    request_id,
)
from signalbox.instrument.accesslog import fingerprint


def flask_app(h: Harness) -> Flask:
    app = Flask("t")

    @app.get("/users/<int:uid>")
    def user(uid: int) -> str:
        note(user_id=uid, api_key="key-123")
        return f"user {uid} {request_id()}"

    @app.get("/boom")
    def boom() -> str:
        note(user_id=7)
        raise RuntimeError("kaput")

    @app.get("/stream")
    def stream() -> Response:
        def gen() -> Iterator[str]:
            for i in range(3):
                note(chunks=i + 1)
                yield "y" * 100

        return Response(stream_with_context(gen()))

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, core=h.core)  # type: ignore[method-assign]
    flask_routes(app)
    return app


def test_flask_request_line_route_notes_and_echoed_id(harness: Harness) -> None:
    c = flask_app(harness).test_client()
    r = c.get(
        "/users/42?a=b", headers={"X-Request-ID": "flask-1", "User-Agent": "t/1"}, buffered=True
    )
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "flask-1"
    assert r.get_data(as_text=True) == "user 42 flask-1"
    [rec] = harness.records()
    assert (rec.method, rec.path, rec.query, rec.route, rec.status) == (
        "GET",
        "/users/42",
        "a=b",
        "/users/<int:uid>",
        200,
    )
    assert rec.request_id == "flask-1" and rec.user_agent == "t/1"
    assert rec.bytes == len(r.get_data()) and rec.notes["user_id"] == "42"
    assert rec.notes["api_key"] == fingerprint("key-123", SECRET)


def test_flask_error_and_stream(harness: Harness) -> None:
    app = flask_app(harness)
    c = app.test_client()
    r = c.get("/boom", buffered=True)
    assert r.status_code == 500
    s = c.get("/stream", buffered=True)
    assert len(s.get_data()) == 300
    boom, stream = harness.records()
    assert (boom.status, boom.notes["user_id"], boom.request_id) == (
        500,
        "7",
        r.headers["X-Request-ID"],
    )
    assert (stream.status, stream.bytes, stream.notes["chunks"]) == (200, 300, "3")


def test_an_exception_escaping_a_wsgi_app_is_logged_then_raised(harness: Harness) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        note(user_id=9)
        raise ValueError("no response")

    mw = WSGIMiddleware(app, core=harness.core)
    with pytest.raises(ValueError):
        WerkzeugClient(mw).get("/x", headers={"X-Request-ID": "w-1"}, buffered=True)
    [rec] = harness.records()
    assert (rec.status, rec.request_id, rec.notes["user_id"], rec.notes["error"]) == (
        500,
        "w-1",
        "9",
        "ValueError",
    )


def test_a_body_closed_before_its_end_is_a_disconnect(harness: Harness) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a" * 10
        yield b"b" * 10

    mw = WSGIMiddleware(app, core=harness.core)
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/dl", "SERVER_PROTOCOL": "HTTP/1.1"}
    body = mw(env, lambda status, headers, exc_info=None: lambda data: None)
    it = iter(body)
    next(it)
    body.close()  # type: ignore[attr-defined]
    [rec] = harness.records()
    assert (rec.status, rec.bytes, rec.notes["disconnect"], rec.path) == (200, 10, "client", "/dl")


HOSTILE_UA = 'evil\r\n1.2.3.4 - - [01/Jan/2000:00:00:00 +0000] "GET /admin HTTP/1.1" 200 1'


def test_hostile_headers_paths_queries_and_notes_never_split_or_forge_a_line(
    harness: Harness,
) -> None:
    app = Flask("hostile")

    @app.before_request  # runs for any path, a 404 too
    def notes() -> None:
        note(
            user_id='5" admin="1',
            comment="line\nbreak\u2028sep\x85nel",
            esc="\x1b[2J\x1b]0;title\x07",
        )

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, core=harness.core)  # type: ignore[method-assign]
    # built by hand: a test client refuses line breaks in headers, a server behind a lax
    # proxy may not
    env = EnvironBuilder(path="/a%0d%0ab%22c%E2%80%A8", query_string="q=%0a\"'\x1b").get_environ()
    env["HTTP_USER_AGENT"] = HOSTILE_UA
    env["HTTP_REFERER"] = "x\u2029y\x1b[31m"
    env["HTTP_X_REQUEST_ID"] = "bad\nid"
    env["REQUEST_URI"] = "/a%0d%0ab%22c%E2%80%A8?q=%0a\"'\x1b"
    run_wsgi_app(app.wsgi_app, env, buffered=True)
    lines = harness.lines()
    assert len(lines) == 1
    line = lines[0]
    for bad in ("\r", "\n", "\x1b", "\x85", "\u2028", "\u2029", "\x07"):
        assert bad not in line
    [rec] = harness.records()
    assert rec.user_agent == HOSTILE_UA and rec.referer == "x\u2029y\x1b[31m"
    assert rec.notes["user_id"] == '5" admin="1' and "admin" not in rec.notes
    assert rec.notes["esc"] == "\x1b[2J\x1b]0;title\x07"
    assert rec.path == "/a%0d%0ab%22c%E2%80%A8" and rec.query == "q=%0a\"'\x1b"
    assert rec.request_id != "bad\nid" and len(rec.request_id) == 32


# -- Django ----------------------------------------------------------------------------------
def _django() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["signalbox.instrument.frameworks.DjangoRoutes"],
            INSTALLED_APPS=[],
            DATABASES={},
            LOGGING_CONFIG=None,
        )
        django.setup()
    return settings


def _item(request: Any, item_id: int) -> Any:
    from django.http import HttpResponse

    note(user_id=item_id)
    return HttpResponse(f"item {item_id} {request_id()}")


def _django_boom(request: Any) -> Any:
    note(user_id=13)
    raise RuntimeError("django kaput")


def _urls() -> list[Any]:
    from django.urls import path

    return [path("items/<int:item_id>/", _item), path("boom/", _django_boom)]


def __getattr__(name: str) -> Any:
    if name == "urlpatterns":  # ROOT_URLCONF is this module; built after settings.configure
        return _urls()
    raise AttributeError(name)


def test_django_wsgi_route_template_notes_and_500(harness: Harness) -> None:
    _django()
    from django.core.handlers.wsgi import WSGIHandler

    assert DjangoRoutes.sync_capable
    app = WSGIMiddleware(WSGIHandler(), core=harness.core)
    c = WerkzeugClient(app)
    r = c.get("/items/7/", headers={"X-Request-ID": "dj-1"}, buffered=True)
    assert r.status_code == 200 and r.get_data(as_text=True) == "item 7 dj-1"
    assert r.headers["X-Request-ID"] == "dj-1"
    boom = c.get("/boom/", buffered=True)
    assert boom.status_code == 500
    ok, err = harness.records()
    assert (ok.route, ok.notes["user_id"], ok.status) == ("/items/<int:item_id>/", "7", 200)
    assert (err.status, err.notes["user_id"], err.route) == (500, "13", "/boom/")


def test_django_asgi_route_template_and_notes(harness: Harness) -> None:
    _django()
    from django.core.handlers.asgi import ASGIHandler

    app = ASGIMiddleware(ASGIHandler(), core=harness.core)
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/items/9/",
            "raw_path": b"/items/9/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"x-request-id", b"dj-asgi")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        msgs = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive() -> dict[str, Any]:
            m = next(msgs, None)
            if m is None:
                await asyncio.sleep(3600)
            return m or {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(run())
    start = sent[0]
    assert start["status"] == 200 and (b"x-request-id", b"dj-asgi") in start["headers"]
    [rec] = harness.records()
    assert (rec.route, rec.notes["user_id"], rec.request_id) == (
        "/items/<int:item_id>/",
        "9",
        "dj-asgi",
    )
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert body == b"item 9 dj-asgi" and rec.bytes == len(body)
