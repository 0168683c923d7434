"""Backtests: what a monitor would have done over stored history, for the reviewer of a change.

``signalbox monitors backtest FILE --since 7d`` replays each monitor of FILE with the real
state machine (:mod:`signalbox.monitors.backtest.replay`) and reports, per monitor, every incident
(a run of not-OK of one series: start, end, duration, worst state, peak value), the time
spent firing and the notifications it would have sent. ``--against OTHER`` puts the same
monitor names from another file beside them, which is the question a threshold change
raises: "old: 4 incidents, 3h12m firing, 9 notifications / new: 1 incident, 20m firing,
2 notifications".

The replay warms up before the window (``for`` plus a full flap history) so the first
minutes are judged as a running system would judge them. Not modelled: silences,
acknowledgements and ``depends_on`` suppression, which depend on what people did then.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from signalbox.durations import Tier, format_duration
from signalbox.metrics.samples import format_series
from signalbox.monitors.backtest.replay import Interval, NotificationCount, ReplayResult, replay
from signalbox.monitors.backtest.request import BacktestRequest, Window
from signalbox.monitors.definitions.lint import LintError
from signalbox.monitors.definitions.model import Monitor, State
from signalbox.monitors.definitions.threshold import format_number
from signalbox.monitors.engine.flapping import HISTORY_SIZE
from signalbox.query import Engine

FIRING = (State.WARNING, State.CRITICAL)


@dataclass(frozen=True)
class MonitorBacktest:
    """One monitor's replay and the numbers a reviewer reads from it."""

    monitor: Monitor
    result: ReplayResult
    repeat_ms: int

    @property
    def intervals(self) -> list[Interval]:
        return self.result.intervals()

    @property
    def firing_ms(self) -> int:
        return self.result.time_in(FIRING)

    @property
    def unknown_ms(self) -> int:
        return self.result.time_in((State.UNKNOWN,))

    @property
    def notifications(self) -> NotificationCount:
        return self.result.notifications(self.repeat_ms)

    @property
    def flapping_starts(self) -> int:
        return sum(1 for t in self.result.transitions if t.event == "flapping_started")


def default_step_s(
    since_s: float,
    *,
    raw_retention_s: float,
    tiers: Sequence[Tier],
    evaluation_s: float,
) -> float:
    """The finest step the store can answer for a window reaching ``since_s`` back.

    Within raw retention that is the monitors' evaluation interval (what the runner
    does); beyond it, the resolution of the finest rollup tier still covering the start
    (1m with the default retention), so every step sees a bucket of its own.
    """
    if since_s <= raw_retention_s:
        return evaluation_s
    for tier in tiers:
        if since_s <= tier.retention:
            return float(max(tier.resolution, evaluation_s))
    return float(tiers[-1].resolution) if tiers else evaluation_s


def backtest(
    monitors: Sequence[Monitor],
    engine: Engine,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    default_repeat_s: float,
    progress: Callable[[int, Monitor], None] | None = None,
) -> list[MonitorBacktest]:
    """Replay each monitor over ``[start_ms, end_ms]``; raises for a plugin monitor."""
    out: list[MonitorBacktest] = []
    for i, m in enumerate(monitors):
        if progress is not None:
            progress(i, m)
        warmup = round(m.for_seconds * 1000) + HISTORY_SIZE * step_ms
        res = replay(m, engine, start_ms, end_ms, step_ms, warmup_ms=warmup)
        repeat_ms = round((m.repeat_seconds or default_repeat_s) * 1000)
        out.append(MonitorBacktest(m, res, repeat_ms))
    return out


# -- presenting -----------------------------------------------------------------------------


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _dur(ms: int) -> str:
    return format_duration(round(ms / 1000))


def summary(b: MonitorBacktest) -> str:
    """``4 incidents, 3h12m firing, 9 notifications`` (plus unknown time and flapping if any)."""
    n = len(b.intervals)
    parts = [f"{n} incident{'' if n == 1 else 's'}", f"{_dur(b.firing_ms)} firing"]
    if b.unknown_ms:
        parts.append(f"{_dur(b.unknown_ms)} unknown")
    note = b.notifications
    parts.append(
        f"{note.total} notification{'' if note.total == 1 else 's'} "
        f"({note.firing} firing, {note.repeat} repeat, {note.resolved} resolved)"
    )
    if b.flapping_starts:
        parts.append(f"flapping {b.flapping_starts}x")
    return ", ".join(parts)


def _peak(b: MonitorBacktest, iv: Interval) -> str:
    rule = b.monitor.rule()
    if iv.peak is None:
        return "-"
    return rule.show(iv.peak) if rule is not None else format_number(iv.peak)


