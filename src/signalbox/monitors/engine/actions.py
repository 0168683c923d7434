"""Self-healing actions: ``on_critical: {flag: photo_uploads, set: "off"}`` (also
``on_warning``, and ``on_recover`` for the way back).

The runner calls an :class:`ActionHandler` exactly once per transition *into* the
triggering state (CRITICAL for ``on_critical``, WARNING for ``on_warning``, OK from WARNING
or CRITICAL for ``on_recover``), inside the transaction that records the transition. The
:class:`FlagActionHandler` changes the flag through the flag store on the same database, so
the flip, its audit entry and the transition commit together or not at all: a crash (or a
failed write) before the commit forgets all of them, and the next pass makes the transition,
and the flip, again, once. A store error is therefore raised, not swallowed: swallowing it
would commit a transition whose flip never happened, and no later pass would flip.

What the handler does, and what it leaves alone:

* the flip is audited as done by the monitor (``monitor:NAME``), with the transition as
  the reason, and written in the monitor's history (``action``, note ``applied``);
* a flag already in the asked-for state is left alone (note ``not repeated``): a second
  series going CRITICAL, or a flag an operator already switched, makes no audit entry;
* ``on_recover`` waits for the monitor's last firing series: while another series is
  still WARNING or CRITICAL, the flag stays as the monitor left it;
* nothing flips back by itself: without ``on_recover`` the flag stays off until someone
  turns it on (``signalbox flags set NAME on --reason ...`` or the flags page);
* a flag declared nowhere (``monitors lint`` reports it with its file and line) is refused,
  in the history and the log: the monitor still runs and notifies.

The handler's one-line account is returned to the runner, which adds it to the
notification of the same transition, so receivers learn what was switched.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from signalbox.exceptions import StoreError, UsageError
from signalbox.monitors.definitions.lint import LintError
from signalbox.monitors.definitions.model import FlagAction, Monitor, State
from signalbox.monitors.engine.evaluate import Transition
from signalbox.monitors.state.records import HistoryEntry
from signalbox.monitors.state.store import MonitorStore

if TYPE_CHECKING:
    from signalbox.flags.admin import FlagAdmin

__all__ = [
    "ActionHandler",
    "FlagActionHandler",
    "RecordingActionHandler",
    "action_for",
    "action_key",
    "describe",
    "undeclared_flags",
]

log = logging.getLogger("signalbox.monitors.engine.actions")

_FIRING = (State.WARNING, State.CRITICAL)
MAX_REASON = 900  # of the transition's reason in the flag's audit (which keeps 1000)


class ActionHandler(Protocol):
    """Carries out a monitor's flag action; returns a one-line account for the transition's
    notification (None: nothing to say). Must not raise for an action it cannot do (a
    refusal is recorded); may raise when the store fails (the pass then commits nothing)."""

    def apply(self, action: FlagAction, monitor: Monitor, transition: Transition) -> str | None: ...


def action_key(monitor: Monitor, transition: Transition) -> str | None:
    """Which of the monitor's actions ``transition`` triggers: ``on_critical``,
    ``on_warning``, ``on_recover``, or None. Only state changes trigger one."""
    if transition.event != "state" or transition.from_state is transition.to_state:
        return None
    to = transition.to_state
    if to is State.CRITICAL and monitor.on_critical is not None:
        return "on_critical"
    if to is State.WARNING and monitor.on_warning is not None:
        return "on_warning"
    if to is State.OK and transition.from_state in _FIRING and monitor.on_recover is not None:
        return "on_recover"
    return None


def action_for(monitor: Monitor, transition: Transition) -> FlagAction | None:
    """The action ``transition`` triggers, if any (see :func:`action_key`)."""
    key = action_key(monitor, transition)
    found: FlagAction | None = None if key is None else getattr(monitor, key)
    return found


def describe(action: FlagAction, monitor: Monitor) -> str:
    return f"flag {action.flag} set {action.set} requested by monitor {monitor.name}"


def _one_line(text: str) -> str:
    """``text`` as a flag audit keeps a reason: one printable line."""
    out = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text)
    out = " ".join(out.split())
    return out if len(out) <= MAX_REASON else out[: MAX_REASON - 1] + "…"


def undeclared_flags(monitors: Sequence[Monitor], declared: Collection[str]) -> list[LintError]:
    """A lint error (file:line of the action) for each action naming a flag not in
    ``declared``: it would be refused at run time, so the review should see it first."""
    known = sorted(declared)
    errors = []
    for m in monitors:
        for key in ("on_critical", "on_warning", "on_recover"):
            action: FlagAction | None = getattr(m, key)
            if action is None or action.flag in declared:
                continue
            from signalbox.monitors.definitions.yamlnodes import suggest

            where = f"declared flags: {', '.join(known)}" if known else "no flags are declared"
            errors.append(
                LintError(
                    m.file,
                    action.line or m.line,
                    m.name,
                    f"{key}.flag",
                    f"unknown flag '{action.flag}'{suggest(action.flag, known)}: {where} "
                    "(in the flags files, [flags] paths)",
                )
            )
    return errors


class RecordingActionHandler:
    """Records the requested action in the monitor history and logs it, changing nothing:
    for a runner without a flag store (``from_settings`` always gives it one)."""

    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def apply(self, action: FlagAction, monitor: Monitor, transition: Transition) -> str | None:
        text = f"{describe(action, monitor)}: this runner has no flag store"
        log.warning(
            "%s (%s -> %s: %s)",
            text,
            transition.from_state.value,
            transition.to_state.value,
            transition.reason,
        )
        self.store.add_history([_entry(monitor, transition, text, "not applied")])
        return None


def _entry(m: Monitor, t: Transition, text: str, note: str) -> HistoryEntry:
    return HistoryEntry(
        m.name, t.labels, t.at_ms, "action", text, t.from_state, t.to_state, t.value, note=note
    )


class FlagActionHandler:
    """Flips flags through ``flags`` (a :class:`~signalbox.flags.admin.FlagAdmin` on the
    monitor store's database), as the module docstring says."""

    def __init__(self, state: MonitorStore, flags: FlagAdmin) -> None:
        self.state, self.flags = state, flags

    def apply(self, action: FlagAction, monitor: Monitor, transition: Transition) -> str | None:
        try:
            return self._apply(action, monitor, transition)
        except Exception as e:
            # a database's own error is a failed write, not a broken handler: the pass must
            # not commit its transition without the flip (see the module docstring)
            if type(e).__module__.split(".")[0] in ("sqlite3", "psycopg"):
                raise StoreError(
                    f"monitor {monitor.name}: flag {action.flag} could not be switched: {e}"
                ) from e
            raise

    def _apply(self, action: FlagAction, monitor: Monitor, transition: Transition) -> str | None:
        from signalbox.flags.model import parse_setting

        m, t, name = monitor, transition, action.flag
        if action_key(m, t) == "on_recover":
            firing = self._still_firing(m, t)
            if firing:
                text = (
                    f"flag {name} left as it is: {firing} other series of this monitor still "
                    "firing (on_recover waits for the last)"
                )
                self.state.add_history([_entry(m, t, text, "waiting")])
                return None
        decls = self.flags.declarations()
        stored = self.flags.store.get(name)
        decl = decls.flags.get(name)
        if decl is None and stored is None:
            text = (
                f"{describe(action, m)} refused: flag {name} is not declared in the flags "
                "files (monitors lint reports it)"
            )
            log.error("monitor %s: %s", m.name, text)
            self.state.add_history([_entry(m, t, text, "refused")])
            return f"flag {name} NOT switched: it is not declared"
        try:
            change = parse_setting(action.set)
        except ValueError as e:
            text = f"{describe(action, m)} refused: {e}"
            log.error("monitor %s: %s", m.name, text)
            self.state.add_history([_entry(m, t, text, "refused")])
            return f"flag {name} NOT switched: {e}"
        current = stored.state if stored is not None else decl.default  # type: ignore[union-attr]
        if change.apply(current) == current:
            text = f"flag {name} already {current.describe()}: not switched again"
            self.state.add_history([_entry(m, t, text, "not repeated")])
            return None
        reason = _one_line(
            f"{t.from_state.value} -> {t.to_state.value}: {t.reason}"
            if t.reason
            else f"{t.from_state.value} -> {t.to_state.value}"
        )
        try:
            entry = self.flags.set(
                name, change, by=f"monitor:{m.name}", reason=reason, now_ms=t.at_ms
            )
        except UsageError as e:  # the store refused the change itself: nothing was written
            text = f"{describe(action, m)} refused: {e}"
            log.error("monitor %s: %s", m.name, text)
            self.state.add_history([_entry(m, t, text, "refused")])
            return f"flag {name} NOT switched: {e}"
        was = "its declared default " if entry.old is None else ""
        text = (
            f"flag {name} switched to {entry.new.describe()} by this monitor "
            f"(was {was}{current.describe()})"
        )
        log.warning("monitor %s: %s", m.name, text)
        self.state.add_history([_entry(m, t, text, "applied")])
        return text

    def _still_firing(self, m: Monitor, t: Transition) -> int:
        """Other series of ``m`` WARNING or CRITICAL after this pass (its rows are written
        before the actions run, in the same transaction)."""
        rows = self.state.series(m.name).get(m.name, {})
        return sum(
            1 for labels, r in rows.items() if labels != t.labels and r.state.state in _FIRING
        )
