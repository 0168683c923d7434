"""Monitors built in code for the monitor tests (one builder, many test modules)."""

from __future__ import annotations

from signalbox.monitors.definitions.model import Flapping, Monitor, State, ThresholdCheck
from signalbox.monitors.definitions.threshold import parse_threshold


def threshold_monitor(
    query: str,
    warning: str | None = "> 4",
    critical: str | None = "> 8",
    recover: str | None = None,
    *,
    name: str = "m",
    description: str = "test monitor",
    for_s: float = 0.0,
    no_data: State = State.UNKNOWN,
    flapping: Flapping | None = None,
    repeat_s: float | None = None,
) -> Monitor:
    """A threshold monitor; flap detection off unless ``flapping`` is given."""
    check = ThresholdCheck(
        query,
        parse_threshold(warning) if warning else None,
        parse_threshold(critical) if critical else None,
        parse_threshold(recover) if recover else None,
    )
    return Monitor(
        name,
        description,
        check,
        for_seconds=for_s,
        no_data=no_data,
        flapping=flapping or Flapping(enabled=False),
        repeat_seconds=repeat_s,
    )
