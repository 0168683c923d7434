"""The demo's offline work: photo albums reprocessed behind a gate on the database's load.

The simulated photo database (:func:`db_threads_running`, written by the photo service as
``demo_db_threads_running``) is busy for 90 s of every 5 minutes, the first time a minute
after start. The ``reprocess`` task is gated on it with
``metric("max(demo_db_threads_running)", below=(40, 25))``: while the database is busy, jobs
are deferred -- the queues page shows them held by ``demo_db_load`` with the reading that
closed it -- and a job already running stops at its next ``ctx.checkpoint`` to resume
there later. Once the load falls below the low mark the backlog drains. Now and then an
album has a photo no retry can fix, so a dead job waits with its error for the retry button.

The task is gated on the flag ``demo_reprocessing`` too (with ``install(..., settings=)``,
as ``serve --demo`` does): when the busy spell lasts, the monitor ``demo_db_overloaded``
goes CRITICAL and switches the flag off, and the jobs stay held by ``flag:demo_reprocessing``
after the load has fallen, until an operator turns it back on (``signalbox flags set
demo_reprocessing on --reason ...`` or the Flags page): the loop closed by a person.

Light on purpose: a job sleeps a quarter second per batch of photos (no CPU), and a batch of
albums is enqueued every 20 seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from signalbox.tasks.registry import REGISTRY, Registry, Task

if TYPE_CHECKING:
    from signalbox.config import Settings
    from signalbox.gates.base import Gate
    from signalbox.query import Engine
    from signalbox.tasks.context import Context
    from signalbox.tasks.settings import TasksSettings
    from signalbox.tasks.store import QueueStore

__all__ = [
    "FLAG_NAME",
    "GATE_NAME",
    "LOAD_METRIC",
    "QUEUE",
    "Reprocessing",
    "db_threads_running",
    "demo_tasks_settings",
    "install",
]

log = logging.getLogger("signalbox.demo")

LOAD_METRIC = "demo_db_threads_running"
GATE_NAME = "demo_db_load"
FLAG_NAME = "demo_reprocessing"
GATE_QUERY = f"max({LOAD_METRIC})"
HIGH, LOW = 40.0, 25.0
QUEUE = "reprocess"
TASK_NAME = "demo.reprocess_album"

LOAD_CYCLE_S = 300.0
BUSY_START_S = 60.0
BUSY_FOR_S = 90.0
ENQUEUE_EVERY_S = 20.0
ALBUMS_PER_BATCH = 6
PHOTOS_PER_ALBUM = 20
PHOTOS_PER_STEP = 5
STEP_S = 0.25
BROKEN_EVERY = 60  # album ids 7, 67, 127, ... carry a photo that cannot be read


def db_threads_running(t_since_start: float, rng: random.Random) -> float:
    """The simulated database's running threads: ~15, ~60 during the busy spell."""
    phase = t_since_start % LOAD_CYCLE_S
    base = 15.0 + 4.0 * math.sin(t_since_start / 40.0) + rng.uniform(-2.0, 2.0)
    if BUSY_START_S <= phase < BUSY_START_S + BUSY_FOR_S:
        return round(base + 45.0, 1)
    return round(base, 1)


def demo_tasks_settings(tasks: TasksSettings) -> TasksSettings:
    """``[tasks]`` quick enough to watch: deferrals capped at 30 s, metrics every 5 s."""
    return dataclasses.replace(
        tasks,
        defer_max_delay_s=min(tasks.defer_max_delay_s, 30.0),
        defer_delay_s=min(tasks.defer_delay_s, 5.0),
        metrics_interval_s=min(tasks.metrics_interval_s, 5.0),
        retry_delay_s=min(tasks.retry_delay_s, 5.0),
    )


def reprocess_album(album: int, photos: int, ctx: Context) -> None:
    """Re-render every photo of ``album`` a few at a time, checkpointing between batches."""
    done = int(ctx.state or 0)
    while done < photos:
        time.sleep(STEP_S)
        if album % BROKEN_EVERY == 7 and done >= PHOTOS_PER_STEP:
            raise ValueError(
                f"photo {done + 1} of album {album}: corrupt EXIF block (demo: no retry fixes it)"
            )
        done = min(photos, done + PHOTOS_PER_STEP)
        ctx.checkpoint(done)


def install(
    engine: Engine, registry: Registry | None = None, *, settings: Settings | None = None
) -> Task[Any, Any]:
    """Register the demo's task, its gate reading the demo's store through ``engine``; with
    ``settings`` (the demo's), gated on the flag :data:`FLAG_NAME` too."""
    from signalbox.gates import flag, metric

    gates: list[Gate] = [
        metric(GATE_QUERY, below=(HIGH, LOW), engine=engine, name=GATE_NAME, interval=2.0)
    ]
    if settings is not None:
        gates.append(flag(FLAG_NAME, settings=settings, interval=1.0))
    return Task(
        reprocess_album,
        name=TASK_NAME,
        queue=QUEUE,
        gates=gates,
        retries=1,
        registry=registry or REGISTRY,
    )


class Reprocessing:
    """Enqueues a batch of albums every :data:`ENQUEUE_EVERY_S` until stopped."""

    def __init__(
        self, task: Task[Any, Any], queue: QueueStore, *, photos: int = PHOTOS_PER_ALBUM
    ) -> None:
        self.task, self.queue, self.photos = task, queue, photos
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._album = 0

    def enqueue_batch(self) -> list[int]:
        ids = []
        for _ in range(ALBUMS_PER_BATCH):
            self._album += 1
            now = int(time.time() * 1000)
            job = self.task.new_job(now, [self._album, self.photos], {}, now)
            ids.append(self.queue.enqueue(job).id)
        return ids

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="signalbox-demo-jobs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.enqueue_batch()
            except Exception as e:  # the queue went away for a moment: the next batch will do
                log.warning("demo could not enqueue reprocessing jobs: %s", e)
            if self._stop.wait(ENQUEUE_EVERY_S):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
