"""The delivery metrics each monitor pass writes, so a receiver in trouble shows on a graph.

Named after Alertmanager's (``alertmanager_notifications_total{integration}`` and
``..._failed_total``), per notifier instead of per integration, plus the backlog, which an
outbox has and Alertmanager's in-memory queues do not show:

- ``signalbox_notifications_pending{notifier}``: rows that earlier passes left waiting in
  the outbox (being retried, held behind an older one of their alert, or in flight), from
  every process; counted before the pass queues its own, so a healthy receiver shows 0;
- ``signalbox_notifications_total{notifier}`` / ``signalbox_notifications_failed_total``:
  delivery attempts and failed ones made by this process since it started (counters: they
  reset with the process, which ``rate()`` expects).

Every configured notifier gets all three, zero included, so "no backlog" is a value and
not a missing series. Pure: the runner reads the outbox and writes the samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from signalbox.metrics.samples import MetricMeta, Sample

__all__ = ["DELIVERY_METAS", "FAILED_METRIC", "PENDING_METRIC", "TOTAL_METRIC", "delivery_samples"]

PENDING_METRIC = "signalbox_notifications_pending"
TOTAL_METRIC = "signalbox_notifications_total"
FAILED_METRIC = "signalbox_notifications_failed_total"

DELIVERY_METAS = (
    MetricMeta(PENDING_METRIC, "gauge", "Notifications waiting in the outbox when the pass began."),
    MetricMeta(TOTAL_METRIC, "counter", "Notification delivery attempts by this process."),
    MetricMeta(FAILED_METRIC, "counter", "Failed notification delivery attempts by this process."),
)


def delivery_samples(
    notifiers: Iterable[str],
    pending: Mapping[str, int],
    attempts: Mapping[str, tuple[int, int]],
) -> list[Sample]:
    """The three series for every notifier configured or seen in ``pending``/``attempts``.

    ``attempts`` is :meth:`DeliveryStats.snapshot`: ``{notifier: (attempts, failed)}``.
    """
    out: list[Sample] = []
    for name in sorted({*notifiers, *pending, *attempts}):
        labels = (("notifier", name),)
        total, failed = attempts.get(name, (0, 0))
        out += [
            Sample(PENDING_METRIC, labels, float(pending.get(name, 0))),
            Sample(TOTAL_METRIC, labels, float(total)),
            Sample(FAILED_METRIC, labels, float(failed)),
        ]
    return out
