"""Notification policy, pure: what a series' new state asks receivers to be told.

Level-based: a series remembers which firing state receivers were last told about
(``notified_state``), and every pass reconciles it with the current state. A notification
held back (silence, dependency, flapping) is therefore sent as soon as the hold ends, and a
"resolved" is sent only when a "firing" was. Also here: the ``signalbox_monitor_state``
samples a pass writes and the order monitors are evaluated in, both pure functions of
what the pass already knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from signalbox.metrics.samples import Labels, Sample, labels_of
from signalbox.monitors.definitions.model import Monitor, State
from signalbox.monitors.engine.evaluate import SeriesState
from signalbox.monitors.notify import Notification, NotificationKind
from signalbox.monitors.state.records import SeriesRecord, Silence

STATE_METRIC = "signalbox_monitor_state"
STATE_VALUES: Mapping[State, float] = {
    State.OK: 0,
    State.WARNING: 1,
    State.CRITICAL: 2,
    State.UNKNOWN: 3,
}


def hold_reason(state: SeriesState, *, silence: Silence | None, suppressed_by: str) -> str:
    """Why notifications for a series are held back now, or "" when they are not."""
    if silence is not None:
        return f"silenced by {silence.describe()}"
    if suppressed_by:
        return f"suppressed by {suppressed_by}"
    if state.flapping:
        return "flapping"
    return ""


def decide(
    rec: SeriesRecord, *, now_ms: int, repeat_ms: int, hold: str, acked: bool
) -> tuple[SeriesRecord, NotificationKind | None]:
    """Which notification ``rec`` (already carrying the new state) needs now, and its new bookkeeping.

    * firing: the series fires in a state receivers were not told about (new problem,
      escalation, de-escalation, or a hold that just ended);
    * repeat: still firing, told, ``repeat_ms`` since the last one, not acknowledged;
    * resolved: back to OK after a firing notification was sent.
    Nothing while ``hold`` is set; the next pass without a hold catches up.
    """
    s = rec.state
    if hold:
        return rec, None
    if s.state.firing:
        if rec.notified_state is not s.state:
            return replace(
                rec,
                notified_state=s.state,
                fired_at_ms=s.since,
                last_notified_ms=now_ms,
                last_notified_kind="firing",
            ), "firing"
        due = rec.last_notified_ms is None or now_ms - rec.last_notified_ms >= repeat_ms
        if due and not acked:
            return replace(rec, last_notified_ms=now_ms, last_notified_kind="repeat"), "repeat"
        return rec, None
    if s.state is State.OK and rec.notified_state is not None:
        return replace(
            rec,
            notified_state=None,
            fired_at_ms=None,
            last_notified_ms=now_ms,
            last_notified_kind="resolved",
        ), "resolved"
    return rec, None


def make_notification(
    m: Monitor,
    kind: NotificationKind,
    before: SeriesRecord,
    after: SeriesRecord,
    *,
    now_ms: int,
    repeat_s: float,
    previous: State,
) -> Notification:
    """The notification ``decide`` asked for; ``previous`` is the state before a firing."""
    s = after.state
    ends: float | None = None
    if kind == "resolved":
        started = before.fired_at_ms if before.fired_at_ms is not None else s.since
        prev_state = before.notified_state or previous
        ends = s.since / 1000
    elif kind == "repeat":
        started = after.fired_at_ms if after.fired_at_ms is not None else s.since
        prev_state = s.state
    else:
        started, prev_state = s.since, previous
    return Notification(
        monitor=m.name,
        state=s.state,
        previous_state=prev_state,
        kind=kind,
        summary=s.reason,
        started_at=started / 1000,
        created_at=now_ms / 1000,
        description=m.description,
        owner=m.owner or "",
        runbook=m.runbook or "",
        labels=labels_of({**dict(m.labels), **dict(after.labels)}),
        value=s.last_value,
        ends_at=ends,
        repeat_s=repeat_s,
    )


def state_samples(monitor: str, states: Mapping[Labels, State]) -> list[Sample]:
    """``signalbox_monitor_state{monitor=...,<series labels>}`` 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    The label-less "query returned nothing" series is left out while the monitor has real
    series (it is then at rest, kept only for a resolve owed): one monitor's state series
    should not mix ``{monitor}`` with ``{monitor,file,...}``. The runner adds ``host``.
    """
    out = []
    for labels, st in sorted(states.items()):
        if not labels and len(states) > 1:
            continue
        pairs = {("exported_monitor" if k == "monitor" else k): v for k, v in labels}
        out.append(Sample(STATE_METRIC, labels_of({**pairs, "monitor": monitor}), STATE_VALUES[st]))
    return out


def dependency_order(monitors: Sequence[Monitor]) -> list[Monitor]:
    """``monitors`` with every dependency before its dependents (file order otherwise)."""
    by_name = {m.name: m for m in monitors}
    out: list[Monitor] = []
    done: set[str] = set()

    def visit(m: Monitor, path: set[str]) -> None:
        if m.name in done or m.name in path:
            return  # cycles are lint errors; never loop on one
        path.add(m.name)
        for dep in m.depends_on:
            if dep in by_name:
                visit(by_name[dep], path)
        done.add(m.name)
        out.append(m)

    for m in monitors:
        visit(m, set())
    return out
