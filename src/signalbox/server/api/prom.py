"""The Prometheus-compatible read API (query, query_range, series, labels, metadata).

Same response shapes as Prometheus' HTTP API, so Grafana's Prometheus data source, promtool
and existing scripts can read signalbox directly; the same ``limit`` on series, labels and
label values too (non-negative, 0 for none, a warning when it cut), as Prometheus has it.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from signalbox import __version__
from signalbox.durations import parse_duration
from signalbox.exceptions import UsageError
from signalbox.metrics.samples import Labels, Matcher
from signalbox.query import QueryResult, VectorSelector, parse_expr
from signalbox.query.promjson import result_json
from signalbox.server.api import success_body
from signalbox.server.encoding import accepts_gzip, gzip_body
from signalbox.server.querygate import QueryGate, until_disconnected
from signalbox.server.services import Services, services

MAX_POINTS = 30_000  # Prometheus allows 11,000; 8 days at 1 minute (11,521) must fit


MAX_TIME_S = 2**62 / 1000 / 1000
"""Times past this many seconds from 1970 (both ways, ~146,000 years) are refused: with a
range or offset (at most ~292 years) added they still fit the store's 64-bit milliseconds."""


class BadRequest(UsageError):
    """A parameter Prometheus would refuse too (400, ``bad_data``)."""


def parse_time(name: str, text: str | None, default_ms: int) -> int:
    """Unix seconds (float) or RFC 3339, as Prometheus accepts."""
    if text is None or text == "":
        return default_ms
    try:
        v = float(text)
        if math.isfinite(v):
            if abs(v) > MAX_TIME_S:
                raise BadRequest(f"invalid parameter {name!r}: {text!r} is out of range")
            return int(v * 1000)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return int(t.timestamp() * 1000)
    except (ValueError, OverflowError):  # OverflowError: year 1 at +14:00 is before year 1
        raise BadRequest(
            f"invalid parameter {name!r}: {text!r} is not a unix timestamp or RFC 3339 time"
        ) from None


def parse_step(text: str | None) -> int:
    if not text:
        raise BadRequest("missing parameter 'step'")
    try:
        v = float(text)
        seconds = v
    except ValueError:
        try:
            seconds = parse_duration(text)
        except ValueError as e:
            raise BadRequest(f"invalid parameter 'step': {e}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadRequest(
            "invalid parameter 'step': zero or negative query resolution step widths are not accepted"
        )
    if seconds > MAX_TIME_S:
        raise BadRequest(f"invalid parameter 'step': {text!r} is out of range")
    ms = int(seconds * 1000)
    if ms < 1:  # signalbox keeps milliseconds: a finer step would be a step of 0
        raise BadRequest(
            f"invalid parameter 'step': {text} is below the 1ms resolution of the store"
        )
    return ms


async def params(request: Request) -> dict[str, Any]:
    """Query string and form body merged (Grafana POSTs forms); repeated keys kept as lists."""
    out: dict[str, Any] = {}
    # the query string as Starlette's ``Request.query_params`` parses it, without building
    # its multi-dict (this runs for every request)
    items = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
    if request.method == "POST":
        form = await request.form()
        items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    for k, v in items:
        out.setdefault(k, []).append(v)
    return out


def first(p: dict[str, Any], key: str) -> str | None:
    vals = p.get(key)
    return vals[0] if vals else None


_JSON = (b"content-type", b"application/json")
_VARY = (b"vary", b"Accept-Encoding")
_GZIPPED = (b"content-encoding", b"gzip")


