"""The Prometheus-compatible read API (query, query_range, series, labels).

Same response shapes as Prometheus' HTTP API, so Grafana's Prometheus data source, promtool
and existing scripts can read signalbox directly.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signalbox import __version__
from signalbox.durations import parse_duration
from signalbox.exceptions import QueryError, SignalboxError
from signalbox.metrics.samples import Matcher
from signalbox.metrics.sql.store import SQLMetricStore

MAX_POINTS = 30_000  # Prometheus allows 11,000; 8 days at 1 minute (11,521) must fit


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def ok(data: Any) -> Response:
    return Response(
        msgspec.json.encode({"status": "success", "data": data}), media_type="application/json"
    )


def error(kind: str, message: str, status: int = 400) -> Response:
    body = {"status": "error", "errorType": kind, "error": message}
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def parse_time(name: str, text: str | None, default_ms: int) -> int:
    """Unix seconds (float) or RFC 3339, as Prometheus accepts."""
    if text is None or text == "":
        return default_ms
    try:
        v = float(text)
        if math.isfinite(v):
            return int(v * 1000)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return int(t.timestamp() * 1000)
    except ValueError:
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
    return int(seconds * 1000)


async def params(request: Request) -> dict[str, Any]:
    """Query string and form body merged (Grafana POSTs forms); repeated keys kept as lists."""
    out: dict[str, Any] = {}
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        form = await request.form()
        items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    for k, v in items:
        out.setdefault(k, []).append(v)
    return out


def first(p: dict[str, Any], key: str) -> str | None:
    vals = p.get(key)
    return vals[0] if vals else None


def routes(get_store: Callable[[], SQLMetricStore]) -> list[Route]:
    from signalbox.query import parse_expr
    from signalbox.runtime import query_engine

    def handle(fn: Callable[[dict[str, Any], int], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            p = await params(request)
            store = get_store()
            now_ms = int(store.clock.now() * 1000)
            try:
                return ok(await _run(fn, p, now_ms))
            except BadRequest as e:
                return error("bad_data", e.message)
            except QueryError as e:
                return error("bad_data", str(e))
            except SignalboxError as e:
                return error("execution", str(e), 422)

        return endpoint

    async def _run(fn: Callable[[dict[str, Any], int], Any], p: dict[str, Any], now_ms: int) -> Any:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(fn, p, now_ms)

    def query(p: dict[str, Any], now_ms: int) -> Any:
        q = first(p, "query")
        if not q:
            raise BadRequest("missing parameter 'query'")
        at = parse_time("time", first(p, "time"), now_ms)
        return query_engine(get_store()).instant(parse_expr(q), at).to_prometheus()

    def query_range(p: dict[str, Any], now_ms: int) -> Any:
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
        return query_engine(get_store()).range(parse_expr(q), start, end, step).to_prometheus()

    def _matchers(p: dict[str, Any]) -> list[list[Matcher]]:
        from signalbox.query import selectors

        out = []
        for m in p.get("match[]", []):
            sels = selectors(parse_expr(m))
            if len(sels) != 1:
                raise BadRequest(
                    f"invalid parameter 'match[]': {m!r} is not a single series selector"
                )
            out.append(list(sels[0].matchers))
        return out

    def series(p: dict[str, Any], now_ms: int) -> Any:
        groups = _matchers(p)
        if not groups:
            raise BadRequest("no match[] parameter provided")
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], None] = {}
        for g in groups:
            for key in get_store().series(g):
                seen[key] = None
        return [{"__name__": n, **dict(labels)} for n, labels in seen]

    def labels(p: dict[str, Any], now_ms: int) -> Any:
        names = {"__name__"}
        for _, lbls in get_store().series(_first_group(p)):
            names.update(k for k, _ in lbls)
        return sorted(names)

    def _first_group(p: dict[str, Any]) -> list[Matcher]:
        groups = _matchers(p)
        return groups[0] if groups else []

    def label_values(name: str) -> Callable[[dict[str, Any], int], Any]:
        def fn(p: dict[str, Any], now_ms: int) -> Any:
            vals = set()
            for n, lbls in get_store().series(_first_group(p)):
                if name == "__name__":
                    vals.add(n)
                else:
                    d = dict(lbls)
                    if name in d:
                        vals.add(d[name])
            return sorted(vals)

        return fn

    async def label_values_endpoint(request: Request) -> Response:
        name = str(request.path_params["name"])
        response: Response = await handle(label_values(name))(request)
        return response

    def buildinfo(p: dict[str, Any], now_ms: int) -> Any:
        return {"version": __version__, "application": "signalbox"}

    return [
        Route("/api/v1/query", handle(query), methods=["GET", "POST"]),
        Route("/api/v1/query_range", handle(query_range), methods=["GET", "POST"]),
        Route("/api/v1/series", handle(series), methods=["GET", "POST"]),
        Route("/api/v1/labels", handle(labels), methods=["GET", "POST"]),
        Route("/api/v1/label/{name}/values", label_values_endpoint, methods=["GET"]),
        Route("/api/v1/status/buildinfo", handle(buildinfo), methods=["GET"]),
    ]
