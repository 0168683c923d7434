"""Where flags' runtime state lives: the :class:`FlagStore` protocol, and its SQL form on
:mod:`signalbox.storage` (SQLite and PostgreSQL; :mod:`signalbox.flags.memstore` is the memory one).

Every change is a compare-and-swap on the flag's ``version`` and writes its audit row in the
same transaction: two writers changing one flag at once both land, one after the other,
each audited with the state it really replaced (PostgreSQL's ``UPDATE ... WHERE version = ?``
waits for the other writer and then matches nothing, so the loser reads again and retries;
SQLite's writer lock serialises them). A change that is refused leaves no audit row, and a
change that happened is never missing from it.

Evaluation counts are written here by each process's cache every refresh (added up across
processes), so ``flags list --stale`` knows which flags nobody evaluates.

Every change also notifies the store's flags channel in its transaction
(:mod:`signalbox.storage.notify`: ``pg_notify`` on PostgreSQL, an event row on SQLite), so a
process listening (:meth:`SQLFlagStore.listener`) re-reads at once instead of at its next
poll: a kill switch is seen everywhere within a second, not a refresh interval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from signalbox.exceptions import StoreError
from signalbox.flags.model import AuditEntry, FlagChange, FlagState, StoredFlag
from signalbox.storage.database import Database, Migration
from signalbox.storage.notify import Listener, notify, store_channel

__all__ = [
    "CHANNEL",
    "MIGRATIONS",
    "Evaluations",
    "FlagStore",
    "Notifying",
    "SQLFlagStore",
    "check_write",
    "open_flag_store",
]

Evaluations = dict[str, tuple[int, int]]
"""Per flag: evaluations counted so far (all processes), and when the last was recorded (ms)."""

MIGRATIONS: list[Migration] = [
    (
        1,
        "flag state, audit trail, evaluation counts",
        [
            "CREATE TABLE flag_state (name TEXT PRIMARY KEY, switch TEXT NOT NULL, "
            "actors_share INTEGER NOT NULL, time_share INTEGER NOT NULL, actors TEXT NOT NULL, "
            "allow_groups TEXT NOT NULL, version BIGINT NOT NULL, updated_ms BIGINT NOT NULL, "
            "updated_by TEXT NOT NULL, reason TEXT NOT NULL)",
            # {serial}: an id never reused, so a page of the history never repeats or skips one
            "CREATE TABLE flag_audit (id {serial}, name TEXT NOT NULL, at_ms BIGINT NOT NULL, "
            "by_who TEXT NOT NULL, reason TEXT NOT NULL, old_state TEXT, new_state TEXT NOT NULL)",
            "CREATE INDEX flag_audit_by_name ON flag_audit (name, id)",
            "CREATE TABLE flag_evaluations (name TEXT PRIMARY KEY, n BIGINT NOT NULL, "
            "last_ms BIGINT NOT NULL)",
        ],
    ),
]


CHANNEL = "signalbox_flags"
"""The flags' notification channel (on PostgreSQL with the schema: see
:func:`~signalbox.storage.notify.store_channel`); the payload is the flag's name."""


class Notifying(Protocol):
    """A flag store that announces its changes (the SQL one; memory has no other process)."""

    def listener(self, *, poll_s: float = 0.2) -> Listener:
        """A listener told of every change committed after it was made (``poll_s``: how
        often SQLite's event table is read)."""
        ...


class FlagStore(Protocol):
    """What the cache, the CLI, the API and monitor actions need of a flag store."""

    def states(self) -> dict[str, StoredFlag]:
        """Every flag with a stored state (flags only declared are not here)."""
        ...

    def get(self, name: str) -> StoredFlag | None: ...

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
        """Apply ``change`` to the flag's stored state and audit it, atomically.

        ``base`` is the state a flag never stored starts from: its declared default (the
        caller knows the declarations, the store does not); default: off.

        Raises:
            ValueError: no reason, no ``by``, or a change that changes nothing.
        """
        ...

    def history(
        self, name: str | None = None, *, limit: int = 50, before_id: int | None = None
    ) -> list[AuditEntry]:
        """Audit entries, newest first (of one flag, or all), paged by id."""
        ...

    def record_evaluations(self, counts: Mapping[str, int], now_ms: int) -> None:
        """Add this process's evaluation counts since its last call."""
        ...

    def evaluations(self) -> Evaluations: ...

    def close(self) -> None: ...


def check_write(name: str, by: str, reason: str, change: FlagChange) -> None:
    """What every store refuses: a change without a reason, without who, or changing nothing."""
    if not reason.strip():
        raise ValueError(f"flag {name}: a reason is required (say why, for the next on call)")
    if not by.strip():
        raise ValueError(f"flag {name}: who made the change is required")
    if change.empty:
        raise ValueError(f"flag {name}: the change changes nothing")


def state_json(state: FlagState | None) -> str | None:
    return None if state is None else json.dumps(state.to_dict(), sort_keys=True)


def state_of(text: str | None) -> FlagState | None:
    return None if text is None else FlagState.from_dict(json.loads(text))


