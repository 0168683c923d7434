"""Jobs as records: what is enqueued, what a claim hands a worker, what a run came to.

Pure: no store, no clock. Arguments travel as JSON text, checked at enqueue by
:func:`encode_args` against what JSON carries *unchanged* -- ``None``, booleans, integers,
finite floats, strings, lists and string-keyed dicts -- so a ``datetime``, a ``set``, a tuple
(which would come back a list) or a NaN is refused where the mistake is made, with the path
of the bad value, instead of surprising the task later on another machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import msgspec

from signalbox.exceptions import JobArgumentError

__all__ = [
    "Claimed",
    "Dead",
    "Deferred",
    "Done",
    "Enqueued",
    "Held",
    "Job",
    "JobStatus",
    "NewJob",
    "Outcome",
    "QueueStats",
    "Released",
    "Retry",
    "decode_args",
    "decode_call",
    "encode_args",
    "encode_state",
    "unique_key",
]

JobStatus = Literal["ready", "dead"]
"""Stored status: ``ready`` (waiting, scheduled, or claimed by a worker until its lease ends)
or ``dead`` (out of retries, kept for inspection). A done job is deleted."""

MAX_DEPTH = 100  # deeper nesting is a bug, and would blow the recursion of a decoder


class NewJob(NamedTuple):
    """A job about to be stored (a NamedTuple: enqueue builds one per call)."""

    queue: str
    task: str
    args: str
    due_ms: int
    enqueued_ms: int
    priority: int = 0
    unique_key: str | None = None
    unique_until_ms: int | None = None


class Enqueued(NamedTuple):
    """What ``enqueue`` did: the job's id; ``created`` False when a unique job with the same
    task and arguments was already waiting (``id`` is that one's)."""

    id: int
    created: bool = True


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job as a claim hands it to a worker; ``attempts`` counts this run."""

    id: int
    queue: str
    task: str
    args: str
    attempts: int
    failures: int
    defers: int
    checkpoint: str | None
    enqueued_ms: int


@dataclass(frozen=True, slots=True)
class Job:
    """A stored job, for ``tasks show`` and the dashboard."""

    id: int
    queue: str
    task: str
    args: str
    status: JobStatus
    priority: int
    due_ms: int
    enqueued_ms: int
    attempts: int
    failures: int
    defers: int
    claimed_by: str | None
    checkpoint: str | None
    last_error: str
    gate: str | None
    gate_reason: str | None
    finished_ms: int | None

    def state(self, now_ms: int) -> str:
        """``dead``, ``running`` (claimed, lease unexpired), ``ready`` (due now) or
        ``scheduled`` (delayed, backing off after a failure, or deferred by a gate)."""
        if self.status == "dead":
            return "dead"
        if self.due_ms <= now_ms:
            return "ready"
        return "running" if self.claimed_by is not None else "scheduled"

    def to_dict(self, now_ms: int) -> dict[str, Any]:
        try:
            args: Any = msgspec.json.decode(self.args)
        except msgspec.DecodeError:
            args = self.args  # a corrupt row is shown as it is
        return {
            "id": self.id,
            "queue": self.queue,
            "task": self.task,
            "args": args,
            "state": self.state(now_ms),
            "priority": self.priority,
            "due_ms": self.due_ms,
            "enqueued_ms": self.enqueued_ms,
            "attempts": self.attempts,
            "failures": self.failures,
            "defers": self.defers,
            "claimed_by": self.claimed_by,
            "checkpoint": self.checkpoint,
            "last_error": self.last_error,
            "gate": self.gate,
            "gate_reason": self.gate_reason,
            "finished_ms": self.finished_ms,
        }


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue now: what waits, what runs, what is dead, and the counters of outcomes
    since the store was created (done, failed, dead, deferred)."""

    queue: str
    ready: int = 0
    scheduled: int = 0
    running: int = 0
    dead: int = 0
    oldest_ready_ms: int | None = None
    paused: bool = False
    paused_by: str = ""
    paused_reason: str = ""
    outcomes: Mapping[str, int] | None = None
    holding: tuple[tuple[str, str, int], ...] = ()
    """``(gate, reason, jobs)``: gates whose deferrals hold jobs of this queue back now."""

    def oldest_age_s(self, now_ms: int) -> float:
        """How long the oldest job that could run now has waited (0 when none waits)."""
        return 0.0 if self.oldest_ready_ms is None else max(0, now_ms - self.oldest_ready_ms) / 1000

    def to_dict(self, now_ms: int) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "depth": self.ready,
            "oldest_age_seconds": self.oldest_age_s(now_ms),
            "running": self.running,
            "scheduled": self.scheduled,
            "dead": self.dead,
            "paused": self.paused,
            "paused_by": self.paused_by,
            "paused_reason": self.paused_reason,
            "counts": dict(self.outcomes or {}),
            "holding": [{"gate": g, "reason": r, "jobs": n} for g, r, n in self.holding],
        }


