"""The queue in SQLite or PostgreSQL, on :mod:`signalbox.storage`'s primitives.

Claims are :func:`~signalbox.storage.claim.claim_due` (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), heartbeats :func:`~signalbox.storage.claim.renew_claim`,
a stopping worker's unstarted jobs go back with :func:`~signalbox.storage.claim.release_claim`,
the scheduler's leadership is a :class:`~signalbox.storage.lease.Lease`. The SQL here is
portable (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``, partial indexes: SQLite 3.35+
and PostgreSQL alike); what differs lives in :mod:`signalbox.storage.dialect`.

Throughput comes from the shape of the work, not from tricks: an enqueue is one prepared
``INSERT`` committed on its own (WAL, ``synchronous = NORMAL``: it survives the kill of any
process once it returns; see :mod:`signalbox.tasks.settings` for power loss and
``durable``); a worker claims many jobs in one statement and finishes many in one
transaction. A done job is deleted (its count is kept in ``task_outcomes``); a dead one
stays for inspection until retried. Every operator verb adds its row to ``task_audit`` in
the transaction that makes the change.

Ids are SQLite's ``INTEGER PRIMARY KEY`` (``AUTOINCREMENT`` would cost another page write
per enqueue; PostgreSQL's ``BIGSERIAL`` never repeats): once a done job and every newer one
are gone, a later job may get the same id. Workers claim under a token of their own per
batch (``claimed_by``), so a late heartbeat or finish can never touch that later job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from signalbox.storage.claim import ClaimTable, claim_due, release_claim, renew_claim
from signalbox.storage.database import Database, Migration
from signalbox.storage.lease import Lease
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
from signalbox.tasks.settings import QUEUE_NAME

__all__ = ["MIGRATIONS", "SQLQueueStore"]

MIGRATIONS: list[Migration] = [
    (
        1,
        "task queue",
        [
            "CREATE TABLE task_jobs (id {pk}, queue TEXT NOT NULL, task TEXT NOT NULL, "
            "args TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'ready', "
            "priority INTEGER NOT NULL DEFAULT 0, due_ms BIGINT NOT NULL, "
            "enqueued_ms BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
            "failures INTEGER NOT NULL DEFAULT 0, defers INTEGER NOT NULL DEFAULT 0, "
            "claimed_by TEXT, checkpoint TEXT, last_error TEXT NOT NULL DEFAULT '', "
            "gate TEXT, gate_reason TEXT, unique_key TEXT, unique_until_ms BIGINT, "
            "finished_ms BIGINT)",
            # the claim walks this in its ORDER BY and stops at its LIMIT
            "CREATE INDEX task_jobs_due ON task_jobs (priority DESC, due_ms, id) "
            "WHERE status = 'ready'",
            "CREATE UNIQUE INDEX task_jobs_unique ON task_jobs (unique_key) "
            "WHERE unique_key IS NOT NULL",
            "CREATE INDEX task_jobs_dead ON task_jobs (queue, id) WHERE status = 'dead'",
            "CREATE TABLE task_queues (queue TEXT PRIMARY KEY, paused INTEGER NOT NULL, "
            "paused_by TEXT NOT NULL, paused_reason TEXT NOT NULL, paused_ms BIGINT)",
            "CREATE TABLE task_outcomes (queue TEXT NOT NULL, outcome TEXT NOT NULL, "
            "n BIGINT NOT NULL, PRIMARY KEY (queue, outcome))",
            "CREATE TABLE task_gate_closures (gate TEXT PRIMARY KEY, n BIGINT NOT NULL)",
            "CREATE TABLE task_schedules (name TEXT PRIMARY KEY, next_ms BIGINT NOT NULL)",
        ],
    ),
    (
        2,
        "operator audit trail; when a job was last deferred",
        [
            # {serial}: an id never reused, so a page of the audit never repeats or skips one
            "CREATE TABLE task_audit (id {serial}, at_ms BIGINT NOT NULL, by_who TEXT NOT NULL, "
            "action TEXT NOT NULL, queue TEXT NOT NULL, job_id BIGINT, reason TEXT NOT NULL, "
            "n BIGINT NOT NULL)",
            "CREATE INDEX task_audit_by_queue ON task_audit (queue, id)",
            # the held-back list shows each gate's latest reading, not one row per reading
            "ALTER TABLE task_jobs ADD COLUMN deferred_ms BIGINT",
        ],
    ),
]

_COLS = (
    "id, queue, task, args, status, priority, due_ms, enqueued_ms, attempts, failures, defers, "
    "claimed_by, checkpoint, last_error, gate, gate_reason, finished_ms"
)
_CLAIM_COLS = (
    "queue",
    "task",
    "args",
    "attempts",
    "failures",
    "defers",
    "checkpoint",
    "enqueued_ms",
)
_NOT_PAUSED = "queue NOT IN (SELECT queue FROM task_queues WHERE paused = 1)"
_INSERT = (
    "INSERT INTO task_jobs (queue, task, args, priority, due_ms, enqueued_ms) "
    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
)
_INSERT_UNIQUE = (
    "INSERT INTO task_jobs (queue, task, args, priority, due_ms, enqueued_ms, unique_key, "
    "unique_until_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id"
)
_MINE = "id = ? AND claimed_by = ? AND status = 'ready'"
_COUNT = (
    "INSERT INTO task_outcomes (queue, outcome, n) VALUES (?, ?, ?) "
    "ON CONFLICT (queue, outcome) DO UPDATE SET n = task_outcomes.n + excluded.n"
)
_AUDIT = (
    "INSERT INTO task_audit (at_ms, by_who, action, queue, job_id, reason, n) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_AUDIT_COLS = "id, at_ms, by_who, action, queue, job_id, reason, n"
_COUNT_GATE = (
    "INSERT INTO task_gate_closures (gate, n) VALUES (?, ?) "
    "ON CONFLICT (gate) DO UPDATE SET n = task_gate_closures.n + excluded.n"
)


_HELD = ClaimTable(
    "task_jobs", key="id", due="due_ms", ready="status = 'ready'", claimed_by="claimed_by"
)
"""Jobs a worker holds, whatever their queue: a pause stops new claims, not the heartbeats
of running jobs."""


def _job(row: Sequence[Any]) -> Job:
    (
        id_,
        queue,
        task,
        args,
        status,
        prio,
        due,
        enq,
        att,
        fail,
        defers,
        by,
        cp,
        err,
        gate,
        why,
        fin,
    ) = row
    return Job(
        int(id_),
        queue,
        task,
        args,
        status,
        int(prio),
        int(due),
        int(enq),
        int(att),
        int(fail),
        int(defers),
        by,
        cp,
        err,
        gate,
        why,
        None if fin is None else int(fin),
    )


class SQLQueueStore:
    """The queue tables of ``db`` (created on first use). See the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._claims: dict[frozenset[str], ClaimTable] = {}
        db.migrate("tasks", MIGRATIONS)

    def _claim_table(self, queues: Collection[str]) -> ClaimTable:
        key = frozenset(queues)
        t = self._claims.get(key)
        if t is None:
            ready = f"status = 'ready' AND {_NOT_PAUSED}"
            if key:
                for q in key:  # names become SQL literals: only the safe alphabet
                    if not QUEUE_NAME.match(q):
                        raise ValueError(f"not a queue name: {q!r}")
                ready += f" AND queue IN ({', '.join(repr(q) for q in sorted(key))})"
            t = ClaimTable(
                "task_jobs",
                key="id",
                due="due_ms",
                ready=ready,
                order="priority DESC, due_ms, id",
                attempts="attempts",
                claimed_by="claimed_by",
            )
            self._claims[key] = t
        return t

    # -- the client's side -----------------------------------------------------------------
    def enqueue(self, job: NewJob) -> Enqueued:
        if job.unique_key is None:
            rows = self.db.query(
                _INSERT,
                (job.queue, job.task, job.args, job.priority, job.due_ms, job.enqueued_ms),
            )
            return Enqueued(int(rows[0][0]))
        with self.db.transaction():
            # an expired uniqueness no longer holds a newer call back
            self.db.execute(
                "UPDATE task_jobs SET unique_key = NULL WHERE unique_key = ? AND unique_until_ms <= ?",
                (job.unique_key, job.enqueued_ms),
            )
            rows = self.db.query(
                _INSERT_UNIQUE,
                (
                    job.queue,
                    job.task,
                    job.args,
                    job.priority,
                    job.due_ms,
                    job.enqueued_ms,
                    job.unique_key,
                    job.unique_until_ms,
                ),
            )
            if rows:
                return Enqueued(int(rows[0][0]))
            rows = self.db.query("SELECT id FROM task_jobs WHERE unique_key = ?", (job.unique_key,))
        return Enqueued(int(rows[0][0]), created=False)

    # -- the worker's side -----------------------------------------------------------------
    def claim(
        self,
        *,
        worker: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        queues: Collection[str] = (),
    ) -> list[Claimed]:
        rows = claim_due(
            self.db,
            self._claim_table(queues),
            worker=worker,
            now_ms=now_ms,
            lease_ms=lease_ms,
            limit=limit,
            columns=("id", *_CLAIM_COLS),
        )
        return [
            Claimed(int(i), q, t, a, int(att), int(f), int(d), cp, int(e))
            for i, q, t, a, att, f, d, cp, e in rows
        ]

    def renew(
        self,
        ids: Collection[int],
        *,
        worker: str,
        now_ms: int,
        lease_ms: int,
        checkpoints: Mapping[int, str] | None = None,
    ) -> set[int]:
        table = _HELD
        kept: set[int] = set()
        with self.db.transaction():
            for i in ids:
                if renew_claim(self.db, table, i, worker=worker, now_ms=now_ms, lease_ms=lease_ms):
                    kept.add(i)
            for i, state in (checkpoints or {}).items():
                if i in kept:
                    self.db.execute(
                        f"UPDATE task_jobs SET checkpoint = ? WHERE {_MINE}", (state, i, worker)
                    )
        return kept

    def finish(self, outcomes: Sequence[Outcome], *, worker: str, now_ms: int) -> None:
        if not outcomes:
            return
        done: dict[str, list[int]] = defaultdict(list)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        gates: dict[str, int] = defaultdict(int)
        retry: list[tuple[Any, ...]] = []
        dead: list[tuple[Any, ...]] = []
        deferred: list[tuple[Any, ...]] = []
        held: list[tuple[Any, ...]] = []
        released: list[int] = []
        for o in outcomes:
            if isinstance(o, Done):
                done[o.queue].append(o.id)
            elif isinstance(o, Retry):
                retry.append((o.due_ms, o.error, o.id, worker))
                counts[(o.queue, "failed")] += 1
            elif isinstance(o, Dead):
                dead.append((o.error, now_ms, o.id, worker))
                counts[(o.queue, "failed")] += 1
                counts[(o.queue, "dead")] += 1
            elif isinstance(o, Deferred):
                deferred.append((o.due_ms, now_ms, o.gate, o.reason, o.checkpoint, o.id, worker))
                counts[(o.queue, "deferred")] += 1
                gates[o.gate] += 1
            elif isinstance(o, Held):
                held.append((o.due_ms, o.error, o.id, worker))
            elif isinstance(o, Released):
                released.append(o.id)
        db = self.db
        with db.transaction():
            for queue, ids in done.items():
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    cur = db.execute(
                        f"DELETE FROM task_jobs WHERE claimed_by = ? AND status = 'ready' "
                        f"AND id IN ({', '.join('?' * len(chunk))})",
                        (worker, *chunk),
                    )
                    counts[(queue, "done")] += max(0, cur.rowcount)
            if retry:
                db.executemany(
                    "UPDATE task_jobs SET due_ms = ?, failures = failures + 1, defers = 0, "
                    f"last_error = ?, claimed_by = NULL, gate = NULL, gate_reason = NULL WHERE {_MINE}",
                    retry,
                )
            if dead:
                db.executemany(
                    "UPDATE task_jobs SET status = 'dead', failures = failures + 1, last_error = ?, "
                    "finished_ms = ?, claimed_by = NULL, unique_key = NULL, gate = NULL, "
                    f"gate_reason = NULL WHERE {_MINE}",
                    dead,
                )
            if deferred:
                db.executemany(
                    "UPDATE task_jobs SET due_ms = ?, deferred_ms = ?, attempts = attempts - 1, "
                    "defers = defers + 1, gate = ?, gate_reason = ?, "
                    "checkpoint = COALESCE(?, checkpoint), "
                    f"claimed_by = NULL WHERE {_MINE}",
                    deferred,
                )
            if held:
                db.executemany(
                    "UPDATE task_jobs SET due_ms = ?, attempts = attempts - 1, last_error = ?, "
                    f"claimed_by = NULL WHERE {_MINE}",
                    held,
                )
            for i in released:
                if release_claim(db, _HELD, i, worker=worker, due_ms=now_ms):
                    db.execute("UPDATE task_jobs SET attempts = attempts - 1 WHERE id = ?", (i,))
            rows = [(q, what, n) for (q, what), n in counts.items() if n]
            if rows:
                db.executemany(_COUNT, rows)
            if gates:
                db.executemany(_COUNT_GATE, list(gates.items()))

    # -- reading ---------------------------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        rows = self.db.query(f"SELECT {_COLS} FROM task_jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[Job]:
        sql = f"SELECT {_COLS} FROM task_jobs WHERE id > ?"
        params: list[Any] = [after_id]
        if queue is not None:
            sql += " AND queue = ?"
            params.append(queue)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        params.append(limit)
        return [_job(r) for r in self.db.query(sql + " ORDER BY id LIMIT ?", params)]

    def stats(self, now_ms: int) -> list[QueueStats]:
        db = self.db
        live = db.query(
            "SELECT queue, "
            "SUM(CASE WHEN due_ms <= ? THEN 1 ELSE 0 END), "
            "MIN(CASE WHEN due_ms <= ? THEN due_ms END), "
            "SUM(CASE WHEN due_ms > ? AND claimed_by IS NOT NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN due_ms > ? AND claimed_by IS NULL THEN 1 ELSE 0 END) "
            "FROM task_jobs WHERE status = 'ready' GROUP BY queue",
            (now_ms, now_ms, now_ms, now_ms),
        )
        dead = dict(
            db.query("SELECT queue, COUNT(*) FROM task_jobs WHERE status = 'dead' GROUP BY queue")
        )
        # per gate: every job it holds, and the reason (with its reading) of its latest
        # deferral -- one row per distinct reading here, folded to one per gate below
        latest: dict[tuple[str, str], tuple[int, str]] = {}
        held: dict[tuple[str, str], int] = defaultdict(int)
        for q, gate, why, n, at in db.query(
            "SELECT queue, gate, gate_reason, COUNT(*), MAX(COALESCE(deferred_ms, 0)) "
            "FROM task_jobs WHERE status = 'ready' AND gate IS NOT NULL AND claimed_by IS NULL "
            "GROUP BY queue, gate, gate_reason"
        ):
            key = (str(q), str(gate))
            held[key] += int(n)
            mark = (int(at), str(why or ""))
            if key not in latest or mark > latest[key]:
                latest[key] = mark
        holding: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for (q, gate), n in sorted(held.items()):
            holding[q].append((gate, latest[(q, gate)][1], n))
        outcomes: dict[str, dict[str, int]] = defaultdict(dict)
        for q, what, n in db.query("SELECT queue, outcome, n FROM task_outcomes"):
            outcomes[q][what] = int(n)
        pauses = {
            q: (bool(p), by, why)
            for q, p, by, why in db.query(
                "SELECT queue, paused, paused_by, paused_reason FROM task_queues"
            )
        }
        by_queue = {
            q: (int(r or 0), oldest, int(run or 0), int(sch or 0))
            for q, r, oldest, run, sch in live
        }
        out = []
        for q in sorted({*by_queue, *dead, *outcomes, *pauses}):
            ready, oldest, running, scheduled = by_queue.get(q, (0, None, 0, 0))
            paused, by, why = pauses.get(q, (False, "", ""))
            out.append(
                QueueStats(
                    q,
                    ready=ready,
                    scheduled=scheduled,
                    running=running,
                    dead=int(dead.get(q, 0)),
                    oldest_ready_ms=None if oldest is None else int(oldest),
                    paused=paused,
                    paused_by=by if paused else "",
                    paused_reason=why if paused else "",
                    outcomes={
                        k: outcomes[q].get(k, 0) for k in ("done", "failed", "dead", "deferred")
                    },
                    holding=tuple(holding.get(q, ())),
                )
            )
        return out

    def gate_closures(self) -> dict[str, int]:
        return {str(g): int(n) for g, n in self.db.query("SELECT gate, n FROM task_gate_closures")}

    # -- the operator's verbs --------------------------------------------------------------
    _RETRY = (
        "UPDATE task_jobs SET status = 'ready', due_ms = ?, failures = 0, defers = 0, "
        "attempts = 0, claimed_by = NULL, finished_ms = NULL WHERE status = 'dead'"
    )

    def _audit(
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
        self.db.execute(_AUDIT, (now_ms, by, action, queue, job_id, reason, n))

    def retry(self, job_id: int, *, now_ms: int, by: str, reason: str = "") -> bool:
        with self.db.transaction():
            rows = self.db.query(self._RETRY + " AND id = ? RETURNING queue", (now_ms, job_id))
            if not rows:
                return False
            self._audit(
                "retry", str(rows[0][0]), now_ms=now_ms, by=by, reason=reason, n=1, job_id=job_id
            )
            return True

    def retry_dead(self, queue: str, *, now_ms: int, by: str, reason: str = "") -> int:
        with self.db.transaction():
            n = int(self.db.execute(self._RETRY + " AND queue = ?", (now_ms, queue)).rowcount)
            self._audit("retry_dead", queue, now_ms=now_ms, by=by, reason=reason, n=n)
            return n

    def pause(self, queue: str, *, by: str, reason: str, now_ms: int) -> None:
        with self.db.transaction():
            was = self.db.query(
                "SELECT 1 FROM task_queues WHERE queue = ? AND paused = 1", (queue,)
            )
            self.db.execute(
                self.db.dialect.upsert(
                    "task_queues",
                    ["queue", "paused", "paused_by", "paused_reason", "paused_ms"],
                    ["queue"],
                ),
                (queue, 1, by, reason, now_ms),
            )
            self._audit("pause", queue, now_ms=now_ms, by=by, reason=reason, n=0 if was else 1)

    def resume(self, queue: str, *, now_ms: int, by: str, reason: str = "") -> bool:
        with self.db.transaction():
            cur = self.db.execute(
                "DELETE FROM task_queues WHERE queue = ? AND paused = 1", (queue,)
            )
            was = bool(cur.rowcount == 1)
            self._audit("resume", queue, now_ms=now_ms, by=by, reason=reason, n=int(was))
            return was

    def audit(
        self, *, queue: str | None = None, limit: int = 100, before_id: int = 0
    ) -> list[AuditEntry]:
        sql = f"SELECT {_AUDIT_COLS} FROM task_audit WHERE true"
        params: list[Any] = []
        if queue is not None:
            sql += " AND queue = ?"
            params.append(queue)
        if before_id > 0:
            sql += " AND id < ?"
            params.append(before_id)
        params.append(limit)
        return [
            AuditEntry(int(i), int(at), by, action, q, None if j is None else int(j), why, int(n))
            for i, at, by, action, q, j, why, n in self.db.query(
                sql + " ORDER BY id DESC LIMIT ?", params
            )
        ]

    def paused(self) -> set[str]:
        return {str(q) for (q,) in self.db.query("SELECT queue FROM task_queues WHERE paused = 1")}

    # -- periodic schedules ----------------------------------------------------------------
    def advance_schedule(
        self, name: str, *, expected_ms: int | None, next_ms: int, job: NewJob | None
    ) -> bool:
        with self.db.transaction():
            if expected_ms is None:
                rows = self.db.query(
                    "INSERT INTO task_schedules (name, next_ms) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING RETURNING name",
                    (name, next_ms),
                )
                moved = bool(rows)
            else:
                cur = self.db.execute(
                    "UPDATE task_schedules SET next_ms = ? WHERE name = ? AND next_ms = ?",
                    (next_ms, name, expected_ms),
                )
                moved = cur.rowcount == 1
            if moved and job is not None:
                self.enqueue(job)
        return moved

    def schedule(self, name: str) -> int | None:
        rows = self.db.query("SELECT next_ms FROM task_schedules WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def leader(self, name: str, ttl_s: float, holder: str) -> Lease:
        return Lease(self.db, name, ttl_s, holder=holder)

    def close(self) -> None:
        self.db.close()
