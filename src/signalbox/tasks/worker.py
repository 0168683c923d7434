"""The worker: claim jobs, check their gates, run them, record what happened.

One :class:`Worker` runs ``concurrency`` slots (threads), each a loop of *claim a batch ->
run it -> finish the batch in one transaction*, plus one housekeeping thread that renews the
leases of every job the worker holds (heartbeats: a long job keeps its lease; a dead worker's
jobs are due again one lease later), times out runs past their task's ``timeout``, leads the
periodic scheduler when it holds the scheduler lease, and writes the queue metrics.

Batches adapt to the work: a slot claims as many jobs as it ran in about
``batch_target_s`` (one for slow jobs, hundreds for quick ones), and a batch that turns out
slow gives its unstarted jobs back, so a slot never hoards jobs another worker could run.

What a run comes to (:mod:`signalbox.tasks.jobs`):

* done -- deleted, counted;
* raised -- logged with its traceback, job id, queue and attempt; the traceback is stored on
  the job; retried after exponential backoff with jitter (``[tasks] retry_delay`` doubling
  up to ``retry_max_delay``), dead after ``retries`` failures (kept: ``tasks retry ID``);
* a gate closed (before the run, or at a ``ctx.checkpoint``) -- deferred: due again after
  ``defer_delay`` doubling while the gate stays closed (up to ``defer_max_delay``; longer if
  the gate suggests it), gate and reason recorded; no retry used, the failure backoff
  untouched, counted per gate;
* its task unknown here (a newer deploy's job, or a module that failed to import) -- held:
  due again after ``hold_delay`` with the reason stored on the job and logged; no retry used,
  it runs as soon as a worker that knows the task takes it;
* its stored arguments unreadable (a corrupt row) -- dead at once with the reason (no code
  change can make it run), kept for inspection.

``stop()`` (SIGTERM) lets each running job finish and gives every claimed job not yet
started back at once; a job still running when the process is killed runs again after its
lease (at-least-once).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import random
import socket
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from signalbox.clock import Clock, SystemClock
from signalbox.durations import format_duration
from signalbox.instrument.context import job_scope
from signalbox.storage.backoff import backoff_s
from signalbox.storage.connections import release_thread
from signalbox.tasks.context import Context, GateClosed, JobTimeout, LeaseLost
from signalbox.tasks.jobs import (
    Claimed,
    Dead,
    Deferred,
    Done,
    Held,
    Outcome,
    Released,
    Retry,
    decode_call,
)
from signalbox.tasks.metrics import QUEUE_METAS, queue_samples
from signalbox.tasks.registry import REGISTRY, Registry, Task
from signalbox.tasks.schedule import Scheduler
from signalbox.tasks.settings import TasksSettings

if TYPE_CHECKING:
    from signalbox.gates import Decision
    from signalbox.gates.shared import SharedDecisions
    from signalbox.metrics.store import MetricWriter
    from signalbox.tasks.store import Leader, QueueStore

__all__ = ["SCHEDULER_LEASE", "Worker"]

log = logging.getLogger("signalbox.tasks.worker")

SCHEDULER_LEASE = "tasks:scheduler"
MAX_ERROR_CHARS = 16_000
_LEADER_TTL_S = 15.0
_IMPORT_RETRY_S = 60.0


@dataclass(eq=False)
class _Running:
    """A job being run, for the heartbeat (checkpoints, lease lost) and the timeout."""

    ctx: Context | None
    thread_id: int
    deadline: float | None  # time.monotonic()
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False
    timed_out: bool = False


class Worker:
    """Runs jobs from ``store`` (see the module docstring); ``serve`` embeds N of these.

    Args:
        registry: the tasks it knows (default: this process's, filled by ``@task``).
        settings: ``[tasks]`` (delays, lease, retries); ``queues`` and ``concurrency``
            override its ``queues`` (empty: every queue) and ``concurrency``.
        metrics: where the scheduler's holder writes ``signalbox_queue_*`` every
            ``metrics_interval`` (None: nowhere).
        clock: wall time for due times and leases (injected in tests).
        share_gates: probe the tasks' gates once per interval across every process using
            ``store`` (SQLite or PostgreSQL; :mod:`signalbox.gates.shared`), not once per
            process; False: each process probes its own (``[gates] shared = false``).
    """

    def __init__(
        self,
        store: QueueStore,
        *,
        registry: Registry | None = None,
        settings: TasksSettings | None = None,
        queues: Collection[str] | None = None,
        concurrency: int | None = None,
        name: str | None = None,
        metrics: MetricWriter | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        batch_max: int = 256,
        batch_target_s: float = 0.05,
        share_gates: bool = True,
    ) -> None:
        self.store = store
        self.registry = registry or REGISTRY
        self.settings = settings or TasksSettings()
        self.queues = tuple(sorted(queues if queues is not None else self.settings.queues))
        self.concurrency = concurrency or self.settings.concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.batch_max, self.batch_target_s = batch_max, batch_target_s
        self.lease_ms = round(self.settings.lease_s * 1000)
        self.counts: Counter[str] = Counter()
        """Outcomes of this worker's runs (done, failed, dead, deferred, held, released)."""
        self.errors = 0
        """Store errors met (a claim or finish that failed; the jobs run again later)."""
        self._lock = threading.Lock()
        self._held: dict[int, tuple[str, _Running | None]] = {}  # id -> (claim token, run)
        # task name -> monotonic time until which its gates' "open" is taken as read: a batch
        # of jobs of one task asks them once, not once a job (their own cache is seconds long)
        self._open_until: dict[str, float] = {}
        self._batches = itertools.count(1)
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._per_job_s: float | None = None
        self._leader: Leader | None = None
        self._leading = False
        self._scheduler = Scheduler(store, self.registry)
        self._warned: dict[str, float] = {}
        self._gate_sharing: SharedDecisions | None = None
        if share_gates:
            from signalbox.gates.shared import shared_decisions

            self._gate_sharing = shared_decisions(store, holder=self.name)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, *, burst: bool = False) -> None:
        """Start the slots and the housekeeping thread; return at once (see :meth:`join`).
        ``burst``: each slot stops once no job is ready now (later ones do not count)."""
        if burst:
            self._lead(self._now_ms())  # periodic ticks due now are part of the burst
        for i in range(self.concurrency):
            t = threading.Thread(
                target=self._slot, args=(burst,), name=f"signalbox-worker-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        hk = threading.Thread(
            target=self._housekeeping, args=(burst,), name="signalbox-worker-hk", daemon=True
        )
        hk.start()
        self._housekeeper = hk

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the slots to end (after :meth:`stop`, or a burst's end); True if they did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            while t.is_alive():  # short joins: the main thread stays free for signals
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                t.join(0.2 if left is None else min(0.2, left))
        self._done.set()
        self._housekeeper.join()
        return True

    def run(self, *, burst: bool = False) -> Counter[str]:
        """:meth:`start`, then :meth:`join` until stopped (or the burst is over); the counts."""
        self.start(burst=burst)
        if not burst:  # a burst's main thread may hold the scheduler lease's session
            # from now on this thread only waits: its PostgreSQL connections go back
            release_thread()
        try:
            self.join()
        finally:
            self.stop()
            self.join()
        return self.counts

    def stop(self) -> None:
        """Stop gracefully: running jobs finish, claimed jobs not started go back at once.
        Safe from a signal handler and from any thread."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    # -- the slots ------------------------------------------------------------------------
    def _slot(self, burst: bool) -> None:
        pause = self.settings.poll_interval_s
        while not self._stopping.is_set():
            try:
                n = self.work_batch()
            except Exception:
                self.errors += 1
                log.exception(
                    "worker %s: could not claim jobs (the store is unavailable?); trying "
                    "again in %s",
                    self.name,
                    format_duration(pause),
                )
                if burst:
                    return
                self._stopping.wait(pause)
                pause = min(pause * 2, 30.0)
                continue
            pause = self.settings.poll_interval_s
            if n == 0:
                if burst:
                    return
                self._stopping.wait(self.settings.poll_interval_s)

    def _limit(self) -> int:
        per = self._per_job_s
        if per is None:
            return 1
        return max(1, min(self.batch_max, int(self.batch_target_s / max(per, 1e-6))))

    def work_batch(self) -> int:
        """Claim one batch, run it, record it (on the calling thread); how many were claimed.

        The batch is claimed under a token of its own (the worker's name and a number), so
        its heartbeats and its finish touch only the jobs this very claim took."""
        token = f"{self.name}/{next(self._batches)}"
        claimed = self.store.claim(
            worker=token,
            now_ms=self._now_ms(),
            lease_ms=self.lease_ms,
            limit=self._limit(),
            queues=self.queues,
        )
        if not claimed:
            return 0
        with self._lock:
            for c in claimed:
                self._held[c.id] = (token, None)
        outcomes: list[Outcome] = []
        started = time.perf_counter()
        give_back_after = max(1.0, 20 * self.batch_target_s)
        ran = 0
        try:
            for k, c in enumerate(claimed):
                if self._stopping.is_set() or (
                    k and time.perf_counter() - started > give_back_after
                ):
                    outcomes += [Released(x.id, x.queue) for x in claimed[k:]]
                    break
                o = self._run(c, token)
                ran += 1
                if o is not None:
                    outcomes.append(o)
        finally:
            if ran:
                per = (time.perf_counter() - started) / ran
                old = self._per_job_s
                self._per_job_s = per if old is None else 0.5 * old + 0.5 * per
            try:
                self.store.finish(outcomes, worker=token, now_ms=self._now_ms())
            except Exception:
                self.errors += 1
                log.exception(
                    "worker %s: could not record what %d jobs came to; they run again after "
                    "their lease (at-least-once)",
                    self.name,
                    len(outcomes),
                )
            else:
                for o in outcomes:
                    self.counts[_KIND[type(o)]] += 1
            finally:
                with self._lock:
                    for c in claimed:
                        self._held.pop(c.id, None)
        return len(claimed)

    # -- one job --------------------------------------------------------------------------
    def _run(self, c: Claimed, token: str) -> Outcome | None:
        """Run one job; while it runs (and its outcome is logged) the id of the request that
        enqueued it is current, so log records show it (:mod:`signalbox.instrument.logging`)."""
        rid = _request_id_of(c.args)
        if rid is None:
            return self._run_job(c, token)
        with job_scope(rid):
            return self._run_job(c, token)

    def _run_job(self, c: Claimed, token: str) -> Outcome | None:
        task = self.registry.get(c.task)
        if task is None:
            return self._hold(c)
        try:
            args, kwargs, _meta = decode_call(c.args)
            state = None if c.checkpoint is None else msgspec.json.decode(c.checkpoint)
        except (ValueError, msgspec.DecodeError) as e:
            why = f"corrupt job row: {e}"
            log.error(
                "job %d (task %s, queue %s): %s; dead at once (no deploy can run it), kept for "
                "inspection: signalbox tasks show %d",
                c.id,
                c.task,
                c.queue,
                why,
                c.id,
            )
            return Dead(c.id, c.queue, why)
        if task.gates and self._open_until.get(c.task, 0.0) <= time.monotonic():
            closed = _closed(task, self._gate_sharing)
            if closed is not None:
                return self._defer(c, closed, None)
            self._open_until[c.task] = time.monotonic() + _OPEN_REUSE_S
        deadline = None if task.timeout_s is None else time.monotonic() + task.timeout_s
        ctx = None
        if task.takes_ctx:
            ctx = Context(c.id, c.queue, c.attempts, state, task, deadline)
            kwargs["ctx"] = ctx
        running = None
        if ctx is not None or deadline is not None:
            running = _Running(ctx, threading.get_ident(), deadline)
            with self._lock:
                self._held[c.id] = (token, running)
        try:
            try:
                task.fn(*args, **kwargs)
            finally:
                if running is not None:
                    with running.lock:
                        running.finished = True
        except GateClosed as g:
            return self._defer(c, g.decision, g.state)
        except LeaseLost:
            log.warning(
                "job %d (task %s, queue %s): stopped at a checkpoint, its lease was lost to "
                "another worker (this worker stalled longer than the lease?)",
                c.id,
                task.name,
                c.queue,
            )
            return None
        except JobTimeout:
            why = (
                f"JobTimeout: ran longer than its timeout of {format_duration(task.timeout_s or 0)}"
            )
            return self._failure(c, task, why)
        except Exception:
            return self._failure(c, task, None)
        return Done(c.id, c.queue)

    def _failure(self, c: Claimed, task: Task[Any, Any], why: str | None) -> Outcome:
        error = why or traceback.format_exc()
        if len(error) > MAX_ERROR_CHARS:
            error = "...\n" + error[-MAX_ERROR_CHARS:]
        failures = c.failures + 1
        retries = self.settings.retries if task.retries is None else task.retries
        if failures > retries:
            what = f"dead after {failures} failures (retries={retries}): kept for `signalbox tasks retry {c.id}`"
            outcome: Outcome = Dead(c.id, c.queue, error)
        else:
            delay = backoff_s(
                failures,
                self.rng,
                base_s=self.settings.retry_delay_s,
                cap_s=self.settings.retry_max_delay_s,
            )
            what = f"retry {failures} of {retries} in {delay:.1f}s"
            outcome = Retry(c.id, c.queue, self._now_ms() + round(delay * 1000), error)
        log.error(
            "task %s failed: job %d, queue %s, attempt %d; %s%s",
            task.name,
            c.id,
            c.queue,
            c.attempts,
            what,
            f": {why}" if why else "",
            exc_info=why is None,
        )
        return outcome

    def _defer(self, c: Claimed, d: Decision, checkpoint: str | None) -> Deferred:
        s = self.settings
        delay = max(s.defer_delay_s * 2.0 ** min(c.defers, 40), d.delay_s)
        delay = min(s.defer_max_delay_s, delay * (1 + 0.1 * self.rng.random()))
        log.info(
            "job %d (task %s, queue %s) deferred %s: gate %s closed: %s",
            c.id,
            c.task,
            c.queue,
            format_duration(round(delay)),
            d.gate,
            d.reason,
        )
        return Deferred(
            c.id, c.queue, self._now_ms() + round(delay * 1000), d.gate, d.reason, checkpoint
        )

    def _hold(self, c: Claimed) -> Held:
        failed = self.registry.failed_imports
        why = (
            f"tasks modules that failed to import: {', '.join(sorted(failed))}"
            if failed
            else "not in the tasks of [tasks] modules: a job from a newer deploy?"
        )
        hold = self.settings.hold_delay_s
        error = (
            f"task {c.task!r} is not known to worker {self.name} ({why}); held, looked at "
            f"again every {format_duration(hold)} without using a retry, until a worker that "
            "knows the task runs it"
        )
        now = time.monotonic()
        if now - self._warned.get(c.task, -1e9) > 60:  # once a minute per task name
            self._warned[c.task] = now
            log.warning("job %d (queue %s): %s", c.id, c.queue, error)
        return Held(c.id, c.queue, self._now_ms() + round(hold * 1000), error)

    # -- housekeeping ---------------------------------------------------------------------
    def _housekeeping(self, burst: bool) -> None:
        tick = min(1.0, self.settings.lease_s / 6)
        next_renew = next_metrics = 0.0
        next_import = time.monotonic() + _IMPORT_RETRY_S
        while not self._done.is_set():
            now = time.monotonic()
            try:
                if now >= next_renew:
                    next_renew = now + self.settings.lease_s / 3
                    self._renew()
                self._time_out()
                if not burst:
                    self._lead(self._now_ms())
                    if self._leading and self.metrics is not None and now >= next_metrics:
                        next_metrics = now + self.settings.metrics_interval_s
                        self.write_metrics()
                if self.registry.failed_imports and now >= next_import:
                    next_import = now + _IMPORT_RETRY_S
                    self.registry.import_modules(sorted(self.registry.failed_imports))
            except Exception:
                log.exception("worker %s: housekeeping failed; trying again", self.name)
            self._done.wait(tick)
        if self._leader is not None and self._leading:
            with contextlib.suppress(Exception):
                self._leader.release()
        if burst and self.metrics is not None:
            with contextlib.suppress(Exception):
                self.write_metrics()

    def _renew(self) -> None:
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        by_token: dict[str, list[int]] = {}
        checkpoints = {}
        for i, (token, r) in held.items():
            by_token.setdefault(token, []).append(i)
            if r is not None and r.ctx is not None:
                cp = r.ctx.take_checkpoint()
                if cp is not None:
                    checkpoints[i] = cp
        kept: set[int] = set()
        now_ms = self._now_ms()
        for token, ids in by_token.items():
            kept |= self.store.renew(
                ids,
                worker=token,
                now_ms=now_ms,
                lease_ms=self.lease_ms,
                checkpoints={i: checkpoints[i] for i in ids if i in checkpoints},
            )
        with self._lock:
            lost = [i for i in held if i not in kept and i in self._held]
        for i in lost:
            r = held[i][1]
            if r is not None and r.ctx is not None:
                r.ctx.lease_lost = True
            log.warning(
                "worker %s: lost the lease of job %d (another worker may run it now)", self.name, i
            )

    def _time_out(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [
                r
                for _, r in self._held.values()
                if r is not None and r.deadline is not None and not r.timed_out and now > r.deadline
            ]
        for r in late:
            with r.lock:
                if r.finished:
                    continue
                r.timed_out = True
                # raised in the job's thread at its next Python instruction (a call blocked
                # in C, a socket read say, sees it only when it returns)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(r.thread_id), ctypes.py_object(JobTimeout)
                )

    def _lead(self, now_ms: int) -> None:
        """Hold (or renew) the scheduler lease; while held, enqueue the periodic ticks due."""
        if self._leader is None:
            self._leader = self.store.leader(SCHEDULER_LEASE, _LEADER_TTL_S, self.name)
        try:
            leading = self._leader.acquire(now_ms)
        except Exception:
            log.exception("worker %s: could not take or renew the scheduler lease", self.name)
            leading = False
        if leading != self._leading:
            log.info(
                "worker %s %s the periodic scheduler",
                self.name,
                "leads" if leading else "no longer leads",
            )
        self._leading = leading
        if leading:
            for name in self._scheduler.tick(now_ms):
                log.info("periodic task %s enqueued", name)

    def write_metrics(self) -> None:
        """Write ``signalbox_queue_*``, ``signalbox_jobs_total`` and
        ``signalbox_gate_closed_total`` into the metric store, read from the queue store."""
        if self.metrics is None:
            return
        now_ms = self._now_ms()
        samples = queue_samples(
            self.store.stats(now_ms),
            self.store.gate_closures(),
            now_ms,
            queues={*self.registry.queues(), *self.queues},
        )
        self.metrics.write_metadata(QUEUE_METAS)
        self.metrics.write(samples, now_ms)


_KIND: dict[type, str] = {
    Done: "done",
    Retry: "failed",
    Dead: "dead",
    Deferred: "deferred",
    Held: "held",
    Released: "released",
}


_OPEN_REUSE_S = 0.05
"""How long one worker takes its task's gates as open after they said so: a few jobs' time
(a gate's own decision is cached for seconds anyway), so a drain of thousands asks them a
few times a second instead of once a job."""


def _request_id_of(args: str) -> str | None:
    """The ``request_id`` a job's stored call carries (``[args, kwargs, meta]``), else None."""
    if '"request_id"' not in args:
        return None  # most jobs: no second decode
    try:
        rid = decode_call(args)[2].get("request_id")
    except ValueError:
        return None  # a corrupt row: _run_job says so
    return rid if isinstance(rid, str) and rid else None


def _closed(task: Task[Any, Any], sharing: SharedDecisions | None) -> Decision | None:
    """The first closed gate's decision (gates never raise; one that does is closed)."""
    for gate in task.gate_objects():
        try:
            if sharing is not None and gate.sharing is not sharing:
                sharing.attach(gate)
            d = gate.check()
        except Exception as e:
            from signalbox.gates import Decision

            return Decision(False, getattr(gate, "name", repr(gate)), f"check raised: {e!r}")
        if not d.open:
            return d
    return None
