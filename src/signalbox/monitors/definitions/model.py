"""What a monitor *is*: frozen definitions built by :mod:`signalbox.monitors.definitions.load`.

A monitor checks exactly one thing (its *check*): a PromQL query against thresholds, the
staleness of a metric or spool file, a Nagios plugin, or a queue's depth. Every check
except the plugin boils down to a number compared with thresholds, so each exposes a
:class:`Rule` and the state machine in :mod:`signalbox.monitors.engine.evaluate` needs to know
only rules, not kinds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from signalbox.durations import format_duration
from signalbox.metrics.samples import Labels, escape_label_value
from signalbox.monitors.definitions.threshold import Threshold, format_number


class State(StrEnum):
    """A monitor's (or one series') state, as Nagios and Alertmanager users know them."""

    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"

    @property
    def severity(self) -> int:
        """OK < UNKNOWN < WARNING < CRITICAL: a confirmed problem outranks not knowing."""
        return _SEVERITY[self]

    @property
    def firing(self) -> bool:
        """WARNING and CRITICAL fire; UNKNOWN is reported but is not a threshold breach."""
        return self in (State.WARNING, State.CRITICAL)


_SEVERITY = {State.OK: 0, State.UNKNOWN: 1, State.WARNING: 2, State.CRITICAL: 3}


def worst(states: list[State] | tuple[State, ...]) -> State:
    """The most severe of ``states`` (OK for none): a monitor's state over its series."""
    return max(states, key=lambda s: s.severity, default=State.OK)


NAME_RE = re.compile(r"[a-z0-9_.-]+\Z")
NO_DATA_CHOICES: tuple[str, ...] = ("ok", "warning", "critical", "unknown")
Kind = Literal["threshold", "staleness", "nagios", "queue"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A number compared with thresholds; what the state machine evaluates.

    ``subject`` names the number in reasons; ``unit`` ``"s"`` prints values as durations.
    """

    subject: str
    warning: Threshold | None = None
    critical: Threshold | None = None
    recover: Threshold | None = None
    unit: Literal["", "s"] = ""

    def show(self, value: float) -> str:
        """``value`` as it reads in a reason."""
        if self.unit == "s" and value >= 0:
            return format_duration(value)
        return format_number(value)

    def show_threshold(self, t: Threshold) -> str:
        """``t`` as it reads in a reason (``> 10m`` for durations)."""
        return f"{t.op} {self.show(t.value)}"


@dataclass(frozen=True, slots=True)
class ThresholdCheck:
    """A PromQL query evaluated per series against warning/critical (and recover)."""

    query: str
    warning: Threshold | None = None
    critical: Threshold | None = None
    recover: Threshold | None = None

    def rule(self) -> Rule:
        return Rule(self.query, self.warning, self.critical, self.recover)


@dataclass(frozen=True, slots=True)
class StaleCheck:
    """Fires when a metric or spool file has not been updated for ``after_seconds``.

    The number evaluated is an age in seconds per series: for ``metric`` the runner
    computes now minus the newest sample's timestamp; for ``spool_file`` it reads the
    collector's ``signalbox_spool_file_age_seconds{file=...}`` (see :attr:`selector`).
    """

    after_seconds: float
    metric: str | None = None
    spool_file: str | None = None
    severity: State = State.CRITICAL

    @property
    def selector(self) -> str:
        """The series to read: the metric itself, or the spool self-metric for the glob."""
        if self.metric is not None:
            return self.metric
        return f'signalbox_spool_file_age_seconds{{file=~"{escape_label_value(self.spool_regex)}"}}'

    @property
    def spool_regex(self) -> str:
        """``spool_file`` glob as an anchored-by-PromQL regex (``*`` and ``?`` stay in one path part)."""
        out: list[str] = []
        for ch in self.spool_file or "":
            if ch == "*":
                out.append("[^/]*")
            elif ch == "?":
                out.append("[^/]")
            else:
                out.append(re.escape(ch))
        return "".join(out)

    def rule(self) -> Rule:
        what = self.metric if self.metric is not None else f"spool file {self.spool_file}"
        fire = Threshold(">", self.after_seconds)
        if self.severity is State.WARNING:
            return Rule(f"age of {what}", warning=fire, unit="s")
        return Rule(f"age of {what}", critical=fire, unit="s")


@dataclass(frozen=True, slots=True)
class NagiosCheck:
    """A Nagios plugin run as ``command`` (argv, no shell); its exit code is the state."""

    command: tuple[str, ...]
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class QueueCheck:
    """Queue depth with high/low water marks: fire at ``high``, recover at ``low``."""

    queue: str
    high: float
    low: float
    severity: State = State.CRITICAL

    @property
    def selector(self) -> str:
        return f'signalbox_queue_depth{{queue="{escape_label_value(self.queue)}"}}'

    def rule(self) -> Rule:
        fire, recover = Threshold(">=", self.high), Threshold("<=", self.low)
        subject = f"depth of queue {self.queue}"
        if self.severity is State.WARNING:
            return Rule(subject, warning=fire, recover=recover)
        return Rule(subject, critical=fire, recover=recover)


Check = ThresholdCheck | StaleCheck | NagiosCheck | QueueCheck


@dataclass(frozen=True, slots=True)
class FlagAction:
    """``on_critical: {flag: photo_uploads, set: "off"}``; ``set`` is ``on``, ``off`` or ``N%``.

    ``line`` is where ``flag:`` is written (for lint's unknown-flag error); not compared."""

    flag: str
    set: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Flapping:
    """Nagios-style flap detection thresholds, in percent state change."""

    low: float = 20.0
    high: float = 30.0
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Monitor:
    """One monitor as written in a YAML file, validated.

    ``file``/``line`` say where it was defined, for messages and the dashboard; they do not
    take part in equality.
    """

    name: str
    description: str
    check: Check
    owner: str | None = None
    runbook: str | None = None
    notify: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    on_critical: FlagAction | None = None
    on_warning: FlagAction | None = None
    on_recover: FlagAction | None = None  # back to OK from WARNING or CRITICAL
    labels: Labels = ()
    repeat_seconds: float | None = None
    for_seconds: float = 0.0
    no_data: State = State.UNKNOWN
    flapping: Flapping = Flapping()
    file: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    @property
    def kind(self) -> Kind:
        if isinstance(self.check, ThresholdCheck):
            return "threshold"
        if isinstance(self.check, StaleCheck):
            return "staleness"
        if isinstance(self.check, NagiosCheck):
            return "nagios"
        return "queue"

    def rule(self) -> Rule | None:
        """The numeric rule the state machine applies; None for Nagios plugins (exit code)."""
        if isinstance(self.check, NagiosCheck):
            return None
        return self.check.rule()