class _Handle:
    """An endpoint running ``fn(services, params, now_ms)`` through the query gate (a turn
    in the queue, a thread, a budget: :mod:`signalbox.server.querygate`) and encoding the
    answer there too; errors propagate to the app's handlers, in Prometheus' shape.

    ``cached`` names the endpoint in the results cache (:mod:`signalbox.server.resultcache`)
    when the services have one: a query at explicit times is answered by
    :meth:`ResultCache.respond <signalbox.server.resultcache.ResultCache.respond>`, which
    looks it up (on the event loop once the query text was seen before: SQLite's version
    is read there, PostgreSQL's by a read shared with the requests arriving meanwhile, so
    a hit takes no place in the queue), waits for an identical request's evaluation in
    flight, or evaluates it through the gate. The query endpoints answer gzipped to
    clients that accept it (:mod:`signalbox.server.encoding`).

    A plain ASGI app rather than a ``Request -> Response`` function: Starlette wraps those
    in a second exception-handling layer (the app's already catches what escapes a route)
    and a ``Response`` whose headers are built anew for every answer; for the query ``1``
    those were a tenth of the request's instructions (``bench/serve_request.py``). The
    answer's headers are the ones ``Response`` wrote, in its order.
    """

    __slots__ = ("cached", "fn")

    def __init__(
        self, fn: Callable[[Services, dict[str, Any], int], Any], cached: str | None = None
    ) -> None:
        self.fn = fn
        self.cached = cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fn, cached = self.fn, self.cached
        request = Request(scope, receive, send)
        p = await params(request)
        svc = services(request)
        cache = svc.query_cache if cached else None
        ask = _cache_ask(cached, p) if cached and cache is not None else None
        now = svc.now_ms()
        gzip = cached is not None and accepts_gzip(scope)

        async def work() -> tuple[bytes, bool]:
            if ask is None or cache is None:
                return await gate(request).run(_answer, fn, svc, p, now, gzip)
            return await cache.respond(
                gate(request),
                ask[1],
                lambda parsed: _cache_key(parsed, ask),
                lambda: _evaluate(fn, svc, p, now),
                gzip=gzip,
            )

        answered = await until_disconnected(receive, work)
        if answered is None:  # the client went away; its query was cancelled
            await Response(status_code=499)(scope, receive, send)
            return
        body, gzipped = answered
        length = (b"content-length", str(len(body)).encode("latin-1"))
        if cached is None:
            headers = [length, _JSON]
        elif gzipped:  # a query's answer may come gzipped (signalbox.server.encoding):
            headers = [_VARY, _GZIPPED, length, _JSON]  # caches must know
        else:
            headers = [_VARY, length, _JSON]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _handle(
    fn: Callable[[Services, dict[str, Any], int], Any], cached: str | None = None
) -> _Handle:
    """The endpoint of ``fn`` (see :class:`_Handle`)."""
    return _Handle(fn, cached)


Ask = tuple[str, str, int, int, int]
"""What a cacheable request asks: (endpoint, query text, start, end, step) in ms; an
instant query is ``start == end`` and step 0."""


def _cache_ask(endpoint: str, p: dict[str, Any]) -> Ask | None:
    """The request's :data:`Ask` if its answer may be cached: a query at explicit times
    (never one relative to "now"); None too when a parameter is bad (``fn`` says why)."""
    q = first(p, "query")
    if not q:
        return None
    try:
        if endpoint == "query":
            at_text = first(p, "time")
            if not at_text:
                return None
            at = parse_time("time", at_text, 0)
            return (endpoint, q, at, at, 0)
        start_text, end_text = first(p, "start"), first(p, "end")
        if not start_text or not end_text:
            return None
        start = parse_time("start", start_text, 0)
        end = parse_time("end", end_text, 0)
        return (endpoint, q, start, end, parse_step(first(p, "step")))
    except BadRequest:
        return None


def _cache_key(parsed: tuple[str, Hashable], ask: Ask) -> tuple[Hashable, ...]:
    endpoint, _, start, end, step = ask
    return (endpoint, *parsed, start, end, step)


def _answer(
    fn: Callable[[Services, dict[str, Any], int], Any],
    svc: Services,
    p: dict[str, Any],
    now: int,
    gzip: bool,
) -> tuple[bytes, bool]:
    """The encoded answer, evaluated (a request the results cache does not keep), gzipped
    when ``gzip`` (the client accepts it) and long enough; and whether it is."""
    body = _evaluate(fn, svc, p, now)[0]
    packed = gzip_body(body) if gzip else None
    return (body, False) if packed is None else (packed, True)


def _evaluate(
    fn: Callable[[Services, dict[str, Any], int], Any], svc: Services, p: dict[str, Any], now: int
) -> tuple[bytes, bool]:
    """``fn``'s answer encoded, and whether it may be cached (a query result without
    warnings: an estimate's warning is better said afresh than remembered)."""
    out = fn(svc, p, now)
    if isinstance(out, QueryResult):
        return query_body(out), not out.warnings
    if isinstance(out, Listing):
        return success_body(out.items, out.warnings), False
    return success_body(out), False


