"""The task queue over HTTP: what ``signalbox tasks status|show|retry|pause|resume`` do.

Reads (open on loopback, as every read):

* ``GET /api/v1/tasks/queues``: every queue -- depth, oldest age, running, scheduled, dead,
  outcome counts, paused (by whom, why), the gates holding its jobs back now -- and the
  deferrals counted per gate: the JSON of ``signalbox tasks status --json``;
* ``GET /api/v1/tasks/queues/{queue}``: one of them;
* ``GET /api/v1/tasks/dead?queue=Q&limit=100&after=ID``: dead jobs, oldest first, each with
  its error. Pages go by id (``next_after``, null on the last page), not by offset: a retry
  from one page takes a job off the list, and an offset would then skip one;
* ``GET /api/v1/tasks/jobs/{id}``: one job (``tasks show``);
* ``GET /api/v1/tasks/audit?queue=Q&limit=100&after=ID``: the audit trail, newest first
  (``tasks history``): who retried, paused or resumed what, when, why, how many. Pages go by
  id as the dead jobs' do: ``after`` is the ``next_after`` of the page before (older ids
  only), so actions recorded meanwhile never shift the next page.

Writes (role ``operate``: a token, or a signed-in user whose session's CSRF token comes
along; :mod:`signalbox.server.auth.middleware`) are recorded by the store in the audit trail
in the transaction that makes them, with who did it, and logged on ``signalbox.tasks.audit``
as the token writes are; a pause keeps its ``by`` and ``reason`` on the queue too, where
``tasks status`` and the queues page show them:

* ``POST /api/v1/tasks/jobs/{id}/retry`` ``{"reason": "..."}`` (optional): a dead job runs
  again now, failures forgotten;
* ``POST /api/v1/tasks/queues/{queue}/retry_dead`` (same body): every dead job of the queue;
* ``POST /api/v1/tasks/queues/{queue}/pause`` ``{"reason": "..."}``: no worker claims its
  jobs until resumed (running ones finish);
* ``POST /api/v1/tasks/queues/{queue}/resume`` ``{"reason": "..."}``.
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
from signalbox.monitors.operate import check_reason
from signalbox.server.api import ok, read_json
from signalbox.server.api.monitors import parse_limit
from signalbox.server.auth.middleware import require
from signalbox.server.auth.roles import Role
from signalbox.server.services import services
from signalbox.tasks import operate
from signalbox.tasks.store import QueueStore

__all__ = ["MAX_JOB_ID", "parse_job_id", "routes"]

audit = logging.getLogger("signalbox.tasks.audit")

MAX_JOB_ID = 2**63 - 1
"""Job ids are 64-bit; a larger one is a bad request, not a lookup."""


class ReasonBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class RetryBody(msgspec.Struct, forbid_unknown_fields=True):
    """A retry's body: why, optional (an empty body or ``{}`` retries without one), kept in
    the audit trail as the CLI's ``tasks retry --reason`` is."""

    reason: str | None = None


def _retry_reason(body: RetryBody) -> str:
    """Absent: no reason; present: one line of text, not blank (as a pause's)."""
    return "" if body.reason is None else check_reason(body.reason, "reason")


def _queue(request: Request) -> QueueStore:
    found = services(request).queue
    if found is None:  # the area is mounted only with a queue; a guard, not a path
        raise NotFoundError("area", "tasks", "this server has no task queue")
    return found


def parse_job_id(text: str) -> int:
    """A job id from the path or a parameter: 1 to :data:`MAX_JOB_ID`, else a 400."""
    if text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= MAX_JOB_ID:
        return int(text)
    raise UsageError(
        f"invalid job id {text[:40]!r}: expected a whole number from 1 to {MAX_JOB_ID}"
    )


def _queue_name(request: Request) -> str:
    text = str(request.path_params["queue"])
    try:
        return operate.check_queue(text)
    except UsageError:
        raise UsageError(
            f"invalid queue name {text[:100]!r}: letters, digits, _ . : - (up to 100)"
        ) from None


def _after(text: str | None, what: str = "a job id") -> int:
    if text is None or text == "":
        return 0
    if text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_JOB_ID:
        return int(text)
    raise UsageError(
        f"invalid parameter 'after': expected {what} (a whole number >= 0), got {text[:40]!r}"
    )


def _queue_param(text: str | None) -> str | None:
    queue = text or None
    if queue is not None:
        try:
            operate.check_queue(queue)
        except UsageError:
            raise UsageError(
                f"invalid parameter 'queue': not a queue name: {queue[:100]!r}"
            ) from None
    return queue


async def queues(request: Request) -> Response:
    store, now = _queue(request), services(request).now_ms()
    data = await run_in_threadpool(operate.status, store, now)
    return ok({"at_ms": now, **data})


def _one(store: QueueStore, name: str, now_ms: int) -> dict[str, Any]:
    for s in store.stats(now_ms):
        if s.queue == name:
            return s.to_dict(now_ms)
    known = ", ".join(s.queue for s in store.stats(now_ms)) or "none"
    raise NotFoundError("queue", name, f"known: {known[:500]}")


