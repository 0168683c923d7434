"""Persisted monitor state: what the runner remembers between passes and restarts.

Tables (component ``monitors``, portable SQL for SQLite and PostgreSQL):

- ``monitor_series``: one row per monitor + series: the state machine's
  :class:`~signalbox.monitors.evaluate.SeriesState` and the notification bookkeeping
  (which firing state receivers were last told about, when, and whether a dependency held
  notifications back). Only the runner writes it.
- ``monitor_history``: every transition (with time, value and reason), flapping start and
  stop, silences, acknowledgements, notifications and actions, append-only.
- ``monitor_silences``: who silenced what, why, until when; ended early by ``unsilence``.
- ``monitor_acks``: the last acknowledgement per series. An ack holds while the series has
  not changed state since it was given, so it needs no clearing (and a CLI ``ack`` can never
  race with the runner rewriting the series row).

Silences and acks live in tables of their own for the same reason: the CLI writes them
while ``serve`` runs, and the runner never overwrites what it did not read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from signalbox.metrics.labelcodec import decode_labels, encode_labels
from signalbox.metrics.samples import Labels
from signalbox.monitors.evaluate import SeriesState
from signalbox.monitors.model import State
from signalbox.monitors.notify.notification import rfc3339
from signalbox.storage.database import Database, Migration

MIGRATIONS: list[Migration] = [
    (
        1,
        "monitor series state, history, silences and acknowledgements",
        [
            "CREATE TABLE monitor_series (monitor TEXT NOT NULL, labels TEXT NOT NULL, "
            "state TEXT NOT NULL, since_ms BIGINT NOT NULL, pending TEXT, pending_since_ms BIGINT, "
            "last_value DOUBLE PRECISION, last_seen_ms BIGINT, reason TEXT NOT NULL, "
            "warning_since_ms BIGINT, critical_since_ms BIGINT, flap_history TEXT NOT NULL, "
            "flap_percent DOUBLE PRECISION NOT NULL, flapping INTEGER NOT NULL, "
            "notified_state TEXT, fired_at_ms BIGINT, last_notified_ms BIGINT, "
            "last_notified_kind TEXT NOT NULL, suppressed_by TEXT NOT NULL, updated_ms BIGINT NOT NULL, "
            "PRIMARY KEY (monitor, labels))",
            "CREATE TABLE monitor_history (id {pk}, monitor TEXT NOT NULL, labels TEXT NOT NULL, "
            "at_ms BIGINT NOT NULL, event TEXT NOT NULL, from_state TEXT, to_state TEXT, "
            "value DOUBLE PRECISION, reason TEXT NOT NULL, note TEXT NOT NULL)",
            "CREATE INDEX monitor_history_by_time ON monitor_history (monitor, at_ms)",
            "CREATE TABLE monitor_silences (id {pk}, monitor TEXT NOT NULL, matchers TEXT NOT NULL, "
            "created_ms BIGINT NOT NULL, until_ms BIGINT NOT NULL, created_by TEXT NOT NULL, "
            "reason TEXT NOT NULL, ended_ms BIGINT, ended_by TEXT NOT NULL)",
            "CREATE INDEX monitor_silences_by_monitor ON monitor_silences (monitor, until_ms)",
            "CREATE TABLE monitor_acks (monitor TEXT NOT NULL, labels TEXT NOT NULL, "
            "at_ms BIGINT NOT NULL, acked_by TEXT NOT NULL, reason TEXT NOT NULL, "
            "state TEXT NOT NULL, PRIMARY KEY (monitor, labels))",
        ],
    ),
]

_STATE_LETTER = {State.OK: "O", State.WARNING: "W", State.CRITICAL: "C", State.UNKNOWN: "U"}
_LETTER_STATE = {v: k for k, v in _STATE_LETTER.items()}


def _state(text: str | None) -> State | None:
    return None if text is None else State(text)


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _db_value(v: float | None) -> float | None:
    """NaN has no portable SQL form; a NaN value is stored as "no value"."""
    return None if v is None or math.isnan(v) else v


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """One series of one monitor as persisted.

    ``notified_state`` is the firing state receivers were last told about (None: nothing
    firing was sent, so no "resolved" is owed); ``fired_at_ms`` is when that state began
    (the ``started_at`` of repeats and of the resolve); ``suppressed_by`` names the
    dependency that held notifications back at the last pass.
    """

    monitor: str
    labels: Labels
    state: SeriesState
    notified_state: State | None = None
    fired_at_ms: int | None = None
    last_notified_ms: int | None = None
    last_notified_kind: str = ""
    suppressed_by: str = ""
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a monitor's history.

    ``event`` is ``state``, ``flapping_started``, ``flapping_stopped``, ``notification``,
    ``silenced``, ``unsilenced``, ``acknowledged``, ``action`` or ``drill``; ``note`` says
    what happened to notifications (``silenced by ...``, ``suppressed by X``, ``flapping``).
    """

    monitor: str
    labels: Labels
    at_ms: int
    event: str
    reason: str
    from_state: State | None = None
    to_state: State | None = None
    value: float | None = None
    note: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True)
