"""ASGIMiddleware with real Starlette and FastAPI apps: ids, notes, errors, streaming, routes."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from tests.instrument.conftest import SECRET, Harness

from signalbox.instrument import ASGIMiddleware, add, note, request_id
from signalbox.instrument.accesslog import fingerprint


def _library_code(user: int) -> None:
    note(user_id=user)  # deep in a library: no request object at hand


async def item(request: Request) -> Response:
    _library_code(5555)
    note(api_key="sk_live_abc", api_method="items.get")
    add("flags", "new_ui=on")
    add("flags", "beta=off")
    add("flags", "new_ui=on")

    def in_thread() -> None:
        note(from_thread="yes")

    ctx = contextvars.copy_context()
    t = threading.Thread(target=ctx.run, args=(in_thread,))
    t.start()
    t.join()
    await asyncio.to_thread(note, via_to_thread=1)
    return PlainTextResponse(f"item {request.path_params['item_id']} {request_id()}")


async def boom(request: Request) -> Response:
    note(user_id=7)
    raise RuntimeError("kaput")


async def five_hundred(request: Request) -> Response:
    note(user_id=8)
    return PlainTextResponse("no", status_code=500)


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            note(chunks=i + 1)
            yield b"x" * 1000

    return StreamingResponse(chunks())


def starlette_app(h: Harness) -> ASGIMiddleware:
    inner = Starlette(
        routes=[
            Route("/items/{item_id:int}", item),
            Route("/boom", boom),
            Route("/500", five_hundred),
            Route("/stream", stream),
            Mount("/api", routes=[Route("/v1/items/{item_id:int}", item)]),
        ]
    )
    return ASGIMiddleware(inner, core=h.core)


def test_a_request_gets_one_line_with_its_notes_id_route_and_fingerprinted_key(
    harness: Harness,
) -> None:
    with TestClient(starlette_app(harness)) as c:
        r = c.get("/items/42?x=1", headers={"User-Agent": "ua/1", "Referer": "http://r/"})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert len(rid) == 32 and r.text == f"item 42 {rid}"
    [rec] = harness.records()
    assert (rec.method, rec.path, rec.query, rec.status, rec.route) == (
        "GET",
        "/items/42",
        "x=1",
        200,
        "/items/{item_id:int}",
    )
    assert rec.request_id == rid and rec.host == "web1" and rec.bytes == len(r.content)
    assert rec.user_agent == "ua/1" and rec.referer == "http://r/" and rec.duration_us > 0
    assert rec.notes["user_id"] == "5555"
    assert rec.notes["api_key"] == fingerprint("sk_live_abc", SECRET)
    assert "sk_live_abc" not in harness.log.read_text()
    assert rec.notes["api_method"] == "items.get"
    assert rec.notes["flags"] == "new_ui=on,beta=off"
    assert rec.notes["from_thread"] == "yes" and rec.notes["via_to_thread"] == "1"


def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced(harness: Harness) -> None:
    with TestClient(starlette_app(harness)) as c:
        kept = c.get("/items/1", headers={"X-Request-ID": "abc-123.def"})
        replaced = c.get("/items/1", headers={"X-Request-ID": 'evil" id=1'})
        too_long = c.get("/items/1", headers={"X-Request-ID": "a" * 129})
    assert kept.headers["x-request-id"] == "abc-123.def"
    assert replaced.headers["x-request-id"] != 'evil" id=1'
    assert len(replaced.headers["x-request-id"]) == 32
    assert len(too_long.headers["x-request-id"]) == 32
    assert [r.request_id for r in harness.records()] == [
        "abc-123.def",
        replaced.headers["x-request-id"],
        too_long.headers["x-request-id"],
    ]


def test_traceparent_is_parsed_and_its_trace_id_logged(harness: Harness) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    seen: list[str] = []

    async def view(request: Request) -> Response:
        from signalbox.instrument import current

        ctx = current()
        assert ctx is not None
        seen.append(ctx.traceparent)
        return PlainTextResponse("ok")

    app = ASGIMiddleware(Starlette(routes=[Route("/t", view)]), core=harness.core)
    with TestClient(app) as c:
        c.get("/t", headers={"traceparent": tp})
        c.get("/t", headers={"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"})
    first, second = harness.records()
    assert first.notes["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "trace_id" not in second.notes  # an all-zero trace id is invalid
    child, fresh = seen
    assert child.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and child.endswith("-01")
    assert len(child) == 55 and "00f067aa0ba902b7" not in child  # our own span id
    assert fresh.startswith("00-") and "4bf92f" not in fresh and len(fresh) == 55


def test_an_exception_escaping_the_app_is_logged_as_500_with_id_and_notes(
    harness: Harness,
) -> None:
    with TestClient(starlette_app(harness), raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-ID": "req-boom"})
        r500 = c.get("/500")
    assert r.status_code == 500 and r500.status_code == 500
    boom, plain = harness.records()
    assert (boom.status, boom.request_id, boom.notes["user_id"]) == (500, "req-boom", "7")
    assert boom.notes["error"] == "RuntimeError"
    assert (plain.status, plain.notes["user_id"]) == (500, "8")


def test_an_exception_with_no_error_middleware_is_still_logged_then_raised(
    harness: Harness,
) -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        note(user_id=9)
        raise ValueError("no response at all")

    app = ASGIMiddleware(bare, core=harness.core)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "headers": [(b"x-request-id", b"r1")],
        "http_version": "1.1",
        "client": ("10.0.0.1", 1234),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    with pytest.raises(ValueError):
        asyncio.run(app(scope, receive, send))
    [rec] = harness.records()
    assert (rec.status, rec.request_id, rec.client, rec.notes["user_id"]) == (
        500,
        "r1",
        "10.0.0.1",
        "9",
    )
    assert rec.notes["error"] == "ValueError"


def test_a_streamed_body_is_counted_to_its_end_and_logged_once(harness: Harness) -> None:
    with TestClient(starlette_app(harness)) as c:
        r = c.get("/stream")
    assert len(r.content) == 5000
    [rec] = harness.records()
    assert rec.bytes == 5000 and rec.notes["chunks"] == "5"


def test_a_client_gone_before_the_response_is_logged_as_499(harness: Harness) -> None:
    async def waits(scope: Any, receive: Any, send: Any) -> None:
        note(user_id=1)
        while (await receive())["type"] != "http.disconnect":
            pass

    app = ASGIMiddleware(waits, core=harness.core)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/slow",
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
    }
    messages = iter([{"type": "http.request", "body": b"", "more_body": True}])

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: Any) -> None:
        pass

    asyncio.run(app(scope, receive, send))
    [rec] = harness.records()
    assert (rec.status, rec.notes["disconnect"], rec.path) == (499, "client", "/slow")


def test_mounted_routes_keep_their_prefix(harness: Harness) -> None:
    with TestClient(starlette_app(harness)) as c:
        c.get("/api/v1/items/3")
    assert harness.records()[0].route == "/api/v1/items/{item_id:int}"


def test_fastapi_route_templates_and_request_metrics(harness: Harness) -> None:
    api = FastAPI()

    @api.get("/users/{user_id}")
    def user(user_id: int) -> dict[str, int]:
        note(user_id=user_id)
        return {"id": user_id}

    with TestClient(ASGIMiddleware(api, core=harness.core)) as c:
        assert c.get("/users/1").status_code == 200
        assert c.get("/users/2").status_code == 200
        assert c.get("/users/x").status_code == 422
        assert c.get("/nope").status_code == 404
    recs = harness.records()
    assert [r.route for r in recs] == ["/users/{user_id}"] * 3 + [""]
    assert [r.notes.get("user_id") for r in recs] == ["1", "2", None, None]
    text = harness.metrics_text()
    ok = 'method="GET",route="/users/{user_id}",status="2xx"'
    assert f"http_requests_total{{{ok}}}=2" in text
    assert f"http_request_duration_seconds_count{{{ok}}}=2" in text
    assert f'http_request_duration_seconds_bucket{{le="+Inf",{ok}}}=2' in text
    assert 'http_requests_total{method="GET",route="/users/{user_id}",status="4xx"}=1' in text
    assert 'http_requests_total{method="GET",route="(none)",status="4xx"}=1' in text


def test_note_outside_a_request_does_nothing() -> None:
    note(user_id=1)
    add("flags", "x")
    assert request_id() is None


def test_lifespan_and_websocket_scopes_pass_through(harness: Harness) -> None:
    started: list[bool] = []

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    import contextlib

    inner = Starlette(routes=[], lifespan=contextlib.asynccontextmanager(lifespan))
    with TestClient(ASGIMiddleware(inner, core=harness.core)):
        pass
    assert started == [True] and harness.lines() == []


def test_odd_note_names_are_renamed_and_long_values_cut(harness: Harness) -> None:
    async def view(request: Request) -> Response:
        note(**{"a b": "x" * 500, "route": "mine", "9lives": [1, {"k": None}], "ok": True})
        return PlainTextResponse("ok")

    app = ASGIMiddleware(Starlette(routes=[Route("/n", view)]), core=harness.core)
    with TestClient(app) as c:
        c.get("/n")
    [rec] = harness.records()
    assert rec.notes["a_b"] == "x" * 197 + "..." and rec.route == "/n"
    assert rec.notes["note_route"] == "mine"
    assert rec.notes["note_9lives"] == '[1,{"k":null}]' and rec.notes["ok"] == "true"
