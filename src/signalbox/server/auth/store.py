"""API tokens in the store: component ``auth``, table ``api_tokens`` (SQLite and PostgreSQL).

One row per token ever created, never deleted (a revoked token stays listed, so the audit
trail's ``grafana (token #3)`` keeps meaning something): id (a serial, never reused), name,
role, the SHA-256 of the token (never the token), who created it and when, when it was last
used, and when and by whom it was revoked.

``last_used_ms`` is written at most once a minute per token: a request reads the row
anyway, and writes it back only when the stored time is older than that, with the same
condition in the ``UPDATE`` so concurrent requests (threads, processes) write it once.
Nothing is cached in memory: a revoked token is refused from the next request on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signalbox.exceptions import UsageError
from signalbox.oneline import check_line
from signalbox.server.auth.roles import Role, hash_token, looks_like_token, new_token
from signalbox.storage.database import Database, Migration

__all__ = ["MIGRATIONS", "TOUCH_EVERY_MS", "ApiToken", "TokenStore", "check_token_name"]

MIGRATIONS: list[Migration] = [
    (
        1,
        "API tokens: hashed, with role, last use and revocation",
        [
            "CREATE TABLE api_tokens (id {serial}, name TEXT NOT NULL, role TEXT NOT NULL, "
            "token_hash TEXT NOT NULL, created_ms BIGINT NOT NULL, created_by TEXT NOT NULL, "
            "last_used_ms BIGINT, revoked_ms BIGINT, revoked_by TEXT NOT NULL)",
            "CREATE UNIQUE INDEX api_tokens_by_hash ON api_tokens (token_hash)",
        ],
    ),
    (
        2,
        "dashboard users (scrypt password hashes) and their sessions (hashed ids, CSRF tokens)",
        [
            "CREATE TABLE dashboard_users (id {serial}, name TEXT NOT NULL, role TEXT NOT NULL, "
            "password_hash TEXT NOT NULL, created_ms BIGINT NOT NULL, created_by TEXT NOT NULL, "
            "password_changed_ms BIGINT NOT NULL, last_login_ms BIGINT)",
            "CREATE UNIQUE INDEX dashboard_users_by_name ON dashboard_users (name)",
            "CREATE TABLE dashboard_sessions (id {serial}, session_hash TEXT NOT NULL, "
            "user_id BIGINT NOT NULL, csrf_token TEXT NOT NULL, created_ms BIGINT NOT NULL, "
            "last_seen_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, client TEXT NOT NULL)",
            "CREATE UNIQUE INDEX dashboard_sessions_by_hash ON dashboard_sessions (session_hash)",
            "CREATE INDEX dashboard_sessions_by_user ON dashboard_sessions (user_id)",
        ],
    ),
    (
        3,
        "ended sessions found by index: the purge reads only what it deletes",
        [
            "CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_ms)",
            "CREATE INDEX dashboard_sessions_by_last_seen ON dashboard_sessions (last_seen_ms)",
        ],
    ),
]
"""Component ``auth``: tokens here, dashboard users (:mod:`~signalbox.server.auth.users`)
and sessions (:mod:`~signalbox.server.auth.sessions`) from step 2, indexes for purging
ended sessions (:meth:`~signalbox.server.auth.sessions.SessionStore.purge`) from step 3."""

TOUCH_EVERY_MS = 60_000
"""``last_used_ms`` is rewritten when it is at least this old."""

MAX_NAME_CHARS = 100
_COLS = "id, name, role, created_ms, created_by, last_used_ms, revoked_ms, revoked_by"


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token as stored (its secret is not: only its hash, which is not kept here either)."""

    id: int
    name: str
    role: Role
    created_ms: int
    created_by: str
    last_used_ms: int | None = None
    revoked_ms: int | None = None
    revoked_by: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_ms is not None

    def describe(self) -> str:
        """``token #3 'grafana' (read)`` for messages."""
        return f"token #{self.id} {self.name!r} ({self.role.label})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.label,
            "created_ms": self.created_ms,
            "created_by": self.created_by,
            "last_used_ms": self.last_used_ms,
            "revoked_ms": self.revoked_ms,
            "revoked_by": self.revoked_by or None,
        }


