"""Instrumentation: request ids, notes and access logs for WSGI and ASGI apps.

Wrap the app (``app = ASGIMiddleware(app)`` or ``app.wsgi_app =
WSGIMiddleware(app.wsgi_app)``) and call :func:`note` from anywhere during a request::

    note(user_id=user.id, api_key=key, api_method="photos.search")

Each request then writes one access-log line (:mod:`signalbox.instrument.accesslog`
documents both formats) with its notes and its request id; the id is echoed in the
response, reaches log records (:class:`RequestFilter`) and the tasks the request enqueues,
and request count and latency become metrics (:mod:`signalbox.instrument.metrics`).
Settings: ``[instrument]`` of ``signalbox.toml`` (:mod:`signalbox.instrument.settings`).
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # typing is not imported: `signalbox logs grep` starts without it
if TYPE_CHECKING:
    from typing import Any

    from signalbox.instrument.accesslog import (
        AccessRecord,
        fingerprint,
        format_combined,
        format_json,
        parse_line,
    )
    from signalbox.instrument.asgi import ASGIMiddleware
    from signalbox.instrument.context import add, current, note, request_id, set_route
    from signalbox.instrument.core import Instrument, load_secret
    from signalbox.instrument.frameworks import DjangoRoutes, flask_routes
    from signalbox.instrument.logging import RequestFilter, structlog_processor
    from signalbox.instrument.wsgi import WSGIMiddleware

__all__ = [
    "ASGIMiddleware",
    "AccessRecord",
    "DjangoRoutes",
    "Instrument",
    "RequestFilter",
    "WSGIMiddleware",
    "add",
    "current",
    "fingerprint",
    "flask_routes",
    "format_combined",
    "format_json",
    "load_secret",
    "note",
    "parse_line",
    "request_id",
    "set_route",
    "structlog_processor",
]

_WHERE = {
    "ASGIMiddleware": "asgi",
    "AccessRecord": "accesslog",
    "DjangoRoutes": "frameworks",
    "Instrument": "core",
    "RequestFilter": "logging",
    "WSGIMiddleware": "wsgi",
    "add": "context",
    "current": "context",
    "fingerprint": "accesslog",
    "flask_routes": "frameworks",
    "format_combined": "accesslog",
    "format_json": "accesslog",
    "load_secret": "core",
    "note": "context",
    "parse_line": "accesslog",
    "request_id": "context",
    "set_route": "context",
    "structlog_processor": "logging",
}


def __getattr__(name: str) -> Any:
    """The public names, each imported on first use: ``signalbox.config`` reads
    ``[instrument]`` through :mod:`signalbox.instrument.settings` without loading the
    middleware (every CLI command loads the config)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'signalbox.instrument' has no attribute {name!r}")
    value = getattr(import_module(f"signalbox.instrument.{module}"), name)
    globals()[name] = value
    return value
