"""What ``monitors status`` (and the dashboard) shows: every monitor, series and pending row.

Read from the monitor files and the state store at one instant; nothing here writes.
Monitors with persisted state that are no longer in the files (removed, or failing lint)
are listed too, marked not ``loaded``, so a typo cannot make a firing alert disappear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from signalbox.metrics.samples import Labels
from signalbox.monitors.definitions.lint import LintError
from signalbox.monitors.definitions.model import State, worst
from signalbox.monitors.notify.notification import json_number, rfc3339
from signalbox.monitors.outbox.delivery import OutboxEntry
from signalbox.monitors.state.records import Ack, HistoryEntry, Silence

if TYPE_CHECKING:
    from signalbox.monitors.engine.runner import MonitorRunner


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """One series as ``monitors status`` shows it."""

    labels: Labels
    state: State
    since_ms: int
    value: float | None
    reason: str
    pending: State | None
    pending_since_ms: int | None
    silenced: str
    acknowledged: str
    suppressed_by: str
    flapping: bool
    flap_percent: float
    last_notified_kind: str
    last_notified_ms: int | None
    delivery: OutboxEntry | None

    def to_dict(self) -> dict[str, Any]:
        last = None
        if self.last_notified_ms is not None:
            d = self.delivery
            delivery = None
            if d is not None:
                delivery = {
                    "notifier": d.notifier,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error or None,
                }
            last = {
                "kind": self.last_notified_kind,
                "at_ms": self.last_notified_ms,
                "delivery": delivery,
            }
        return {
            "labels": dict(self.labels),
            "state": self.state.value,
            "since_ms": self.since_ms,
            "value": json_number(self.value),
            "reason": self.reason,
            "pending": self.pending.value if self.pending else None,
            "pending_since_ms": self.pending_since_ms,
            "silenced": self.silenced or None,
            "acknowledged": self.acknowledged or None,
            "suppressed_by": self.suppressed_by or None,
            "flapping": self.flapping,
            "flap_percent": round(self.flap_percent, 1),
            "last_notification": last,
        }


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """One monitor: its worst state and its series. ``loaded`` False: state persisted from
    earlier passes, but the monitor is not in the files now (removed, or a lint error)."""

    name: str
    kind: str
    loaded: bool
    state: State
    series: list[SeriesStatus]
    silences: list[Silence]
    owner: str = ""
    file: str = ""
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "loaded": self.loaded,
            "state": self.state.value,
            "owner": self.owner or None,
            "file": self.file or None,
            "line": self.line or None,
            "silences": [silence_json(x) for x in self.silences],
            "series": [x.to_dict() for x in self.series],
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    at_ms: int
    monitors: list[MonitorStatus]
    lint_errors: tuple[LintError, ...]
    pending: list[OutboxEntry]
    dead: list[OutboxEntry]

    def to_dict(self) -> dict[str, Any]:
        def entry(e: OutboxEntry) -> dict[str, Any]:
            return {
                "id": e.id,
                "notifier": e.notifier,
                "monitor": e.monitor,
                "kind": e.kind,
                "labels": dict(e.series),
                "created_ms": e.created_ms,
                "attempts": e.attempts,
                "next_attempt_ms": e.next_attempt_ms if e.status == "pending" else None,
                "last_error": e.last_error or None,
                "status": e.status,
            }

        return {
            "at_ms": self.at_ms,
            "monitors": [m.to_dict() for m in self.monitors],
            "lint_errors": [str(e) for e in self.lint_errors],
            "outbox": {
                "pending": [entry(e) for e in self.pending],
                "dead": [entry(e) for e in self.dead],
            },
        }


def build_status(
    runner: MonitorRunner, now_ms: int, *, dead_since_ms: int | None = None
) -> StatusReport:
    """Everything ``monitors status`` shows, read from the files and the store at ``now_ms``.

    Dead notifications are listed from ``dead_since_ms`` (default: the last 7 days).
    """
    loaded = runner.load()
    records = runner.state.series()
    silences = runner.state.silences(active_at=now_ms)
    acks = runner.state.acks()
    latest = runner.outbox.latest()
    by_name = {m.name: m for m in loaded.monitors}
    out: list[MonitorStatus] = []
    for name in [*by_name, *sorted(set(records) - set(by_name))]:
        series = []
        for labels, r in sorted(records.get(name, {}).items()):
            st = r.state
            silence = next((x for x in silences if x.matches(name, labels)), None)
            ack = acks.get((name, labels))
            acked = ack is not None and ack.holds(st)
            series.append(
                SeriesStatus(
                    labels=labels,
                    state=st.state,
                    since_ms=st.since,
                    value=st.last_value,
                    reason=st.reason,
                    pending=st.pending,
                    pending_since_ms=st.pending_since,
                    silenced=f"{silence.describe()} until {rfc3339(silence.until_ms / 1000)}"
                    if silence
                    else "",
                    acknowledged=f"by {ack.by}" + (f": {ack.reason}" if ack.reason else "")
                    if ack is not None and acked
                    else "",
                    suppressed_by=r.suppressed_by,
                    flapping=st.flapping,
                    flap_percent=st.flap_percent,
                    last_notified_kind=r.last_notified_kind,
                    last_notified_ms=r.last_notified_ms,
                    delivery=latest.get((name, labels)),
                )
            )
        m = by_name.get(name)
        out.append(
            MonitorStatus(
                name=name,
                kind=m.kind if m else "?",
                loaded=m is not None,
                state=worst([x.state for x in series]),
                series=series,
                silences=[x for x in silences if x.monitor == name],
                owner=(m.owner or "") if m else "",
                file=m.file if m else "",
                line=m.line if m else 0,
            )
        )
    since = dead_since_ms if dead_since_ms is not None else now_ms - 7 * 86_400_000
    dead = [e for e in runner.outbox.entries(status="dead") if (e.done_ms or 0) >= since]
    return StatusReport(now_ms, out, loaded.errors, runner.outbox.entries(status="pending"), dead)


def history_json(e: HistoryEntry) -> dict[str, Any]:
    """One history entry as ``monitors history --json`` and ``/api/v1/monitors/NAME`` show it."""
    return {
        "at_ms": e.at_ms,
        "at": rfc3339(e.at_ms / 1000),
        "labels": dict(e.labels),
        "event": e.event,
        "from": e.from_state.value if e.from_state else None,
        "to": e.to_state.value if e.to_state else None,
        "value": json_number(e.value),
        "reason": e.reason,
        "note": e.note or None,
    }


def silence_json(x: Silence) -> dict[str, Any]:
    """One silence as ``monitors status --json`` and the HTTP API show it."""
    out: dict[str, Any] = {
        "id": x.id,
        "series": dict(x.matchers),
        "by": x.created_by,
        "reason": x.reason,
        "since_ms": x.created_ms,
        "until_ms": x.until_ms,
    }
    if x.ended_ms is not None:
        out["ended_ms"], out["ended_by"] = x.ended_ms, x.ended_by
    return out


def ack_json(a: Ack) -> dict[str, Any]:
    """One acknowledgement as the HTTP API shows it."""
    return {
        "labels": dict(a.labels),
        "state": a.state.value,
        "by": a.by,
        "reason": a.reason,
        "at_ms": a.at_ms,
    }
