"""Unit tests for monitors, in the style of ``promtool test rules``: series in, states out.

A test file (``*_test.yaml`` or ``*.test.yaml``, next to the monitors) says which series
exist and what the monitors must say about them::

    monitor_files: [photos.yaml]      # relative to this file; default: the monitor files beside it
    interval: 1m                      # time between input samples (default 1m)
    evaluation_interval: 1m           # how often monitors run (default: interval)
    tests:
      - name: slow resizes page after 3m and recover below 3
        input_series:
          - series: 'image_processing_time{host="web1"}'
            values: '2 2 9x6 2.5x4 _ 1'      # promtool's expanding notation
        expect:
          - at: 5m
            monitor: image_processing_slow
            state: critical                  # ok | warning | critical | unknown
            labels: {host: web1}             # one series; without: the monitor's worst state
          - at: 4m
            monitor: image_processing_slow
            state: critical
            pending: true                    # waiting out `for` to become critical
        expect_notifications:                # counted from the start to the end of the test
          - monitor: image_processing_slow
            firing: 1
            resolved: 1

Sample ``k`` of a series is at ``k * interval`` from time 0; each test runs until its last
sample or its last ``at``, whichever is later. Every monitor is replayed with the real state
machine (:mod:`signalbox.monitors.backtest.replay`) over an in-memory store, so a passing test means
the runner would behave the same on the same numbers. ``stale`` is stored as Prometheus'
stale-marker NaN: the engine has no staleness handling, so the series reads as NaN (which a
monitor takes as no data) until its next sample.

Every problem in a test file is reported with ``file:line`` and the key, and one broken
test does not stop the others in the file from running.
"""

from __future__ import annotations

import difflib
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from signalbox.durations import format_duration
from signalbox.exceptions import SignalboxError
from signalbox.metrics.samples import Sample, format_series
from signalbox.monitors.backtest.replay import ReplayResult, replay
from signalbox.monitors.definitions.load import load_monitors
from signalbox.monitors.definitions.model import Monitor, State
from signalbox.monitors.testing.file import (
    FileError,
    NotificationExpectation,
    StateExpectation,
    UnitTest,
    find_test_files,
    load_test_file,
)
from signalbox.monitors.testing.notation import STALE

__all__ = [
    "STALE_NAN",
    "FileError",
    "FileReport",
    "Outcome",
    "find_test_files",
    "format_report",
    "load_test_file",
    "run_test",
    "run_test_file",
]

STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
"""Prometheus' stale marker: a NaN with a payload the TSDB recognises."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One test's verdict; ``failures`` holds the printable explanation of each miss."""

    name: str
    line: int
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True, slots=True)
class FileReport:
    path: Path
    errors: tuple[FileError, ...]
    outcomes: tuple[Outcome, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors and all(o.passed for o in self.outcomes)


# -- running ------------------------------------------------------------------------------


def _ms(ms: int) -> str:
    return format_duration(ms / 1000)


def _got(state: State, pending: State | None, since: int | None) -> str:
    if pending is None:
        return state.value
    return f"{state.value} (pending {pending.value}{f' since {_ms(since)}' if since is not None else ''})"


def _check_state(e: StateExpectation, res: ReplayResult, file: str) -> str | None:
    snap = res.snapshots[e.at_ms]
    if e.labels is not None:
        s = snap.get(e.labels)
        state, pending = (s.state, s.pending) if s is not None else (State.OK, None)
        since = s.pending_since if s is not None else None
        who = f"{e.monitor}{format_series('', e.labels)}"
    else:
        state, pending = res.state_at(e.at_ms)
        since = min(
            (
                s.pending_since
                for s in snap.values()
                if s.pending is pending and s.pending_since is not None
            ),
            default=None,
        )
        who = f"{e.monitor} (worst of its series)"
    if e.pending:
        ok, exp = pending is e.state, f"pending {e.state.value}"
    elif e.pending is False:
        ok, exp = state is e.state and pending is None, f"{e.state.value}, not pending"
    else:
        ok, exp = state is e.state, e.state.value
    if ok:
        return None
    lines = [
        f"{file}:{e.line}: at {_ms(e.at_ms)}, monitor {who}:",
        f"    exp: {exp}",
        f"    got: {_got(state, pending, since)}",
    ]
    if e.labels is not None and e.labels not in snap:
        lines[-1] += " (no such series)"
    if snap and (e.labels is None or e.labels not in snap or len(snap) > 1):
        shown = ", ".join(
            f"{format_series('', k) or '{}'} {_got(s.state, s.pending, s.pending_since)}"
            for k, s in sorted(snap.items())
        )
        lines.append(f"    series: {shown}")
    return "\n".join(lines)


def _check_notifications(
    e: NotificationExpectation, res: ReplayResult, repeat_ms: int, file: str
) -> str | None:
    got = res.notifications(repeat_ms, e.labels)
    exp = {"firing": e.firing, "repeat": e.repeat, "resolved": e.resolved}
    have = {"firing": got.firing, "repeat": got.repeat, "resolved": got.resolved}
    if all(v is None or have[k] == v for k, v in exp.items()):
        return None
    who = e.monitor + (format_series("", e.labels) if e.labels else "")
    return "\n".join(
        [
            f"{file}:{e.line}: notifications of {who} until {_ms(res.end_ms)} (repeat every {_ms(repeat_ms)}):",
            "    exp: " + ", ".join(f"{k} {v}" for k, v in exp.items() if v is not None),
            "    got: " + ", ".join(f"{k} {v}" for k, v in have.items()),
        ]
    )


def _missing(
    e: StateExpectation | NotificationExpectation,
    monitors: Collection[str],
    broken: Collection[str],
    file: str,
) -> str:
    if e.monitor in broken:
        return f"{file}:{e.line}: monitor '{e.monitor}' did not load (see its errors above)"
    close = difflib.get_close_matches(e.monitor, list(monitors), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    known = ", ".join(sorted(monitors)) or "none"
    return f"{file}:{e.line}: unknown monitor '{e.monitor}'{hint}: the monitor files define {known}"


def run_test(
    test: UnitTest,
    monitors: Mapping[str, Monitor],
    file: str,
    *,
    default_repeat_s: float,
    broken: Collection[str] = (),
) -> Outcome:
    """Write the test's series into a memory store, replay each monitor it names, compare.

    ``broken`` names monitors that exist but did not load, for a better message than
    "unknown" when a test names one.
    """
    from signalbox.metrics.memstore import MemoryMetricStore
    from signalbox.query import Engine

    store = MemoryMetricStore()
    samples = [
        Sample(s.name, s.labels, STALE_NAN if v == STALE else float(v), k * test.interval_ms)
        for s in test.series
        for k, v in enumerate(s.values)
        if v is not None
    ]
    store.write(samples, 0)
    engine = Engine(store)
    wanted: list[StateExpectation | NotificationExpectation] = [*test.expect, *test.notifications]
    failures = [_missing(e, monitors, broken, file) for e in wanted if e.monitor not in monitors]
    results: dict[str, ReplayResult] = {}
    for name in sorted({e.monitor for e in wanted if e.monitor in monitors}):
        at = [e.at_ms for e in test.expect if e.monitor == name]
        try:
            results[name] = replay(
                monitors[name], engine, 0, test.end_ms, test.evaluation_ms, snapshot_at=at
            )
        except SignalboxError as err:
            failures.append(f"{file}:{test.line}: monitor {name}: {err}")
    for e in sorted(test.expect, key=lambda e: (e.at_ms, e.line)):
        if e.monitor in results and (msg := _check_state(e, results[e.monitor], file)):
            failures.append(msg)
    for n in test.notifications:
        if n.monitor in results:
            repeat_s = monitors[n.monitor].repeat_seconds or default_repeat_s
            if msg := _check_notifications(n, results[n.monitor], round(repeat_s * 1000), file):
                failures.append(msg)
    return Outcome(test.name, test.line, tuple(failures))


def run_test_file(
    path: Path, *, default_repeat_s: float = 4 * 3600.0, context: Sequence[Path] = ()
) -> FileReport:
    """Load one test file and its monitors and run every test in it.

    ``context`` are further monitor paths (the configured ``monitor_paths``) loaded
    alongside, so a ``depends_on`` naming a monitor elsewhere resolves; only errors in the
    test's own monitor files are reported. A test that could not be read is reported as
    failed, not skipped.
    """
    tf = load_test_file(path)
    errors = list(tf.errors)
    mine = {str(p) for p in tf.monitor_files}
    monitors: dict[str, Monitor] = {}
    broken: set[str] = set()
    if tf.monitor_files:
        loaded = load_monitors([*tf.monitor_files, *(p for p in context if p.exists())])
        monitors = {m.name: m for m in loaded.monitors if m.file in mine}
        for le in loaded.errors:
            if le.file in mine:
                errors.append(FileError(le.file, le.line, le.monitor, le.key, le.message))
                broken.add(le.monitor or "")
    outcomes = [
        Outcome(name, line, (f"{path}:{line}: not run: fix the errors above",))
        for name, line in tf.broken
    ]
    for test in tf.tests:
        outcomes.append(
            run_test(test, monitors, str(path), default_repeat_s=default_repeat_s, broken=broken)
        )
    outcomes.sort(key=lambda o: o.line)
    return FileReport(path, tuple(errors), tuple(outcomes))


def format_report(report: FileReport) -> str:
    """promtool-like text: the file, then each test's verdict with what was expected and got."""
    out = [f"Unit Testing: {report.path}"]
    out.extend(f"  ERROR: {e}" for e in report.errors)
    for o in report.outcomes:
        out.append(f"  {'PASSED' if o.passed else 'FAILED'}: {o.name}")
        for f in o.failures:
            out.extend("    " + line for line in f.splitlines())
    return "\n".join(out)