def check_token_name(name: str, field: str = "name") -> str:
    """A token's name as kept: one line of printable text (it is shown in audit lines)."""
    return check_line(name, field, max_chars=MAX_NAME_CHARS)


def _token(row: tuple[Any, ...]) -> ApiToken:
    tid, name, role, created, by, used, revoked, revoked_by = row
    return ApiToken(
        int(tid),
        name,
        Role.parse(role),
        int(created),
        by,
        None if used is None else int(used),
        None if revoked is None else int(revoked),
        revoked_by,
    )


class TokenStore:
    """API tokens over a :class:`Database` (migrates component ``auth`` when built)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("auth", MIGRATIONS)

    def create(self, *, role: Role, name: str, by: str, now_ms: int) -> tuple[ApiToken, str]:
        """A new token: its record and the token itself, which nothing can show again.

        Raises:
            UsageError: ``name`` is empty, too long or holds control characters.
        """
        name = check_token_name(name)
        secret = new_token()
        with self.db.transaction():
            (row,) = self.db.query(
                "INSERT INTO api_tokens (name, role, token_hash, created_ms, created_by, revoked_by) "
                f"VALUES (?, ?, ?, ?, ?, '') RETURNING {_COLS}",
                (name, role.label, hash_token(secret), now_ms, by),
            )
        return _token(row), secret

    def tokens(self) -> list[ApiToken]:
        """Every token ever created, oldest first (revoked ones too)."""
        return [_token(r) for r in self.db.query(f"SELECT {_COLS} FROM api_tokens ORDER BY id")]

    def page(self, *, limit: int, offset: int = 0) -> tuple[list[ApiToken], int]:
        """At most ``limit`` tokens from the ``offset``-th on, oldest first, and how many
        there are in all (an offset past the end is an empty page, whatever its size)."""
        (row,) = self.db.query("SELECT COUNT(*) FROM api_tokens")
        total = int(row[0])
        if offset >= total:
            return [], total
        rows = self.db.query(
            f"SELECT {_COLS} FROM api_tokens ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
        )
        return [_token(r) for r in rows], total

    def find(self, token_id: int) -> ApiToken | None:
        """The token with this id, or None (ids are 64-bit: a larger one finds nothing)."""
        if not 0 < token_id < 2**63:
            return None
        rows = self.db.query(f"SELECT {_COLS} FROM api_tokens WHERE id = ?", (token_id,))
        return _token(rows[0]) if rows else None

    def get(self, token_id: int) -> ApiToken:
        found = self.find(token_id)
        if found is None:
            raise UsageError(f"no token #{token_id} (`signalbox tokens list` shows them)")
        return found

    def revoke(self, token_id: int, *, by: str, now_ms: int) -> tuple[ApiToken, bool]:
        """Revoke a token from the next request on; ``(token, False)`` if it already was.

        Raises:
            UsageError: no token has this id.
        """
        with self.db.transaction():
            self.get(token_id)  # first: an unknown (or out-of-range) id is said as such
            done = self.db.execute(
                "UPDATE api_tokens SET revoked_ms = ?, revoked_by = ? "
                "WHERE id = ? AND revoked_ms IS NULL",
                (now_ms, by, token_id),
            ).rowcount
            return self.get(token_id), done == 1

    def authenticate(self, token: str, now_ms: int) -> ApiToken | None:
        """The record of ``token`` (revoked ones too: the caller says so), or None for
        a token that was never created. Records the use (see the module docstring)."""
        if not looks_like_token(token):
            return None
        rows = self.db.query(
            f"SELECT {_COLS} FROM api_tokens WHERE token_hash = ?", (hash_token(token),)
        )
        if not rows:
            return None
        found = _token(rows[0])
        if found.revoked:
            return found
        stale = now_ms - TOUCH_EVERY_MS
        if found.last_used_ms is None or found.last_used_ms <= stale:
            self.db.execute(
                "UPDATE api_tokens SET last_used_ms = ? "
                "WHERE id = ? AND (last_used_ms IS NULL OR last_used_ms <= ?)",
                (now_ms, found.id, stale),
            )
        return found
