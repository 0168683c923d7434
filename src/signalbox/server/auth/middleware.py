"""Who is calling: pure ASGI middleware that resolves the caller, and :func:`require`.

The middleware runs before every route and puts a :class:`Caller` in the request scope:

* ``Authorization: Bearer <token>`` with a token of the store: its role. A garbage,
  unknown or revoked token is answered 401 at once (a caller with a wrong token learns
  so, even where it needs none);
* no credentials on a loopback connection: ``read`` (reads are open on loopback), unless
  ``[server] auth = "required"``;
* otherwise nobody: every route but the health checks (``/-/...``) answers 401.

Writes need more than reading: each write route calls ``require(request, Role.OPERATE)``
(401 without a token, loopback or not; 403 when the token's role is too low). An app
built without this middleware (in-process tests) has no caller in its scope, so its write
routes refuse everyone.

Tokens are never logged; a revoked token's use is logged with its id and name.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from signalbox.clock import Clock
from signalbox.exceptions import AccessError
from signalbox.server.auth.roles import ANONYMOUS, LOOPBACK, Caller, Role, is_loopback_address
from signalbox.server.auth.store import TokenStore
from signalbox.server.errors import error_response

__all__ = ["CALLER", "AuthMiddleware", "caller", "challenge", "require"]

log = logging.getLogger("signalbox.server.auth")

CALLER = "signalbox.caller"
"""The scope key of the request's :class:`Caller`."""

PUBLIC_PREFIX = "/-/"  # health checks: load balancers and probes carry no token


def challenge(known_token: bool = False) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a 401 (RFC 6750)."""
    value = 'Bearer realm="signalbox"'
    if known_token:
        value += ', error="invalid_token"'
    return {"WWW-Authenticate": value}


def caller(conn: HTTPConnection) -> Caller:
    """The caller the middleware resolved (nobody when it did not run)."""
    found: Caller = conn.scope.get(CALLER, ANONYMOUS)
    return found


def require(conn: HTTPConnection, role: Role) -> Caller:
    """The request's caller if it may act as ``role``; else :class:`AccessError`.

    Raises:
        AccessError: ``known=False`` (401) when no valid token came with the request,
            ``known=True`` (403) when its token's role is below ``role``.
    """
    c = caller(conn)
    if c.token_id is None and (c.role is None or c.role < role):
        raise AccessError(
            f"this needs a token with role {role.at_least()}: send 'Authorization: Bearer "
            f"<token>' (`signalbox tokens create --role {role.label}` makes one)",
            needed=role.label,
            known=False,
        )
    if c.role is None or c.role < role:
        have = c.role.label if c.role is not None else "none"
        raise AccessError(
            f"{c.who} has role {have}; this needs {role.at_least()}",
            needed=role.label,
            known=True,
        )
    return c


class AuthMiddleware:
    """Pure ASGI: resolve the caller (see the module docstring) and refuse nobody at once.

    Args:
        app: the app inside.
        tokens: where tokens are looked up (a request with a token does one indexed read,
            in a worker thread; one without does no I/O).
        clock: "now" for ``last_used``.
        reads_need_token: ``[server] auth = "required"``: loopback reads need a token too.
    """

    def __init__(
        self, app: ASGIApp, *, tokens: TokenStore, clock: Clock, reads_need_token: bool = False
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.clock = clock
        self.reads_need_token = reads_need_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        denied: tuple[str, bool] | None = None  # (message, a token was sent)
        if header is None:
            client = scope.get("client")
            loopback = is_loopback_address(client[0] if client else None)
            found = LOOPBACK if loopback and not self.reads_need_token else ANONYMOUS
            if found.role is None:
                why = (
                    'this server needs a token for reads too ([server] auth = "required")'
                    if loopback
                    else "reads without a token are open to loopback connections only"
                )
                denied = (f"{why}: send 'Authorization: Bearer <token>'", False)
        else:
            found, problem = await self._from_header(header, scope)
            if problem:
                denied = (problem, True)
        if denied is not None:
            await self._deny(scope, receive, send, *denied)
            return
        scope[CALLER] = found
        await self.app(scope, receive, send)

    async def _from_header(self, header: str, scope: Scope) -> tuple[Caller, str]:
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return ANONYMOUS, "Authorization: expected 'Bearer <token>'"
        now_ms = int(self.clock.now() * 1000)
        token = await run_in_threadpool(self.tokens.authenticate, credential, now_ms)
        if token is None:
            return ANONYMOUS, "invalid token: not one of this server's (`signalbox tokens list`)"
        if token.revoked:
            client = scope.get("client")
            log.warning(
                "refused revoked %s from %s", token.describe(), client[0] if client else "?"
            )
            return ANONYMOUS, f"token #{token.id} was revoked"
        return Caller(token.role, token.id, token.name), ""

    async def _deny(
        self, scope: Scope, receive: Receive, send: Send, message: str, sent_token: bool
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = error_response("unauthorized", message, 401)
        response.headers.update(challenge(sent_token))
        await response(scope, receive, send)
