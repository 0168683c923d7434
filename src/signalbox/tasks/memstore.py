"""The queue in memory: the same contract as the SQL store, for tests of users' own tasks.

Nothing survives the process, so it offers none of the at-least-once guarantees across a
crash; within a process it behaves as :class:`~signalbox.tasks.sqlstore.SQLQueueStore`
does (the contract suite runs on both). One lock serialises every call.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from signalbox.tasks.audit import AuditAction, AuditEntry
from signalbox.tasks.jobs import (
    Claimed,
    Dead,
    Deferred,
    Done,
    Enqueued,
    Held,
    Job,
    JobStatus,
    NewJob,
    Outcome,
    QueueStats,
    Released,
    Retry,
)

__all__ = ["MemoryQueueStore"]


@dataclass
class _Lease:
    store: MemoryQueueStore
    name: str
    ttl_ms: int
    holder: str

    def acquire(self, now_ms: int | None = None) -> bool:
        now = 0 if now_ms is None else now_ms
        with self.store._lock:
            held = self.store._leases.get(self.name)
            if held is None or held[0] == self.holder or held[1] <= now:
                self.store._leases[self.name] = (self.holder, now + self.ttl_ms)
                return True
            return False

    def release(self) -> None:
        with self.store._lock:
            held = self.store._leases.get(self.name)
            if held is not None and held[0] == self.holder:
                del self.store._leases[self.name]


class MemoryQueueStore:
    """See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._unique: dict[int, tuple[str, int]] = {}  # id -> (key, until_ms)
        self._outcomes: dict[tuple[str, str], int] = defaultdict(int)
        self._gates: dict[str, int] = defaultdict(int)
        self._paused: dict[str, tuple[str, str]] = {}
        self._schedules: dict[str, int] = {}
        self._leases: dict[str, tuple[str, int]] = {}
        self._deferred_at: dict[int, int] = {}  # job id -> when it was last deferred
        self._audit: list[AuditEntry] = []

    def enqueue(self, job: NewJob) -> Enqueued:
        with self._lock:
            if job.unique_key is not None:
                for i, (key, until) in list(self._unique.items()):
                    if key == job.unique_key:
                        if until > job.enqueued_ms:
                            return Enqueued(i, created=False)
                        del self._unique[i]
            i = next(self._ids)
            self._jobs[i] = Job(
                i,
                job.queue,
                job.task,
                job.args,
                "ready",
                job.priority,
                job.due_ms,
                job.enqueued_ms,
                0,
                0,
                0,
                None,
                None,
                "",
                None,
                None,
                None,
            )
            if job.unique_key is not None and job.unique_until_ms is not None:
                self._unique[i] = (job.unique_key, job.unique_until_ms)
            return Enqueued(i)

    def claim(
        self,
        *,
        worker: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        queues: Collection[str] = (),
    ) -> list[Claimed]:
        with self._lock:
            due = sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.status == "ready"
                    and j.due_ms <= now_ms
                    and (not queues or j.queue in queues)
                    and j.queue not in self._paused
                ),
                key=lambda j: (-j.priority, j.due_ms, j.id),
            )[: max(0, limit)]
            out = []
            for j in due:
                j = replace(j, due_ms=now_ms + lease_ms, attempts=j.attempts + 1, claimed_by=worker)
                self._jobs[j.id] = j
                out.append(
                    Claimed(
                        j.id,
                        j.queue,
                        j.task,
                        j.args,
                        j.attempts,
                        j.failures,
                        j.defers,
                        j.checkpoint,
                        j.enqueued_ms,
                    )
                )
            return out

    def _mine(self, job_id: int, worker: str) -> Job | None:
        j = self._jobs.get(job_id)
        return j if j is not None and j.claimed_by == worker and j.status == "ready" else None

    def renew(
        self,
        ids: Collection[int],
        *,
        worker: str,
        now_ms: int,
        lease_ms: int,
        checkpoints: Mapping[int, str] | None = None,
    ) -> set[int]:
        with self._lock:
            kept = set()
            for i in ids:
                j = self._mine(i, worker)
                if j is not None:
                    cp = (checkpoints or {}).get(i, j.checkpoint)
                    self._jobs[i] = replace(j, due_ms=now_ms + lease_ms, checkpoint=cp)
                    kept.add(i)
            return kept

    def finish(self, outcomes: Sequence[Outcome], *, worker: str, now_ms: int) -> None:
        with self._lock:
            for o in outcomes:
                j = self._mine(o.id, worker)
                if j is None:
                    continue
                if isinstance(o, Done):
                    del self._jobs[o.id]
                    self._unique.pop(o.id, None)
                    self._deferred_at.pop(o.id, None)
                    self._outcomes[(o.queue, "done")] += 1
                elif isinstance(o, Retry):
                    self._jobs[o.id] = replace(
                        j,
                        due_ms=o.due_ms,
                        failures=j.failures + 1,
                        defers=0,
                        last_error=o.error,
                        claimed_by=None,
                        gate=None,
                        gate_reason=None,
                    )
                    self._outcomes[(o.queue, "failed")] += 1
                elif isinstance(o, Dead):
                    self._jobs[o.id] = replace(
                        j,
                        status="dead",
                        failures=j.failures + 1,
                        last_error=o.error,
                        finished_ms=now_ms,
                        claimed_by=None,
                        gate=None,
                        gate_reason=None,
                    )
                    self._unique.pop(o.id, None)
                    self._outcomes[(o.queue, "failed")] += 1
                    self._outcomes[(o.queue, "dead")] += 1
                elif isinstance(o, Deferred):
                    self._jobs[o.id] = replace(
                        j,
                        due_ms=o.due_ms,
                        attempts=j.attempts - 1,
                        defers=j.defers + 1,
                        gate=o.gate,
                        gate_reason=o.reason,
                        claimed_by=None,
                        checkpoint=j.checkpoint if o.checkpoint is None else o.checkpoint,
                    )
                    self._outcomes[(o.queue, "deferred")] += 1
                    self._gates[o.gate] += 1
                    self._deferred_at[o.id] = now_ms
                elif isinstance(o, Held):
                    self._jobs[o.id] = replace(
                        j,
                        due_ms=o.due_ms,
                        attempts=j.attempts - 1,
                        last_error=o.error,
                        claimed_by=None,
                    )
                elif isinstance(o, Released):
                    self._jobs[o.id] = replace(
                        j, due_ms=now_ms, attempts=j.attempts - 1, claimed_by=None
                    )

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[Job]:
        with self._lock:
            out = [
                j
                for i, j in sorted(self._jobs.items())
                if i > after_id
                and (queue is None or j.queue == queue)
                and (status is None or j.status == status)
            ]
            return out[:limit]

    def stats(self, now_ms: int) -> list[QueueStats]:
        with self._lock:
            names = {j.queue for j in self._jobs.values()} | {q for q, _ in self._outcomes}
            names |= set(self._paused)
            out = []
            for q in sorted(names):
                jobs = [j for j in self._jobs.values() if j.queue == q]
                live = [j for j in jobs if j.status == "ready"]
                ready = [j.due_ms for j in live if j.due_ms <= now_ms]
                # per gate: the jobs it holds and its latest deferral's reason (SQL's order)
                holding: dict[str, int] = defaultdict(int)
                latest: dict[str, tuple[int, str]] = {}
                for j in live:
                    if j.gate is not None and j.claimed_by is None:
                        holding[j.gate] += 1
                        mark = (self._deferred_at.get(j.id, 0), j.gate_reason or "")
                        latest[j.gate] = max(latest.get(j.gate, mark), mark)
                by, why = self._paused.get(q, ("", ""))
                out.append(
                    QueueStats(
                        q,
                        ready=len(ready),
                        scheduled=sum(
                            1 for j in live if j.due_ms > now_ms and j.claimed_by is None
                        ),
                        running=sum(
                            1 for j in live if j.due_ms > now_ms and j.claimed_by is not None
                        ),
                        dead=sum(1 for j in jobs if j.status == "dead"),
                        oldest_ready_ms=min(ready) if ready else None,
                        paused=q in self._paused,
                        paused_by=by,
                        paused_reason=why,
                        outcomes={
                            k: self._outcomes.get((q, k), 0)
                            for k in ("done", "failed", "dead", "deferred")
                        },
                        holding=tuple((g, latest[g][1], n) for g, n in sorted(holding.items())),
                    )
                )
            return out

    def gate_closures(self) -> dict[str, int]:
        with self._lock:
            return dict(self._gates)

    def _record(
        self,
        action: AuditAction,
        queue: str,
        *,
        now_ms: int,
        by: str,
        reason: str,
        n: int,
        job_id: int | None = None,
    ) -> None:
        self._audit.append(
            AuditEntry(len(self._audit) + 1, now_ms, by, action, queue, job_id, reason, n)
        )

    def _retry(self, job_id: int, now_ms: int) -> Job | None:
        j = self._jobs.get(job_id)
        if j is None or j.status != "dead":
            return None
        self._jobs[job_id] = replace(
            j,
            status="ready",
            due_ms=now_ms,
            failures=0,
            defers=0,
            attempts=0,
            claimed_by=None,
            finished_ms=None,
        )
        return j

    def retry(self, job_id: int, *, now_ms: int, by: str, reason: str = "") -> bool:
        with self._lock:
            j = self._retry(job_id, now_ms)
            if j is None:
                return False
            self._record("retry", j.queue, now_ms=now_ms, by=by, reason=reason, n=1, job_id=job_id)
            return True

    def retry_dead(self, queue: str, *, now_ms: int, by: str, reason: str = "") -> int:
        with self._lock:
            ids = [i for i, j in self._jobs.items() if j.queue == queue and j.status == "dead"]
            n = sum(self._retry(i, now_ms) is not None for i in ids)
            self._record("retry_dead", queue, now_ms=now_ms, by=by, reason=reason, n=n)
            return n

    def pause(self, queue: str, *, by: str, reason: str, now_ms: int) -> None:
        with self._lock:
            was = queue in self._paused
            self._paused[queue] = (by, reason)
            self._record("pause", queue, now_ms=now_ms, by=by, reason=reason, n=0 if was else 1)

    def resume(self, queue: str, *, now_ms: int, by: str, reason: str = "") -> bool:
        with self._lock:
            was = self._paused.pop(queue, None) is not None
            self._record("resume", queue, now_ms=now_ms, by=by, reason=reason, n=int(was))
            return was

    def audit(
        self, *, queue: str | None = None, limit: int = 100, before_id: int = 0
    ) -> list[AuditEntry]:
        with self._lock:
            out = [
                e
                for e in reversed(self._audit)
                if (before_id <= 0 or e.id < before_id) and (queue is None or e.queue == queue)
            ]
            return out[: max(0, limit)]

    def paused(self) -> set[str]:
        with self._lock:
            return set(self._paused)

    def advance_schedule(
        self, name: str, *, expected_ms: int | None, next_ms: int, job: NewJob | None
    ) -> bool:
        with self._lock:
            if self._schedules.get(name) != expected_ms:
                return False
            self._schedules[name] = next_ms
            if job is not None:
                self.enqueue(job)
            return True

    def schedule(self, name: str) -> int | None:
        with self._lock:
            return self._schedules.get(name)

    def leader(self, name: str, ttl_s: float, holder: str) -> _Lease:
        return _Lease(self, name, round(ttl_s * 1000), holder)

    def close(self) -> None:
        pass
