"""Persisted monitor state: what the runner remembers between passes and restarts.

Tables (component ``monitors``, portable SQL for SQLite and PostgreSQL):

- ``monitor_series``: one row per monitor + series: the state machine's
  :class:`~signalbox.monitors.engine.evaluate.SeriesState` and the notification bookkeeping
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

The records themselves are :mod:`signalbox.monitors.state.records` and their row layout
:mod:`signalbox.monitors.state.rows`; this module holds the tables and the SQL over them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from signalbox.metrics.labelcodec import decode_labels, encode_labels
from signalbox.metrics.samples import Labels
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify.notification import rfc3339
from signalbox.monitors.state.records import Ack, HistoryEntry, SeriesRecord, Silence
from signalbox.monitors.state.rows import (
    HISTORY_COLS,
    SERIES_COLS,
    SILENCE_COLS,
    db_value,
    history_from_row,
    series_from_row,
    series_to_row,
    silence_from_row,
)
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
        sql = f"SELECT {', '.join(SERIES_COLS)} FROM monitor_series"
        params: tuple[Any, ...] = ()
        if monitor is not None:
            sql += " WHERE monitor = ?"
            params = (monitor,)
        out: dict[str, dict[Labels, SeriesRecord]] = {}
        for row in self.db.query(sql, params):
            r = series_from_row(row)
            out.setdefault(r.monitor, {})[r.labels] = r
        return out

    def save_series(
        self, records: Iterable[SeriesRecord], removed: Iterable[tuple[str, Labels]] = ()
    ) -> None:
        """Upsert ``records`` and delete the ``(monitor, labels)`` in ``removed``."""
        rows = [series_to_row(r) for r in records]
        gone = [(m, encode_labels(labels)) for m, labels in removed]
        with self.db.transaction():
            if rows:
                self.db.executemany(
                    self.db.dialect.upsert("monitor_series", SERIES_COLS, ("monitor", "labels")),
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
                db_value(e.value),
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
        sql = f"SELECT {HISTORY_COLS} FROM monitor_history WHERE monitor = ?"
        params: list[Any] = [monitor]
        if since_ms is not None:
            sql += " AND at_ms >= ?"
            params.append(since_ms)
        sql += " ORDER BY at_ms DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [history_from_row(r) for r in reversed(self.db.query(sql, params))]

    # -- silences -------------------------------------------------------------------------
    def add_silence(
        self, monitor: str, matchers: Labels, *, now_ms: int, until_ms: int, by: str, reason: str
    ) -> Silence:
        """Silence ``monitor`` (series whose labels include ``matchers``) until ``until_ms``."""
        with self.db.transaction():
            (row,) = self.db.query(
                "INSERT INTO monitor_silences (monitor, matchers, created_ms, until_ms, created_by, reason, ended_by) "
                f"VALUES (?, ?, ?, ?, ?, ?, '') RETURNING {SILENCE_COLS}",
                (monitor, encode_labels(matchers), now_ms, until_ms, by, reason),
            )
            silence = silence_from_row(row)
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
        sql = f"SELECT {SILENCE_COLS} FROM monitor_silences WHERE true"
        params: list[Any] = []
        if monitor is not None:
            sql += " AND monitor = ?"
            params.append(monitor)
        if active_at is not None:
            sql += " AND ended_ms IS NULL AND created_ms <= ? AND until_ms > ?"
            params += [active_at, active_at]
        return [silence_from_row(r) for r in self.db.query(sql + " ORDER BY id", params)]

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
