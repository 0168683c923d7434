"""``ASGIMiddleware``: pure ASGI, so the request's context variables reach the app intact.

It wraps ``send`` (to see the status, add the request id header and count the body) and
``receive`` (to see a client that went away); it never buffers a body. The line is written
when the last body chunk has been sent (a streamed response is counted to its end), or,
when the app raises or the client disconnects first, as the app returns: an exception
before any response is logged as status 500 with the note ``error`` naming its type (and
re-raised for the server to answer; one after the status was sent keeps that status), a
client gone first with the note ``disconnect="client"`` (status 499 when no response had
started), the notes and id kept in every case.

The route template is Starlette's (and so FastAPI's) ``scope["route"].path`` once the
router has matched, with the prefix of any ``Mount`` in front; other frameworks call
:func:`~signalbox.instrument.context.set_route` (see :mod:`signalbox.instrument.frameworks`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from signalbox.instrument import flagnotes
from signalbox.instrument.context import (
    REQUEST_ID,
    RequestContext,
    _current,
    new_id,
    parse_traceparent,
)
from signalbox.instrument.core import DEFAULT, Instrument

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_modules = sys.modules
_FLAGS = flagnotes.RUNTIME
_PROTOCOLS = {v: "HTTP/" + v for v in ("1.0", "1.1", "2", "3")}


def _fields(
    source: tuple[Scope, str, bytes, bytes],
) -> tuple[str, str, str, str, str, str, str, str]:
    """A finished request's line fields from its scope (read as it finishes)."""
    scope, root, referer, user_agent = source
    try:  # what servers send (subscripts: a third of a .get's cost)
        raw, query, version, client = (
            scope["raw_path"],
            scope["query_string"],
            scope["http_version"],
            scope["client"],
        )
    except KeyError:  # optional in the ASGI spec
        raw, query = scope.get("raw_path"), scope.get("query_string")
        version, client = scope.get("http_version", "1.1"), scope.get("client")
    r = scope.get("route")
    route = ""
    if r is not None:
        route = getattr(r, "path", "") or ""
        prefix = scope.get("root_path", "")[len(root) :]
        if prefix:
            route = prefix + route
    return (
        scope["method"],
        raw.decode("latin-1") if raw else scope["path"],
        query.decode("latin-1") if query else "",
        _PROTOCOLS.get(version) or "HTTP/" + version,
        client[0] if client else "",
        referer.decode("latin-1") if referer else "",
        user_agent.decode("latin-1") if user_agent else "",
        route,
    )


class ASGIMiddleware:
    """Request ids, notes, one access-log line and request metrics for an ASGI app.

    ``ASGIMiddleware(app, access_log="access.log", format="json")``; every other argument
    of :class:`~signalbox.instrument.core.Instrument` may be given too, or a ready ``core``
    shared with a :class:`~signalbox.instrument.wsgi.WSGIMiddleware`.
    """

    def __init__(
        self,
        app: ASGIApp,
        access_log: str | os.PathLike[str] | None = DEFAULT,
        format: str = DEFAULT,
        *,
        core: Instrument | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.core = core or Instrument(access_log=access_log, format=format, **options)
        self._header = self.core.request_id_header.lower().encode("latin-1")
        # the request headers read: index 0 the id header (it wins if it is one of the others)
        self._wanted = {b"user-agent": 1, b"referer": 2, b"traceparent": 3, self._header: 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        core = self.core
        timer = core.timer
        start, t0 = core.clock(), timer()
        incoming = traceparent = None
        referer = user_agent = b""
        wanted = self._wanted
        for name, value in scope["headers"]:
            k = wanted.get(name)  # one lookup a header, not one comparison per wanted name
            if k is not None:
                if k == 0:
                    incoming = value
                elif k == 1:
                    user_agent = value
                elif k == 2:
                    referer = value
                else:
                    traceparent = value
        # core.begin(), inlined (a call less a request)
        rid = incoming.decode("latin-1") if incoming is not None and core.trust_request_id else ""
        ctx = RequestContext(
            rid if rid and REQUEST_ID.match(rid) else new_id(),
            parse_traceparent(traceparent.decode("latin-1")) if traceparent is not None else None,
        )
        flags = None
        if _modules.get(_FLAGS) is not None:  # else no flags client: not even a call
            flags = flagnotes.begin(scope.get("query_string"), scope["headers"])
            if flags is not None:
                ctx.flags = flags[0]
        want = self._header
        rid_header = (want, ctx.request_id.encode("latin-1"))
        source = (scope, scope.get("root_path", ""), referer, user_agent)  # for _fields
        status = 0
        nbytes = 0
        done = False  # the line is queued or written
        gone = False  # the client disconnected
        ended: float | None = None  # a 5xx response's duration, its line not written yet

        async def send_wrapper(message: Message) -> None:
            nonlocal status, nbytes, ended, done
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), rid_header]}
            elif kind == "http.response.body":
                nbytes += len(message.get("body", b""))
                if not message.get("more_body", False) and not done:
                    await send(message)
                    if status >= 500:  # written as the app returns: an exception may follow
                        ended = timer() - t0
                    else:
                        done = True
                        core.finish(ctx, start, timer() - t0, status, nbytes, _fields, source)
                    return
            await send(message)

        async def receive_wrapper() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not done:
                gone = True
            return message

        token = _current.set(ctx)
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as e:
            if not done:
                done = True
                ctx.notes.setdefault("error", type(e).__name__)
                seconds = timer() - t0 if ended is None else ended
                core.finish(ctx, start, seconds, status or 500, nbytes, _fields, source)
            raise
        else:
            if not done:  # a 5xx (its line waited for the app to return), or no whole response
                done = True
                if ended is not None:
                    code = status
                elif gone:
                    ctx.notes.setdefault("disconnect", "client")
                    code = status or 499
                else:
                    ctx.notes.setdefault(
                        "error", "incomplete response" if status else "no response"
                    )
                    code = status or 500
                seconds = timer() - t0 if ended is None else ended
                core.finish(ctx, start, seconds, code, nbytes, _fields, source)
        finally:
            _current.reset(token)
            if flags is not None:
                flagnotes.end(flags)
