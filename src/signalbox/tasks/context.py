"""``ctx``: what a running job knows about itself, and its checkpoints.

A task that declares a ``ctx`` parameter gets a :class:`Context`. A long job calls
``ctx.checkpoint(state)`` between batches: the state (JSON, checked) is saved with the next
heartbeat, so a job whose worker dies resumes from it (``ctx.state``) instead of from the
start; and if one of the task's gates has closed since the job started, the checkpoint
stops the job right there -- it goes back on the queue, deferred, to resume from ``state``
when the gate opens. A checkpoint also stops a job whose lease was lost to another worker
or whose ``timeout`` has passed.

The stop is an exception derived from :class:`BaseException` (as ``KeyboardInterrupt``), so
a task's own ``except Exception:`` does not swallow it; ``finally`` blocks still run.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import msgspec

from signalbox.tasks.jobs import encode_state

if TYPE_CHECKING:
    from signalbox.gates import Decision
    from signalbox.tasks.registry import Task

__all__ = ["Context", "GateClosed", "JobInterrupted", "JobTimeout", "LeaseLost"]


class JobInterrupted(BaseException):
    """The worker stopped a job (see the module docstring)."""


class GateClosed(JobInterrupted):
    """A gate closed at a checkpoint: the job is deferred, to resume from ``state``."""

    def __init__(self, decision: Decision, state: str | None) -> None:
        self.decision, self.state = decision, state
        super().__init__(f"gate {decision.gate} closed: {decision.reason}")


class LeaseLost(JobInterrupted):
    """The job's lease ran out and another worker may run it now: this run must stop."""


class JobTimeout(JobInterrupted):
    """The run took longer than its task's ``timeout``."""


class Context:
    """A running job: its id, queue, attempt, and the state of its last checkpoint.

    Attributes:
        job_id: the job's id (``signalbox tasks show ID``).
        queue: its queue.
        attempt: which run this is (1 for the first; deferrals do not count).
        state: what the last ``checkpoint`` saved (None at the first run).
    """

    def __init__(
        self,
        job_id: int,
        queue: str,
        attempt: int,
        state: Any,
        task: Task[Any, Any],
        deadline: float | None = None,
    ) -> None:
        self.job_id, self.queue, self.attempt, self.state = job_id, queue, attempt, state
        self._task = task
        self._deadline = deadline  # time.monotonic() past which the run times out
        self._lock = threading.Lock()
        self._saved: str | None = None
        self._dirty = False
        self.lease_lost = False

    def checkpoint(self, state: Any) -> None:
        """Record ``state`` (JSON) as where to resume; stop here if a gate has closed, the
        lease was lost or the timeout passed (see the module docstring)."""
        text = encode_state(self._task.name, state)
        with self._lock:
            self._saved, self._dirty = text, True
        self.state = msgspec.json.decode(text)
        if self.lease_lost:
            raise LeaseLost(f"job {self.job_id}: lease lost to another worker")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise JobTimeout(f"job {self.job_id}: past its timeout of {self._task.timeout_s:g}s")
        for gate in self._task.gate_objects():
            d = gate.check()
            if not d.open:
                raise GateClosed(d, text)

    def take_checkpoint(self) -> str | None:
        """The state saved since the last call (the heartbeat stores it), else None."""
        with self._lock:
            if not self._dirty:
                return None
            self._dirty = False
            return self._saved
