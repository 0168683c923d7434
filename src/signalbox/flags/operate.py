"""What operators do to flags, whichever door they come through (the CLI now; the HTTP API,
the dashboard and monitor actions on the same functions): list with staleness, show, set
with a reason, history. Inputs are checked here, so every door gives the same errors.

``by`` names who did it, as the audit keeps it: ``cli (user@host)``, ``alice (dashboard)``,
``ci-bot (token #3)``, ``monitor disk_full``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signalbox.exceptions import UsageError
from signalbox.flags.declarations import Declarations
from signalbox.flags.model import NAME_RE, AuditEntry, FlagChange, FlagDecl, FlagState, StoredFlag
from signalbox.flags.store import Evaluations, FlagStore
from signalbox.monitors.definitions.yamlnodes import suggest

__all__ = ["FlagView", "check_name", "history", "set_flag", "show", "views"]


@dataclass(frozen=True, slots=True)
class FlagView:
    """One flag as people see it: its declaration (None: only in the store), its state in
    force, the last change, and its evaluations in every process."""

    name: str
    decl: FlagDecl | None
    stored: StoredFlag | None
    evaluations: int
    last_evaluated_ms: int | None
    declared_ms: int | None  # when its file was last written (its age when never changed)

    @property
    def state(self) -> FlagState:
        if self.stored is not None:
            return self.stored.state
        return self.decl.default if self.decl is not None else FlagState("off")

    def stale(self, now_ms: int, stale_after_ms: int) -> str | None:
        """Why this flag is flag debt, or None: declared nowhere; fully on or off and
        unchanged for ``stale_after``; or never evaluated by any process."""
        if self.decl is None:
            return "not declared in flags/*.yaml (only in the store): evaluates to off"
        why = []
        s = self.state
        if s.fully_on or s.fully_off:
            since = self.stored.updated_ms if self.stored is not None else self.declared_ms
            if since is not None and now_ms - since >= stale_after_ms:
                whole = "on" if s.fully_on else "off"
                days = (now_ms - since) / 86_400_000
                changed = "changed" if self.stored is not None else "declared"
                why.append(f"fully {whole}, last {changed} {days:.0f} days ago")
        if not self.evaluations:
            why.append("never evaluated")
        return "; ".join(why) or None

    def to_dict(
        self, now_ms: int | None = None, stale_after_ms: int | None = None
    ) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "declared": self.decl is not None,
            "description": self.decl.description if self.decl else "",
            "owner": self.decl.owner if self.decl else "",
            "where": self.decl.where if self.decl else "",
            "default": self.decl.default.to_dict() if self.decl else None,
            "state": self.state.to_dict(),
            "describe": self.state.describe(),
            "version": self.stored.version if self.stored else 0,
            "updated_ms": self.stored.updated_ms if self.stored else None,
            "updated_by": self.stored.updated_by if self.stored else None,
            "reason": self.stored.reason if self.stored else None,
            "evaluations": self.evaluations,
            "last_evaluated_ms": self.last_evaluated_ms,
        }
        if now_ms is not None and stale_after_ms is not None:
            d["stale"] = self.stale(now_ms, stale_after_ms)
        return d


def check_name(name: str, decls: Declarations, *, allow_undeclared: bool = False) -> str:
    """A flag name that exists (declared in a file), or a :class:`UsageError` that says so,
    with the nearest declared name."""
    if not NAME_RE.match(name):
        raise UsageError(
            f"flag name {name!r}: expected lowercase letters, digits, '_', '.' or '-' (up to 100)"
        )
    if name not in decls.flags and not allow_undeclared:
        known = sorted(decls.flags)
        raise UsageError(
            f"flag {name!r} is not declared in the flags files{suggest(name, known)}: declare it "
            "in flags/*.yaml first (--force sets a flag declared only in code)"
        )
    return name


def views(
    decls: Declarations,
    stored: Mapping[str, StoredFlag],
    evals: Evaluations,
    declared_ms: Mapping[str, int],
) -> list[FlagView]:
    """Every flag declared or stored, by name."""
    names = sorted({*decls.flags, *stored})
    return [
        FlagView(
            n,
            decls.flags.get(n),
            stored.get(n),
            evals.get(n, (0, 0))[0],
            evals[n][1] if n in evals else None,
            declared_ms.get(n),
        )
        for n in names
    ]


def show(store: FlagStore, decls: Declarations, name: str) -> FlagView:
    stored = store.get(name)
    if stored is None and name not in decls.flags:
        check_name(name, decls)
    evals = store.evaluations()
    only = Declarations({name: decls.flags[name]} if name in decls.flags else {}, ())
    [view] = views(only, {name: stored} if stored else {}, evals, {})
    return view


def set_flag(
    store: FlagStore,
    decls: Declarations,
    name: str,
    change: FlagChange,
    *,
    by: str,
    reason: str,
    now_ms: int,
    allow_undeclared: bool = False,
) -> AuditEntry:
    """Change a flag's runtime state (from its declared default if never changed), audited.

    Raises:
        UsageError: an unknown flag, no reason, or a change that changes nothing.
    """
    from signalbox.monitors.operate import check_by, check_reason

    check_name(name, decls, allow_undeclared=allow_undeclared)
    reason = check_reason(reason, "reason")
    by = check_by(by, "by")
    if change.empty:
        raise UsageError(f"flag {name}: nothing to change")
    decl = decls.flags.get(name)
    try:
        return store.set(
            name,
            change,
            by=by,
            reason=reason,
            now_ms=now_ms,
            base=decl.default if decl is not None else None,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None


def history(
    store: FlagStore, name: str | None, *, limit: int = 50, before_id: int | None = None
) -> list[AuditEntry]:
    if name is not None and not NAME_RE.match(name):
        raise UsageError(f"flag name {name!r}: expected lowercase letters, digits, '_', '.' or '-'")
    return store.history(name, limit=limit, before_id=before_id)
