"""``@task`` and ``@periodic``: functions become tasks, known by name to this process.

A task is found by its name (``module.qualname`` unless given) in the :class:`Registry` the
decorators fill; a worker imports ``[tasks] modules`` to fill it. Global state lives here
and only here -- the registry, and the store ``enqueue`` writes to (configured explicitly
with :func:`configure`, else opened from ``signalbox.toml`` on first use) -- with
:func:`reset` for tests.

A module that fails to import is logged with its traceback and remembered: the worker keeps
running the tasks it has, holds the jobs of the missing ones (see
:mod:`signalbox.tasks.worker`) and tries the import again now and then, so installing the
missing dependency heals it without a restart.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from signalbox.durations import parse_duration
from signalbox.instrument.context import request_id
from signalbox.tasks.jobs import Enqueued, NewJob, encode_args, unique_key
from signalbox.tasks.schedule import Schedule, schedule_of
from signalbox.tasks.settings import QUEUE_NAME

if TYPE_CHECKING:
    from signalbox.clock import Clock
    from signalbox.config import Settings
    from signalbox.gates import Gate
    from signalbox.tasks.store import QueueStore

__all__ = [
    "REGISTRY",
    "Registry",
    "Task",
    "configure",
    "default_store",
    "open_queue_store",
    "periodic",
    "reset",
    "task",
]

log = logging.getLogger("signalbox.tasks")

P = ParamSpec("P")
R = TypeVar("R")

Delay = float | int | timedelta | str
"""Seconds, a timedelta, or a duration like ``"10m"``."""


def _seconds(value: Delay, what: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: expected seconds, a timedelta or a duration like '10m'")
    return float(value)


class Task(Generic[P, R]):
    """A function that runs on a worker: call :meth:`enqueue` to queue a run of it; call the
    task itself to run it here and now (in tests, say).

    Attributes mirror the decorator's arguments; ``retries`` and ``timeout_s`` None mean the
    worker's ``[tasks]`` settings and no timeout.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        queue: str = "default",
        gates: Sequence[Any] = (),
        retries: int | None = None,
        timeout: Delay | None = None,
        priority: int = 0,
        unique_for: Delay | None = None,
        schedule: Schedule | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        if not QUEUE_NAME.match(queue):
            raise ValueError(
                f"task {self.name}: queue {queue!r}: letters, digits, _ . : - (up to 100)"
            )
        if retries is not None and retries < 0:
            raise ValueError(f"task {self.name}: retries must be 0 or more, not {retries}")
        self.queue = queue
        self.gates = tuple(gates)
        self.retries = retries
        self.timeout_s = (
            None if timeout is None else _seconds(timeout, f"task {self.name}: timeout")
        )
        self.priority = int(priority)
        self.unique_for_ms = (
            None if unique_for is None else round(_seconds(unique_for, "unique_for") * 1000)
        )
        self.schedule = schedule
        self.takes_ctx = "ctx" in inspect.signature(fn).parameters
        self._gate_objects: tuple[Gate, ...] | None = None
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        (registry or REGISTRY).add(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def gate_objects(self) -> tuple[Gate, ...]:
        """The gates as :class:`~signalbox.gates.Gate` objects (callables wrapped once)."""
        if self._gate_objects is None:
            if self.gates:
                from signalbox.gates import as_gate

                self._gate_objects = tuple(as_gate(g) for g in self.gates)
            else:
                self._gate_objects = ()
        return self._gate_objects

    # -- enqueueing ---------------------------------------------------------------------------
    def new_job(
        self,
        due_ms: int,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        now_ms: int | None = None,
    ) -> NewJob:
        """The row a call makes: arguments checked and encoded (:class:`JobArgumentError`)."""
        rid = request_id()  # the request enqueueing it, if any: its id follows the job
        text = encode_args(self.name, args, kwargs, {"request_id": rid} if rid else None)
        if now_ms is None:
            now_ms = _now_ms()
        if self.unique_for_ms is None:
            return NewJob(self.queue, self.name, text, due_ms, now_ms, self.priority)
        return NewJob(
            self.queue,
            self.name,
            text,
            due_ms,
            now_ms,
            self.priority,
            unique_key(self.name, args, kwargs),
            now_ms + self.unique_for_ms,
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Enqueued:
        """Queue a run now. Arguments must be JSON (checked here: :class:`JobArgumentError`).
        Once this returns, the job survives the kill of any process."""
        now = _now_ms()
        return _store().enqueue(self.new_job(now, args, kwargs, now))

    def enqueue_in(self, delay: Delay, *args: P.args, **kwargs: P.kwargs) -> Enqueued:
        """Queue a run after ``delay`` (seconds, a timedelta or ``"10m"``)."""
        due = _now_ms() + round(_seconds(delay, "enqueue_in") * 1000)
        return _store().enqueue(self.new_job(due, args, kwargs))

    def enqueue_at(self, when: datetime | float, *args: P.args, **kwargs: P.kwargs) -> Enqueued:
        """Queue a run at ``when`` (an aware datetime, or epoch seconds)."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError(
                    "enqueue_at: give an aware datetime (with tzinfo) or epoch seconds"
                )
            when = when.timestamp()
        return _store().enqueue(self.new_job(round(when * 1000), args, kwargs))


class Registry:
    """Tasks by name, and the modules that failed to import (module -> error text)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self.failed_imports: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, t: Task[Any, Any]) -> None:
        with self._lock:
            old = self._tasks.get(t.name)
            if old is not None and (old.fn.__module__, old.fn.__qualname__) != (
                t.fn.__module__,
                t.fn.__qualname__,
            ):
                raise ValueError(
                    f"two tasks named {t.name!r}: {old.fn.__module__}.{old.fn.__qualname__} and "
                    f"{t.fn.__module__}.{t.fn.__qualname__}; give one of them name="
                )
            self._tasks[t.name] = t  # a module imported again replaces its own tasks

    def get(self, name: str) -> Task[Any, Any] | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def queues(self) -> set[str]:
        return {t.queue for t in self._tasks.values()}

    def periodic(self) -> list[Task[Any, Any]]:
        return [t for _, t in sorted(self._tasks.items()) if t.schedule is not None]

    def import_modules(self, modules: Iterable[str]) -> dict[str, str]:
        """Import each module (its decorators register its tasks); the ones that failed,
        each logged with its traceback. Succeeding later clears a failure."""
        for m in modules:
            try:
                importlib.import_module(m)
            except BaseException as e:  # a module may even call sys.exit: still a bad module
                if isinstance(e, KeyboardInterrupt):
                    raise
                text = "".join(traceback.format_exception_only(type(e), e)).strip()
                if self.failed_imports.get(m) != text:
                    log.error(
                        "tasks module %s failed to import: %s; the worker keeps running the "
                        "tasks it has and holds the jobs of this module's tasks until it imports "
                        "(tried again every minute)",
                        m,
                        text,
                        exc_info=True,
                    )
                self.failed_imports[m] = text
            else:
                if self.failed_imports.pop(m, None) is not None:
                    log.warning("tasks module %s imports now; its jobs run again", m)
        return dict(self.failed_imports)


REGISTRY = Registry()
"""The tasks of this process (what ``@task`` fills by default)."""

_lock = threading.Lock()
_store_now: QueueStore | None = None
_clock: Clock | None = None


def _now_ms() -> int:
    return int((time.time() if _clock is None else _clock.now()) * 1000)


def open_queue_store(settings: Settings) -> QueueStore:
    """The queue ``settings`` name (:func:`~signalbox.tasks.settings.queue_store_url`),
    on SQLite in 4 KiB pages, ``synchronous = FULL`` when ``[tasks] durable``."""
    from signalbox.storage import open_database
    from signalbox.tasks.settings import queue_store_url
    from signalbox.tasks.sqlstore import SQLQueueStore

    url = queue_store_url(settings.tasks, settings.store_url)
    return SQLQueueStore(
        open_database(
            url, page_size=4096, synchronous="FULL" if settings.tasks.durable else "NORMAL"
        )
    )


def _store() -> QueueStore:
    s = _store_now
    return s if s is not None else default_store()


def default_store() -> QueueStore:
    """The store ``enqueue`` writes to: the configured one, else ``signalbox.toml``'s
    (found as every command finds it), opened once."""
    global _store_now
    with _lock:
        if _store_now is None:
            from signalbox.config import load_settings

            _store_now = open_queue_store(load_settings())
        return _store_now


def configure(store: QueueStore | None = None, *, clock: Clock | None = None) -> None:
    """Send this process's enqueues to ``store`` (None: ``signalbox.toml``'s, on first use);
    ``clock``: the time enqueues are stamped with (tests)."""
    global _store_now, _clock
    with _lock:
        _store_now, _clock = store, clock


def reset() -> None:
    """Forget the configured store and clock (tests); the registry keeps its tasks."""
    configure(None)


def task(
    fn: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    queue: str = "default",
    gates: Sequence[Any] = (),
    retries: int | None = None,
    timeout: Delay | None = None,
    priority: int = 0,
    unique_for: Delay | None = None,
) -> Any:
    """Make ``fn`` a task: ``@signalbox.task`` or ``@signalbox.task(queue="photos", ...)``.

    Args:
        queue: the queue its jobs wait in (workers choose queues with ``--queue``).
        gates: :mod:`signalbox.gates` gates or any callables returning a bool or a
            Decision; while one is closed the job is deferred, never failed.
        retries: failures allowed before the job is dead (default ``[tasks] retries``).
        timeout: a run longer than this fails (seconds, timedelta or ``"5m"``).
        priority: higher runs first among jobs that are due.
        unique_for: while a job with the same arguments enqueued less than this ago waits
            or runs, another enqueue of it returns that job instead of adding one.
    """

    def wrap(f: Callable[P, R]) -> Task[P, R]:
        return Task(
            f,
            name=name,
            queue=queue,
            gates=gates,
            retries=retries,
            timeout=timeout,
            priority=priority,
            unique_for=unique_for,
        )

    return wrap(fn) if fn is not None else wrap


def periodic(
    cron: str | None = None,
    *,
    every: str | float | None = None,
    name: str | None = None,
    queue: str = "default",
    gates: Sequence[Any] = (),
    retries: int | None = None,
    timeout: Delay | None = None,
    priority: int = 0,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A task that the scheduler enqueues on a schedule: ``@signalbox.periodic("0 3 * * *")``
    (cron, local time) or ``@signalbox.periodic(every="10m")``; exactly one enqueue per tick
    however many workers run. The function takes no arguments (or only ``ctx``)."""
    sched = schedule_of(cron, every)

    def wrap(f: Callable[P, R]) -> Task[P, R]:
        return Task(
            f,
            name=name,
            queue=queue,
            gates=gates,
            retries=retries,
            timeout=timeout,
            priority=priority,
            schedule=sched,
        )

    return wrap