class Silence:
    """No notifications for ``monitor`` series whose labels include ``matchers`` until ``until_ms``.

    Empty ``matchers`` silence every series of the monitor.
    """

    id: int
    monitor: str
    matchers: Labels
    created_ms: int
    until_ms: int
    created_by: str
    reason: str
    ended_ms: int | None = None
    ended_by: str = ""

    def active(self, now_ms: int) -> bool:
        return self.ended_ms is None and self.created_ms <= now_ms < self.until_ms

    def matches(self, monitor: str, labels: Labels) -> bool:
        if monitor != self.monitor:
            return False
        have = dict(labels)
        return all(have.get(k) == v for k, v in self.matchers)

    def describe(self) -> str:
        """``silence #3 by alice: deploy`` for notes and status."""
        scope = f" ({encode_labels(self.matchers)})" if self.matchers else ""
        return f"silence #{self.id}{scope} by {self.created_by}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement of one series in ``state``; it holds until that series changes state."""

    monitor: str
    labels: Labels
    at_ms: int
    by: str
    reason: str
    state: State

    def holds(self, series: SeriesState) -> bool:
        return (
            series.state is self.state
            and series.state is not State.OK
            and self.at_ms >= series.since
        )


_SERIES_COLS = (
    "monitor",
    "labels",
    "state",
    "since_ms",
    "pending",
    "pending_since_ms",
    "last_value",
    "last_seen_ms",
    "reason",
    "warning_since_ms",
    "critical_since_ms",
    "flap_history",
    "flap_percent",
    "flapping",
    "notified_state",
    "fired_at_ms",
    "last_notified_ms",
    "last_notified_kind",
    "suppressed_by",
    "updated_ms",
)
_HISTORY_COLS = "id, monitor, labels, at_ms, event, from_state, to_state, value, reason, note"
_SILENCE_COLS = (
    "id, monitor, matchers, created_ms, until_ms, created_by, reason, ended_ms, ended_by"
)


def _series_row(r: SeriesRecord) -> tuple[Any, ...]:
    s = r.state
    return (
        r.monitor,
        encode_labels(r.labels),
        s.state.value,
        s.since,
        s.pending.value if s.pending else None,
        s.pending_since,
        _db_value(s.last_value),
        s.last_seen_ms,
        s.reason,
        s.warning_since,
        s.critical_since,
        "".join(_STATE_LETTER[x] for x in s.history),
        s.flap_percent,
        int(s.flapping),
        r.notified_state.value if r.notified_state else None,
        r.fired_at_ms,
        r.last_notified_ms,
        r.last_notified_kind,
        r.suppressed_by,
        r.updated_ms,
    )


def _series_record(row: Sequence[Any]) -> SeriesRecord:
    (
        monitor,
        labels,
        state,
        since,
        pending,
        pending_since,
        last_value,
        last_seen,
        reason,
        warning_since,
        critical_since,
        history,
        flap_percent,
        flapping,
        notified,
        fired_at,
        last_notified,
        last_kind,
        suppressed_by,
        updated,
    ) = row
    s = SeriesState(
        state=State(state),
        since=int(since),
        pending=_state(pending),
        pending_since=pending_since,
        last_value=_num(last_value),
        last_seen_ms=last_seen,
        reason=reason,
        warning_since=warning_since,
        critical_since=critical_since,
        history=tuple(_LETTER_STATE[c] for c in history),
        flap_percent=float(flap_percent),
        flapping=bool(flapping),
    )
    return SeriesRecord(
        monitor,
        decode_labels(labels),
        s,
        _state(notified),
        fired_at,
        last_notified,
        last_kind,
        suppressed_by,
        int(updated),
    )


