"""Flags in memory: the :class:`~signalbox.flags.store.FlagStore` contract without a database
(tests, ``sqlite:///:memory:``-style single processes, ``signalbox.testing``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from signalbox.flags.model import AuditEntry, FlagChange, FlagState, StoredFlag
from signalbox.flags.store import Evaluations, check_write

__all__ = ["MemoryFlagStore"]


class MemoryFlagStore:
    """One lock around everything: a change and its audit entry are one step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, StoredFlag] = {}
        self._audit: list[AuditEntry] = []
        self._evals: Evaluations = {}

    def states(self) -> dict[str, StoredFlag]:
        with self._lock:
            return dict(self._flags)

    def get(self, name: str) -> StoredFlag | None:
        with self._lock:
            return self._flags.get(name)

    def set(
        self,
        name: str,
        change: FlagChange,
        *,
        by: str,
        reason: str,
        now_ms: int,
        base: FlagState | None = None,
    ) -> AuditEntry:
        check_write(name, by, reason, change)
        with self._lock:
            current = self._flags.get(name)
            old = None if current is None else current.state
            new = change.apply(old if old is not None else base or FlagState())
            version = 1 if current is None else current.version + 1
            self._flags[name] = StoredFlag(name, new, version, now_ms, by, reason)
            entry = AuditEntry(len(self._audit) + 1, name, now_ms, by, reason, old, new)
            self._audit.append(entry)
            return entry

    def history(
        self, name: str | None = None, *, limit: int = 50, before_id: int | None = None
    ) -> list[AuditEntry]:
        with self._lock:
            out = [
                e
                for e in reversed(self._audit)
                if (name is None or e.name == name) and (before_id is None or e.id < before_id)
            ]
        return out[:limit]

    def record_evaluations(self, counts: Mapping[str, int], now_ms: int) -> None:
        with self._lock:
            for name, n in counts.items():
                if n > 0:
                    total = self._evals.get(name, (0, 0))[0]
                    self._evals[name] = (total + n, now_ms)

    def evaluations(self) -> Evaluations:
        with self._lock:
            return dict(self._evals)

    def close(self) -> None:
        pass
