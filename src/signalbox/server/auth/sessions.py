"""Dashboard sessions in the store: component ``auth``, table ``dashboard_sessions``.

A session is what a browser holds after a login: a random id (32 bytes,
:func:`secrets.token_urlsafe`) in the ``signalbox_session`` cookie, stored as its SHA-256
only (a stolen table holds no usable id), with the user, when it began and was last seen,
and its CSRF token (the synchronizer token every write made with the cookie must echo).

A session ends at logout, ``IDLE_MS`` after its last request (12 h), or ``ABSOLUTE_MS``
after its login (7 d) whatever its use; deleting its user, changing their password or
``signalbox users logout`` ends it too. Nothing is cached in memory, not even the role
(each request reads it from the user's row): an ended session is refused, and a changed
role applies, from the next request on. ``last_seen_ms`` is written at most once a minute,
as a token's last use is.

A session that ended on its own stays a row until something deletes it: the request that
presents it, the next login (:data:`LOGIN_PURGE` rows at most, so a login never waits on a
backlog), or ``serve``'s periodic purge (:meth:`SessionStore.purge_ended`, transactions of
:data:`PURGE_BATCH` rows found by index). Failed logins are not rows: they are counted in
memory (:mod:`~signalbox.server.auth.ratelimit`), with a cap of their own.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import MIGRATIONS
from signalbox.server.auth.users import User
from signalbox.storage.database import Database

__all__ = [
    "ABSOLUTE_MS",
    "IDLE_MS",
    "LOGIN_PURGE",
    "PURGE_BATCH",
    "PURGE_MAX_BATCHES",
    "TOUCH_EVERY_MS",
    "Session",
    "SessionStore",
    "looks_like_secret",
    "new_secret",
]

IDLE_MS = 12 * 3600 * 1000
ABSOLUTE_MS = 7 * 86400 * 1000
TOUCH_EVERY_MS = 60_000
PURGE_BATCH = 500
"""Ended sessions deleted per transaction by the periodic purge (a short write lock)."""
PURGE_MAX_BATCHES = 20
"""Transactions per periodic purge at most; a larger backlog goes on the next run."""
LOGIN_PURGE = 50
"""Ended sessions a login deletes on its way, at most."""
_SECRET_BYTES = 32
_SECRET_CHARS = 43  # token_urlsafe(32)
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_secret() -> str:
    """A session id or a CSRF token: 43 URL-safe characters, 256 random bits."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def looks_like_secret(text: str) -> bool:
    """Whether ``text`` could be one of :func:`new_secret`'s (else no lookup is made)."""
    return len(text) == _SECRET_CHARS and _URLSAFE.issuperset(text)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and whose it is (its id is not kept: only the cookie has it)."""

    id: int
    user_id: int
    user: str
    role: Role
    csrf_token: str
    created_ms: int
    last_seen_ms: int
    expires_ms: int

    @property
    def who(self) -> str:
        """How the audit trail names writes made in this session: ``alice (dashboard)``."""
        return f"{self.user} (dashboard)"


_COLS = "s.id, s.user_id, u.name, u.role, s.csrf_token, s.created_ms, s.last_seen_ms, s.expires_ms"


def _session(row: tuple[Any, ...]) -> Session:
    sid, uid, name, role, csrf, created, seen, expires = row
    return Session(
        int(sid), int(uid), name, Role.parse(role), csrf, int(created), int(seen), int(expires)
    )


class SessionStore:
    """Sessions over a :class:`Database` (migrates component ``auth`` when built).

    Args:
        db: the store.
        idle_ms: a session unused this long has ended.
        absolute_ms: a session this old has ended, used or not.
    """

    def __init__(
        self, db: Database, *, idle_ms: int = IDLE_MS, absolute_ms: int = ABSOLUTE_MS
    ) -> None:
        self.db = db
        self.idle_ms, self.absolute_ms = idle_ms, absolute_ms
        db.migrate("auth", MIGRATIONS)

    def start(
        self, user: User, *, client: str, now_ms: int, replacing: str | None = None
    ) -> tuple[Session, str]:
        """A new session for ``user``: its record and its id (for the cookie only).

        ``replacing``: the id of the session the browser held before, ended now (a login
        always gets a fresh id, so an id planted before it is worth nothing after). Sessions
        past their time are deleted on the way (:data:`LOGIN_PURGE` at most).
        """
        secret, csrf = new_secret(), new_secret()
        with self.db.transaction():
            if replacing is not None and looks_like_secret(replacing):
                self.db.execute(
                    "DELETE FROM dashboard_sessions WHERE session_hash = ?", (_hash(replacing),)
                )
            self._purge(now_ms, LOGIN_PURGE)
            (row,) = self.db.query(
                "INSERT INTO dashboard_sessions (session_hash, user_id, csrf_token, created_ms, "
                "last_seen_ms, expires_ms, client) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    _hash(secret),
                    user.id,
                    csrf,
                    now_ms,
                    now_ms,
                    now_ms + self.absolute_ms,
                    client[:200],
                ),
            )
        session = Session(
            int(row[0]),
            user.id,
            user.name,
            user.role,
            csrf,
            now_ms,
            now_ms,
            now_ms + self.absolute_ms,
        )
        return session, secret

    def resolve(self, secret: str, now_ms: int) -> Session | None:
        """The live session whose id is ``secret``, with its user's current name and role;
        None for an unknown or ended one (an ended one is deleted). Records the use."""
        if not looks_like_secret(secret):
            return None
        rows = self.db.query(
            f"SELECT {_COLS} FROM dashboard_sessions s JOIN dashboard_users u "
            "ON u.id = s.user_id WHERE s.session_hash = ?",
            (_hash(secret),),
        )
        if not rows:
            return None
        found = _session(rows[0])
        if now_ms >= found.expires_ms or now_ms - found.last_seen_ms >= self.idle_ms:
            self.db.execute("DELETE FROM dashboard_sessions WHERE id = ?", (found.id,))
            return None
        stale = now_ms - TOUCH_EVERY_MS
        if found.last_seen_ms <= stale:
            self.db.execute(
                "UPDATE dashboard_sessions SET last_seen_ms = ? WHERE id = ? AND last_seen_ms <= ?",
                (now_ms, found.id, stale),
            )
        return found

    def end(self, secret: str) -> bool:
        """End the session whose id is ``secret`` (logout); whether there was one."""
        if not looks_like_secret(secret):
            return False
        with self.db.transaction():
            done = self.db.execute(
                "DELETE FROM dashboard_sessions WHERE session_hash = ?", (_hash(secret),)
            ).rowcount
        return int(done) == 1

    def count(self, user: User) -> int:
        """Sessions ``user`` holds (ended ones not deleted yet included)."""
        (row,) = self.db.query(
            "SELECT COUNT(*) FROM dashboard_sessions WHERE user_id = ?", (user.id,)
        )
        return int(row[0])

    def purge(self, now_ms: int, *, limit: int = PURGE_BATCH) -> int:
        """Delete at most ``limit`` sessions that have ended by ``now_ms`` (too old, or idle
        too long), in one transaction; how many went."""
        with self.db.transaction():
            return self._purge(now_ms, limit)

    def purge_ended(
        self, now_ms: int, *, batch: int = PURGE_BATCH, max_batches: int = PURGE_MAX_BATCHES
    ) -> int:
        """Delete ended sessions ``batch`` at a time until none is left or ``max_batches``
        transactions ran (the rest waits for the next call); how many went.

        Each batch is its own transaction, so logins and requests wait on at most one.
        """
        gone = 0
        for _ in range(max_batches):
            n = self.purge(now_ms, limit=batch)
            gone += n
            if n < batch:
                break
        return gone

    def _purge(self, now_ms: int, limit: int) -> int:
        # no ORDER BY: the LIMIT stops the index scans at the first ``limit`` rows found
        return int(
            self.db.execute(
                "DELETE FROM dashboard_sessions WHERE id IN (SELECT id FROM dashboard_sessions "
                "WHERE expires_ms <= ? OR last_seen_ms <= ? LIMIT ?)",
                (now_ms, now_ms - self.idle_ms, limit),
            ).rowcount
        )
