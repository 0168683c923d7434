"""One JSON error shape on every route, the right status per error, and the middleware slot."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from signalbox.exceptions import (
    ConfigError,
    NotFoundError,
    QueryError,
    SignalboxError,
    StoreError,
    UsageError,
)
from signalbox.monitors.state.records import HistoryEntry
from signalbox.monitors.status import StatusReport
from signalbox.server.app import create_app
from signalbox.server.errors import classify
from signalbox.server.services import Services
from tests.server.conftest import open_site

SECRET = "hunter2-not-for-clients"


def assert_error_shape(body: object, kind: str) -> str:
    assert isinstance(body, dict)
    assert set(body) == {"status", "errorType", "error"}
    assert body["status"] == "error" and body["errorType"] == kind
    message: str = body["error"]
    return message


class BrokenMonitors:
    """A monitor status source that fails the way ``raises`` says (the extension point)."""

    def __init__(self, raises: BaseException) -> None:
        self.raises = raises

    def status(self, now_ms: int) -> StatusReport:
        raise self.raises

    def history(self, name: str, *, since_ms: int, limit: int) -> list[HistoryEntry]:
        raise self.raises


def services_with(site_services: Services, monitors: BrokenMonitors) -> Services:
    s = site_services
    return Services(s.metrics, s.engine, s.clock, monitors, s.ready)


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (NotFoundError("monitor", "x"), 404, "not_found"),
        (UsageError("invalid parameter 'limit'"), 400, "bad_data"),
        (QueryError("unexpected end", 3, "syntax"), 400, "bad_data"),
        (StoreError("cannot connect to PostgreSQL at postgresql://u:***@db/x"), 503, "unavailable"),
        (ConfigError("signalbox.toml", "monitors.paths", 3, "a list"), 503, "unavailable"),
        (SignalboxError("something deliberate"), 422, "execution"),
    ],
)
def test_every_signalbox_error_gets_its_status_in_the_one_shape(
    tmp_path: Path, error: SignalboxError, status: int, kind: str
) -> None:
    with open_site("memory", tmp_path) as site:
        app = create_app(services_with(site.services, BrokenMonitors(error)))
        with TestClient(app) as c:
            for path in ("/api/v1/monitors", "/api/v1/monitors/x", "/"):
                r = c.get(path)
                assert r.status_code == status, path
                assert r.headers["content-type"] == "application/json"
                assert assert_error_shape(r.json(), kind) == str(error)


def test_a_bug_is_a_500_with_an_incident_id_and_no_traceback_or_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_site("memory", tmp_path) as site:
        app = create_app(services_with(site.services, BrokenMonitors(KeyError(SECRET))))
        with TestClient(app) as c, caplog.at_level(logging.ERROR, "signalbox.server"):
            r = c.get("/api/v1/monitors")
    assert r.status_code == 500
    message = assert_error_shape(r.json(), "internal")
    assert SECRET not in r.text and "Traceback" not in r.text and "KeyError" not in r.text
    incident = message.rsplit("[", 1)[1].rstrip("])")
    [record] = [x for x in caplog.records if incident in x.getMessage()]
    assert record.exc_info is not None and SECRET in str(record.exc_info[1])


def test_unknown_paths_and_methods_answer_in_the_shape(tmp_path: Path) -> None:
    with open_site("memory", tmp_path) as site, site.client() as c:
        r = c.get("/api/v1/nothing/here")
        assert r.status_code == 404
        assert "/api/v1/nothing/here" in assert_error_shape(r.json(), "not_found")
        r = c.get("/no-such-page")
        assert r.status_code == 404 and assert_error_shape(r.json(), "not_found")
        r = c.delete("/api/v1/query")
        assert r.status_code == 405
        assert "DELETE /api/v1/query" in assert_error_shape(r.json(), "bad_data")
        assert "GET" in r.headers["allow"]


def test_the_monitors_area_is_not_mounted_without_a_monitor_source(tmp_path: Path) -> None:
    with open_site("memory", tmp_path) as site:
        s = site.services
        app = create_app(Services(s.metrics, s.engine, s.clock))
        with TestClient(app) as c:
            assert c.get("/api/v1/monitors").status_code == 404
            page = c.get("/")
    assert page.status_code == 200 and "Monitors" not in page.text


def test_a_database_that_went_away_is_503_not_a_bug() -> None:
    import sqlite3

    status, kind, message = classify(sqlite3.OperationalError("database is locked"))
    assert (status, kind) == (503, "unavailable")
    assert "database is locked" not in message  # driver text goes to the log only


# -- the middleware slot ---------------------------------------------------------------------


class TokenAuth:
    """Pure ASGI, as auth will be: refuses requests without the token, else notes the user."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {self.token}".encode():
                raise UsageError("missing or wrong API token")
        await self.app(scope, receive, send)


class Tag:
    """Records every path it passes on (an outer middleware, like request logging)."""

    def __init__(self, app: ASGIApp, log: list[str]) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.log.append(scope["path"])
        await self.app(scope, receive, send)


def test_middleware_in_the_slot_runs_in_order_and_its_errors_get_the_shape(
    tmp_path: Path,
) -> None:
    seen: list[str] = []
    with (
        open_site("memory", tmp_path) as site,
        site.client(
            middleware=[Middleware(Tag, log=seen), Middleware(TokenAuth, token="t0k")]
        ) as c,
    ):
        refused = c.get("/api/v1/labels")
        allowed = c.get("/api/v1/labels", headers={"Authorization": "Bearer t0k"})
    assert refused.status_code == 400
    assert assert_error_shape(refused.json(), "bad_data") == "missing or wrong API token"
    assert allowed.status_code == 200 and allowed.json()["status"] == "success"
    assert seen == ["/api/v1/labels", "/api/v1/labels"]  # the outer one saw both


def test_base_http_middleware_is_refused(tmp_path: Path) -> None:
    class Wrapper(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            return await call_next(request)

    with open_site("memory", tmp_path) as site, pytest.raises(TypeError, match="pure ASGI"):
        create_app(site.services, middleware=[Middleware(Wrapper)])
