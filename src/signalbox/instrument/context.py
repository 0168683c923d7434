"""The request in progress: its id, its notes, its route, held in a context variable.

The middleware makes one :class:`RequestContext` per request and sets it in a
:class:`contextvars.ContextVar`, so :func:`note` finds it from anywhere the request's code
runs -- a view, a library three calls down, an ``asyncio`` task, a thread started with
``contextvars.copy_context().run`` (or ``asyncio.to_thread``, which copies it): they all see
the same object and add to the same notes. Outside a request :func:`note` does nothing, so
library code can call it unconditionally.

A task worker sets a context too while it runs a job that a request enqueued
(:func:`job_scope`), so the worker's log records carry the request's id.

Other areas add to a request through the same object: feature flags, for instance, can
call ``add("flags", "new_ui=on")`` for each flag a request evaluates; the access log shows
the distinct items joined with commas.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalbox.flags.context import RequestFlags

__all__ = [
    "REQUEST_ID",
    "RequestContext",
    "Traceparent",
    "add",
    "current",
    "job_scope",
    "new_id",
    "note",
    "parse_traceparent",
    "request_id",
    "sane_request_id",
    "set_route",
]

REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}\Z")
"""An incoming ``X-Request-ID`` honoured as it is; anything else gets a fresh id."""


class Traceparent:
    """A W3C ``traceparent``: the caller's trace, and this request's own span in it."""

    __slots__ = ("flags", "parent_id", "span_id", "trace_id")

    def __init__(self, trace_id: str, parent_id: str, flags: str) -> None:
        self.trace_id, self.parent_id, self.flags = trace_id, parent_id, flags
        self.span_id = os.urandom(8).hex()

    def child(self) -> str:
        """The header to send on calls made while handling this request."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?\Z")


def parse_traceparent(value: str | None) -> Traceparent | None:
    """The trace a ``traceparent`` header names, or None when absent or invalid (version
    ``ff``, an all-zero trace or parent id, or a version 00 header with extra fields)."""
    if not value or len(value) > 512:
        return None
    m = _TRACEPARENT.match(value.strip())
    if m is None:
        return None
    version, trace_id, parent_id, flags = m.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    if version == "00" and len(value.strip()) != 55:
        return None
    return Traceparent(trace_id, parent_id, flags)


_IDS_PER_READ = 64
_ID_SLICES = [slice(i, i + 32) for i in range(32, 32 * _IDS_PER_READ, 32)]
_ids: list[str] = []  # fresh ids not handed out yet, each used once


def new_id() -> str:
    """A fresh request id: 32 hex digits (128 random bits from ``os.urandom``).

    The bits are read 64 ids at a time: one ``getrandom`` call per request cost more than
    the rest of the id's work. ``list.pop`` hands each out once, across threads too; a
    forked child drops what it inherited (see :func:`_forked`), so two processes never
    share one."""
    try:
        return _ids.pop()
    except IndexError:
        h = os.urandom(16 * _IDS_PER_READ).hex()
        _ids.extend(map(h.__getitem__, _ID_SLICES))
        return h[:32]


def _forked() -> None:
    _ids.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it is a token we can log and echo as it is, else None."""
    if value and REQUEST_ID.match(value):
        return value
    return None


class RequestContext:
    """One request (or one job run on its behalf) in progress.

    ``notes`` holds what :func:`note` was given, in order, values as given (the access log
    turns them into text at the end); ``route`` is the route template once the framework
    has matched one.
    """

    __slots__ = ("flags", "notes", "request_id", "route", "trace")

    def __init__(self, request_id: str, trace: Traceparent | None = None) -> None:
        self.request_id = request_id
        self.trace = trace
        self.notes: dict[str, Any] = {}
        self.route = ""
        self.flags: RequestFlags | None = None
        """The request's feature flags when the process has a flags client
        (:mod:`signalbox.instrument.flagnotes`): logged as the ``flags`` note."""

    def note(self, **fields: Any) -> None:
        self.notes.update(fields)

    def add(self, key: str, item: str) -> None:
        """Add ``item`` to the distinct items of note ``key`` (kept in order)."""
        items = self.notes.get(key)
        if isinstance(items, _Items):
            items.add(item)
        else:
            self.notes[key] = _Items((item,))

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` for calls made from this request (a new trace when the
        request came without one)."""
        if self.trace is None:
            self.trace = Traceparent(new_id(), "0" * 16, "00")
        return self.trace.child()


class _Items:
    """Distinct items in the order added, written ``a,b,c``."""

    __slots__ = ("_items",)

    def __init__(self, items: tuple[str, ...]) -> None:
        self._items = dict.fromkeys(items)

    def add(self, item: str) -> None:
        self._items[item] = None

    def __str__(self) -> str:
        return ",".join(self._items)


_current: ContextVar[RequestContext | None] = ContextVar("signalbox_request", default=None)


def current() -> RequestContext | None:
    """The request in progress in this context, or None."""
    return _current.get()


def request_id() -> str | None:
    """The id of the request in progress (or of the request whose job is running), or None."""
    ctx = _current.get()
    return None if ctx is None else ctx.request_id


def note(**fields: Any) -> None:
    """Add ``fields`` to the request's access-log line (``note(user_id=5555,
    api_key=key, api_method="photos.search")``). Later values of a name replace earlier ones.
    Outside a request, nothing happens."""
    ctx = _current.get()
    if ctx is not None:
        ctx.notes.update(fields)


def add(key: str, item: str) -> None:
    """Add ``item`` to the distinct items of note ``key`` (see :meth:`RequestContext.add`);
    outside a request, nothing happens."""
    ctx = _current.get()
    if ctx is not None:
        ctx.add(key, item)


def set_route(template: str) -> None:
    """Tell the middleware which route template matched (framework adapters call it)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.route = template


def enter(ctx: RequestContext | None) -> Any:
    """Set ``ctx`` as the current request; returns the token :func:`leave` takes."""
    return _current.set(ctx)


def leave(token: Any) -> None:
    _current.reset(token)


@contextmanager
def job_scope(request_id: str | None) -> Iterator[RequestContext | None]:
    """Within the block, the request ``request_id`` is current (for a job it enqueued);
    nothing changes when ``request_id`` is None."""
    if request_id is None:
        yield None
        return
    ctx = RequestContext(request_id)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
