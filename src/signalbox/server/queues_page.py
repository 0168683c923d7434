"""The dashboard's queues page (``/queues``) and the overview's word on queues.

What the page shows is read here as plain data from the queue store -- the same
:func:`signalbox.tasks.operate.status` that ``tasks status`` and ``/api/v1/tasks/queues``
answer -- so the template only lays it out (every value escaped by Jinja2: queue and task
names, errors and gate reasons come from outside). The depth and oldest-age charts are
drawn by ``static/queues.js`` from the stored ``signalbox_queue_depth`` (with
``signalbox_queue_scheduled`` beside it: a backlog a closed gate holds back is scheduled, not
ready) and ``signalbox_queue_oldest_age_seconds`` series through ``/api/v1/query_range``; its
buttons call ``/api/v1/tasks``, whose writes the "Recent actions" list reads back from the
queue's audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from signalbox.monitors.notify.notification import rfc3339
from signalbox.server.services import Services, services
from signalbox.tasks import operate
from signalbox.tasks.settings import QUEUE_NAME

__all__ = [
    "AUDIT_SHOWN",
    "DEAD_SHOWN",
    "QueueNote",
    "queue_notes",
    "queues",
    "queues_page_data",
]

DEAD_SHOWN = 100
"""Dead jobs listed on the page (oldest first); the API pages through the rest."""
AUDIT_SHOWN = 20
"""Operator actions listed on the page (newest first); the API and ``tasks history`` page on."""
ERROR_SHOWN = 4000
"""Characters of a dead job's error on the page (a traceback's end says the most)."""


def _age(seconds: float) -> str:
    """``2h 5m``, ``3m 20s``, ``12.5s``: how long the oldest ready job has waited."""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{seconds:.1f}s" if seconds else "0s"


@dataclass(frozen=True, slots=True)
class QueueNote:
    """A queue the overview points at: it has dead jobs, or it is paused."""

    queue: str
    dead: int
    paused: bool
    paused_reason: str


def queue_notes(svc: Services, now_ms: int) -> list[QueueNote]:
    """Queues with dead jobs or paused, for the overview's link to the queues page."""
    if svc.queue is None:
        return []
    return [
        QueueNote(s.queue, s.dead, s.paused, s.paused_reason)
        for s in svc.queue.stats(now_ms)
        if s.dead or s.paused
    ]


def queues_page_data(svc: Services) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    if svc.queue is None:
        return {"has_queue": False}
    now = svc.now_ms()
    status = operate.status(svc.queue, now)
    rows = []
    for q in status["queues"]:
        rows.append(
            {
                **q,
                "age": _age(q["oldest_age_seconds"]),
                "operable": bool(QUEUE_NAME.match(q["queue"])),  # a foreign row's odd name
            }
        )
    dead = []
    for job in svc.queue.jobs(status="dead", limit=DEAD_SHOWN):
        d = job.to_dict(now)
        error = d["last_error"] or ""
        dead.append(
            {
                "id": job.id,
                "queue": job.queue,
                "task": job.task,
                "args": job.args if len(job.args) <= 200 else job.args[:200] + "…",
                "failures": job.failures,
                "died": rfc3339(job.finished_ms / 1000) if job.finished_ms else "",
                "summary": (error.strip().splitlines() or [""])[-1][:300],
                "error": error if len(error) <= ERROR_SHOWN else "…" + error[-ERROR_SHOWN:],
            }
        )
    holding = [{"queue": q["queue"], **h} for q in status["queues"] for h in q["holding"]]
    return {
        "has_queue": True,
        "queues": rows,
        "holding": holding,
        "gate_closures": sorted(status["gate_closures"].items()),
        "dead": dead,
        "dead_total": sum(q["dead"] for q in status["queues"]),
        "dead_shown": DEAD_SHOWN,
        "audit": [e.to_dict() for e in operate.history(svc.queue, limit=AUDIT_SHOWN)],
        "audit_shown": AUDIT_SHOWN,
        "at": rfc3339(now / 1000),
    }


async def queues(request: Request) -> Response:
    from signalbox.server.dashboard import page

    demo: bool = request.app.state.options.demo
    data = await run_in_threadpool(queues_page_data, services(request))
    return HTMLResponse(page("queues.html", "queues", demo, **data))
