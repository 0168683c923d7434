"""What a long-running door that changes flags holds (the HTTP API, the flags page, monitor
actions): the store and the declaration files, read again whenever a file changes.

The CLI reads the files once per command; ``serve`` runs for weeks while people edit
``flags/*.yaml``, so :meth:`FlagAdmin.declarations` checks the files' sizes and times on
each call (a directory listing and a ``stat`` per file) and parses them again only when one
changed. Every check on what people send stays in :mod:`signalbox.flags.operate`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from signalbox.flags.declarations import Declarations, flag_files, load_declarations
from signalbox.flags.model import AuditEntry, FlagChange
from signalbox.flags.operate import FlagView, check_name, set_flag, show, views
from signalbox.flags.store import FlagStore

__all__ = ["FlagAdmin", "declared_ms"]

_Signature = tuple[tuple[str, int, int], ...]


def declared_ms(decls: Declarations) -> dict[str, int]:
    """When each flag's file was last written: the age of a flag never changed at run time
    (what ``stale`` measures for it)."""
    out: dict[str, int] = {}
    for name, d in decls.flags.items():
        if d.file:
            with suppress(OSError):
                out[name] = int(Path(d.file).stat().st_mtime * 1000)
    return out


class FlagAdmin:
    """The flag store and the declarations in ``paths``, for doors that outlive a file edit.

    Args:
        store: where state and audit live (its ``set`` joins a transaction already open on
            the same database: a monitor pass's flip commits with the pass).
        paths: ``[flags] paths``.
        stale_after_s: ``[flags] stale_after``.
        refresh_s: ``[flags] refresh``: how soon every process sees a change (for messages).
    """

    def __init__(
        self,
        store: FlagStore,
        paths: Sequence[Path],
        *,
        stale_after_s: float = 30 * 86400.0,
        refresh_s: float = 2.0,
    ) -> None:
        self.store = store
        self.paths = list(paths)
        self.stale_after_s, self.refresh_s = stale_after_s, refresh_s
        self._lock = threading.Lock()
        self._seen: tuple[_Signature, Declarations, dict[str, int]] | None = None

    def _signature(self) -> _Signature:
        files, errors = flag_files(self.paths)
        sig = [(str(e.file), -1, -1) for e in errors]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                sig.append((str(f), -1, -1))
            else:
                sig.append((str(f), st.st_mtime_ns, st.st_size))
        return tuple(sig)

    def declarations(self) -> Declarations:
        """The flags declared in the files now (parsed again only after a change)."""
        return self._current()[0]

    def _current(self) -> tuple[Declarations, dict[str, int]]:
        sig = self._signature()
        with self._lock:
            if self._seen is not None and self._seen[0] == sig:
                return self._seen[1], self._seen[2]
        decls = load_declarations(self.paths, code=())
        ages = declared_ms(decls)
        with self._lock:
            self._seen = (sig, decls, ages)
        return decls, ages

    def views(self) -> list[FlagView]:
        """Every flag declared or stored, by name, with its evaluations."""
        decls, ages = self._current()
        return views(decls, self.store.states(), self.store.evaluations(), ages)

    def show(self, name: str) -> FlagView:
        """One flag (:class:`~signalbox.exceptions.UsageError` naming the nearest declared
        one when it is neither declared nor stored)."""
        decls, ages = self._current()
        view = show(self.store, decls, name)
        if view.declared_ms is None and name in ages:
            view = FlagView(
                view.name,
                view.decl,
                view.stored,
                view.evaluations,
                view.last_evaluated_ms,
                ages[name],
            )
        return view

    def known(self, name: str) -> bool:
        """Declared in the files, or in the store (set once with ``--force``)."""
        return name in self.declarations().flags or self.store.get(name) is not None

    def set(
        self, name: str, change: FlagChange, *, by: str, reason: str, now_ms: int
    ) -> AuditEntry:
        """Change ``name`` (declared, or already in the store), audited as ``by``.

        Raises:
            UsageError: see :func:`signalbox.flags.operate.set_flag`.
        """
        decls = self.declarations()
        stored = name in decls.flags or self.store.get(name) is not None
        check_name(name, decls, allow_undeclared=stored)
        return set_flag(
            self.store,
            decls,
            name,
            change,
            by=by,
            reason=reason,
            now_ms=now_ms,
            allow_undeclared=stored,
        )

    def history(
        self, name: str | None, *, limit: int = 50, before_id: int | None = None
    ) -> list[AuditEntry]:
        from signalbox.flags.operate import history

        return history(self.store, name, limit=limit, before_id=before_id)
