"""Periodic jobs: when they are due, and the scheduler that enqueues each tick once.

``@signalbox.periodic("*/5 * * * *")`` (cron, this machine's local time, as cron itself)
or ``@signalbox.periodic(every="10m")`` (ticks aligned to multiples of the period since the
epoch, so every scheduler agrees on them). Every worker runs a :class:`Scheduler`, but only
the holder of the ``tasks:scheduler`` lease (:mod:`signalbox.storage.lease`) ticks it; and a
tick enqueues through a compare-and-swap of the task's next run time in the same
transaction (:meth:`QueueStore.advance_schedule`), so even two schedulers that both believe
they lead (a paused process waking after its lease passed) enqueue a tick once.

A tick missed while no worker ran (a deploy, an outage) is enqueued once when a scheduler
comes back, not once per missed tick: a burst of catch-up jobs is the load the gates exist
to avoid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from signalbox.durations import parse_duration

if TYPE_CHECKING:
    from signalbox.tasks.registry import Registry
    from signalbox.tasks.store import QueueStore

__all__ = ["Schedule", "Scheduler", "schedule_of"]

log = logging.getLogger("signalbox.tasks.schedule")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression or a fixed period in seconds (exactly one of them)."""

    cron: str | None = None
    every_s: float | None = None

    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms`` (epoch milliseconds)."""
        if self.every_s is not None:
            period = max(1, round(self.every_s * 1000))
            return (ms // period + 1) * period
        assert self.cron is not None
        from croniter import croniter

        start = datetime.fromtimestamp(ms / 1000).astimezone()
        return round(float(croniter(self.cron, start).get_next(float)) * 1000)

    def __str__(self) -> str:
        return self.cron if self.cron is not None else f"every {self.every_s:g}s"


def schedule_of(cron: str | None, every: str | float | None) -> Schedule:
    """The schedule ``@periodic`` was given, or ValueError saying what is wrong."""
    if (cron is None) == (every is None):
        raise ValueError('give a cron expression ("*/5 * * * *") or every= ("10m"), not both')
    if cron is not None:
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise ValueError(f"not a cron expression: {cron!r} (like '*/5 * * * *')")
        return Schedule(cron=cron)
    seconds = parse_duration(every) if isinstance(every, str) else float(every)  # type: ignore[arg-type]
    if not seconds >= 1:
        raise ValueError(f"every= must be at least 1s, not {every!r}")
    return Schedule(every_s=seconds)


class Scheduler:
    """Enqueues the periodic tasks of ``registry`` that are due (call :meth:`tick` while
    holding the scheduler lease)."""

    def __init__(self, store: QueueStore, registry: Registry) -> None:
        self.store, self.registry = store, registry

    def tick(self, now_ms: int) -> list[str]:
        """Enqueue every periodic task whose tick has come; the names enqueued."""
        out = []
        for task in self.registry.periodic():
            sched = task.schedule
            assert sched is not None
            try:
                nxt = self.store.schedule(task.name)
                if nxt is None:  # first sight: its first tick is the next one
                    self.store.advance_schedule(
                        task.name, expected_ms=None, next_ms=sched.next_after(now_ms), job=None
                    )
                elif nxt <= now_ms and self.store.advance_schedule(
                    task.name,
                    expected_ms=nxt,
                    next_ms=sched.next_after(now_ms),
                    job=task.new_job(now_ms, (), {}),
                ):
                    out.append(task.name)
            except Exception:  # one broken schedule must not stop the others
                log.exception("periodic task %s (%s): could not schedule it", task.name, sched)
        return out
