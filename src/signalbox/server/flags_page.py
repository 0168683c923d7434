"""The dashboard's flags page (``/flags``): every flag's state, gates, last change and
evaluations, the flag debt, and the audit trail; switches that call ``/api/v1/flags``.

What the page shows is read here as plain data from the same
:class:`~signalbox.flags.admin.FlagAdmin` the API answers from, so the template only lays it
out (every value escaped by Jinja2: descriptions and reasons are people's text, flag names in
the store may come from anywhere). ``static/flags.js`` asks for a confirmation and a reason
before each change and sends it with the session's CSRF token; the API checks the role.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from signalbox.flags.model import NAME_RE, format_share
from signalbox.monitors.notify.notification import rfc3339
from signalbox.server.services import Services, services

__all__ = ["AUDIT_SHOWN", "flags", "flags_page_data"]

AUDIT_SHOWN = 50
"""Changes listed on the page (newest first); the API and ``flags history`` page on."""


def _when(ms: int | None) -> str:
    return "" if ms is None else rfc3339(ms / 1000)


def flags_page_data(svc: Services) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    admin = svc.flags
    if admin is None:
        return {"has_flags": False}
    now = svc.now_ms()
    stale_after_ms = int(admin.stale_after_s * 1000)
    decls = admin.declarations()
    rows = []
    for v in admin.views():
        s = v.state
        rows.append(
            {
                "name": v.name,
                "declared": v.decl is not None,
                "description": v.decl.description if v.decl else "",
                "owner": v.decl.owner if v.decl else "",
                "where": v.decl.where if v.decl else "",
                "default": v.decl.default.describe() if v.decl else "",
                "switch": s.switch,
                "describe": s.describe(),
                "fully_on": s.fully_on,
                "fully_off": s.fully_off,
                "actors_pct": format_share(s.actors_share),
                "time_pct": format_share(s.time_share),
                "actors": sorted(s.actors),
                "groups": sorted(s.groups),
                "version": v.stored.version if v.stored else 0,
                "changed": _when(v.stored.updated_ms) if v.stored else "",
                "changed_by": v.stored.updated_by if v.stored else "",
                "reason": v.stored.reason if v.stored else "",
                "evaluations": v.evaluations,
                "last_evaluated": _when(v.last_evaluated_ms),
                "stale": v.stale(now, stale_after_ms) or "",
                "operable": bool(NAME_RE.match(v.name)),  # a foreign row's odd name
            }
        )
    audit = []
    for e in admin.history(None, limit=AUDIT_SHOWN):
        audit.append(
            {
                "id": e.id,
                "at": _when(e.at_ms),
                "name": e.name,
                "by": e.by,
                "old": "(declared default)" if e.old is None else e.old.describe(),
                "new": e.new.describe(),
                "reason": e.reason,
            }
        )
    return {
        "has_flags": True,
        "flags": rows,
        "on": sum(1 for r in rows if r["fully_on"]),
        "off": sum(1 for r in rows if r["fully_off"]),
        "stale": [r for r in rows if r["stale"]],
        "stale_after_days": round(admin.stale_after_s / 86400, 1),
        "refresh_s": admin.refresh_s,
        "errors": [str(e) for e in decls.errors],
        "audit": audit,
        "audit_shown": AUDIT_SHOWN,
        "at": _when(now),
    }


async def flags(request: Request) -> Response:
    from signalbox.server.dashboard import page

    demo: bool = request.app.state.options.demo
    data = await run_in_threadpool(flags_page_data, services(request))
    return HTMLResponse(page("flags.html", "flags", demo, **data))
