"""Self-healing actions: ``on_critical: {flag: photo_uploads, set: "off"}``.

The runner calls an :class:`ActionHandler` exactly once per transition *into* the
triggering state (CRITICAL for ``on_critical``, WARNING for ``on_warning``), inside the
transaction that records the transition, so a crash before the commit forgets both and
the next pass makes the transition (and the call) again, once.

Feature flags arrive in a later issue; until then :class:`RecordingActionHandler` writes
the request into the monitor's history and logs it, so a reviewer can see what *would*
have been flipped and when.
"""

from __future__ import annotations

import logging
from typing import Protocol

from signalbox.monitors.definitions.model import FlagAction, Monitor, State
from signalbox.monitors.engine.evaluate import Transition
from signalbox.monitors.state.records import HistoryEntry
from signalbox.monitors.state.store import MonitorStore

log = logging.getLogger("signalbox.monitors.engine.actions")


class ActionHandler(Protocol):
    """Carries out a monitor's flag action; must not raise for an action it cannot do."""

    def apply(self, action: FlagAction, monitor: Monitor, transition: Transition) -> None: ...


def action_for(monitor: Monitor, transition: Transition) -> FlagAction | None:
    """The action ``transition`` triggers, if any: only state changes into the level."""
    if transition.event != "state" or transition.from_state is transition.to_state:
        return None
    if transition.to_state is State.CRITICAL:
        return monitor.on_critical
    if transition.to_state is State.WARNING:
        return monitor.on_warning
    return None


def describe(action: FlagAction, monitor: Monitor) -> str:
    return f"flag {action.flag} set {action.set} requested by monitor {monitor.name}"


class RecordingActionHandler:
    """Records the requested action in the monitor history and logs it (no flag store yet)."""

    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def apply(self, action: FlagAction, monitor: Monitor, transition: Transition) -> None:
        text = f"{describe(action, monitor)}: no flag store yet"
        log.warning(
            "%s (%s -> %s: %s)",
            text,
            transition.from_state.value,
            transition.to_state.value,
            transition.reason,
        )
        self.store.add_history(
            [
                HistoryEntry(
                    monitor.name,
                    transition.labels,
                    transition.at_ms,
                    "action",
                    text,
                    transition.from_state,
                    transition.to_state,
                    transition.value,
                    note="not applied",
                )
            ]
        )