_STATE_COLS = (
    "name, switch, actors_share, time_share, actors, allow_groups, version, updated_ms, "
    "updated_by, reason"
)
_AUDIT_COLS = "id, name, at_ms, by_who, reason, old_state, new_state"
_INSERT_AUDIT = (
    "INSERT INTO flag_audit (name, at_ms, by_who, reason, old_state, new_state) "
    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
)
_ADD_EVALS = (
    "INSERT INTO flag_evaluations (name, n, last_ms) VALUES (?, ?, ?) ON CONFLICT (name) "
    "DO UPDATE SET n = flag_evaluations.n + excluded.n, last_ms = excluded.last_ms"
)
_CAS_TRIES = 50


def _stored(row: Sequence[Any]) -> StoredFlag:
    name, switch, a_share, t_share, actors, groups, version, updated_ms, by, reason = row
    state = FlagState(
        switch=switch,
        actors_share=int(a_share),
        time_share=int(t_share),
        actors=frozenset(json.loads(actors)),
        groups=frozenset(json.loads(groups)),
    )
    return StoredFlag(name, state, int(version), int(updated_ms), by, reason)


def _audit(row: Sequence[Any]) -> AuditEntry:
    id_, name, at_ms, by, reason, old, new = row
    new_state = state_of(new)
    assert new_state is not None
    return AuditEntry(int(id_), name, int(at_ms), by, reason, state_of(old), new_state)


class _Conflict(Exception):
    """Another writer changed the flag between our read and our write: read again."""


class SQLFlagStore:
    """Flags in SQLite or PostgreSQL (component ``flags`` of the store's schema)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("flags", MIGRATIONS)
        self.channel = store_channel(db, CHANNEL)

    def states(self) -> dict[str, StoredFlag]:
        rows = self.db.query(f"SELECT {_STATE_COLS} FROM flag_state")
        return {r[0]: _stored(r) for r in rows}

    def get(self, name: str) -> StoredFlag | None:
        rows = self.db.query(f"SELECT {_STATE_COLS} FROM flag_state WHERE name = ?", (name,))
        return _stored(rows[0]) if rows else None

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
        for _ in range(_CAS_TRIES):
            try:
                with self.db.transaction():
                    return self._set_once(name, change, base or FlagState(), by, reason, now_ms)
            except _Conflict:
                continue
        raise StoreError(
            f"{self.db.url}: flag {name} kept changing under this write ({_CAS_TRIES} tries); "
            "try again"
        )

    def _set_once(
        self, name: str, change: FlagChange, base: FlagState, by: str, reason: str, now_ms: int
    ) -> AuditEntry:
        db = self.db
        current = self.get(name)
        old = None if current is None else current.state
        new = change.apply(base if old is None else old)
        values = (
            new.switch,
            new.actors_share,
            new.time_share,
            json.dumps(sorted(new.actors)),
            json.dumps(sorted(new.groups)),
            now_ms,
            by,
            reason,
        )
        if current is None:
            got = db.execute(
                f"INSERT INTO flag_state ({_STATE_COLS}) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING RETURNING version",
                (name, *values),
            ).fetchone()
            if got is None:
                raise _Conflict
        else:
            n = db.execute(
                "UPDATE flag_state SET switch = ?, actors_share = ?, time_share = ?, actors = ?, "
                "allow_groups = ?, updated_ms = ?, updated_by = ?, reason = ?, "
                "version = version + 1 WHERE name = ? AND version = ?",
                (*values, name, current.version),
            ).rowcount
            if n != 1:
                raise _Conflict
        (audit_id,) = db.execute(
            _INSERT_AUDIT, (name, now_ms, by, reason, state_json(old), state_json(new))
        ).fetchone()
        notify(db, self.channel, name)  # delivered at commit, never after a rollback
        return AuditEntry(int(audit_id), name, now_ms, by, reason, old, new)

    def history(
        self, name: str | None = None, *, limit: int = 50, before_id: int | None = None
    ) -> list[AuditEntry]:
        sql = f"SELECT {_AUDIT_COLS} FROM flag_audit WHERE 1 = 1"
        params: list[Any] = []
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_audit(r) for r in self.db.query(sql, params)]

    def record_evaluations(self, counts: Mapping[str, int], now_ms: int) -> None:
        rows = [(name, n, now_ms) for name, n in sorted(counts.items()) if n > 0]
        if rows:
            with self.db.transaction():
                self.db.executemany(_ADD_EVALS, rows)

    def evaluations(self) -> Evaluations:
        rows = self.db.query("SELECT name, n, last_ms FROM flag_evaluations")
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def listener(self, *, poll_s: float = 0.2) -> Listener:
        return Listener(self.db, [self.channel], poll_s=poll_s)

    def close(self) -> None:
        self.db.close()


def open_flag_store(url: str) -> SQLFlagStore:
    """The flag store at ``url`` (``sqlite:///PATH`` or ``postgresql://...``), migrated."""
    from signalbox.storage import open_database

    db = open_database(url)
    try:
        return SQLFlagStore(db)
    except BaseException:
        db.close()
        raise