def query_body(result: QueryResult) -> bytes:
    """The success envelope around a query result, as :func:`success_body` writes it, with
    the result written by :func:`~signalbox.query.promjson.result_json` (a range answer's
    points as text directly, not a dict tree encoded afterwards)."""
    parts = [b'{"status":"success","data":', result_json(result)]
    if result.warnings:
        parts += [b',"warnings":', msgspec.json.encode(list(result.warnings))]
    parts.append(b"}")
    return b"".join(parts)


TRUNCATED = "results truncated due to limit"
"""Prometheus' warning when ``limit`` cut a list short (Grafana looks for this text)."""


@dataclass(frozen=True, slots=True)
class Listing:
    """A list answer and the warnings beside it (``data`` stays the bare list)."""

    items: list[Any]
    warnings: tuple[str, ...] = ()


def _listing(items: list[Any], p: dict[str, Any]) -> Listing:
    """``items`` cut to the ``limit`` parameter (0 or absent: all), as Prometheus cuts
    /series, /labels and /label/NAME/values: non-negative, a warning when it cut."""
    text = first(p, "limit")
    limit = 0
    if text:
        try:
            limit = int(text)
        except ValueError:
            raise BadRequest(f"invalid parameter 'limit': {text!r} is not an integer") from None
        if limit < 0:
            raise BadRequest("invalid parameter 'limit': limit must be non-negative")
    if limit and len(items) > limit:
        return Listing(items[:limit], (TRUNCATED,))
    return Listing(items)


def gate(request: Request) -> QueryGate:
    found: QueryGate = request.app.state.query_gate
    return found


def query(svc: Services, p: dict[str, Any], now_ms: int) -> Any:
    q = first(p, "query")
    if not q:
        raise BadRequest("missing parameter 'query'")
    at = parse_time("time", first(p, "time"), now_ms)
    return svc.engine.instant(parse_expr(q), at)


def query_range(svc: Services, p: dict[str, Any], now_ms: int) -> Any:
    q = first(p, "query")
    if not q:
        raise BadRequest("missing parameter 'query'")
    start = parse_time("start", first(p, "start"), -1)
    end = parse_time("end", first(p, "end"), -1)
    if start == -1 or end == -1:
        raise BadRequest("missing parameter 'start' or 'end'")
    if end < start:
        raise BadRequest("invalid parameter 'end': end timestamp must not be before start time")
    step = parse_step(first(p, "step"))
    if (end - start) // step > MAX_POINTS:
        raise BadRequest(
            f"exceeded maximum resolution of {MAX_POINTS} points per timeseries. Try decreasing the query resolution (?step=XX)"
        )
    return svc.engine.range(parse_expr(q), start, end, step)


def _matchers(p: dict[str, Any]) -> list[list[Matcher]]:
    """Each ``match[]`` as the store's matchers, the metric name included (``up{job="a"}``
    selects ``__name__="up"`` too); several ``match[]`` are OR-ed, as in Prometheus."""
    out = []
    for m in p.get("match[]", []):
        expr = parse_expr(m)
        if not isinstance(expr, VectorSelector) or expr.offset_ms or expr.at is not None:
            raise BadRequest(f"invalid parameter 'match[]': {m!r} is not a series selector")
        out.append(list(expr.all_matchers()))
    return out


FAR_MS = int(MAX_TIME_S * 1000)


def _window(p: dict[str, Any]) -> tuple[int, int] | None:
    """``start``/``end`` in ms, or None when neither is given (every known series)."""
    start_text, end_text = first(p, "start"), first(p, "end")
    if not start_text and not end_text:
        return None
    start = parse_time("start", start_text, -FAR_MS)
    end = parse_time("end", end_text, FAR_MS)
    if end < start:
        raise BadRequest("invalid parameter 'end': end timestamp must not be before start time")
    return start, end


def _selected(svc: Services, p: dict[str, Any]) -> list[tuple[str, Labels]]:
    """The series the metadata endpoints answer about: those of any ``match[]`` (all series
    without one) and, when ``start``/``end`` are given, only those with a sample in that
    window. The window is checked by reading it (values only) at the coarsest resolution
    that covers it, so a long window reads rollups, not raw samples; the read counts
    against the query limits like any query's."""
    groups = _matchers(p) or [[]]
    window = _window(p)
    seen: dict[tuple[str, Labels], None] = {}
    for g in groups:
        if window is None:
            found = svc.metrics.series(g)
        else:
            start, end = window
            points = svc.metrics.select(
                g, start, end, step_ms=max(end - start, 1), aggregates=False
            )
            found = [(sp.name, sp.labels) for sp in points if len(sp.timestamps)]
        for key in found:
            seen[key] = None
    return list(seen)


