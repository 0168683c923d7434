"""``ASGIMiddleware``: pure ASGI, so the request's context variables reach the app intact.

It wraps ``send`` (to see the status, add the request id header and count the body) and
``receive`` (to see a client that went away); it never buffers a body. The line is made
as the app hands the server its last body chunk (a streamed response is counted to its
end; see :meth:`_Exchange.send`), or,
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
from signalbox.instrument.core import DEFAULT, Instrument, Raw

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_modules = sys.modules
_FLAGS = flagnotes.RUNTIME
_PROTOCOLS = {v: "HTTP/" + v for v in ("1.0", "1.1", "2", "3")}


def _fields(ex: _Exchange) -> tuple[str, Raw, Raw, str, str, Raw, Raw, str]:
    """A finished request's line fields from its scope (read as it finishes); path, query,
    referer and user agent as the server's bytes (the core decodes them only for a line
    whose pieces it has not kept)."""
    scope = ex.scope
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
    if r is None:
        route = ""
    else:
        try:
            route = r.path or ""
        except AttributeError:  # a route object of another framework
            route = ""
        root = scope.get("root_path", "")
        if root != ex.root:  # a Mount's prefix, added to the scope's as it was routed
            prefix = root[len(ex.root) :]
            if prefix:
                route = prefix + route
    return (
        scope["method"],
        raw or scope["path"],
        query or "",
        _PROTOCOLS.get(version) or "HTTP/" + version,
        client[0] if client else "",
        ex.referer,
        ex.user_agent,
        route,
    )


class _Exchange:
    """One request between the app's messages: what the wrappers of ``send`` and
    ``receive`` (its methods) read and change. One object of slots, not closures: their
    dozen cells and two function objects cost a request more than the whole id."""

    __slots__ = (
        "core", "ctx", "done", "ended", "gone", "nbytes", "receive_from", "referer",
        "rid_header", "root", "scope", "send_to", "start", "status", "t0", "user_agent",
    )  # fmt: skip

    core: Instrument
    ctx: RequestContext
    done: bool  # the line is queued or written
    ended: float | None  # a 5xx response's duration, its line not written yet
    gone: bool  # the client disconnected
    nbytes: int
    receive_from: Receive
    referer: bytes
    rid_header: tuple[bytes, bytes]
    root: str
    scope: Scope
    send_to: Send
    start: float
    status: int
    t0: float
    user_agent: bytes

    def send(self, message: Message) -> Awaitable[None]:
        """The app's ``send``: the server's own awaitable, for every message. Not a
        coroutine itself: one coroutine a message less.

        A response's last body chunk has its line made (queued, or written when unbuffered)
        as the app hands the chunk over, just before the server sends it: the response has
        ended on the app's side, every byte of it counted, and no coroutine of ours has to
        wrap the server's send to act after it (a coroutine and its frame a request, ~1.5k
        instructions). A 5xx's line still waits for the app to return (an exception may
        follow); an exception raised by the server's send of that last chunk escapes as
        before but is not noted on a line already made."""
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            # the message's own dict given a new list, as Starlette's middleware do (its
            # MutableHeaders(scope=message)); the app's list is never changed, a response
            # object sent twice keeps its headers
            message["headers"] = [*message.get("headers", ()), self.rid_header]
        elif kind == "http.response.body":
            self.nbytes += len(message.get("body", b""))
            if not message.get("more_body", False) and not self.done:
                core = self.core
                if self.status >= 500:
                    self.ended = core.timer() - self.t0
                else:
                    self.done = True
                    core.finish(
                        self.ctx, self.start, core.timer() - self.t0, self.status, self.nbytes,
                        _fields, self,
                    )  # fmt: skip
        return self.send_to(message)

    async def receive(self) -> Message:
        message = await self.receive_from()
        if message["type"] == "http.disconnect" and not self.done:
            self.gone = True
        return message

    def end(self, error: BaseException | None) -> None:
        """The app returned (``error``: raised) before its line was written."""
        self.done = True
        ctx, status, ended = self.ctx, self.status, self.ended
        if error is not None:
            ctx.notes.setdefault("error", type(error).__name__)
            code = status or 500
        elif ended is not None:  # a 5xx: its line waited for the app to return
            code = status
        elif self.gone:
            ctx.notes.setdefault("disconnect", "client")
            code = status or 499
        else:
            ctx.notes.setdefault("error", "incomplete response" if status else "no response")
            code = status or 500
        core = self.core
        seconds = core.timer() - self.t0 if ended is None else ended
        core.finish(ctx, self.start, seconds, code, self.nbytes, _fields, self)


_new = object.__new__


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
        start, t0 = core.clock(), core.timer()
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
        # RequestContext(id, trace), inlined: a class call and its __init__ cost a request
        # more than setting the slots (a test checks that every slot is set)
        ctx = _new(RequestContext)
        ctx.request_id = rid if rid and REQUEST_ID.match(rid) else new_id()
        ctx.trace = (
            parse_traceparent(traceparent.decode("latin-1")) if traceparent is not None else None
        )
        ctx.notes, ctx.route, ctx.flags = {}, "", None
        flags = None
        if _FLAGS in _modules:  # else no flags client: not even a call
            flags = flagnotes.begin(scope.get("query_string"), scope["headers"])
            if flags is not None:
                ctx.flags = flags[0]
        ex = _new(_Exchange)
        ex.core, ex.ctx, ex.scope, ex.send_to, ex.receive_from = core, ctx, scope, send, receive
        ex.root, ex.referer, ex.user_agent = scope.get("root_path", ""), referer, user_agent
        ex.rid_header = (self._header, ctx.request_id.encode("latin-1"))
        ex.status = ex.nbytes = 0
        ex.done = ex.gone = False
        ex.ended = None
        ex.start, ex.t0 = start, t0
        token = _current.set(ctx)
        try:
            await self.app(scope, ex.receive, ex.send)
        except BaseException as e:
            if not ex.done:
                ex.end(e)
            raise
        else:
            if not ex.done:  # a 5xx (its line waited for the app to return), or no whole response
                ex.end(None)
        finally:
            _current.reset(token)
            if flags is not None:
                flagnotes.end(flags)
