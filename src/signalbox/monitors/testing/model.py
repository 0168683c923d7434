"""What a monitor unit-test file holds, once read: tests, their inputs and expectations.

:mod:`signalbox.monitors.testing.file` builds these from YAML (reporting every problem
as a :class:`FileError`) and :mod:`signalbox.monitors.testing.runner` runs them; keeping the
records apart lets the runner depend on what a test *is* rather than on how it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from signalbox.metrics.samples import Labels
from signalbox.monitors.definitions.model import State
from signalbox.monitors.testing.notation import Value


@dataclass(frozen=True, slots=True)
class FileError:
    """One problem in a test file (or a monitor file it uses): where and what."""

    file: str
    line: int
    test: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" {self.test}:" if self.test else ""
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{who}{key} {self.message}"


@dataclass(frozen=True, slots=True)
class InputSeries:
    name: str
    labels: Labels
    values: tuple[Value, ...]
    line: int


@dataclass(frozen=True, slots=True)
class StateExpectation:
    """``state`` at ``at_ms`` for one series (``labels``) or the monitor as a whole."""

    at_ms: int
    monitor: str
    state: State
    pending: bool | None
    labels: Labels | None
    line: int


@dataclass(frozen=True, slots=True)
class NotificationExpectation:
    """Counts of notifications from the start to the end of the test (None: not checked)."""

    monitor: str
    labels: Labels | None
    firing: int | None
    repeat: int | None
    resolved: int | None
    line: int


@dataclass(frozen=True, slots=True)
class UnitTest:
    name: str
    line: int
    interval_ms: int
    evaluation_ms: int
    series: tuple[InputSeries, ...]
    expect: tuple[StateExpectation, ...]
    notifications: tuple[NotificationExpectation, ...]

    @property
    def end_ms(self) -> int:
        """The last sample or the last ``at``, whichever is later."""
        last = max((len(s.values) - 1 for s in self.series), default=0) * self.interval_ms
        return max([last, *(e.at_ms for e in self.expect)])


@dataclass(frozen=True, slots=True)
class UnitTestFile:
    path: Path
    monitor_files: tuple[Path, ...]
    tests: tuple[UnitTest, ...]
    errors: tuple[FileError, ...]
    broken: tuple[tuple[str, int], ...] = ()
    """``(name, line)`` of each test that has errors and so cannot run."""
