"""The tasks area's settings: ``[tasks]`` of ``signalbox.toml``.

Every duration is a knob a person turns when something hurts: ``lease`` is how long a job
whose worker died waits before another worker runs it again (heartbeats renew it for long
jobs, so it need not cover a job's run time); ``retry_delay`` doubles up to
``retry_max_delay`` between failed attempts; ``defer_delay`` doubles up to
``defer_max_delay`` while a gate stays closed (deferral and failure backoffs are apart, so a
busy database never uses up a job's retries); ``hold_delay`` is how often a job whose task
this worker does not know (a newer deploy's) is looked at again.

``durable``: SQLite commits each enqueue to its write-ahead log, which survives the kill of
any process; only a power loss can drop the last moments of commits (``synchronous =
NORMAL``). ``durable = true`` asks for ``synchronous = FULL`` on the queue's connections: an
fsync per commit, nothing lost on power loss either, at a cost in enqueue rate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from signalbox.section import Source, table

__all__ = ["QUEUE_NAME", "TABLES", "TasksSettings", "queue_store_url", "tasks_settings"]

TABLES = ("tasks",)

QUEUE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}\Z")
"""What a queue may be called: a label value and a word in SQL, with nothing to escape."""


class TasksTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    store: str = ""
    modules: list[str] = msgspec.field(default_factory=list)
    queues: list[str] = msgspec.field(default_factory=list)
    concurrency: int = 1
    lease: str = "30s"
    poll_interval: str = "1s"
    retries: int = 3
    retry_delay: str = "10s"
    retry_max_delay: str = "1h"
    defer_delay: str = "10s"
    defer_max_delay: str = "5m"
    hold_delay: str = "1m"
    metrics_interval: str = "15s"
    durable: bool = False


@dataclass(frozen=True)
class TasksSettings:
    """``[tasks]`` resolved: seconds, checked bounds. ``queues`` empty: every queue;
    ``store_url`` None: beside the main store (see :func:`queue_store_url`)."""

    store_url: str | None = None
    modules: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    concurrency: int = 1
    lease_s: float = 30.0
    poll_interval_s: float = 1.0
    retries: int = 3
    retry_delay_s: float = 10.0
    retry_max_delay_s: float = 3600.0
    defer_delay_s: float = 10.0
    defer_max_delay_s: float = 300.0
    hold_delay_s: float = 60.0
    metrics_interval_s: float = 15.0
    durable: bool = False


def tasks_settings(src: Source, raw: Mapping[str, Any]) -> TasksSettings:
    """``[tasks]`` of the file's top-level table ``raw``, checked."""
    t = table(src, "tasks", raw.get("tasks"), TasksTable)

    def positive(key: str, text: str) -> float:
        s = src.duration(f"tasks.{key}", text)
        if not s > 0:
            raise src.error(f"tasks.{key}", text, "a positive duration like 10s or 5m")
        return s

    for i, q in enumerate(t.queues):
        if not QUEUE_NAME.match(q):
            raise src.error(
                f"tasks.queues[{i}]", q, "a queue name: letters, digits, _ . : - (up to 100)"
            )
    for i, m in enumerate(t.modules):
        if not m or not all(part.isidentifier() for part in m.split(".")):
            raise src.error(f"tasks.modules[{i}]", m, "an import path like myapp.tasks")
    if t.concurrency < 1:
        raise src.error("tasks.concurrency", t.concurrency, "an integer of at least 1")
    if t.retries < 0:
        raise src.error("tasks.retries", t.retries, "an integer of at least 0")
    store_url = None
    if t.store:
        if t.store.startswith("sqlite:///") and t.store != "sqlite:///:memory:":
            store_url = f"sqlite:///{src.path(t.store[len('sqlite:///') :])}"
        elif t.store.startswith(("sqlite:///", "postgresql://", "postgres://")):
            store_url = t.store
        else:
            raise src.error("tasks.store", t.store, "sqlite:///PATH or postgresql://...")
    out = TasksSettings(
        store_url=store_url,
        modules=tuple(t.modules),
        queues=tuple(t.queues),
        concurrency=t.concurrency,
        lease_s=positive("lease", t.lease),
        poll_interval_s=positive("poll_interval", t.poll_interval),
        retries=t.retries,
        retry_delay_s=positive("retry_delay", t.retry_delay),
        retry_max_delay_s=positive("retry_max_delay", t.retry_max_delay),
        defer_delay_s=positive("defer_delay", t.defer_delay),
        defer_max_delay_s=positive("defer_max_delay", t.defer_max_delay),
        hold_delay_s=positive("hold_delay", t.hold_delay),
        metrics_interval_s=positive("metrics_interval", t.metrics_interval),
        durable=t.durable,
    )
    for low, high in (("retry_delay", "retry_max_delay"), ("defer_delay", "defer_max_delay")):
        if getattr(out, f"{high}_s") < getattr(out, f"{low}_s"):
            raise src.error(
                f"tasks.{high}",
                getattr(t, high),
                f"a duration no shorter than tasks.{low} ({getattr(t, low)})",
            )
    return out


def queue_store_url(tasks: TasksSettings, store_url: str) -> str:
    """Where the queue lives: ``[tasks] store``, else beside the main store -- the same
    PostgreSQL database, or ``tasks.db`` in the SQLite store's folder.

    A SQLite file has one writer at a time: in the metrics' file an enqueue (on an
    application's request path) would wait behind each collection pass's write transaction,
    and pay for the 16 KiB pages sized for samples. Its own file with 4 KiB pages keeps an
    enqueue at one small commit.
    """
    if tasks.store_url is not None:
        return tasks.store_url
    if store_url.startswith("sqlite:///") and store_url != "sqlite:///:memory:":
        path = store_url[len("sqlite:///") :]
        folder = path.rsplit("/", 1)[0] if "/" in path else "."
        return f"sqlite:///{folder}/tasks.db"
    return store_url
