"""``serve``'s share of the task queue: ``--workers N`` embedded job slots, and the queue
metrics when no worker writes them.

Workers write ``signalbox_queue_*`` while they hold the scheduler lease
(:mod:`signalbox.tasks.worker`), one writer for every host. When no worker runs anywhere,
nobody would, and a backlog piling up with nothing to run it -- the failure a ``queue:``
monitor exists to catch -- would be invisible. So every ``metrics_interval`` ``serve``
looks at that lease: held by a live worker, it leaves the writing to it; free, it writes the
same series itself (from the same queue store, so the values are the same whoever writes).

The embedded workers are one :class:`~signalbox.tasks.worker.Worker` of ``N`` slots, with
the tasks of ``[tasks] modules`` (imported from the config's folder and the working
directory, as ``signalbox worker`` does); stopping ``serve`` stops it gracefully: running
jobs finish (for up to one lease), claimed ones not started go back at once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from signalbox.config import Settings
from signalbox.metrics.store import MetricWriter
from signalbox.server.loops import LoopHealth, every
from signalbox.tasks.metrics import QUEUE_METAS, queue_samples
from signalbox.tasks.registry import REGISTRY, Registry
from signalbox.tasks.store import Leader, QueueStore
from signalbox.tasks.worker import SCHEDULER_LEASE, Worker

__all__ = ["EmbeddedTasks"]

log = logging.getLogger("signalbox.serve")


@dataclass
class EmbeddedTasks:
    """The workers and the queue metrics loop of one ``serve`` process.

    Args:
        settings: ``[tasks]`` (modules, lease, intervals) and where the config lives.
        queue: the queue store (``serve``'s, shared with the API).
        metrics: where the queue metrics go (a writer of the metric store of its own).
        workers: job slots to run here (0: none; the metrics loop runs anyway).
        registry: the tasks the workers know (default: this process's).
    """

    settings: Settings
    queue: QueueStore
    metrics: MetricWriter
    workers: int = 0
    registry: Registry = field(default_factory=lambda: REGISTRY)
    health: LoopHealth = field(default_factory=LoopHealth)
    worker: Worker | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lease: Leader | None = None

    def start(self) -> str:
        """Start the workers (if any) and the metrics loop; what ``serve`` says about them."""
        tasks = self.settings.tasks
        said = "no embedded workers (signalbox worker runs jobs; serve --workers N here)"
        if self.workers > 0:
            for folder in (os.getcwd(), str(self.settings.base_dir)):
                if folder not in sys.path:
                    sys.path.insert(0, folder)
            failed = self.registry.import_modules(tasks.modules)
            from signalbox.gates.settings import sharing_enabled

            self.worker = Worker(
                self.queue,
                registry=self.registry,
                settings=tasks,
                concurrency=self.workers,
                metrics=self.metrics,
                share_gates=sharing_enabled(self.settings),
            )
            self.worker.start()
            said = (
                f"{self.workers} embedded worker slot(s): queues "
                f"{', '.join(self.worker.queues) or '(all)'}, {len(self.registry.names())} task(s)"
                + (f", modules failing to import: {', '.join(sorted(failed))}" if failed else "")
            )
        self._threads.append(
            every(tasks.metrics_interval_s, self._stop, self.metrics_pass, "queue metrics",
                  self.health)
        )  # fmt: skip
        return said

    def metrics_pass(self, now_ms: int | None = None) -> bool:
        """Write the queue metrics unless a live worker holds the scheduler lease (it writes
        them); True if this pass wrote them."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if self._lease is None:  # only read, never taken: "serve" holds nothing
            self._lease = self.queue.leader(SCHEDULER_LEASE, 1.0, "serve")
        holder_now = getattr(self._lease, "holder_now", None)  # SQL stores say who holds it
        if holder_now is not None and holder_now(now) is not None:
            return False
        samples = queue_samples(
            self.queue.stats(now),
            self.queue.gate_closures(),
            now,
            queues={*self.registry.queues(), *self.settings.tasks.queues},
        )
        self.metrics.write_metadata(QUEUE_METAS)
        self.metrics.write(samples, now)
        return True

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop gracefully: running jobs finish (waiting up to ``timeout_s``, default one
        lease; a job still running then runs again elsewhere after its lease)."""
        self._stop.set()
        if self.worker is not None:
            self.worker.stop()
            wait = self.settings.tasks.lease_s if timeout_s is None else timeout_s
            if not self.worker.join(timeout=wait):
                log.warning(
                    "embedded workers: jobs still running after %.0fs; they run again after "
                    "their lease",
                    wait,
                )
        for t in self._threads:
            t.join(timeout=10)
