"""What one replay found, and the numbers a reviewer reads from it (pure).

:func:`~signalbox.monitors.backtest.replay.replay` records the states and transitions the real
state machine went through; :class:`ReplayResult` answers the questions ``monitors test``
and ``monitors backtest`` ask of them: the state at a given time, the runs of each state
(:class:`Segment`), the incidents (:class:`Interval`) and the notifications the runner
would have sent (:class:`NotificationCount`). Everything here is computed from the
recorded transitions and values alone, with no engine and no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from signalbox.metrics.samples import Labels
from signalbox.monitors.definitions.model import Monitor, State, worst
from signalbox.monitors.engine.evaluate import SeriesState, Transition

Column = list[float | None]
"""One series' number at every step (None: the query returned nothing for it then)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One series in one state from ``start_ms`` until ``end_ms`` (None: still at the end)."""

    state: State
    start_ms: int
    end_ms: int | None


@dataclass(frozen=True, slots=True)
class Interval:
    """A run of steps where one series was not OK: an incident as a reviewer counts them.

    ``state`` is the worst state reached, ``peak`` the most extreme value seen while not
    OK (the maximum, or the minimum for monitors that fire *below* a threshold), and
    ``end_ms`` None when the series was still not OK at the end of the window.
    """

    labels: Labels
    start_ms: int
    end_ms: int | None
    state: State
    peak: float | None

    def duration_ms(self, window_end_ms: int) -> int:
        return (self.end_ms if self.end_ms is not None else window_end_ms) - self.start_ms


@dataclass(frozen=True, slots=True)
class NotificationCount:
    """Notifications one replay would have sent: first firing, repeats, resolved."""

    firing: int = 0
    repeat: int = 0
    resolved: int = 0

    @property
    def total(self) -> int:
        return self.firing + self.repeat + self.resolved

    def __add__(self, other: NotificationCount) -> NotificationCount:
        return NotificationCount(
            self.firing + other.firing, self.repeat + other.repeat, self.resolved + other.resolved
        )


