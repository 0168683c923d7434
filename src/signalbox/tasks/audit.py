"""The queue's audit trail: who retried, paused or resumed what, when, why, and how much.

The log line on ``signalbox.tasks.audit`` goes wherever the server's logs go and is gone
with them; this record is kept in the queue store itself, written by the store in the same
transaction as the change (so a retry that happened is never missing from the trail, and a
refused one is never in it), whichever door it came through: the dashboard
(``alice (dashboard)``), a token (``ci-bot (token #3)``) or the CLI (``cli (user@host)``).

Pure: records and their JSON, no store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from signalbox.monitors.notify.notification import rfc3339

__all__ = ["ACTIONS", "AuditAction", "AuditEntry"]

AuditAction = Literal["retry", "retry_dead", "pause", "resume"]
ACTIONS: tuple[AuditAction, ...] = ("retry", "retry_dead", "pause", "resume")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action on a queue.

    ``count`` is what it changed: 1 for a retried job; the dead jobs a ``retry_dead``
    brought back (0 is kept too: someone tried); for ``pause`` and ``resume`` 1 if the queue
    changed state, 0 if it already was so (a repeated pause still records its new reason).
    """

    id: int
    at_ms: int
    by: str
    action: AuditAction
    queue: str
    job_id: int | None
    reason: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": rfc3339(self.at_ms / 1000),
            "at_ms": self.at_ms,
            "by": self.by,
            "action": self.action,
            "queue": self.queue,
            "job_id": self.job_id,
            "reason": self.reason,
            "count": self.count,
        }

    def describe(self) -> str:
        """``queue photos paused by alice (dashboard): db3 rebuild``, for people."""
        what = {
            "retry": f"job {self.job_id} of queue {self.queue} retried",
            "retry_dead": f"{self.count} dead job(s) of queue {self.queue} retried",
            "pause": f"queue {self.queue} paused",
            "resume": f"queue {self.queue} resumed",
        }[self.action]
        if self.action == "pause" and not self.count:
            what += " (already paused)"
        elif self.action == "resume" and not self.count:
            what += " (was not paused)"
        return f"{what} by {self.by}" + (f": {self.reason}" if self.reason else "")