# -- what a run came to (applied by QueueStore.finish, many in one transaction) -------------
@dataclass(frozen=True, slots=True)
class Done:
    id: int
    queue: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Failed; runs again at ``due_ms`` (a failure counted)."""

    id: int
    queue: str
    due_ms: int
    error: str


@dataclass(frozen=True, slots=True)
class Dead:
    """Failed for good (out of retries, or arguments no task could read): kept."""

    id: int
    queue: str
    error: str


@dataclass(frozen=True, slots=True)
class Deferred:
    """A gate was closed: back at ``due_ms``, no retry used; ``checkpoint``: resume there."""

    id: int
    queue: str
    due_ms: int
    gate: str
    reason: str
    checkpoint: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """Not runnable here (its task is unknown to this worker): back at ``due_ms``, no retry
    used, ``error`` recorded."""

    id: int
    queue: str
    due_ms: int
    error: str


@dataclass(frozen=True, slots=True)
class Released:
    """Claimed but not started (the worker is stopping): due again now, no attempt used."""

    id: int
    queue: str


Outcome = Done | Retry | Dead | Deferred | Held | Released


# -- arguments ------------------------------------------------------------------------------
def _check(task: str, value: Any, where: str, depth: int) -> None:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return
    if t is float:
        if not math.isfinite(value):
            raise JobArgumentError(
                task, where, f"{value!r} has no JSON form (send null or a string)"
            )
        return
    if depth > MAX_DEPTH:
        raise JobArgumentError(task, where, f"nested deeper than {MAX_DEPTH} levels")
    if t is list:
        for i, item in enumerate(value):
            _check(task, item, f"{where}[{i}]", depth + 1)
        return
    if t is dict:
        for k, item in value.items():
            if type(k) is not str:
                raise JobArgumentError(
                    task, where, f"dict key {k!r} is a {type(k).__name__}; JSON keys are strings"
                )
            _check(task, item, f"{where}[{k!r}]", depth + 1)
        return
    hints: dict[type, str] = {
        tuple: "a tuple would arrive as a list: pass a list",
        set: "pass a sorted list",
        frozenset: "pass a sorted list",
        bytes: "pass text (e.g. base64)",
    }
    hint = hints.get(
        t, "pass its JSON form (str, number, bool, None, list, dict), e.g. an id or ISO text"
    )
    raise JobArgumentError(task, where, f"a {t.__name__} is not JSON; {hint}")


def encode_args(
    task: str, args: Sequence[Any], kwargs: Mapping[str, Any], meta: Mapping[str, str] | None = None
) -> str:
    """The JSON text of a call, or :class:`JobArgumentError` naming the bad value's path.

    ``meta`` (e.g. the ``request_id`` of the request that enqueued it) travels as a third
    element, ``[args, kwargs, meta]``; without it the text is ``[args]`` or ``[args, kwargs]``.
    """
    for i, a in enumerate(args):
        _check(task, a, f"args[{i}]", 0)
    for k, v in kwargs.items():
        _check(task, v, k, 0)
    if meta:
        return msgspec.json.encode((list(args), kwargs, dict(meta))).decode()
    return msgspec.json.encode((list(args), kwargs) if kwargs else (list(args),)).decode()


def decode_args(text: str) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` of a stored call; ValueError saying what is wrong with a corrupt one."""
    args, kwargs, _ = decode_call(text)
    return args, kwargs


def decode_call(text: str) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """``(args, kwargs, meta)`` of a stored call (``meta`` empty when it has none)."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as e:
        raise ValueError(f"the stored arguments are not valid JSON ({e}): {text[:200]!r}") from None
    if (
        type(value) is list
        and 1 <= len(value) <= 3
        and type(value[0]) is list
        and all(type(v) is dict for v in value[1:])
    ):
        return (
            value[0],
            value[1] if len(value) >= 2 else {},
            value[2] if len(value) == 3 else {},
        )
    raise ValueError(
        "the stored arguments are not [args] or [args, kwargs] (or [args, kwargs, meta]): "
        f"{text[:200]!r}"
    )


def encode_state(task: str, state: Any) -> str:
    """A checkpoint's state as JSON text, checked like arguments."""
    _check(task, state, "checkpoint state", 0)
    return msgspec.json.encode(state).decode()


def unique_key(task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The identity of a call for ``unique_for``: task and arguments, dict keys sorted."""
    canonical = msgspec.json.encode([task, list(args), kwargs], order="sorted")
    return hashlib.sha256(canonical).hexdigest()[:32]
