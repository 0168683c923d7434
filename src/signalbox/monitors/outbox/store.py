"""The durable notification outbox: a notification is a row before it is a request.

The runner enqueues notifications in the same transaction that advances monitor state, so
a crash can lose neither (transactional outbox). Delivery then works through due rows:

1. *claim* a row in its own transaction (``attempts + 1`` and ``next_attempt_ms`` pushed
   one lease ahead, conditional on the row being unchanged), so two processes never send
   the same row at once;
2. send it (the notifier gets ``Notification.id`` as the idempotency key);
3. mark it ``sent`` in its own transaction right after the send returns.

**The one at-least-once window**: a process that dies between 2 and 3 (after the receiver
accepted, before the commit) leaves the row pending; once the lease expires it is sent
again with the *same* id, which receivers that deduplicate (webhook ``Idempotency-Key``,
Alertmanager by labels) absorb. Nothing is ever lost and nothing else is ever repeated.

A retryable :class:`NotifyError` schedules the next attempt with exponential backoff and
jitter; once a row is older than ``max_age`` its next failure makes it ``dead``, as does a
non-retryable error at once. Dead rows are logged at ERROR and shown by ``monitors status``.

Rows of one alert to one notifier are delivered in the order they were made, so a
"resolved" never overtakes the "firing" it resolves while that one is being retried.

In ``serve`` each notifier's rows are delivered by a worker of its own
(:mod:`signalbox.monitors.outbox.workers`, ``deliver_due(only=NAME)``), so a receiver that
hangs or fails delays only its own queue. A worker stuck in a send at shutdown hands its row
back (:meth:`Outbox.release_in_flight`): the next start sends it at once instead of after
the lease.

The claim (a compare-and-swap, :func:`signalbox.storage.claim.claim_one`) and the backoff
(:func:`signalbox.storage.backoff.backoff_s`) are the storage layer's, shared with the task
queue. Entries and delivery outcomes are pure and live in
:mod:`signalbox.monitors.outbox.delivery`; the stored payload and row layout in
:mod:`signalbox.monitors.outbox.rows`. This module holds the table and the delivery loop.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from signalbox.durations import format_duration
from signalbox.metrics.labelcodec import encode_labels
from signalbox.metrics.samples import Labels
from signalbox.monitors.notify.broken import BrokenNotifier
from signalbox.monitors.notify.notification import Notification, Notifier, NotifyError
from signalbox.monitors.outbox.delivery import (
    DEFAULT_BASE_DELAY_S,
    DEFAULT_MAX_DELAY_S,
    Delivery,
    DeliveryReport,
    DeliveryStats,
    OutboxEntry,
    Status,
    with_status,
)
from signalbox.monitors.outbox.rows import (
    COLS,
    encode_notification,
    entry_from_row,
)
from signalbox.storage.backoff import backoff_s
from signalbox.storage.claim import ClaimTable, claim_one
from signalbox.storage.database import Database, Migration

log = logging.getLogger("signalbox.monitors.outbox.store")

MIGRATIONS: list[Migration] = [
    (
        1,
        "notification outbox",
        [
            "CREATE TABLE monitor_outbox (seq {pk}, id TEXT NOT NULL UNIQUE, notifier TEXT NOT NULL, "
            "monitor TEXT NOT NULL, labels TEXT NOT NULL, fingerprint TEXT NOT NULL, kind TEXT NOT NULL, "
            "payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, "
            "created_ms BIGINT NOT NULL, next_attempt_ms BIGINT NOT NULL, last_error TEXT NOT NULL, "
            "done_ms BIGINT)",
            "CREATE INDEX monitor_outbox_by_status ON monitor_outbox (status, next_attempt_ms)",
            "CREATE INDEX monitor_outbox_by_monitor ON monitor_outbox (monitor, created_ms)",
        ],
    ),
]

CLAIMS = ClaimTable(
    "monitor_outbox",
    key="id",
    due="next_attempt_ms",
    ready="status = 'pending'",
    attempts="attempts",
    claimed_by=None,
)
"""How the outbox's rows are claimed (:mod:`signalbox.storage.claim`): a claim pushes
``next_attempt_ms`` one lease ahead and counts the attempt."""

DEFAULT_MAX_AGE_S = 6 * 3600.0
DEFAULT_LEASE_S = 120.0
KEEP_SENT_S = 7 * 86400.0
KEEP_DEAD_S = 30 * 86400.0


class Outbox:
    """The ``monitor_outbox`` table and its delivery loop.

    Args:
        max_age_s: a row older than this becomes ``dead`` at its next failure.
        base_delay_s / max_delay_s: backoff between attempts (see :func:`backoff_s`).
        lease_s: how long a claimed row is left alone by other processes; a row whose
            sender died is retried after it (the at-least-once window).
        rng: jitter source (inject a seeded one in tests).
        stats: delivery attempts counted per notifier (for the runner's metrics).
        fence: run last in each claim's transaction; raises to stop a send before it starts
            (``serve``'s leader check, :mod:`signalbox.storage.leader`: an instance that no
            longer leads claims nothing).

    One instance may be shared by several threads (each has its own connection), as the
    delivery workers do, as long as each notifier's rows are delivered by one thread.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        base_delay_s: float = DEFAULT_BASE_DELAY_S,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        lease_s: float = DEFAULT_LEASE_S,
        rng: random.Random | None = None,
        stats: DeliveryStats | None = None,
        fence: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.fence = fence
        self.max_age_ms = round(max_age_s * 1000)
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self.lease_ms = round(lease_s * 1000)
        self.rng = rng or random.Random()
        self.stats = stats or DeliveryStats()
        self._in_flight: dict[str, OutboxEntry] = {}  # id -> the claimed row being sent now
        self._in_flight_lock = threading.Lock()
        db.migrate("monitor_outbox", MIGRATIONS)

    # -- writing --------------------------------------------------------------------------
    def enqueue(
        self, notifier: str, n: Notification, now_ms: int, *, series: Labels | None = None
    ) -> OutboxEntry:
        """Add ``n`` for ``notifier``, due now; joins the caller's transaction.

        ``series`` are the labels of the monitor's series it is about (default: the
        notification's labels, which may also carry the monitor's own labels).
        """
        series = n.labels if series is None else series
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO monitor_outbox (id, notifier, monitor, labels, fingerprint, kind, payload, status, "
                "attempts, created_ms, next_attempt_ms, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, '')",
                (
                    n.id,
                    notifier,
                    n.monitor,
                    encode_labels(series),
                    n.fingerprint,
                    n.kind,
                    encode_notification(n),
                    now_ms,
                    now_ms,
                ),
            )
        return OutboxEntry(n.id, notifier, n, "pending", 0, now_ms, now_ms, series=series)

    # -- reading --------------------------------------------------------------------------
    def get(self, entry_id: str) -> OutboxEntry | None:
        rows = self.db.query(f"SELECT {COLS} FROM monitor_outbox WHERE id = ?", (entry_id,))
        return entry_from_row(rows[0]) if rows else None

    def entries(
        self,
        *,
        status: Status | None = None,
        monitor: str | None = None,
        since_ms: int | None = None,
    ) -> list[OutboxEntry]:
        """Rows in the order they were made, filtered as asked."""
        sql = f"SELECT {COLS} FROM monitor_outbox WHERE true"
        params: list[Any] = []
        for col, value in (("status", status), ("monitor", monitor)):
            if value is not None:
                sql += f" AND {col} = ?"
                params.append(value)
        if since_ms is not None:
            sql += " AND created_ms >= ?"
            params.append(since_ms)
        return [entry_from_row(r) for r in self.db.query(sql + " ORDER BY seq", params)]

    def latest(self, monitor: str | None = None) -> dict[tuple[str, Labels], OutboxEntry]:
        """The newest non-drill row per (monitor, labels): "last notification" in status."""
        sql = f"SELECT {COLS} FROM monitor_outbox WHERE seq IN (SELECT max(seq) FROM monitor_outbox WHERE kind <> 'drill'"
        params: tuple[Any, ...] = ()
        if monitor is not None:
            sql += " AND monitor = ?"
            params = (monitor,)
        sql += " GROUP BY monitor, labels)"
        out: dict[tuple[str, Labels], OutboxEntry] = {}
        for row in self.db.query(sql, params):
            e = entry_from_row(row)
            out[(e.monitor, e.series)] = e
        return out

    def _pending(
        self, only: str | None = None, *, besides: Collection[str] | None = None
    ) -> list[tuple[OutboxEntry, tuple[str, str]]]:
        """Pending rows, oldest first: all, ``only`` one notifier's, or those of notifiers
        not in ``besides``."""
        sql = f"SELECT {COLS}, fingerprint FROM monitor_outbox WHERE status = 'pending'"
        params: list[Any] = []
        if only is not None:
            sql += " AND notifier = ?"
            params.append(only)
        if besides:
            sql += f" AND notifier NOT IN ({', '.join('?' * len(besides))})"
            params += sorted(besides)
        rows = self.db.query(sql + " ORDER BY seq", params)
        return [(entry_from_row(r[:-1]), (r[2], r[-1])) for r in rows]

    def pending_counts(self) -> dict[str, int]:
        """Pending rows per notifier (rows in flight included): the backlog gauge."""
        rows = self.db.query(
            "SELECT notifier, count(*) FROM monitor_outbox WHERE status = 'pending' GROUP BY notifier"
        )
        return {str(n): int(c) for n, c in rows}

    def next_attempt_ms(self, notifier: str, *, after_ms: int) -> int | None:
        """When ``notifier``'s next pending row is due, if later than ``after_ms``: how long
        its worker may sleep (rows due already but held back wait for that time too)."""
        rows = self.db.query(
            "SELECT min(next_attempt_ms) FROM monitor_outbox "
            "WHERE status = 'pending' AND notifier = ? AND next_attempt_ms > ?",
            (notifier, after_ms),
        )
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def due(self, now_ms: int) -> list[OutboxEntry]:
        """Pending rows whose time has come and that no older pending row of the same alert
        and notifier must precede."""
        blocked: set[tuple[str, str]] = set()
        out = []
        for entry, key in self._pending():
            if key not in blocked and entry.next_attempt_ms <= now_ms:
                out.append(entry)
            blocked.add(key)
        return out

    # -- delivering -----------------------------------------------------------------------
    def deliver_due(
        self,
        now_ms: int,
        notifiers: Mapping[str, Notifier],
        *,
        ids: Collection[str] | None = None,
        limit: int = 500,
        only: str | None = None,
        stop: threading.Event | None = None,
    ) -> DeliveryReport:
        """Try every due row once, oldest first; see the module docstring. With ``ids``,
        only those rows and the older rows of their alerts (which must go first); with
        ``only``, only the rows of that notifier (its delivery worker's round). Once ``stop``
        is set no further attempt starts (the one under way finishes).

        A row waits while an older row of the same alert and notifier is pending — but only
        while that older row can still be delivered. So a row whose notifier is no longer
        configured is dead at once; one older than ``max_age`` that is not due yet is dead
        instead of holding newer ones back; and the rows of a notifier that could not be
        built here (:class:`BrokenNotifier`) are left untried — no attempt, no backoff, in
        the report as ``retry`` with the reason — so the first round after the fix sends
        them all, in order.
        """
        pending = self._pending(only)
        wanted = None if ids is None else {key for e, key in pending if e.id in ids}
        return self._round(pending, now_ms, notifiers, wanted, limit, stop)

    def expire_unconfigured(self, now_ms: int, notifiers: Mapping[str, Notifier]) -> DeliveryReport:
        """Mark dead the rows of notifiers that are not in ``notifiers`` (removed from the
        config): the round that workers, each delivering only its own notifier, leave out."""
        return self._round(self._pending(besides=notifiers), now_ms, notifiers, None, 500, None)

    def _round(
        self,
        pending: list[tuple[OutboxEntry, tuple[str, str]]],
        now_ms: int,
        notifiers: Mapping[str, Notifier],
        wanted: set[tuple[str, str]] | None,
        limit: int,
        stop: threading.Event | None,
    ) -> DeliveryReport:
        report = DeliveryReport()
        blocked: set[tuple[str, str]] = set()
        tried = 0
        for entry, key in pending:
            if tried >= limit or (stop is not None and stop.is_set()):
                break
            if key in blocked or (wanted is not None and key not in wanted):
                continue
            notifier = notifiers.get(entry.notifier)
            expired = now_ms - entry.created_ms >= self.max_age_ms
            if isinstance(notifier, BrokenNotifier):
                why = f"notifier not usable, fix signalbox.toml: {notifier.error}"
                if expired:
                    report.deliveries.append(self._dead(entry, entry.attempts, now_ms, why))
                    continue
                report.deliveries.append(Delivery(entry, "retry", why, entry.next_attempt_ms))
                blocked.add(key)
                continue
            if entry.next_attempt_ms > now_ms:
                # Not due; if it can never be sent in order, it must not hold newer ones back.
                # A row due again within one lease may be one another process has just
                # claimed and is sending (a claim moves it one lease ahead): it waits, never
                # dead under a sender's feet, so it cannot be overtaken while in flight.
                if entry.next_attempt_ms <= now_ms + self.lease_ms:
                    blocked.add(key)
                    continue
                if notifier is None:
                    why = f"notifier {entry.notifier!r} is not configured in signalbox.toml"
                elif expired:  # it would be dead at its next failure anyway
                    age = format_duration((now_ms - entry.created_ms) // 1000)
                    why = f"undelivered after {age}, expired so newer notifications go ahead: {entry.last_error}"
                else:
                    blocked.add(key)
                    continue
                report.deliveries.append(self._dead(entry, entry.attempts, now_ms, why))
                continue
            if not self._claim(entry, now_ms):
                blocked.add(key)  # another process took it
                continue
            tried += 1
            report.attempts = tried
            d = self._deliver(entry, notifiers, now_ms)
            report.deliveries.append(d)
            if d.outcome == "retry":
                blocked.add(key)
        return report

    def _deliver(
        self, entry: OutboxEntry, notifiers: Mapping[str, Notifier], now_ms: int
    ) -> Delivery:
        attempts = entry.attempts + 1
        notifier = notifiers.get(entry.notifier)
        if notifier is None:
            return self._dead(
                entry,
                attempts,
                now_ms,
                f"notifier {entry.notifier!r} is not configured in signalbox.toml",
            )
        claimed = with_status(
            entry, "pending", attempts, None, entry.last_error, now_ms + self.lease_ms
        )
        with self._in_flight_lock:
            self._in_flight[entry.id] = claimed
        try:
            notifier.send(entry.notification)
        except NotifyError as e:
            self.stats.attempted(entry.notifier, failed=True)
            if e.retryable:
                return self._failed(entry, attempts, now_ms, e.reason)
            return self._dead(entry, attempts, now_ms, e.reason)
        except Exception as e:  # a notifier bug must not stop the others; keep the row
            self.stats.attempted(entry.notifier, failed=True)
            log.exception(
                "notifier %r raised unexpectedly on notification %s", entry.notifier, entry.id
            )
            return self._failed(entry, attempts, now_ms, f"{type(e).__name__}: {e}")
        finally:
            with self._in_flight_lock:
                self._in_flight.pop(entry.id, None)
        self.stats.attempted(entry.notifier, failed=False)
        with self.db.transaction():
            self.db.execute(
                "UPDATE monitor_outbox SET status = 'sent', done_ms = ?, last_error = '' WHERE id = ?",
                (now_ms, entry.id),
            )
        log.info(
            "sent %s notification %s for %s to %s (attempt %d)",
            entry.kind,
            entry.id,
            entry.monitor,
            entry.notifier,
            attempts,
        )
        return Delivery(with_status(entry, "sent", attempts, now_ms), "sent")

    def _claim(self, entry: OutboxEntry, now_ms: int) -> bool:
        """Compare-and-swap: only if the row is still as :meth:`_pending` read it (and the
        fence, if any, lets it: in the same transaction)."""
        with self.db.transaction():
            claimed = claim_one(
                self.db,
                CLAIMS,
                entry.id,
                now_ms=now_ms,
                lease_ms=self.lease_ms,
                expect={"attempts": entry.attempts, "next_attempt_ms": entry.next_attempt_ms},
            )
            if claimed and self.fence is not None:
                self.fence()  # raises: the claim is rolled back, nothing is sent
            return claimed

    def release_claims(self, now_ms: int) -> int:
        """Make due now the rows claimed within the last lease by a sender that is gone: a
        new ``serve`` leader calls it as it takes over, since only the leader delivers, so
        the rows its predecessor was sending when it died go out at once instead of after
        the lease (under their ids, for receivers that deduplicate). Rows this outbox is
        sending itself are left alone; a row waiting out a retry backoff within that time
        is tried early. Returns how many rows became due."""
        mine = sorted(e.id for e in self.in_flight())
        sql = (
            "UPDATE monitor_outbox SET next_attempt_ms = ? WHERE status = 'pending' "
            "AND attempts > 0 AND next_attempt_ms > ? AND next_attempt_ms <= ?"
        )
        if mine:
            sql += f" AND id NOT IN ({', '.join('?' * len(mine))})"
        with self.db.transaction():
            n = self.db.execute(sql, (now_ms, now_ms, now_ms + self.lease_ms, *mine)).rowcount
        if n:
            log.warning("%d notification(s) claimed by a sender that is gone are due again now", n)
        return int(n)

    def _failed(self, entry: OutboxEntry, attempts: int, now_ms: int, error: str) -> Delivery:
        age_ms = now_ms - entry.created_ms
        if age_ms >= self.max_age_ms:
            why = (
                f"gave up after {attempts} attempts over {format_duration(age_ms // 1000)}: {error}"
            )
            return self._dead(entry, attempts, now_ms, why)
        delay = backoff_s(attempts, self.rng, base_s=self.base_delay_s, cap_s=self.max_delay_s)
        next_ms = now_ms + round(delay * 1000)
        with self.db.transaction():
            # still pending: a row released at shutdown may have been sent meanwhile
            self.db.execute(
                "UPDATE monitor_outbox SET next_attempt_ms = ?, last_error = ? "
                "WHERE id = ? AND status = 'pending'",
                (next_ms, error, entry.id),
            )
        log.warning(
            "%s notification %s for %s to %s failed (attempt %d), retrying in %ss: %s",
            entry.kind,
            entry.id,
            entry.monitor,
            entry.notifier,
            attempts,
            f"{delay:.1f}" if delay < 10 else f"{delay:.0f}",  # a 200ms retry_delay shows
            error,
        )
        return Delivery(
            with_status(entry, "pending", attempts, None, error, next_ms), "retry", error, next_ms
        )

    def _dead(self, entry: OutboxEntry, attempts: int, now_ms: int, error: str) -> Delivery:
        with self.db.transaction():
            # still pending: a sender that stalled past its claim may fail a row another
            # one (a new leader) has sent since; sent stays sent
            self.db.execute(
                "UPDATE monitor_outbox SET status = 'dead', done_ms = ?, last_error = ? "
                "WHERE id = ? AND status = 'pending'",
                (now_ms, error, entry.id),
            )
        log.error(
            "%s notification %s for %s to %s is DEAD after %d attempt(s), not retrying: %s",
            entry.kind,
            entry.id,
            entry.monitor,
            entry.notifier,
            attempts,
            error,
        )
        return Delivery(with_status(entry, "dead", attempts, now_ms, error), "dead", error)

    def in_flight(self) -> list[OutboxEntry]:
        """The rows this outbox is sending right now (claimed, the send not returned)."""
        with self._in_flight_lock:
            return list(self._in_flight.values())

    def release_in_flight(self, now_ms: int) -> list[OutboxEntry]:
        """Hand back the rows still being sent (a receiver that hangs past shutdown): each
        becomes due at ``now_ms`` instead of at the end of its lease, so the next start
        sends it at once. The attempt stays counted. Returns the released rows.

        Only a row still as its claim left it is touched: one another process took over
        since (its lease ran out) is not.
        """
        released = []
        for e in self.in_flight():
            with self.db.transaction():
                n = self.db.execute(
                    "UPDATE monitor_outbox SET next_attempt_ms = ?, last_error = ? "
                    "WHERE id = ? AND status = 'pending' AND attempts = ? AND next_attempt_ms = ?",
                    (
                        now_ms,
                        "the sender stopped while this attempt was under way",
                        e.id,
                        e.attempts,
                        e.next_attempt_ms,
                    ),
                ).rowcount
            if n:
                released.append(e)
                log.warning(
                    "%s notification %s for %s to %s still in flight at shutdown (attempt %d): "
                    "left pending for the next start",
                    e.kind,
                    e.id,
                    e.monitor,
                    e.notifier,
                    e.attempts,
                )
        return released

    def purge(
        self, now_ms: int, *, keep_sent_s: float = KEEP_SENT_S, keep_dead_s: float = KEEP_DEAD_S
    ) -> int:
        """Delete sent rows older than ``keep_sent_s`` and dead ones older than ``keep_dead_s``."""
        with self.db.transaction():
            a = self.db.execute(
                "DELETE FROM monitor_outbox WHERE status = 'sent' AND done_ms < ?",
                (now_ms - round(keep_sent_s * 1000),),
            ).rowcount
            b = self.db.execute(
                "DELETE FROM monitor_outbox WHERE status = 'dead' AND done_ms < ?",
                (now_ms - round(keep_dead_s * 1000),),
            ).rowcount
        return int(a) + int(b)
