"""One JSON error shape for every route, and the status code each error deserves.

The shape is Prometheus' HTTP API error body, ``{"status": "error", "errorType": ...,
"error": ...}``, because Grafana parses it on the Prometheus routes; every other area uses
the same shape so a client handles errors one way. The mapping:

=====================================  ======  ============
error                                  status  errorType
=====================================  ======  ============
AccessError: no valid token            401     unauthorized (with WWW-Authenticate)
AccessError: the token's role is low   403     forbidden
NotFoundError (and unknown routes)     404     not_found
QueryError, ParseError, UsageError     400     bad_data
StoreError, ConfigError                503     unavailable
QueryLimitError: a query's timeout     503     timeout
QueryLimitError: heavy queue full      503     unavailable
QueryLimitError: client went away      499     canceled
a database driver's OperationalError   503     unavailable
any other SignalboxError               422     execution
anything else: a bug                   500     internal
=====================================  ======  ============

A bug's message and traceback go to the log under a short incident id; the client gets only
the id, so no stack frame, SQL text or secret leaves the server.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalbox.exceptions import (
    AccessError,
    ConfigError,
    NotFoundError,
    ParseError,
    QueryError,
    QueryLimitError,
    SignalboxError,
    StoreError,
    UsageError,
)

log = logging.getLogger("signalbox.server")

JSON = "application/json"


def error_body(kind: str, message: str) -> bytes:
    return msgspec.json.encode({"status": "error", "errorType": kind, "error": message})


def error_response(kind: str, message: str, status: int) -> Response:
    return Response(error_body(kind, message), status_code=status, media_type=JSON)


def _is_driver_unavailable(exc: BaseException) -> bool:
    """A database that went away or refuses work right now: not our bug, so 503."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    try:
        import psycopg
    except ImportError:  # the postgresql extra is not installed: no psycopg error can occur
        return False
    return isinstance(exc, psycopg.OperationalError)


def classify(exc: BaseException) -> tuple[int, str, str]:
    """``(status, errorType, message)`` for ``exc``; the message is safe to show a client."""
    if isinstance(exc, AccessError):
        return (403, "forbidden", str(exc)) if exc.known else (401, "unauthorized", str(exc))
    if isinstance(exc, NotFoundError):
        return 404, "not_found", str(exc)
    if isinstance(exc, QueryError | ParseError | UsageError):
        return 400, "bad_data", str(exc)
    if isinstance(exc, QueryLimitError) and exc.kind == "timeout":
        return 503, "timeout", str(exc)
    if isinstance(exc, QueryLimitError) and exc.kind == "cancelled":
        return 499, "canceled", str(exc)  # Prometheus' status for a client that went away
    if isinstance(exc, QueryLimitError) and exc.kind == "concurrency":
        return 503, "unavailable", str(exc)
    if isinstance(exc, StoreError | ConfigError):
        return 503, "unavailable", str(exc)
    if isinstance(exc, SignalboxError):
        return 422, "execution", str(exc)
    if isinstance(exc, HTTPException):
        kind = "not_found" if exc.status_code == 404 else "bad_data"
        if exc.status_code >= 500:
            kind = "internal"
        return exc.status_code, kind, str(exc.detail)
    incident = secrets.token_hex(4)
    if _is_driver_unavailable(exc):
        log.warning("store unavailable [%s]: %s", incident, exc)
        return 503, "unavailable", f"the store is unavailable (see the server log, [{incident}])"
    log.error("internal error [%s]", incident, exc_info=exc)
    return 500, "internal", f"internal server error (see the server log, [{incident}])"


async def handle(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: every SignalboxError (and HTTPException) in one shape."""
    status, kind, message = classify(exc)
    headers: Mapping[str, str] | None = None
    if isinstance(exc, AccessError) and status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="signalbox"'}
    if isinstance(exc, HTTPException):
        headers = exc.headers
        where = f"{request.method} {request.url.path}"
        if status == 404:
            message = f"not found: {where}"
        elif status == 405:
            message = f"method not allowed: {where}"
    response = error_response(kind, message, status)
    if headers:
        response.headers.update(headers)
    return response


EXCEPTION_HANDLERS: dict[Any, Any] = {SignalboxError: handle, HTTPException: handle}


class ErrorShapeMiddleware:
    """Pure ASGI: whatever escapes the routes *and* the middleware inside this one becomes
    the JSON error shape (a bug: 500 with an incident id, logged once, here).

    Starlette's exception handlers only see errors raised by routes; auth and other
    middleware sit outside them, so this catches what they raise too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            if started:  # too late for another status line: log, and let the server drop it
                classify(exc)
                raise
            status, kind, message = classify(exc)
            await error_response(kind, message, status)(scope, receive, send)
