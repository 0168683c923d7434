"""``WSGIMiddleware``: the same request ids, notes, line and metrics for a WSGI app.

The request's context is current while the app is called and again while the server reads
each chunk of its body (a streaming generator's notes count). The line is written when the
server closes the body (PEP 3333 has it call ``close()``, also when the client went away:
a body closed before its end is noted ``disconnect="client"``); an exception from the app
is logged as status 500 with the note ``error`` naming its type, then re-raised.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

from signalbox.instrument import flagnotes
from signalbox.instrument.context import RequestContext, _current
from signalbox.instrument.core import DEFAULT, Instrument

__all__ = ["WSGIMiddleware"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class WSGIMiddleware:
    """Request ids, notes, one access-log line and request metrics for a WSGI app
    (arguments as for :class:`~signalbox.instrument.asgi.ASGIMiddleware`)."""

    def __init__(
        self,
        app: WSGIApp,
        access_log: str | os.PathLike[str] | None = DEFAULT,
        format: str = DEFAULT,
        *,
        core: Instrument | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.core = core or Instrument(access_log=access_log, format=format, **options)
        self._environ_key = _environ_key(self.core.request_id_header)
        self._header = self.core.request_id_header

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        core = self.core
        start, t0 = core.clock(), core.timer()
        ctx = core.begin(environ.get(self._environ_key), environ.get("HTTP_TRACEPARENT"))
        req = _Request(self, environ, ctx, start, t0)
        rid = ctx.request_id

        def start_response_wrapper(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            try:
                req.status = int(status[:3])
            except ValueError:
                req.status = 500
            headers.append((self._header, rid))
            write = (
                start_response(status, headers, exc_info)
                if exc_info
                else start_response(status, headers)
            )

            def counted_write(data: bytes) -> object:
                req.nbytes += len(data)
                return write(data)

            return counted_write

        flags = flagnotes.begin(environ.get("QUERY_STRING"), environ=environ)
        if flags is not None:
            ctx.flags = flags[0]
        token = _current.set(ctx)
        try:
            body = self.app(environ, start_response_wrapper)
        except BaseException as e:
            ctx.notes.setdefault("error", type(e).__name__)
            req.finish(req.status or 500)
            raise
        finally:
            _current.reset(token)
            if flags is not None:
                flagnotes.end(flags)
        return _Body(body, req)


class _Request:
    __slots__ = ("ctx", "done", "environ", "mw", "nbytes", "start", "status", "t0")

    def __init__(
        self,
        mw: WSGIMiddleware,
        environ: dict[str, Any],
        ctx: RequestContext,
        start: float,
        t0: float,
    ) -> None:
        self.mw, self.environ, self.ctx, self.start, self.t0 = mw, environ, ctx, start, t0
        self.status = 0
        self.nbytes = 0
        self.done = False

    def finish(self, status: int) -> None:
        if self.done:
            return
        self.done = True
        core = self.mw.core
        core.finish(
            self.ctx, self.start, core.timer() - self.t0, status, self.nbytes, _fields, self.environ
        )


def _fields(env: dict[str, Any]) -> tuple[str, str, str, str, str, str, str, str]:
    """A finished request's line fields from its environ (read as it finishes)."""
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if raw:
        path = raw.split("?", 1)[0]
    else:
        path = quote(
            (env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")).encode("latin-1"),
            safe=_PATH_SAFE,
        )
    return (
        env.get("REQUEST_METHOD", ""),
        path,
        env.get("QUERY_STRING", ""),
        env.get("SERVER_PROTOCOL", ""),
        env.get("REMOTE_ADDR", ""),
        env.get("HTTP_REFERER", ""),
        env.get("HTTP_USER_AGENT", ""),
        "",
    )


class _Body:
    """The app's body, counted chunk by chunk with the request's context current."""

    __slots__ = ("_body", "_ended", "_it", "_req")

    def __init__(self, body: Iterable[bytes], req: _Request) -> None:
        self._body, self._req = body, req
        self._it: Iterator[bytes] | None = None
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        req = self._req
        token = _current.set(req.ctx)
        try:
            if self._it is None:
                self._it = iter(self._body)
            chunk = next(self._it)
        except StopIteration:
            self._ended = True
            raise
        except BaseException as e:
            req.ctx.notes.setdefault("error", type(e).__name__)
            req.finish(req.status or 500)
            raise
        finally:
            _current.reset(token)
        req.nbytes += len(chunk)
        return chunk

    def close(self) -> None:
        req = self._req
        token = _current.set(req.ctx)
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            _current.reset(token)
            if not self._ended and not req.done:
                req.ctx.notes.setdefault("disconnect", "client")
            req.finish(req.status or 500)
