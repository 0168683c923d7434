"""``/-/healthy`` (the process answers) and ``/-/ready`` (its store answers too).

Load balancers and orchestrators send traffic only to a ready instance; readiness runs each
:class:`~signalbox.server.services.ReadyCheck` (a ``SELECT 1``, not a real query) and says
which one failed and why, with 503, so an operator sees the reason from the probe itself.

``serve`` adds a check that its collection and compaction can write: a full disk leaves
reads working but stores nothing, and only an operator can fix it, so the instance says it
is not ready (``/-/healthy`` stays 200: restarting would not help) until a pass stores again.
A probe every few seconds must not flood the log: a reason is logged when it changes.

With several ``serve`` instances on one store, a ready answer also says which one leads
(``leader: HOST:PORT``, and ``(this instance)`` on the leader): every instance is ready to
serve queries, one evaluates monitors (:mod:`signalbox.storage.leader`).
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from signalbox.server.errors import error_response
from signalbox.server.services import ReadyCheck, services
from signalbox.storage.leader import Leadership

log = logging.getLogger("signalbox.server")


async def healthy(request: Request) -> Response:
    return PlainTextResponse("signalbox is healthy.\n")


def failing(checks: tuple[ReadyCheck, ...]) -> str | None:
    """Why the first failing check fails, or None when all pass."""
    for check in checks:
        try:
            check.probe()
        except Exception as e:  # any failure means not ready; the reason is the answer
            # (store errors name their URL redacted, driver errors name host and port only)
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return f"{check.name}: {first_line}"
    return None


async def ready(request: Request) -> Response:
    reason = await run_in_threadpool(failing, services(request).ready)
    state = request.app.state
    if reason != getattr(state, "not_ready_reason", None):
        state.not_ready_reason = reason
        if reason is None:
            log.warning("ready again")
        else:
            log.warning("not ready: %s", reason)
    if reason is not None:
        return error_response("unavailable", f"not ready: {reason}", 503)
    return PlainTextResponse("signalbox is ready.\n" + leader_line(services(request).leader))


def leader_line(leader: Leadership | None) -> str:
    """Who leads, as ``/-/ready`` says it ("" when the app was given no election)."""
    if leader is None:
        return ""
    who = leader.leader()
    if who is None:
        return "leader: none (an election is under way)\n"
    return f"leader: {who}{' (this instance)' if leader.leading() else ''}\n"
