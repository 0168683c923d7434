"""Dashboard users in the store: component ``auth``, table ``dashboard_users``.

People sign in to the dashboard with a name and a password; ``signalbox users`` creates,
lists, deletes them and sets their passwords (there is no sign-up page: whoever can run the
CLI against the store decides who gets in). A user has one role, as a token does
(:class:`~signalbox.server.auth.roles.Role`), and the audit trail names their writes
``alice (dashboard)``. Passwords are stored as scrypt hashes
(:mod:`~signalbox.server.auth.passwords`); deleting a user, changing a password or
:meth:`UserStore.end_sessions` ends every session of that user
(:mod:`~signalbox.server.auth.sessions`). A new role needs no new login: sessions read
the role from this table on every request.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from signalbox.exceptions import NotFoundError, UsageError
from signalbox.server.auth.passwords import (
    MAX_PASSWORD_CHARS,
    check_password,
    dummy_hash,
    hash_password,
    verify_password,
)
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import MIGRATIONS
from signalbox.storage.database import Database

__all__ = ["User", "UserStore", "check_user_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_COLS = "id, name, role, created_ms, created_by, password_changed_ms, last_login_ms"


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard user as stored (the password hash stays in the store)."""

    id: int
    name: str
    role: Role
    created_ms: int
    created_by: str
    password_changed_ms: int
    last_login_ms: int | None = None

    @property
    def who(self) -> str:
        """How the audit trail names this user's writes: ``alice (dashboard)``."""
        return f"{self.name} (dashboard)"

    def describe(self) -> str:
        """``user 'alice' (operate)`` for messages."""
        return f"user {self.name!r} ({self.role.label})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.label,
            "created_ms": self.created_ms,
            "created_by": self.created_by,
            "password_changed_ms": self.password_changed_ms,
            "last_login_ms": self.last_login_ms,
        }


def check_user_name(name: str, field: str = "NAME") -> str:
    """``name`` if it can name a user: 1-64 letters, digits and ``. _ @ -``, starting with a
    letter or digit (it appears in audit lines, log lines and URLs)."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{field}: invalid user name {name[:80]!r}: expected 1-64 letters, digits and "
            "'._@-', starting with a letter or digit"
        )
    return name


def _user(row: tuple[Any, ...]) -> User:
    uid, name, role, created, by, changed, login = row
    return User(
        int(uid),
        name,
        Role.parse(role),
        int(created),
        by,
        int(changed),
        None if login is None else int(login),
    )


def _password(password: str) -> str:
    try:
        return check_password(password)
    except ValueError as e:
        raise UsageError(str(e)) from None


class UserStore:
    """Dashboard users over a :class:`Database` (migrates component ``auth`` when built)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("auth", MIGRATIONS)

    def create(self, name: str, *, role: Role, password: str, by: str, now_ms: int) -> User:
        """A new user.

        Raises:
            UsageError: the name is invalid or taken, or the password too short or long.
        """
        name = check_user_name(name)
        hashed = hash_password(_password(password))  # slow: outside the transaction
        with self.db.transaction():
            if self.find(name) is not None:
                raise UsageError(f"user {name!r} exists (`signalbox users passwd {name}`)")
            (row,) = self.db.query(
                "INSERT INTO dashboard_users (name, role, password_hash, created_ms, "
                "created_by, password_changed_ms) VALUES (?, ?, ?, ?, ?, ?) "
                f"RETURNING {_COLS}",
                (name, role.label, hashed, now_ms, by, now_ms),
            )
        return _user(row)

    def users(self) -> list[User]:
        """Every user, by name."""
        return [
            _user(r) for r in self.db.query(f"SELECT {_COLS} FROM dashboard_users ORDER BY name")
        ]

    def find(self, name: str) -> User | None:
        rows = self.db.query(f"SELECT {_COLS} FROM dashboard_users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def get(self, name: str) -> User:
        """The user named ``name``.

        Raises:
            NotFoundError: there is none.
        """
        found = self.find(name)
        if found is None:
            raise NotFoundError("user", name, "`signalbox users list` shows them")
        return found

    def delete(self, name: str) -> tuple[User, int]:
        """Delete a user and end their sessions: ``(the user, sessions ended)``.

        Raises:
            NotFoundError: no user has this name.
        """
        with self.db.transaction():
            user = self.get(name)
            ended = self.db.execute(
                "DELETE FROM dashboard_sessions WHERE user_id = ?", (user.id,)
            ).rowcount
            self.db.execute("DELETE FROM dashboard_users WHERE id = ?", (user.id,))
        return user, int(ended)

    def set_password(self, name: str, password: str, *, now_ms: int) -> tuple[User, int]:
        """Set a user's password and end their sessions: ``(the user, sessions ended)``.

        Raises:
            NotFoundError: no user has this name.
            UsageError: the password is too short or too long.
        """
        hashed = hash_password(_password(password))
        with self.db.transaction():
            user = self.get(name)
            self.db.execute(
                "UPDATE dashboard_users SET password_hash = ?, password_changed_ms = ? "
                "WHERE id = ?",
                (hashed, now_ms, user.id),
            )
            ended = self.db.execute(
                "DELETE FROM dashboard_sessions WHERE user_id = ?", (user.id,)
            ).rowcount
        return self.get(name), int(ended)

    def set_role(self, name: str, role: Role) -> tuple[User, Role]:
        """Give user ``name`` the role ``role``: ``(the user as now, the role before)``. Their
        sessions carry on with the new role from their next request.

        Raises:
            NotFoundError: no user has this name.
        """
        with self.db.transaction():
            user = self.get(name)
            self.db.execute(
                "UPDATE dashboard_users SET role = ? WHERE id = ?", (role.label, user.id)
            )
        return dataclasses.replace(user, role=role), user.role

    def end_sessions(self, name: str) -> tuple[User, int]:
        """End every session of user ``name`` (they log in again): ``(the user, sessions
        ended)``, ended-but-not-yet-purged ones included.

        Raises:
            NotFoundError: no user has this name.
        """
        with self.db.transaction():
            user = self.get(name)
            ended = self.db.execute(
                "DELETE FROM dashboard_sessions WHERE user_id = ?", (user.id,)
            ).rowcount
        return user, int(ended)

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs; None for a wrong password or an unknown name,
        which take as long as each other (a hash is checked either way)."""
        rows = self.db.query(
            f"SELECT {_COLS}, password_hash FROM dashboard_users WHERE name = ?", (name,)
        )
        fits = len(password) <= MAX_PASSWORD_CHARS  # no stored password is longer
        stored = rows[0][-1] if rows and fits else dummy_hash()
        good = verify_password(password if fits else "", stored)
        return _user(rows[0][:-1]) if rows and fits and good else None

    def record_login(self, user: User, now_ms: int) -> None:
        self.db.execute(
            "UPDATE dashboard_users SET last_login_ms = ? WHERE id = ?", (now_ms, user.id)
        )
