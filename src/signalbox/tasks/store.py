"""The queue storage protocol: the few primitives every feature of the queue is built on.

Like huey's storage API, small on purpose: enqueue (plain, or unique for a while), claim a
batch with a lease, renew the leases of what a worker holds, finish a batch of outcomes in
one transaction, and the operator's verbs (retry, pause, resume, each recorded in the audit
trail in the transaction that makes the change) and readings (stats, jobs, audit).
Delays, priorities, retries, deferral by gates, unique jobs and periodic schedules are all
the worker's and the client's policy over these. :mod:`~signalbox.tasks.sqlstore` keeps
jobs in SQLite or PostgreSQL through :mod:`signalbox.storage`;
:mod:`~signalbox.tasks.memstore` in memory, for tests. One contract suite runs on all
(``tests/contracts/test_queue_store.py``).

At-least-once: a claim moves a job's due time one lease ahead, so a job whose worker dies
(SIGKILL, power loss) is simply due again when the lease runs out; nothing reaps it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from signalbox.tasks.audit import AuditEntry
from signalbox.tasks.jobs import Claimed, Enqueued, Job, JobStatus, NewJob, Outcome, QueueStats

__all__ = ["Leader", "QueueStore"]


class Leader(Protocol):
    """A named lease with a TTL (the periodic scheduler's: one holder at a time)."""

    def acquire(self, now_ms: int | None = None) -> bool: ...

    def release(self) -> None: ...


class QueueStore(Protocol):
    """Where jobs wait; safe to share between threads."""

    def enqueue(self, job: NewJob) -> Enqueued:
        """Store ``job``; with a ``unique_key``, only if no job of that key enqueued less
        than its ``unique_for`` ago is still waiting or running (else that one's id)."""
        ...

    def claim(
        self,
        *,
        worker: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        queues: Collection[str] = (),
    ) -> list[Claimed]:
        """Up to ``limit`` due jobs of ``queues`` (empty: all) that are not paused, highest
        priority first, then oldest due; each is ``worker``'s until ``now_ms + lease_ms``."""
        ...

    def renew(
        self,
        ids: Collection[int],
        *,
        worker: str,
        now_ms: int,
        lease_ms: int,
        checkpoints: Mapping[int, str] | None = None,
    ) -> set[int]:
        """Push the leases of ``ids`` to ``now_ms + lease_ms`` (saving the latest
        ``checkpoints``); the ids still ``worker``'s (a missing one was lost to another)."""
        ...

    def finish(self, outcomes: Sequence[Outcome], *, worker: str, now_ms: int) -> None:
        """Apply what runs came to, in one transaction, to the jobs ``worker`` still holds;
        count them per queue (and deferrals per gate)."""
        ...

    def get(self, job_id: int) -> Job | None: ...

    def jobs(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[Job]:
        """Jobs by id, oldest first, filtered as asked; ``after_id``: only ids above it (a
        page that starts where the last one ended, unshifted by jobs retried meanwhile)."""
        ...

    def stats(self, now_ms: int) -> list[QueueStats]:
        """Every queue that has jobs, counts or a pause, sorted by name."""
        ...

    def gate_closures(self) -> dict[str, int]:
        """Deferrals counted per gate since the store was created."""
        ...

    def retry(self, job_id: int, *, now_ms: int, by: str, reason: str = "") -> bool:
        """Make dead job ``job_id`` ready now with its failures forgotten, recording
        ``by`` in the audit in the same transaction; False (nothing recorded) if it is not
        dead (or not there)."""
        ...

    def retry_dead(self, queue: str, *, now_ms: int, by: str, reason: str = "") -> int:
        """:meth:`retry` every dead job of ``queue``; how many (audited, 0 included)."""
        ...

    def pause(self, queue: str, *, by: str, reason: str, now_ms: int) -> None:
        """No worker claims jobs of ``queue`` until :meth:`resume` (running ones finish)."""
        ...

    def resume(self, queue: str, *, now_ms: int, by: str, reason: str = "") -> bool:
        """False if ``queue`` was not paused (audited either way)."""
        ...

    def audit(
        self, *, queue: str | None = None, limit: int = 100, before_id: int = 0
    ) -> list[AuditEntry]:
        """Operator actions, newest first; ``before_id``: only older ones (ids below it; 0:
        from the newest), so a page starts where the last ended whatever was added since."""
        ...

    def paused(self) -> set[str]: ...

    def advance_schedule(
        self, name: str, *, expected_ms: int | None, next_ms: int, job: NewJob | None
    ) -> bool:
        """Compare-and-swap of periodic task ``name``'s next run time: from ``expected_ms``
        (None: never scheduled) to ``next_ms``, enqueueing ``job`` in the same transaction.
        False (and nothing enqueued) if another scheduler moved it first: each tick is
        enqueued once, even by two schedulers."""
        ...

    def schedule(self, name: str) -> int | None:
        """Periodic task ``name``'s next run time (None: never scheduled)."""
        ...

    def leader(self, name: str, ttl_s: float, holder: str) -> Leader:
        """The lease ``name`` as ``holder`` sees it."""
        ...

    def close(self) -> None: ...