def _history_entry(row: Sequence[Any]) -> HistoryEntry:
    id_, monitor, labels, at_ms, event, from_s, to_s, value, reason, note = row
    return HistoryEntry(
        monitor,
        decode_labels(labels),
        int(at_ms),
        event,
        reason,
        _state(from_s),
        _state(to_s),
        _num(value),
        note,
        int(id_),
    )


def _silence(row: Sequence[Any]) -> Silence:
    id_, monitor, matchers, created, until, by, reason, ended, ended_by = row
    return Silence(
        int(id_),
        monitor,
        decode_labels(matchers),
        int(created),
        int(until),
        by,
        reason,
        None if ended is None else int(ended),
        ended_by,
    )


class MonitorStore:
    """Monitor state, history, silences and acks over a :class:`Database`.

    Writes join the caller's transaction when there is one (:meth:`transaction`), so the
    runner can persist a whole pass (and enqueue its notifications) atomically.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("monitors", MIGRATIONS)

    @contextmanager
    def transaction(self) -> Iterator[MonitorStore]:
        with self.db.transaction():
            yield self

    # -- series state ---------------------------------------------------------------------
    def series(self, monitor: str | None = None) -> dict[str, dict[Labels, SeriesRecord]]:
        """Every persisted series, by monitor then labels."""
        sql = f"SELECT {', '.join(_SERIES_COLS)} FROM monitor_series"
        params: tuple[Any, ...] = ()
        if monitor is not None:
            sql += " WHERE monitor = ?"
            params = (monitor,)
        out: dict[str, dict[Labels, SeriesRecord]] = {}
        for row in self.db.query(sql, params):
            r = _series_record(row)
            out.setdefault(r.monitor, {})[r.labels] = r
        return out

    def save_series(
        self, records: Iterable[SeriesRecord], removed: Iterable[tuple[str, Labels]] = ()
    ) -> None:
        """Upsert ``records`` and delete the ``(monitor, labels)`` in ``removed``."""
        rows = [_series_row(r) for r in records]
        gone = [(m, encode_labels(labels)) for m, labels in removed]
        with self.db.transaction():
            if rows:
                self.db.executemany(
                    self.db.dialect.upsert("monitor_series", _SERIES_COLS, ("monitor", "labels")),
                    rows,
                )
            if gone:
                self.db.executemany(
                    "DELETE FROM monitor_series WHERE monitor = ? AND labels = ?", gone
                )

    # -- history --------------------------------------------------------------------------
    def add_history(self, entries: Iterable[HistoryEntry]) -> None:
        rows = [
            (
                e.monitor,
                encode_labels(e.labels),
                e.at_ms,
                e.event,
                e.from_state.value if e.from_state else None,
                e.to_state.value if e.to_state else None,
                _db_value(e.value),
                e.reason,
                e.note,
            )
            for e in entries
        ]
        if rows:
            with self.db.transaction():
                self.db.executemany(
                    "INSERT INTO monitor_history (monitor, labels, at_ms, event, from_state, to_state, value, reason, note) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

    def history(
        self, monitor: str, *, since_ms: int | None = None, limit: int | None = None
    ) -> list[HistoryEntry]:
        """``monitor``'s history, oldest first; ``limit`` keeps the newest entries."""
        sql = f"SELECT {_HISTORY_COLS} FROM monitor_history WHERE monitor = ?"
        params: list[Any] = [monitor]
        if since_ms is not None:
            sql += " AND at_ms >= ?"
            params.append(since_ms)
        sql += " ORDER BY at_ms DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_history_entry(r) for r in reversed(self.db.query(sql, params))]

    # -- silences -------------------------------------------------------------------------
    def add_silence(
        self, monitor: str, matchers: Labels, *, now_ms: int, until_ms: int, by: str, reason: str
    ) -> Silence:
        """Silence ``monitor`` (series whose labels include ``matchers``) until ``until_ms``."""
        with self.db.transaction():
            (row,) = self.db.query(
                "INSERT INTO monitor_silences (monitor, matchers, created_ms, until_ms, created_by, reason, ended_by) "
                f"VALUES (?, ?, ?, ?, ?, ?, '') RETURNING {_SILENCE_COLS}",
                (monitor, encode_labels(matchers), now_ms, until_ms, by, reason),
            )
            silence = _silence(row)
            self.add_history(
                [
                    HistoryEntry(
                        monitor,
                        matchers,
                        now_ms,
                        "silenced",
                        silence.describe(),
                        note=f"until {rfc3339(until_ms / 1000)}",
                    )
                ]
            )
        return silence

    def end_silences(self, monitor: str, *, now_ms: int, by: str) -> list[Silence]:
        """End every silence of ``monitor`` active at ``now_ms``; return those ended."""
        with self.db.transaction():
            ending = [s for s in self.silences(monitor=monitor, active_at=now_ms)]
            for s in ending:
                self.db.execute(
                    "UPDATE monitor_silences SET ended_ms = ?, ended_by = ? WHERE id = ?",
                    (now_ms, by, s.id),
                )
            self.add_history(
                [
                    HistoryEntry(
                        monitor, s.matchers, now_ms, "unsilenced", f"{s.describe()} ended by {by}"
                    )
                    for s in ending
                ]
            )
        return ending

    def silences(
        self, *, monitor: str | None = None, active_at: int | None = None
    ) -> list[Silence]:
        """Silences (of ``monitor``; active at ``active_at``), oldest first."""
        sql = f"SELECT {_SILENCE_COLS} FROM monitor_silences WHERE true"
        params: list[Any] = []
        if monitor is not None:
            sql += " AND monitor = ?"
            params.append(monitor)
        if active_at is not None:
            sql += " AND ended_ms IS NULL AND created_ms <= ? AND until_ms > ?"
            params += [active_at, active_at]
        return [_silence(r) for r in self.db.query(sql + " ORDER BY id", params)]

    # -- acknowledgements -----------------------------------------------------------------
    def acknowledge(self, monitor: str, *, now_ms: int, by: str, reason: str) -> list[Ack]:
        """Acknowledge every series of ``monitor`` that is not OK; return the acks given."""
        with self.db.transaction():
            records = self.series(monitor).get(monitor, {})
            acks = [
                Ack(monitor, labels, now_ms, by, reason, r.state.state)
                for labels, r in sorted(records.items())
                if r.state.state is not State.OK
            ]
            sql = self.db.dialect.upsert(
                "monitor_acks",
                ("monitor", "labels", "at_ms", "acked_by", "reason", "state"),
                ("monitor", "labels"),
            )
            self.db.executemany(
                sql,
                [
                    (a.monitor, encode_labels(a.labels), a.at_ms, a.by, a.reason, a.state.value)
                    for a in acks
                ],
            )
            self.add_history(
                [
                    HistoryEntry(
                        monitor,
                        a.labels,
                        now_ms,
                        "acknowledged",
                        f"acknowledged by {by}" + (f": {reason}" if reason else ""),
                        a.state,
                        a.state,
                    )
                    for a in acks
                ]
            )
        return acks

    def acks(self, monitor: str | None = None) -> dict[tuple[str, Labels], Ack]:
        """The latest ack per series (whether it still holds is :meth:`Ack.holds`)."""
        sql = "SELECT monitor, labels, at_ms, acked_by, reason, state FROM monitor_acks"
        params: tuple[Any, ...] = ()
        if monitor is not None:
            sql += " WHERE monitor = ?"
            params = (monitor,)
        out: dict[tuple[str, Labels], Ack] = {}
        for m, labels, at, by, reason, state in self.db.query(sql, params):
            ack = Ack(m, decode_labels(labels), int(at), by, reason, State(state))
            out[(m, ack.labels)] = ack
        return out
