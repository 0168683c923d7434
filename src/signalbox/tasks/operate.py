"""What an operator does to queues, shared by the CLI and the HTTP API: one behaviour, one
set of errors (a missing job is a :class:`NotFoundError`, a job that is not dead a
:class:`UsageError`), whichever door the request came through. Every write names who made
it (``by``) and the store records it in its audit trail (:meth:`QueueStore.audit`).
"""

from __future__ import annotations

from typing import Any

from signalbox.exceptions import NotFoundError, UsageError
from signalbox.tasks.audit import AuditEntry
from signalbox.tasks.jobs import Job
from signalbox.tasks.settings import QUEUE_NAME
from signalbox.tasks.store import QueueStore

__all__ = [
    "dead_jobs",
    "history",
    "pause",
    "resume",
    "retry",
    "retry_all_dead",
    "show",
    "status",
]


def check_queue(queue: str) -> str:
    if not QUEUE_NAME.match(queue):
        raise UsageError(f"not a queue name: {queue!r} (letters, digits, _ . : -)")
    return queue


def status(store: QueueStore, now_ms: int) -> dict[str, Any]:
    """Every queue (depth, oldest age, running, counts, paused, gates holding work back) and
    the deferrals per gate: ``tasks status --json`` and the queues page."""
    return {
        "queues": [s.to_dict(now_ms) for s in store.stats(now_ms)],
        "gate_closures": dict(sorted(store.gate_closures().items())),
    }


def show(store: QueueStore, job_id: int) -> Job:
    job = store.get(job_id)
    if job is None:
        raise NotFoundError("job", str(job_id), "done jobs are deleted; `tasks status` counts them")
    return job


def dead_jobs(store: QueueStore, queue: str | None = None, limit: int = 100) -> list[Job]:
    """Dead jobs, oldest first, with their errors (the page's list and its retry buttons)."""
    return store.jobs(
        queue=None if queue is None else check_queue(queue), status="dead", limit=limit
    )


def retry(store: QueueStore, job_id: int, now_ms: int, *, by: str, reason: str = "") -> Job:
    """Run dead job ``job_id`` again now, its failures forgotten; the job as it is now."""
    job = show(store, job_id)
    if job.status != "dead" or not store.retry(job_id, now_ms=now_ms, by=by, reason=reason):
        raise UsageError(
            f"job {job_id} is not dead (it is {job.state(now_ms)}): only dead jobs are retried"
        )
    return show(store, job_id)


def retry_all_dead(store: QueueStore, queue: str, now_ms: int, *, by: str, reason: str = "") -> int:
    return store.retry_dead(check_queue(queue), now_ms=now_ms, by=by, reason=reason)


def pause(store: QueueStore, queue: str, *, by: str, reason: str, now_ms: int) -> None:
    store.pause(check_queue(queue), by=by, reason=reason, now_ms=now_ms)


def resume(store: QueueStore, queue: str, *, now_ms: int, by: str, reason: str = "") -> bool:
    """False if it was not paused."""
    return store.resume(check_queue(queue), now_ms=now_ms, by=by, reason=reason)


def history(
    store: QueueStore, queue: str | None = None, limit: int = 100, before_id: int = 0
) -> list[AuditEntry]:
    """Who retried, paused and resumed what, newest first: ``tasks history``, the API's
    ``/tasks/audit`` and the queues page's recent actions."""
    return store.audit(
        queue=None if queue is None else check_queue(queue), limit=limit, before_id=before_id
    )
