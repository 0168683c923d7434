"""Feature flags over HTTP: what ``signalbox flags list|show|set|history`` do.

Reads (open on loopback, as every read):

* ``GET /api/v1/flags?stale=true``: every flag declared or stored -- its state in force,
  declaration (description, owner, default, file:line), last change (who, when, why),
  evaluations counted by every process, and why it is flag debt (``stale``, null when it is
  not); ``stale=true`` keeps only the flag debt. Declaration errors come along, so a typo
  in ``flags/*.yaml`` (which turns that flag off) is seen where flags are looked at;
* ``GET /api/v1/flags/{name}``: one flag;
* ``GET /api/v1/flags/{name}/history?limit=100&after=ID``: its audit trail, newest first;
  ``GET /api/v1/flags/-/history``: every flag's (``-`` is no flag's name: names start with a
  letter or digit). Pages go by id: ``after`` is the ``next_after`` of the page before
  (older entries only), so a change made meanwhile never shifts the next page.

Write (role ``operate``: a token, or a signed-in user whose session's CSRF token comes
along):

* ``POST /api/v1/flags/{name}/set`` ``{"value": "on" | "off" | "30%", "actors": [...],
  "groups": [...], "time": "5%", "reason": "..."}``: as ``flags set`` (``off`` is the kill
  switch; a percentage rolls out to that share of actors; lists given replace the
  allowlists, absent ones are kept; the reason is required). The store makes the change
  and its audit entry in one transaction, as done by the caller (``alice (dashboard)``,
  ``ci-bot (token #3)``), and the change is logged on ``signalbox.flags.audit``. Every
  process sees it within ``[flags] refresh``.

A flag declared nowhere is a 404 naming the nearest declared one; one known only to the
store (set with ``flags set --force``) can be read and changed, so it can be switched off.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from signalbox.exceptions import NotFoundError, UsageError
from signalbox.flags.admin import FlagAdmin
from signalbox.flags.model import MAX_LIST, NAME_RE, AuditEntry, FlagChange, parse_setting
from signalbox.monitors.operate import check_reason
from signalbox.server.api import ok, read_json
from signalbox.server.api.monitors import parse_limit
from signalbox.server.api.tasks import MAX_JOB_ID
from signalbox.server.auth.middleware import require
from signalbox.server.auth.roles import Role
from signalbox.server.services import services

__all__ = ["MAX_AUDIT_ID", "SetBody", "change_of", "routes"]

audit = logging.getLogger("signalbox.flags.audit")

MAX_AUDIT_ID = MAX_JOB_ID
"""Audit ids are 64-bit; a larger ``after`` is a bad request."""


class SetBody(msgspec.Struct, forbid_unknown_fields=True):
    """A change as ``flags set NAME VALUE [--actors] [--groups] [--time] --reason`` says it."""

    value: str
    reason: str
    actors: list[str] | None = None
    groups: list[str] | None = None
    time: str | None = None


def change_of(body: SetBody) -> FlagChange:
    """The body as a change; a :class:`UsageError` naming the field that is wrong."""
    for field, items in (("actors", body.actors), ("groups", body.groups)):
        if items is not None and len(items) > MAX_LIST:
            raise UsageError(f"{field}: at most {MAX_LIST} entries, got {len(items)}")
    try:
        return parse_setting(body.value, actors=body.actors, groups=body.groups, time=body.time)
    except ValueError as e:
        msg = str(e).replace("--actors", "actors").replace("--groups", "groups")
        raise UsageError(msg.replace("--time", "time")) from None


def _admin(request: Request) -> FlagAdmin:
    found = services(request).flags
    if found is None:  # the area is mounted only with flags; a guard, not a path
        raise NotFoundError("area", "flags", "this server has no flag store")
    return found


def _name(request: Request) -> str:
    text = str(request.path_params["name"])
    if not NAME_RE.match(text):
        raise UsageError(
            f"invalid flag name {text[:100]!r}: expected lowercase letters, digits, '_', '.' "
            "or '-' (up to 100), starting with a letter or digit"
        )
    return text


def _known(admin: FlagAdmin, name: str) -> None:
    """A 404 for a flag neither declared nor stored, with the nearest declared name."""
    if admin.known(name):
        return
    from signalbox.monitors.definitions.yamlnodes import suggest

    declared = sorted(admin.declarations().flags)
    raise NotFoundError(
        "flag",
        name,
        f"not declared in the flags files{suggest(name, declared)}; declared: "
        f"{', '.join(declared)[:500] or 'none'}",
    )


def _after(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_AUDIT_ID:
        return int(text)
    raise UsageError(
        "invalid parameter 'after': expected an audit entry id (a whole number >= 0), "
        f"got {text[:40]!r}"
    )


def _bool(text: str | None, what: str) -> bool:
    if text is None or text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise UsageError(f"invalid parameter {what!r}: expected true or false, got {text[:40]!r}")


async def list_flags(request: Request) -> Response:
    stale = _bool(request.query_params.get("stale"), "stale")
    admin, now = _admin(request), services(request).now_ms()
    after = int(admin.stale_after_s * 1000)

    def read() -> dict[str, Any]:
        decls = admin.declarations()
        rows = [v.to_dict(now, after) for v in admin.views()]
        if stale:
            rows = [r for r in rows if r["stale"]]
        return {
            "at_ms": now,
            "stale_after_s": admin.stale_after_s,
            "refresh_s": admin.refresh_s,
            "flags": rows,
            "declaration_errors": [str(e) for e in decls.errors],
        }

    return ok(await run_in_threadpool(read))


async def one_flag(request: Request) -> Response:
    name = _name(request)
    admin, now = _admin(request), services(request).now_ms()

    def read() -> dict[str, Any]:
        _known(admin, name)
        return admin.show(name).to_dict(now, int(admin.stale_after_s * 1000))

    return ok({"at_ms": now, "flag": await run_in_threadpool(read)})


async def _history(request: Request, name: str | None) -> Response:
    q = request.query_params
    limit = parse_limit(q.get("limit"))
    after = _after(q.get("after"))
    admin = _admin(request)

    def read() -> dict[str, Any]:
        if name is not None:
            _known(admin, name)
        entries = admin.history(name, limit=limit + 1, before_id=after)
        more = len(entries) > limit
        entries = entries[:limit]
        return {
            "entries": [e.to_dict() for e in entries],
            "next_after": entries[-1].id if more else None,
        }

    return ok(await run_in_threadpool(read))


async def flag_history(request: Request) -> Response:
    return await _history(request, _name(request))


async def all_history(request: Request) -> Response:
    return await _history(request, None)


async def set_flag(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    body = await read_json(request, SetBody)
    reason = check_reason(body.reason, "reason")
    change = change_of(body)
    name = _name(request)
    admin, now = _admin(request), services(request).now_ms()

    def write() -> tuple[AuditEntry, dict[str, Any]]:
        _known(admin, name)
        entry = admin.set(name, change, by=who, reason=reason, now_ms=now)
        return entry, admin.show(name).to_dict(now, int(admin.stale_after_s * 1000))

    entry, view = await run_in_threadpool(write)
    old = "(declared default)" if entry.old is None else entry.old.describe()
    audit.info("flag %s: %s -> %s by %s: %s", name, old, entry.new.describe(), who, reason)
    return ok({"flag": view, "change": entry.to_dict(), "by": who, "refresh_s": admin.refresh_s})


def routes() -> list[BaseRoute]:
    """This area's routes, relative to ``/api/v1`` (mounted with a flag store only)."""
    return [
        Route("/flags", list_flags, methods=["GET"]),
        Route("/flags/-/history", all_history, methods=["GET"]),
        Route("/flags/{name}", one_flag, methods=["GET"]),
        Route("/flags/{name}/history", flag_history, methods=["GET"]),
        Route("/flags/{name}/set", set_flag, methods=["POST"]),
    ]
