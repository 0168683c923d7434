"""Outbox entries and what a delivery round did with them, plus the retry schedule.

Pure records: :mod:`signalbox.monitors.outbox.store` stores entries and drives the rounds,
:mod:`signalbox.monitors.status` shows them, and none of that needs a database to describe
an entry. How long to wait before the next attempt is
:func:`signalbox.storage.backoff.backoff_s`, shared with every other retrying queue.
:class:`DeliveryStats` is the one thing here with state: this process's attempt counters.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from signalbox.metrics.samples import Labels
from signalbox.monitors.notify.notification import Notification

__all__ = [
    "DEFAULT_BASE_DELAY_S",
    "DEFAULT_MAX_DELAY_S",
    "Delivery",
    "DeliveryReport",
    "DeliveryStats",
    "OutboxEntry",
    "Status",
    "with_status",
]

Status = Literal["pending", "sent", "dead"]

DEFAULT_BASE_DELAY_S = 10.0
DEFAULT_MAX_DELAY_S = 600.0


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One notification for one notifier, and how its delivery is going."""

    id: str
    notifier: str
    notification: Notification
    status: Status
    attempts: int
    created_ms: int
    next_attempt_ms: int
    last_error: str = ""
    done_ms: int | None = None
    seq: int = 0
    series: Labels = ()

    @property
    def monitor(self) -> str:
        return self.notification.monitor

    @property
    def kind(self) -> str:
        return self.notification.kind


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one entry in a delivery round."""

    entry: OutboxEntry
    outcome: Literal["sent", "retry", "dead"]
    error: str = ""
    next_attempt_ms: int | None = None


@dataclass(slots=True)
class DeliveryReport:
    """What a round did; ``attempts``: the sends it started (a round stops at its limit)."""

    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0

    def count(self, outcome: str) -> int:
        return sum(1 for d in self.deliveries if d.outcome == outcome)

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def failed(self) -> int:
        return self.count("retry") + self.count("dead")


def with_status(
    e: OutboxEntry,
    status: Status,
    attempts: int,
    done_ms: int | None,
    error: str = "",
    next_ms: int | None = None,
) -> OutboxEntry:
    """``e`` as a delivery attempt left it (``next_ms`` None keeps its next attempt time)."""
    return OutboxEntry(
        e.id,
        e.notifier,
        e.notification,
        status,
        attempts,
        e.created_ms,
        e.next_attempt_ms if next_ms is None else next_ms,
        error,
        done_ms,
        e.seq,
        e.series,
    )


class DeliveryStats:
    """Delivery attempts and failed attempts per notifier since this process started.

    The counters behind ``signalbox_notifications_total`` and
    ``signalbox_notifications_failed_total`` (Alertmanager's pair): the outbox table says
    what waits, only the process that tried knows how often a receiver failed. Delivery
    workers count from their own threads, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}

    def attempted(self, notifier: str, *, failed: bool) -> None:
        with self._lock:
            total, bad = self._counts.get(notifier, (0, 0))
            self._counts[notifier] = (total + 1, bad + int(failed))

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """``{notifier: (attempts, failed attempts)}``."""
        with self._lock:
            return dict(self._counts)
