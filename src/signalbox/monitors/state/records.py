"""What the monitor store remembers, as frozen records: series state, history, silences, acks.

Pure data (and the few questions it answers, such as whether a silence is active or an ack
still holds) so that policy and status code can use it without touching a database; the
rows they are stored as are :mod:`signalbox.monitors.state.rows`, the tables
:mod:`signalbox.monitors.state.store`.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalbox.metrics.labelcodec import encode_labels
from signalbox.metrics.samples import Labels
from signalbox.monitors.definitions.model import State
from signalbox.monitors.engine.evaluate import SeriesState

__all__ = ["Ack", "HistoryEntry", "SeriesRecord", "Silence"]


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
