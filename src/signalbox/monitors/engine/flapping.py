"""Flap detection the way Nagios does it, so people who know Nagios get the numbers they expect.

Nagios (``check_for_service_flapping`` in ``flapping.c``) keeps the last 21 check results,
counts the state changes between consecutive ones, weights each change linearly from 0.75
(oldest) to 1.25 (newest) so recent changes count more, and turns the sum into a percent
of the 20 possible changes. A series starts flapping at or above the high threshold, stops
at or below the low one, and keeps its flag in between (hysteresis, so the flag itself
does not flap). Pure functions over any comparable states.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

HISTORY_SIZE = 21
LOW_WEIGHT = 0.75
HIGH_WEIGHT = 1.25


def percent_state_change(history: Sequence[Hashable]) -> float:
    """Weighted percent of state changes in the last :data:`HISTORY_SIZE` results, 0..100.

    A shorter history is read as Nagios reads a fresh one: the missing older slots hold the
    oldest known state, so they add no changes and the known ones keep their recent weights.
    """
    recent = list(history[-HISTORY_SIZE:])
    offset = HISTORY_SIZE - len(recent)
    changes = 0.0
    for i in range(1, len(recent)):
        if recent[i] != recent[i - 1]:
            x = offset + i  # 1..HISTORY_SIZE-1, as Nagios' loop index
            changes += (x - 1) * (HIGH_WEIGHT - LOW_WEIGHT) / (HISTORY_SIZE - 2) + LOW_WEIGHT
    return min(100.0, changes * 100.0 / (HISTORY_SIZE - 1))


def is_flapping(was_flapping: bool, percent: float, *, low: float, high: float) -> bool:
    """Start at ``percent >= high``, stop at ``percent <= low``, otherwise keep ``was_flapping``."""
    if percent >= high:
        return True
    if percent <= low:
        return False
    return was_flapping


def push(history: tuple[T, ...], state: T) -> tuple[T, ...]:
    """``history`` with ``state`` appended, trimmed to the last :data:`HISTORY_SIZE`."""
    return (*history, state)[-HISTORY_SIZE:]
