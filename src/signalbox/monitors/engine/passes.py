"""One evaluation pass in progress: observations in, everything the pass will write out.

:class:`MonitorPass` reads the persisted state once at the start (series, silences, acks),
then for each monitor (dependencies first) applies the state machine to its observations,
asks the notification policy (:mod:`signalbox.monitors.engine.policy`) what receivers must be told,
and collects rows in :class:`PassWrites`, which the runner commits in ONE transaction.
Nothing here does I/O after the initial reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from signalbox.exceptions import SignalboxError
from signalbox.metrics.samples import Labels, MetricMeta, Sample
from signalbox.monitors.definitions.lint import LintError
from signalbox.monitors.definitions.model import Monitor, State, worst
from signalbox.monitors.engine.actions import action_for
from signalbox.monitors.engine.evaluate import Observation, SeriesState, Transition, evaluate_vector
from signalbox.monitors.engine.observe import Observed
from signalbox.monitors.engine.policy import decide, hold_reason, make_notification, state_samples
from signalbox.monitors.notify import Notification
from signalbox.monitors.outbox.delivery import DeliveryReport, OutboxEntry
from signalbox.monitors.state.records import HistoryEntry, SeriesRecord
from signalbox.monitors.state.store import MonitorStore

log = logging.getLogger("signalbox.monitors")


@dataclass(slots=True)
class PassReport:
    """What one pass did."""

    at_ms: int
    monitors: int = 0
    series: int = 0
    transitions: list[Transition] = field(default_factory=list)
    queued: list[OutboxEntry] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    lint_errors: tuple[LintError, ...] = ()
    check_errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PassWrites:
    """Everything a pass writes in its one transaction (samples and metas after it)."""

    records: list[SeriesRecord] = field(default_factory=list)
    removed: list[tuple[str, Labels]] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    outbox: list[tuple[str, Notification, Labels]] = field(default_factory=list)
    actions: list[tuple[Monitor, Transition]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    metas: list[MetricMeta] = field(default_factory=list)


class MonitorPass:
    """One pass in progress: what it read at the start and what it will write.

    Args:
        state: the persisted monitor state, read once here.
        now_ms: the pass time.
        report: filled in as monitors are evaluated.
        repeat_s: the repeat interval of monitors that set none.
    """

    def __init__(
        self, state: MonitorStore, now_ms: int, report: PassReport, *, repeat_s: float
    ) -> None:
        self.now_ms, self.report, self.repeat_s = now_ms, report, repeat_s
        self.records = state.series()
        self.silences = state.silences(active_at=now_ms)
        self.acks = state.acks()
        self.writes = PassWrites()
        self.current: dict[str, list[State]] = {}  # states of the monitors evaluated so far

    def _observed(self, m: Monitor, got: Observed | Exception) -> tuple[Observed, str]:
        """The monitor's observations, or (for a check that could not run) UNKNOWN and why."""
        if not isinstance(got, Exception):
            return got, ""
        if isinstance(got, SignalboxError):
            log.error("monitor %s: check failed: %s", m.name, got)
        else:
            log.error("monitor %s: check failed", m.name, exc_info=got)
        why = f"check failed: {got}"
        self.report.check_errors[m.name] = why
        bad = Observation(state=State.UNKNOWN, text=why)
        return {labels: bad for labels in self.records.get(m.name, {})} or {(): bad}, why

    def suppressor(self, m: Monitor) -> str:
        """The first dependency of ``m`` that is not OK (this pass's state, else the stored one)."""
        for dep in m.depends_on:
            states = self.current.get(dep)
            if states is None:
                states = [r.state.state for r in self.records.get(dep, {}).values()]
            if worst(states) is not State.OK:
                return dep
        return ""

    def evaluate(self, m: Monitor, got: Observed | Exception) -> None:
        """Advance every series of ``m`` by ``got`` (an exception: the check could not run)."""
        prev = self.records.get(m.name, {})
        observed, failed = self._observed(m, got)
        vr = evaluate_vector(m, {k: r.state for k, r in prev.items()}, observed, self.now_ms)
        self.report.transitions += vr.transitions
        suppressed_by = self.suppressor(m)
        gauges: dict[Labels, State] = {}
        by_series: dict[Labels, list[Transition]] = {}
        for t in vr.transitions:
            by_series.setdefault(t.labels, []).append(t)
        for labels in sorted(set(vr.states) | set(prev)):
            trans = by_series.get(labels, [])
            before = prev.get(labels) or SeriesRecord(
                m.name, labels, SeriesState.initial(self.now_ms)
            )
            if labels in vr.states:
                st = vr.states[labels]
                if failed:  # an error is not data: "last seen" stays as it was
                    st = replace(st, last_seen_ms=before.state.last_seen_ms)
            elif labels in vr.forgotten:  # absent, now at rest: kept while a resolve is owed
                st = vr.forgotten[labels]
            else:  # the "query returned nothing" stand-in, not evaluated once data is back
                st = _at_rest(before.state, self.now_ms, trans)
            gauges[labels] = st.state
            rec = replace(before, state=st, suppressed_by=suppressed_by, updated_ms=self.now_ms)
            after = self.notify(m, before, rec, trans)
            if labels in vr.states or after.notified_state is not None:
                self.writes.records.append(after)
            else:
                self.writes.removed.append((m.name, labels))
            self.report.series += 1
        self.writes.samples += state_samples(m.name, gauges)
        self.current[m.name] = [s for k, s in gauges.items() if k in vr.states]
        self.report.monitors += 1

    def notify(
        self, m: Monitor, before: SeriesRecord, rec: SeriesRecord, trans: list[Transition]
    ) -> SeriesRecord:
        """Record ``trans``, queue actions and the notification the policy asks for."""
        st, labels, now = rec.state, rec.labels, self.now_ms
        silence = next((s for s in self.silences if s.matches(m.name, labels)), None)
        hold = hold_reason(st, silence=silence, suppressed_by=rec.suppressed_by)
        ack = self.acks.get((m.name, labels))
        repeat_s = m.repeat_seconds if m.repeat_seconds is not None else self.repeat_s
        acked = ack is not None and ack.holds(st)
        after, kind = decide(
            rec, now_ms=now, repeat_ms=round(repeat_s * 1000), hold=hold, acked=acked
        )
        for t in trans:
            note = "notifications held while flapping" if t.event == "flapping_started" else hold
            self.writes.history.append(
                HistoryEntry(
                    m.name,
                    labels,
                    t.at_ms,
                    t.event,
                    t.reason,
                    t.from_state,
                    t.to_state,
                    t.value,
                    note,
                )
            )
            if action_for(m, t) is not None:
                self.writes.actions.append((m, t))
        if kind is None:
            return after
        change = next((t for t in trans if t.event == "state"), None)
        previous = before.notified_state or (change.from_state if change else before.state.state)
        for notifier in m.notify:  # one notification (so one id) per notifier
            n = make_notification(
                m, kind, before, after, now_ms=now, repeat_s=repeat_s, previous=previous
            )
            self.writes.outbox.append((notifier, n, labels))
        if kind != "repeat":
            where = ", ".join(m.notify) or "nobody (the monitor has no notify: list)"
            was = previous if kind == "firing" else before.notified_state
            self.writes.history.append(
                HistoryEntry(
                    m.name,
                    labels,
                    now,
                    "notification",
                    f"{kind} to {where}",
                    was,
                    st.state,
                    st.last_value,
                )
            )
        return after


def _at_rest(p: SeriesState, now_ms: int, trans: list[Transition]) -> SeriesState:
    """The OK, at-rest state of the "query returned nothing" stand-in once data is back.

    ``evaluate_vector`` does not evaluate it then (its transition to OK says not flapping),
    so nothing would ever clear a flapping flag kept here and hold its resolve forever.
    """
    change = next((t for t in trans if t.event == "state"), None)
    since = now_ms if p.state is not State.OK else p.since
    reason = change.reason if change else p.reason
    return replace(
        p,
        state=State.OK,
        since=since,
        pending=None,
        pending_since=None,
        reason=reason,
        flapping=False,
    )
