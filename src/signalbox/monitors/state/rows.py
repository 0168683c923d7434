"""How the monitor store's records are laid out as SQL rows, and read back.

Each column list here fixes the order of the tuples beside it, so a list and the function
that reads or writes its rows change together; the statements that use them live in
:mod:`signalbox.monitors.state.store`. Values are kept portable between SQLite and PostgreSQL:
labels as canonical text (:mod:`signalbox.metrics.labelcodec`), states as their names,
the flapping history as one letter per state, and NaN as "no value".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from signalbox.metrics.labelcodec import decode_labels, encode_labels
from signalbox.monitors.definitions.model import State
from signalbox.monitors.engine.evaluate import SeriesState
from signalbox.monitors.state.records import HistoryEntry, SeriesRecord, Silence

__all__ = [
    "HISTORY_COLS",
    "SERIES_COLS",
    "SILENCE_COLS",
    "db_value",
    "history_from_row",
    "series_from_row",
    "series_to_row",
    "silence_from_row",
]

_STATE_LETTER = {State.OK: "O", State.WARNING: "W", State.CRITICAL: "C", State.UNKNOWN: "U"}
_LETTER_STATE = {v: k for k, v in _STATE_LETTER.items()}


def _state(text: str | None) -> State | None:
    return None if text is None else State(text)


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def db_value(v: float | None) -> float | None:
    """NaN has no portable SQL form; a NaN value is stored as "no value"."""
    return None if v is None or math.isnan(v) else v


SERIES_COLS = (
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
HISTORY_COLS = "id, monitor, labels, at_ms, event, from_state, to_state, value, reason, note"
SILENCE_COLS = "id, monitor, matchers, created_ms, until_ms, created_by, reason, ended_ms, ended_by"


def series_to_row(r: SeriesRecord) -> tuple[Any, ...]:
    s = r.state
    return (
        r.monitor,
        encode_labels(r.labels),
        s.state.value,
        s.since,
        s.pending.value if s.pending else None,
        s.pending_since,
        db_value(s.last_value),
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


def series_from_row(row: Sequence[Any]) -> SeriesRecord:
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


def history_from_row(row: Sequence[Any]) -> HistoryEntry:
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


def silence_from_row(row: Sequence[Any]) -> Silence:
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
