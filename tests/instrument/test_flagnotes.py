"""The flags a request evaluated reach its access-log line (``flags="name=on,..."``), and the
staff override (``?features=`` or its header) applies only once the app marks the request as
staff and ``[flags] override`` is on: with real Starlette (ASGI) and Flask (WSGI) apps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from tests.instrument.conftest import SECRET, Harness

from signalbox import flags
from signalbox.config import settings_from_dict
from signalbox.flags.memstore import MemoryFlagStore
from signalbox.instrument import ASGIMiddleware, WSGIMiddleware
from signalbox.instrument.accesslog import fingerprint

DECLARED = (
    "- {name: new_ui, description: the new UI, default: true}\n"
    "- {name: beta, description: beta search, default: false}\n"
)


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[None]:
    (tmp_path / "flags").mkdir()
    (tmp_path / "flags" / "f.yaml").write_text(DECLARED)
    settings = settings_from_dict(
        {"flags": {"refresh": "1h", "override": True}}, source="t", base_dir=tmp_path
    )
    flags.configure(settings, store=MemoryFlagStore(), metrics=False)
    yield
    flags.reset()


def _answers(staff: bool) -> str:
    if staff:
        flags.mark_staff()
    a = flags.enabled("new_ui", "u1")
    b = flags.enabled("beta", "u1")
    flags.enabled("new_ui", "u2")  # the same answer again: logged once
    return f"new_ui={a} beta={b}"


def asgi_app(h: Harness) -> ASGIMiddleware:
    async def page(request: Request) -> Response:
        return PlainTextResponse(_answers("staff" in request.query_params))

    return ASGIMiddleware(Starlette(routes=[Route("/p", page)]), core=h.core)


def wsgi_app(h: Harness) -> Flask:
    from flask import request

    app = Flask("t")

    @app.route("/p")
    def page() -> str:
        return _answers("staff" in request.args)

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, core=h.core)  # type: ignore[method-assign]
    return app


def test_the_flags_a_request_evaluated_are_in_its_line(configured: None, harness: Harness) -> None:
    with TestClient(asgi_app(harness)) as c:
        assert c.get("/p").text == "new_ui=True beta=False"
        assert c.get("/p?features=-new_ui,beta").text == "new_ui=True beta=False"  # no staff
        assert c.get("/p?features=-new_ui,beta&staff=1").text == "new_ui=False beta=True"
    notes = [r.notes.get("flags") for r in harness.records()]
    assert notes == ["new_ui=on,beta=off", "new_ui=on,beta=off", "new_ui=off,beta=on"]


def test_wsgi_the_override_header_applies_to_staff_only(configured: None, harness: Harness) -> None:
    c = wsgi_app(harness).test_client()
    hdr = {"X-Signalbox-Features": "-new_ui"}
    r = c.get("/p", headers=hdr, buffered=True)
    assert r.get_data(as_text=True) == "new_ui=True beta=False"
    r = c.get("/p?staff=1", headers=hdr, buffered=True)
    assert r.get_data(as_text=True) == "new_ui=False beta=False"
    notes = [r.notes.get("flags") for r in harness.records()]
    assert notes == ["new_ui=on,beta=off", "new_ui=off,beta=off"]


def test_without_a_flags_client_nothing_is_noted(harness: Harness) -> None:
    with TestClient(asgi_app(harness)) as c:
        c.get("/p")  # enabled() before configure(): off, and no flags note
    flags.reset()
    assert [r.notes.get("flags") for r in harness.records()] == [None]


def test_an_api_key_in_the_query_string_or_referer_is_logged_as_its_fingerprint(
    harness: Harness,
) -> None:
    """Flickr's API took ``?api_key=``: the key must not reach the log in clear from the URL
    any more than from a note (``[instrument] secret_notes`` names both)."""
    key = "sk_live_abc/+="
    fp = fingerprint(key, SECRET)
    with TestClient(asgi_app(harness)) as c:
        c.get(
            "/p",
            params={"x": "1", "api_key": key, "other_api_key": "kept"},
            headers={"Referer": "https://example.com/app?api_key=sk_live_abc%2F%2B%3D&y=2"},
        )
        c.get("/p?api_key=&x=1")
    lines = harness.lines()
    assert all("sk_live" not in line for line in lines), lines
    first, second = harness.records()
    assert first.query == f"x=1&api_key={fp}&other_api_key=kept"
    assert first.referer == f"https://example.com/app?api_key={fp}&y=2"
    assert second.query == "api_key=&x=1"
