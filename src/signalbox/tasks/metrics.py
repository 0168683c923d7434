"""The queue metrics the scheduler's holder writes every ``metrics_interval``.

Names are the contract the ``queue:`` monitors read (``signalbox_queue_depth{queue}``):

- ``signalbox_queue_depth{queue}``: jobs ready to run now (not running, not scheduled later);
- ``signalbox_queue_oldest_age_seconds{queue}``: how long the oldest of them has waited;
- ``signalbox_queue_running{queue}``: jobs claimed by a worker whose lease is unexpired;
- ``signalbox_queue_scheduled{queue}``, ``signalbox_queue_dead{queue}``,
  ``signalbox_queue_paused{queue}`` (1 while paused);
- ``signalbox_jobs_total{queue,outcome}``: runs that ended done, failed (each failed run,
  the last one of a dead job included), dead, and deferrals;
- ``signalbox_gate_closed_total{gate}``: deferrals per gate.

The counters are kept in the queue store, not in a process, so they add up the work of every
worker on every host and survive restarts; only one process (the scheduler lease's holder)
writes them, without a ``host`` label, so each queue is one series. Every queue a worker
serves or a task names gets all of them, zeros included: "no backlog" is a value, not a
missing series. Pure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.tasks.jobs import QueueStats

__all__ = ["OUTCOMES", "QUEUE_METAS", "queue_samples"]

OUTCOMES = ("done", "failed", "dead", "deferred")

QUEUE_METAS = (
    MetricMeta("signalbox_queue_depth", "gauge", "Jobs ready to run now."),
    MetricMeta(
        "signalbox_queue_oldest_age_seconds",
        "gauge",
        "How long the oldest job ready to run has waited.",
    ),
    MetricMeta("signalbox_queue_running", "gauge", "Jobs held by a worker."),
    MetricMeta(
        "signalbox_queue_scheduled", "gauge", "Jobs due later (delayed, retrying, deferred)."
    ),
    MetricMeta("signalbox_queue_dead", "gauge", "Dead jobs kept for inspection."),
    MetricMeta("signalbox_queue_paused", "gauge", "1 while the queue is paused."),
    MetricMeta("signalbox_jobs_total", "counter", "Job runs by outcome, and deferrals."),
    MetricMeta("signalbox_gate_closed_total", "counter", "Jobs deferred by a closed gate."),
)


def queue_samples(
    stats: Sequence[QueueStats],
    gate_closures: Mapping[str, int],
    now_ms: int,
    *,
    queues: Collection[str] = (),
) -> list[Sample]:
    """The series of the module docstring for every queue in ``stats`` or ``queues``."""
    by_name = {s.queue: s for s in stats}
    out: list[Sample] = []
    for q in sorted({*by_name, *queues}):
        s = by_name.get(q) or QueueStats(q)
        labels = (("queue", q),)
        out += [
            Sample("signalbox_queue_depth", labels, float(s.ready)),
            Sample("signalbox_queue_oldest_age_seconds", labels, s.oldest_age_s(now_ms)),
            Sample("signalbox_queue_running", labels, float(s.running)),
            Sample("signalbox_queue_scheduled", labels, float(s.scheduled)),
            Sample("signalbox_queue_dead", labels, float(s.dead)),
            Sample("signalbox_queue_paused", labels, 1.0 if s.paused else 0.0),
        ]
        counts = s.outcomes or {}
        for outcome in OUTCOMES:
            out.append(
                Sample(
                    "signalbox_jobs_total",
                    (("outcome", outcome), ("queue", q)),
                    float(counts.get(outcome, 0)),
                )
            )
    for gate, n in sorted(gate_closures.items()):
        out.append(Sample("signalbox_gate_closed_total", (("gate", gate),), float(n)))
    return out