def incident_lines(b: MonitorBacktest, indent: str = "  ") -> list[str]:
    """A table of incidents: start, end, duration, severity, peak, series."""
    ivs = b.intervals
    if not ivs:
        return [f"{indent}(never fired)"]
    rows = [("start (UTC)", "end", "duration", "severity", "peak", "series")]
    for iv in ivs:
        end = _when(iv.end_ms) if iv.end_ms is not None else "(still at end)"
        series = format_series("", iv.labels) or "{}"
        rows.append(
            (
                _when(iv.start_ms),
                end,
                _dur(iv.duration_ms(b.result.end_ms)),
                iv.state.value,
                _peak(b, iv),
                series,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        for r in rows
    ]


def dropped_note(b: MonitorBacktest) -> str | None:
    """A warning when result series collided once their metric name was dropped."""
    if not b.result.dropped:
        return None
    shown = ", ".join(format_series("", labels) or "{}" for labels in b.result.dropped)
    m = b.monitor
    return (
        f"{m.file}:{m.line}: {m.name}: several series of the query share the labels {shown} "
        "without their metric names; the runner keeps only the first (so does this backtest)"
    )


def format_backtest(b: MonitorBacktest) -> list[str]:
    m = b.monitor
    return [f"{m.name} ({m.file}:{m.line})", f"  {summary(b)}", *incident_lines(b, "    ")]


def format_window(start_ms: int, end_ms: int, step_ms: int) -> str:
    return f"backtest {_when(start_ms)} -> {_when(end_ms)} UTC, step {_dur(step_ms)}"


def format_comparison(
    new: Sequence[MonitorBacktest], old: Sequence[MonitorBacktest], new_file: str, old_file: str
) -> list[str]:
    """Side by side per monitor name: ``old`` (``--against``) first, then ``new`` (FILE)."""
    by_new = {b.monitor.name: b for b in new}
    by_old = {b.monitor.name: b for b in old}
    names = [b.monitor.name for b in old] + [n for n in by_new if n not in by_old]
    out: list[str] = []
    for name in names:
        o, n = by_old.get(name), by_new.get(name)
        out.append(name)
        out.append(f"  old ({old_file}): {summary(o) if o else 'not defined'}")
        out.append(f"  new ({new_file}): {summary(n) if n else 'not defined'}")
        for label, b in (("old", o), ("new", n)):
            if b is not None and b.intervals:
                out.append(f"  {label} incidents:")
                out.extend(incident_lines(b, "    "))
    return out


def to_json(b: MonitorBacktest) -> dict[str, Any]:
    note = b.notifications
    rule = b.monitor.rule()
    return {
        "name": b.monitor.name,
        "file": b.monitor.file,
        "line": b.monitor.line,
        "incidents": [
            {
                "labels": dict(iv.labels),
                "start": _iso(iv.start_ms),
                "end": _iso(iv.end_ms),
                "duration_s": iv.duration_ms(b.result.end_ms) / 1000,
                "severity": iv.state.value,
                "peak": iv.peak if iv.peak is not None and math.isfinite(iv.peak) else None,
                "peak_text": _peak(b, iv) if rule is not None else None,
            }
            for iv in b.intervals
        ],
        "firing_s": b.firing_ms / 1000,
        "unknown_s": b.unknown_ms / 1000,
        "flapping_starts": b.flapping_starts,
        "notifications": {
            "firing": note.firing,
            "repeat": note.repeat,
            "resolved": note.resolved,
            "total": note.total,
        },
        "repeat_s": b.repeat_ms / 1000,
        "dropped_series": [dict(labels) for labels in b.result.dropped],
    }


# -- the whole report -----------------------------------------------------------------------


def skipped_note(m: Monitor) -> str:
    """Why a monitor of the file was not replayed."""
    return f"{m.file}:{m.line}: {m.name}: a Nagios plugin check has no stored history; not replayed"


@dataclass(frozen=True)
class BacktestReport:
    """Everything one backtest found, for any front end to present.

    ``new`` are the replays of the request's ``file``, ``old`` those of ``against`` (empty
    without it); ``lint_errors`` the problems in either file (their valid monitors were
    still replayed), ``skipped`` the monitors that cannot be replayed (Nagios plugins).
    """

    request: BacktestRequest
    window: Window
    new: tuple[MonitorBacktest, ...]
    old: tuple[MonitorBacktest, ...]
    lint_errors: tuple[LintError, ...] = ()
    skipped: tuple[Monitor, ...] = ()

    @property
    def ok(self) -> bool:
        """False when a file had lint errors: the check failed even if the rest ran."""
        return not self.lint_errors

    def notes(self) -> list[str]:
        """Warnings for the reader (stderr in the CLI): lint errors, monitors not replayed,
        series dropped as duplicates."""
        dropped = [n for b in [*self.new, *self.old] if (n := dropped_note(b)) is not None]
        return [*(str(e) for e in self.lint_errors), *map(skipped_note, self.skipped), *dropped]

    def text_lines(self) -> list[str]:
        """The report as text: the window, then each monitor or the side-by-side comparison."""
        w, req = self.window, self.request
        lines = [format_window(w.start_ms, w.end_ms, w.step_ms)]
        if req.against is None:
            for b in self.new:
                lines.extend(format_backtest(b))
            if not self.new:
                lines.append(f"no monitors to backtest in {req.file}")
        elif self.new or self.old:
            lines.extend(format_comparison(self.new, self.old, str(req.file), str(req.against)))
        else:
            lines.append(f"no monitors to backtest in {req.file} or {req.against}")
        return lines

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON document (``monitors backtest --json``, the HTTP API)."""
        w, req = self.window, self.request
        doc: dict[str, Any] = {
            "start": w.start_ms / 1000,
            "end": w.end_ms / 1000,
            "step_s": w.step_ms / 1000,
            "file": str(req.file),
        }
        if req.against is None:
            doc["monitors"] = [to_json(b) for b in self.new]
            return doc
        by_old = {b.monitor.name: b for b in self.old}
        by_new = {b.monitor.name: b for b in self.new}
        order = [*by_old, *(n for n in by_new if n not in by_old)]
        doc["against"] = str(req.against)
        doc["monitors"] = [
            {
                "name": n,
                "old": to_json(by_old[n]) if n in by_old else None,
                "new": to_json(by_new[n]) if n in by_new else None,
            }
            for n in order
        ]
        return doc
