"""Offline tasks with load feedback: jobs that back off while the database is hurting.

``@signalbox.task(queue="photos", gates=[...], retries=5)`` makes a function a task;
``fn.enqueue(*args)`` queues a run (JSON arguments), ``fn.enqueue_in("10m", ...)`` and
``fn.enqueue_at(when, ...)`` later ones; ``@signalbox.periodic("*/5 * * * *")`` runs one on
a schedule. ``signalbox worker`` runs them: at least once (leases and heartbeats), retried
with backoff, deferred -- never failed -- while a gate (:mod:`signalbox.gates`) is closed.

The modules, one concept each: :mod:`~signalbox.tasks.registry` (decorators, the tasks of
this process, where enqueues go), :mod:`~signalbox.tasks.jobs` (records, JSON arguments),
:mod:`~signalbox.tasks.store` (the storage protocol) with
:mod:`~signalbox.tasks.sqlstore` and :mod:`~signalbox.tasks.memstore`,
:mod:`~signalbox.tasks.worker`, :mod:`~signalbox.tasks.context` (``ctx.checkpoint``),
:mod:`~signalbox.tasks.schedule` (periodic jobs), :mod:`~signalbox.tasks.metrics`,
:mod:`~signalbox.tasks.operate` (what the CLI and the API do to queues),
:mod:`~signalbox.tasks.settings` (``[tasks]``).

Imported lazily: loading ``signalbox.toml`` (which reads ``[tasks]``) imports no more than
the settings.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Context",
    "Enqueued",
    "Job",
    "MemoryQueueStore",
    "QueueStats",
    "QueueStore",
    "SQLQueueStore",
    "Task",
    "Worker",
    "configure",
    "open_queue_store",
    "periodic",
    "task",
]

_WHERE = {
    "Context": "signalbox.tasks.context",
    "Enqueued": "signalbox.tasks.jobs",
    "Job": "signalbox.tasks.jobs",
    "QueueStats": "signalbox.tasks.jobs",
    "MemoryQueueStore": "signalbox.tasks.memstore",
    "QueueStore": "signalbox.tasks.store",
    "SQLQueueStore": "signalbox.tasks.sqlstore",
    "Task": "signalbox.tasks.registry",
    "configure": "signalbox.tasks.registry",
    "open_queue_store": "signalbox.tasks.registry",
    "periodic": "signalbox.tasks.registry",
    "task": "signalbox.tasks.registry",
    "Worker": "signalbox.tasks.worker",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'signalbox.tasks' has no attribute {name!r}")
