"""A login attempt, start to end: rate limit, password check, a fresh session, the log line.

The HTTP side (:mod:`~signalbox.server.auth.pages`) only reads the form and writes cookies;
what decides lives here, over the stores and a clock, so it runs the same under a test.

Failed logins are limited per client address and per user name (:data:`LIMIT` in
:data:`WINDOW_S`); past that an attempt is refused before its password is checked, with the
seconds to wait. A failure is logged with the name and the address, never the password.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from signalbox.clock import Clock
from signalbox.server.auth.ratelimit import FailureLimiter
from signalbox.server.auth.sessions import Session, SessionStore
from signalbox.server.auth.users import UserStore

__all__ = ["LIMIT", "WINDOW_S", "LoginResult", "Logins"]

log = logging.getLogger("signalbox.server.auth")

LIMIT = 5
WINDOW_S = 300.0


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What became of an attempt: a session and its id, or ``retry_after_s`` > 0 (refused
    unchecked), or neither (a wrong name or password: which one is not said)."""

    session: Session | None = None
    secret: str = ""
    retry_after_s: int = 0


class Logins:
    """Dashboard logins over the ``auth`` component's users and sessions.

    Args:
        users: who may log in.
        sessions: where sessions are kept.
        clock: "now" for sessions and the rate limit.
        limiter: failure counts (per process, in memory).
    """

    def __init__(
        self,
        users: UserStore,
        sessions: SessionStore,
        clock: Clock,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.users, self.sessions, self.clock = users, sessions, clock
        self.limiter = limiter or FailureLimiter(limit=LIMIT, window_s=WINDOW_S)

    def attempt(
        self, name: str, password: str, *, client: str, replacing: str | None = None
    ) -> LoginResult:
        """Check ``name`` and ``password`` from ``client`` (blocking: a slow hash).

        ``replacing``: the session id the browser sent, ended on success (ids rotate).
        """
        now = self.clock.now()
        keys = (f"addr:{client}", f"user:{name.casefold()}")
        wait = self.limiter.retry_after(keys, now)
        if wait:
            log.warning(
                "login refused for user %r from %s: too many failures (retry in %ds)",
                name[:64],
                client,
                wait,
            )
            return LoginResult(retry_after_s=wait)
        user = self.users.verify(name, password)
        if user is None:
            self.limiter.fail(keys, now)
            log.warning("failed login for user %r from %s", name[:64], client)
            return LoginResult()
        self.limiter.clear(keys[1])
        now_ms = int(now * 1000)
        session, secret = self.sessions.start(
            user, client=client, now_ms=now_ms, replacing=replacing
        )
        self.users.record_login(user, now_ms)
        log.info("login: %s from %s", user.describe(), client)
        return LoginResult(session, secret)