@dataclass(frozen=True)
class ReplayResult:
    """What one monitor did over ``[start_ms, end_ms]`` evaluated every ``step_ms``.

    ``initial`` are the states just before ``start_ms`` (empty without warm-up),
    ``states`` those after the last step, ``transitions`` every change inside the window,
    ``values`` each series' number at every step from ``start_ms``, ``snapshots`` the
    states at each time asked for (after the last step at or before it), and ``dropped``
    the keys of result series ignored because an earlier one had the same labels.
    """

    monitor: Monitor
    start_ms: int
    end_ms: int
    step_ms: int
    initial: Mapping[Labels, SeriesState]
    states: Mapping[Labels, SeriesState]
    transitions: tuple[Transition, ...]
    values: Mapping[Labels, Column]
    snapshots: Mapping[int, Mapping[Labels, SeriesState]] = field(default_factory=dict)
    dropped: tuple[Labels, ...] = ()

    def series(self) -> list[Labels]:
        """Every series that took part: seen in the data or in a transition."""
        keys = set(self.initial) | set(self.values) | {t.labels for t in self.transitions}
        return sorted(keys)

    def state_at(self, at_ms: int, labels: Labels | None = None) -> tuple[State, State | None]:
        """``(state, pending level)`` at a snapshot time: of one series, or the worst of all."""
        snap = self.snapshots.get(at_ms)
        if snap is None:
            raise KeyError(
                f"no snapshot at {at_ms}: ask for it with replay(..., snapshot_at=[...])"
            )
        if labels is not None:
            s = snap.get(labels)
            return (s.state, s.pending) if s is not None else (State.OK, None)
        pendings = [s.pending for s in snap.values() if s.pending is not None]
        return worst([s.state for s in snap.values()]), (worst(pendings) if pendings else None)

    def segments(self, labels: Labels) -> list[Segment]:
        """The states of one series through the window, in order."""
        first = self.initial.get(labels)
        cur, since = (first.state if first is not None else State.OK), self.start_ms
        out: list[Segment] = []
        for t in self.transitions:
            if t.labels == labels and t.event == "state":
                if t.at_ms > since:
                    out.append(Segment(cur, since, t.at_ms))
                cur, since = t.to_state, t.at_ms
        out.append(Segment(cur, since, None))
        return out

    def time_in(self, states: Iterable[State], labels: Labels | None = None) -> int:
        """Milliseconds spent in any of ``states`` (summed over series unless ``labels``)."""
        wanted = set(states)
        total = 0
        for key in [labels] if labels is not None else self.series():
            for seg in self.segments(key):
                if seg.state in wanted:
                    total += (seg.end_ms if seg.end_ms is not None else self.end_ms) - seg.start_ms
        return total

    def intervals(self, labels: Labels | None = None) -> list[Interval]:
        """Incidents per series, ordered by start time then labels.

        An incident is a run of not-OK that fired (reached WARNING or CRITICAL): the span a
        receiver hears about from "firing" to "resolved". Runs of UNKNOWN alone are no
        data, not incidents; :meth:`time_in` measures them.
        """
        rule = self.monitor.rule()
        fire = (rule.critical or rule.warning) if rule is not None else None
        low = fire is not None and fire.direction == "below"
        out: list[Interval] = []
        for key in [labels] if labels is not None else self.series():
            run: list[Segment] = []
            for seg in [*self.segments(key), None]:
                if seg is not None and seg.state is not State.OK:
                    run.append(seg)
                    continue
                if any(r.state.firing for r in run):
                    start, end = run[0].start_ms, run[-1].end_ms
                    peak = self._peak(key, start, end, low)
                    out.append(Interval(key, start, end, worst([r.state for r in run]), peak))
                run = []
        out.sort(key=lambda i: (i.start_ms, i.labels))
        return out

    def _peak(self, labels: Labels, start_ms: int, end_ms: int | None, low: bool) -> float | None:
        col = self.values.get(labels)
        if col is None:
            return None
        lo = (start_ms - self.start_ms) // self.step_ms
        hi = len(col) if end_ms is None else (end_ms - self.start_ms) // self.step_ms
        seen = [v for v in col[lo:hi] if v is not None and not math.isnan(v)]
        if not seen:
            return None
        return min(seen) if low else max(seen)

    def notifications(self, repeat_ms: int, labels: Labels | None = None) -> NotificationCount:
        """What the runner would have sent, per series, summed unless ``labels`` is given.

        The runner's policy (:func:`signalbox.monitors.engine.runner.decide`), evaluation by
        evaluation: *firing* when the series fires in a state receivers were not told
        about (new problem, escalation, de-escalation), *repeat* while it keeps firing
        ``repeat_ms`` after the last one sent, *resolved* when it is back to OK after a
        firing was sent. UNKNOWN sends nothing, and nothing is sent while the series is
        flapping (the next evaluation after it stops catches up). Silences,
        acknowledgements and dependencies are not modelled. A series already firing at
        the window start is taken as told at the start.
        """
        total = NotificationCount()
        for key in [labels] if labels is not None else self.series():
            total += self._notifications_of(key, repeat_ms)
        return total

    def _notifications_of(self, labels: Labels, repeat_ms: int) -> NotificationCount:
        period = -(-max(repeat_ms, 1) // self.step_ms) * self.step_ms  # repeats land on steps
        first = self.initial.get(labels)
        cur = first.state if first is not None else State.OK
        flap = first.flapping if first is not None else False
        notified: State | None = cur if cur.firing else None
        sent = self.start_ms
        firing = repeat = resolved = 0

        def repeats_before(limit_ms: int) -> None:
            nonlocal sent, repeat
            if cur.firing and not flap and notified is cur:
                k = max(0, (limit_ms - 1 - sent) // period)
                repeat += k
                sent += k * period

        events = [t for t in self.transitions if t.labels == labels]
        i = 0
        while i < len(events):
            at = events[i].at_ms
            repeats_before(at)
            while i < len(events) and events[i].at_ms == at:
                t = events[i]
                if t.event == "state":
                    cur = t.to_state
                flap = t.flapping
                i += 1
            if flap:
                continue
            if cur.firing and notified is not cur:
                firing += 1
                notified, sent = cur, at
            elif cur.firing and at - sent >= repeat_ms:
                repeat += 1
                sent = at
            elif cur is State.OK and notified is not None:
                resolved += 1
                notified, sent = None, at
        repeats_before(self.end_ms + 1)
        return NotificationCount(firing, repeat, resolved)