def series(svc: Services, p: dict[str, Any], now_ms: int) -> Listing:
    if not p.get("match[]"):
        raise BadRequest("no match[] parameter provided")
    _listing([], p)  # a bad limit is refused before the store is read
    return _listing([{"__name__": n, **dict(labels)} for n, labels in _selected(svc, p)], p)


def labels(svc: Services, p: dict[str, Any], now_ms: int) -> Listing:
    _listing([], p)
    found = _selected(svc, p)
    names = {"__name__"} if found else set()
    for _, lbls in found:
        names.update(k for k, _ in lbls)
    return _listing(sorted(names), p)


def label_values(name: str, svc: Services, p: dict[str, Any]) -> Listing:
    _listing([], p)
    if name == "__name__" and not p.get("match[]") and _window(p) is None:
        return _listing(svc.metrics.names(), p)  # every name: no series need reading
    vals = set()
    for n, lbls in _selected(svc, p):
        if name == "__name__":
            vals.add(n)
        else:
            d = dict(lbls)
            if name in d:
                vals.add(d[name])
    return _listing(sorted(vals), p)


async def label_values_endpoint(request: Request) -> Response:
    name = str(request.path_params["name"])
    p = await params(request)
    found = await gate(request).run(label_values, name, services(request), p)
    return Response(success_body(found.items, found.warnings), media_type="application/json")


def buildinfo(svc: Services, p: dict[str, Any], now_ms: int) -> Any:
    """Prometheus' fields (Grafana's data source reads them); signalbox is no Go build, so
    what a Go build stamps in is empty rather than invented."""
    return {
        "version": __version__,
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "signalbox",
        "pythonVersion": platform.python_version(),
    }


PROM_TYPES = {"untyped": "unknown"}
"""Our metric types under Prometheus' names where they differ (``# TYPE x untyped`` is
``unknown`` in Prometheus' metadata)."""


def _limit(p: dict[str, Any], key: str) -> int:
    """A ``limit``-style parameter; absent, 0 or negative means no limit (Prometheus 3)."""
    text = first(p, key)
    if not text:
        return 0
    try:
        return max(int(text), 0)
    except ValueError:
        raise BadRequest(f"invalid parameter {key!r}: {text!r} is not an integer") from None


def metadata(svc: Services, p: dict[str, Any], now_ms: int) -> Any:
    """``{name: [{type, help, unit}]}`` from the store's metric metadata, sorted by name."""
    limit = _limit(p, "limit")
    _limit(p, "limit_per_metric")  # validated; we keep one entry per metric anyway
    wanted = first(p, "metric")
    out: dict[str, list[dict[str, str]]] = {}
    for name, meta in sorted(svc.metrics.metadata().items()):
        if wanted and name != wanted:
            continue
        if limit and len(out) >= limit:
            break
        kind = PROM_TYPES.get(meta.type, meta.type)
        out[name] = [{"type": kind, "help": meta.help, "unit": meta.unit}]
    return out


def format_query(svc: Services, p: dict[str, Any], now_ms: int) -> Any:
    """The query as the parser understood it, printed back (Prometheus' ``format_query``)."""
    q = first(p, "query")
    if not q:
        raise BadRequest("missing parameter 'query'")
    return str(parse_expr(q))


def routes() -> list[BaseRoute]:
    """This area's routes, relative to ``/api/v1`` (the URLs Grafana's data source calls)."""
    return [
        Route("/query", _handle(query, "query"), methods=["GET", "POST"]),
        Route("/query_range", _handle(query_range, "query_range"), methods=["GET", "POST"]),
        Route("/series", _handle(series), methods=["GET", "POST"]),
        Route("/labels", _handle(labels), methods=["GET", "POST"]),
        Route("/label/{name}/values", label_values_endpoint, methods=["GET"]),
        Route("/status/buildinfo", _handle(buildinfo), methods=["GET"]),
        Route("/metadata", _handle(metadata), methods=["GET"]),
        Route("/format_query", _handle(format_query), methods=["GET", "POST"]),
    ]