async def one_queue(request: Request) -> Response:
    name = _queue_name(request)
    store, now = _queue(request), services(request).now_ms()
    data = await run_in_threadpool(_one, store, name, now)
    return ok({"at_ms": now, "queue": data})


async def dead(request: Request) -> Response:
    q = request.query_params
    queue = _queue_param(q.get("queue"))
    limit = parse_limit(q.get("limit"))
    after = _after(q.get("after"))
    store, now = _queue(request), services(request).now_ms()

    def read() -> dict[str, Any]:
        jobs = store.jobs(queue=queue, status="dead", limit=limit + 1, after_id=after)
        more = len(jobs) > limit
        jobs = jobs[:limit]
        total = sum(s.dead for s in store.stats(now) if queue is None or s.queue == queue)
        return {
            "jobs": [j.to_dict(now) for j in jobs],
            "total": total,
            "next_after": jobs[-1].id if more else None,
        }

    return ok(await run_in_threadpool(read))


async def audit_trail(request: Request) -> Response:
    q = request.query_params
    queue = _queue_param(q.get("queue"))
    limit = parse_limit(q.get("limit"))
    after = _after(q.get("after"), "an audit entry id")
    store = _queue(request)

    def read() -> dict[str, Any]:
        entries = operate.history(store, queue, limit + 1, after)
        more = len(entries) > limit
        entries = entries[:limit]
        return {
            "entries": [e.to_dict() for e in entries],
            "next_after": entries[-1].id if more else None,
        }

    return ok(await run_in_threadpool(read))


async def one_job(request: Request) -> Response:
    job_id = parse_job_id(str(request.path_params["id"]))
    store, now = _queue(request), services(request).now_ms()
    job = await run_in_threadpool(operate.show, store, job_id)
    return ok({"job": job.to_dict(now)})


async def retry(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    body = await read_json(request, RetryBody)
    reason = _retry_reason(body)
    job_id = parse_job_id(str(request.path_params["id"]))
    store, now = _queue(request), services(request).now_ms()
    job = await run_in_threadpool(lambda: operate.retry(store, job_id, now, by=who, reason=reason))
    audit.info(
        "job %d (task %s, queue %s) retried by %s%s",
        job.id,
        job.task,
        job.queue,
        who,
        f": {reason}" if reason else "",
    )
    return ok({"job": job.to_dict(now), "by": who})


async def retry_dead(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    body = await read_json(request, RetryBody)
    reason = _retry_reason(body)
    name = _queue_name(request)
    store, now = _queue(request), services(request).now_ms()
    n = await run_in_threadpool(
        lambda: operate.retry_all_dead(store, name, now, by=who, reason=reason)
    )
    audit.info(
        "%d dead job(s) of queue %s retried by %s%s",
        n,
        name,
        who,
        f": {reason}" if reason else "",
    )
    return ok({"queue": name, "retried": n, "by": who})


async def pause(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    body = await read_json(request, ReasonBody)
    reason = check_reason(body.reason, "reason")
    name = _queue_name(request)
    store, now = _queue(request), services(request).now_ms()

    def write() -> dict[str, Any]:
        operate.pause(store, name, by=who, reason=reason, now_ms=now)
        return _one(store, name, now)

    data = await run_in_threadpool(write)
    audit.info("queue %s paused by %s: %s", name, who, reason)
    return ok({"queue": data, "by": who})


async def resume(request: Request) -> Response:
    who = require(request, Role.OPERATE).who
    body = await read_json(request, ReasonBody)
    reason = check_reason(body.reason, "reason")
    name = _queue_name(request)
    store, now = _queue(request), services(request).now_ms()

    def write() -> tuple[bool, dict[str, Any]]:
        was = operate.resume(store, name, now_ms=now, by=who, reason=reason)
        return was, _one(store, name, now)

    was, data = await run_in_threadpool(write)
    if was:
        audit.info("queue %s resumed by %s: %s", name, who, reason)
    return ok({"queue": data, "was_paused": was, "by": who})


def routes() -> list[BaseRoute]:
    """This area's routes, relative to ``/api/v1`` (mounted with a queue store only)."""
    return [
        Route("/tasks/queues", queues, methods=["GET"]),
        Route("/tasks/queues/{queue}", one_queue, methods=["GET"]),
        Route("/tasks/queues/{queue}/pause", pause, methods=["POST"]),
        Route("/tasks/queues/{queue}/resume", resume, methods=["POST"]),
        Route("/tasks/queues/{queue}/retry_dead", retry_dead, methods=["POST"]),
        Route("/tasks/dead", dead, methods=["GET"]),
        Route("/tasks/audit", audit_trail, methods=["GET"]),
        Route("/tasks/jobs/{id}", one_job, methods=["GET"]),
        Route("/tasks/jobs/{id}/retry", retry, methods=["POST"]),
    ]
