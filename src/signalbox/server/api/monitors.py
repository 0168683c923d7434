"""Monitor states, read from the monitor store (the same answers as ``monitors status``).

``GET /api/v1/monitors``: every monitor with its series, silences, lint errors and the
outbox, exactly the JSON of ``signalbox monitors status --json``.
``GET /api/v1/monitors?limit=50&offset=0``: a page of them (the same JSON, its
``monitors`` cut, with ``total`` and ``next_offset``, null on the last page).
``GET /api/v1/monitors/{name}?since=1d&limit=100``: one monitor and its newest history.
``GET /api/v1/monitors/{name}/backtest?since=7d``: the monitor replayed over stored history.

Writes (an ``operate`` token, :func:`signalbox.server.auth.middleware.require`), each
recorded in the monitor's history with the token as who did it, as the CLI commands of the
same names record the user:

* ``POST /api/v1/monitors/{name}/silence`` ``{"duration": "2h", "reason": "...",
  "series": {"shard": "7"}}`` (``series`` optional, or ``"shard=7,host=web1"`` as the
  CLI's ``--series``; ``duration`` a duration or seconds);
* ``POST /api/v1/monitors/{name}/unsilence``: ends every active silence;
* ``POST /api/v1/monitors/{name}/ack`` ``{"reason": "..."}``;
* ``POST /api/v1/monitors/{name}/drill``: a TEST notification through its notifiers now.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from signalbox.durations import parse_duration
from signalbox.exceptions import NotFoundError, UsageError
from signalbox.monitors import operate
from signalbox.monitors.status import ack_json, history_json, silence_json
from signalbox.server.api import ok, read_json
from signalbox.server.auth.middleware import require
from signalbox.server.auth.roles import Role
from signalbox.server.services import MonitorStatusSource, MonitorWrites, services

MAX_HISTORY = 1000
MAX_SINCE_S = 1000 * 365 * 86400.0
"""A ``since`` or a silence's ``duration`` past a thousand years is refused: the store
keeps 64-bit milliseconds, and ``now`` plus or minus ~292,000 years overflows them."""


def _source(request: Request) -> MonitorStatusSource:
    src = services(request).monitors
    if src is None:  # the area is only mounted with a source; a guard, not a path
        raise NotFoundError("area", "monitors", "this server has no monitor store")
    return src


def parse_since(text: str | None) -> float:
    """``since`` as seconds (default one day); a bad value names the parameter."""
    if text is None or text == "":
        return 86400.0
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise UsageError(f"invalid parameter 'since': {e}") from None
    if not seconds <= MAX_SINCE_S:  # NaN or inf too: the window's start must fit 64 bits
        raise UsageError(f"invalid parameter 'since': {text[:40]!r} is out of range")
    return seconds


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return 100
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_HISTORY:
        raise UsageError(
            f"invalid parameter 'limit': expected a whole number from 1 to {MAX_HISTORY}, "
            f"got {text[:40]!r}"
        )
    return n


def parse_offset(text: str | None) -> int:
    if text is None or text == "":
        return 0
    if not (text.isascii() and text.isdigit()):
        raise UsageError(
            f"invalid parameter 'offset': expected a whole number >= 0, got {text[:40]!r}"
        )
    # past the end of any list either way; int() refuses strings of 4,300+ digits (a 500)
    return int(text) if len(text) <= 18 else 10**18


async def list_monitors(request: Request) -> Response:
    q = request.query_params
    limit = parse_limit(q.get("limit")) if q.get("limit") else None
    offset = parse_offset(q.get("offset"))
    src, now = _source(request), services(request).now_ms()
    report = await run_in_threadpool(src.status, now)
    data = report.to_dict()
    if limit is not None or offset:  # a page: the same shape, and where the next one starts
        total = len(data["monitors"])
        end = total if limit is None else offset + limit
        data["monitors"] = data["monitors"][offset:end]
        data["total"] = total
        data["next_offset"] = end if end < total else None
    return ok(data)


async def one_monitor(request: Request) -> Response:
    name = str(request.path_params["name"])
    since_s = parse_since(request.query_params.get("since"))
    limit = parse_limit(request.query_params.get("limit"))
    src, now = _source(request), services(request).now_ms()

    def read() -> dict[str, Any]:
        report = src.status(now)
        found = next((m for m in report.monitors if m.name == name), None)
        if found is None:
            known = ", ".join(sorted(m.name for m in report.monitors)) or "none"
            raise NotFoundError("monitor", name, f"known: {known}")
        entries = src.history(name, since_ms=now - round(since_s * 1000), limit=limit)
        return {
            "at_ms": report.at_ms,
            "monitor": found.to_dict(),
            "history": [history_json(e) for e in entries],
        }

    return ok(await run_in_threadpool(read))


class SilenceBody(msgspec.Struct, forbid_unknown_fields=True):
    duration: str | float
    reason: str
    series: dict[str, str] | str | None = None


class AckBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class NoBody(msgspec.Struct, forbid_unknown_fields=True):
    """Unsilence and drill take no fields (an empty body or ``{}``)."""


def _writes(request: Request) -> MonitorWrites:
    found = services(request).monitor_writes
    if found is None:  # mounted only with writes; a guard, not a path
        raise NotFoundError("area", "monitor writes", "this server has no monitor store")
    return found


async def silence(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    body = await read_json(request, SilenceBody)
    seconds = operate.positive_duration(body.duration, "duration")
    reason = operate.check_reason(body.reason, "reason")
    matchers = operate.parse_matchers(body.series, "series")
    name, writes, now = str(request.path_params["name"]), _writes(request), _now(request)
    s = await run_in_threadpool(
        lambda: writes.silence(
            name, seconds=seconds, reason=reason, matchers=matchers, by=who, now_ms=now
        )
    )
    return ok({"monitor": name, "silence": silence_json(s)})


async def unsilence(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    await read_json(request, NoBody)
    name, writes, now = str(request.path_params["name"]), _writes(request), _now(request)
    ended = await run_in_threadpool(lambda: writes.unsilence(name, by=who, now_ms=now))
    return ok({"monitor": name, "ended": [silence_json(s) for s in ended]})


async def ack(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    body = await read_json(request, AckBody)
    reason = operate.check_reason(body.reason, "reason")
    name, writes, now = str(request.path_params["name"]), _writes(request), _now(request)
    acks = await run_in_threadpool(
        lambda: writes.acknowledge(name, reason=reason, by=who, now_ms=now)
    )
    return ok({"monitor": name, "acknowledged": [ack_json(a) for a in acks]})


async def drill(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    await read_json(request, NoBody)
    name, writes, now = str(request.path_params["name"]), _writes(request), _now(request)
    deliveries = await run_in_threadpool(lambda: writes.drill(name, by=who, now_ms=now))
    return ok(
        {
            "monitor": name,
            "deliveries": [
                {"notifier": d.entry.notifier, "outcome": d.outcome, "error": d.error or None}
                for d in deliveries
            ],
        }
    )


def _now(request: Request) -> int:
    return services(request).now_ms()


MAX_BACKTEST_S = 400 * 86400.0  # the default coarsest tier's retention: nothing older is kept


async def backtest(request: Request) -> Response:
    """``GET /api/v1/monitors/{name}/backtest?since=7d``: the monitor replayed over stored
    history, the JSON of ``signalbox monitors backtest --json``."""
    name = str(request.path_params["name"])
    text = request.query_params.get("since") or "7d"
    since_s = parse_since(text)
    if not 0 < since_s <= MAX_BACKTEST_S:
        raise UsageError(f"invalid parameter 'since': from 1s to 400d, got {text[:40]!r}")
    src, now = _source(request), services(request).now_ms()
    run = getattr(src, "backtest", None)
    if run is None:  # an in-process source without settings (tests); serve always has one
        raise NotFoundError("area", "backtests", "this server does not replay monitors")
    report = await run_in_threadpool(lambda: run(name, since_s=since_s, now_ms=now))
    return ok(report.to_json())


def routes(*, writes: bool = False) -> list[BaseRoute]:
    """This area's routes, relative to ``/api/v1`` (``writes``: the POST routes too)."""
    out: list[BaseRoute] = [
        Route("/monitors", list_monitors, methods=["GET"]),
        Route("/monitors/{name}", one_monitor, methods=["GET"]),
        Route("/monitors/{name}/backtest", backtest, methods=["GET"]),
    ]
    if writes:
        out += [
            Route("/monitors/{name}/silence", silence, methods=["POST"]),
            Route("/monitors/{name}/unsilence", unsilence, methods=["POST"]),
            Route("/monitors/{name}/ack", ack, methods=["POST"]),
            Route("/monitors/{name}/drill", drill, methods=["POST"]),
        ]
    return out
