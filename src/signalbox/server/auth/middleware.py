"""Who is calling: pure ASGI middleware that resolves the caller, and :func:`require`.

The middleware runs before every route and puts a :class:`Caller` in the request scope:

* ``Authorization: Bearer <token>`` with a token of the store: its role. A garbage,
  unknown or revoked token is answered 401 at once (a caller with a wrong token learns
  so, even where it needs none);
* else a ``signalbox_session`` cookie of a live dashboard session
  (:mod:`~signalbox.server.auth.sessions`): its user's name and role. An unknown or ended
  session counts as no cookie (browsers keep cookies past their sessions);
* no credentials on a loopback connection: ``read`` (reads are open on loopback), unless
  ``[server] auth = "required"``;
* otherwise nobody: every route but the health checks (``/-/...``), the login page and the
  static files answers 401, or, for a page (a GET outside the API), redirects to
  ``/login?next=<the page>``.

Writes need more than reading: each write route calls ``require(request, Role.OPERATE)``
(401 without a token or session, loopback or not; 403 when the role is too low). An app
built without this middleware (in-process tests) has no caller in its scope, so its write
routes refuse everyone.

CSRF: a browser sends the session cookie with every request to this server, including
ones another site's page makes it send, so every request that may change state (any
method but GET, HEAD, OPTIONS) authenticated by the cookie must carry the session's CSRF
token, in an ``X-CSRF-Token`` header (the pages' ``fetch`` calls read it from
``<meta name="csrf-token">``) or a ``csrf_token`` form field; else 403, before any route
runs. A request with a token needs none: no browser attaches ``Authorization`` by itself.

Tokens and session ids are never logged; a revoked token's use is logged with its id and
name.
"""

from __future__ import annotations

import contextvars
import functools
import hmac
import logging
import urllib.parse
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, cookie_parser
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalbox.clock import Clock
from signalbox.exceptions import AccessError
from signalbox.server.auth.logins import Logins
from signalbox.server.auth.roles import ANONYMOUS, LOOPBACK, Caller, Role, is_loopback_address
from signalbox.server.auth.sessions import Session, SessionStore
from signalbox.server.auth.store import TokenStore
from signalbox.server.auth.users import UserStore
from signalbox.server.errors import error_response

__all__ = [
    "CALLER",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGINS",
    "SESSION",
    "SESSION_COOKIE",
    "AuthMiddleware",
    "Viewer",
    "caller",
    "challenge",
    "cookie",
    "current_viewer",
    "require",
]

log = logging.getLogger("signalbox.server.auth")

CALLER = "signalbox.caller"
"""The scope key of the request's :class:`Caller`."""

SESSION = "signalbox.session"
"""The scope key of the request's :class:`Session` (absent without a live one)."""

LOGINS = "signalbox.logins"
"""The scope key of the app's :class:`Logins` (for the login page)."""

SESSION_COOKIE = "signalbox_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"

PUBLIC_PREFIX = "/-/"  # health checks: load balancers and probes carry no token
OPEN_PREFIXES = ("/static/",)  # what the login page itself needs
OPEN_PATHS = frozenset({"/login", "/logout"})
API_PREFIXES = ("/api/", "/metrics", "/openapi.json")  # machines: a 401, never a redirect
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 64 * 1024
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who a page is rendered for, as ``base.html`` shows it: the signed-in user (empty:
    nobody), their role, the session's CSRF token for the page's writes."""

    user: str = ""
    role: str = ""
    csrf_token: str = ""


_VIEWER: contextvars.ContextVar[Viewer | None] = contextvars.ContextVar(
    "signalbox_viewer", default=None
)


def current_viewer() -> Viewer | None:
    """The viewer of the request being served (None outside one, or without access
    control: then the pages offer no login)."""
    return _VIEWER.get()


def cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie ``name`` in the request, if it came (parsed as Starlette's
    ``Request.cookies`` parses it)."""
    raw = Headers(scope=scope).get("cookie")
    return cookie_parser(raw).get(name) if raw else None


def is_page(scope: Scope) -> bool:
    """Whether a request is a person's browser asking for a page (vs. a machine's call)."""
    return (
        scope["type"] == "http"
        and scope["method"] in ("GET", "HEAD")
        and not scope["path"].startswith(API_PREFIXES)
    )


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
    if not c.authenticated and (c.role is None or c.role < role):
        raise AccessError(
            f"this needs a token with role {role.at_least()}: send 'Authorization: Bearer "
            f"<token>' (`signalbox tokens create --role {role.label}` makes one), or log in "
            "to the dashboard as a user with that role",
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
            in a worker thread; one with a session cookie likewise; one without does no I/O).
            Dashboard users and sessions live in the same database.
        clock: "now" for ``last_used``, sessions and the login rate limit.
        reads_need_token: ``[server] auth = "required"``: loopback reads need a token (or a
            session) too.
    """

    def __init__(
        self, app: ASGIApp, *, tokens: TokenStore, clock: Clock, reads_need_token: bool = False
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.clock = clock
        self.reads_need_token = reads_need_token
        self.sessions = SessionStore(tokens.db)
        self.logins = Logins(UserStore(tokens.db), self.sessions, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        scope[LOGINS] = self.logins
        header, cookies = _credentials(scope)
        denied: tuple[str, bool] | None = None  # (message, a token was sent)
        session: Session | None = None
        if header is None:
            # static files are the same for everyone: no session lookup for each of them
            if cookies is not None and not path.startswith(OPEN_PREFIXES):
                session = await self._from_cookie(cookies)
            if session is not None:
                found = Caller(session.role, user=session.user)
            else:
                found, denied = self._without_credentials(scope)
        else:
            found, problem = await self._from_header(header, scope)
            if problem:
                denied = (problem, True)
        if denied is not None and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
            denied, found = None, ANONYMOUS
        if denied is not None:
            if is_page(scope) and not denied[1]:
                await self._to_login(scope, receive, send)
            else:
                await self._deny(scope, receive, send, *denied)
            return
        if (
            session is not None
            and scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and path != "/login"  # the login form has a CSRF check of its own
        ):
            checked = await _check_csrf(scope, receive, session)
            if isinstance(checked, str):
                await error_response("forbidden", checked, 403)(scope, receive, send)
                return
            receive = checked
        scope[CALLER] = found
        if session is not None:
            scope[SESSION] = session
        viewer = Viewer(
            found.user,
            found.role.label if found.role else "",
            session.csrf_token if session else "",
        )
        reset = _VIEWER.set(viewer)
        try:
            await self.app(scope, receive, send)
        finally:
            _VIEWER.reset(reset)

    def _without_credentials(self, scope: Scope) -> tuple[Caller, tuple[str, bool] | None]:
        client = scope.get("client")
        loopback = _is_loopback(client[0] if client else None)
        found = LOOPBACK if loopback and not self.reads_need_token else ANONYMOUS
        if found.role is not None:
            return found, None
        why = (
            'this server needs a token for reads too ([server] auth = "required")'
            if loopback
            else "reads without a token are open to loopback connections only"
        )
        return found, (f"{why}: send 'Authorization: Bearer <token>' or log in at /login", False)

    async def _from_cookie(self, cookies: str) -> Session | None:
        secret = cookie_parser(cookies).get(SESSION_COOKIE)
        if not secret:
            return None
        now_ms = int(self.clock.now() * 1000)
        return await run_in_threadpool(self.sessions.resolve, secret, now_ms)

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

    async def _to_login(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            target += "?" + query
        where = "/login?" + urllib.parse.urlencode({"next": target})
        await RedirectResponse(where, status_code=303)(scope, receive, send)

    async def _deny(
        self, scope: Scope, receive: Receive, send: Send, message: str, sent_token: bool
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = error_response("unauthorized", message, 401)
        response.headers.update(challenge(sent_token))
        await response(scope, receive, send)


def _credentials(scope: Scope) -> tuple[str | None, str | None]:
    """The ``Authorization`` and ``Cookie`` headers (the first of each, as Starlette's
    ``Headers.get`` gives them), found in one pass over the raw headers: this runs for
    every request."""
    authorization = cookies = None
    for key, value in scope["headers"]:
        if len(key) == 13 and authorization is None and key.lower() == b"authorization":
            authorization = value.decode("latin-1")
        elif len(key) == 6 and cookies is None and key.lower() == b"cookie":
            cookies = value.decode("latin-1")
    return authorization, cookies


@functools.lru_cache(maxsize=256)
def _is_loopback(host: str | None) -> bool:
    """:func:`is_loopback_address`, remembered: a server sees few peer addresses, and
    parsing one costs more than the rest of an open read's check."""
    return is_loopback_address(host)


async def _check_csrf(scope: Scope, receive: Receive, session: Session) -> str | Receive:
    """The ``receive`` the app gets next (the body replayed, if it was read for the form
    field) when the request carries the session's CSRF token; else why not (for a 403)."""
    headers = Headers(scope=scope)
    sent = headers.get(CSRF_HEADER)
    if sent is None and headers.get("content-type", "").split(";")[0].strip() == _FORM:
        body = await _read_body(receive)
        if body is None:
            return f"CSRF check: a form body is at most {MAX_FORM_BYTES} bytes"
        fields = urllib.parse.parse_qs(body.decode("latin-1"), max_num_fields=200)
        values = fields.get(CSRF_FIELD, [])
        sent = values[0] if len(values) == 1 else None
        receive = _replay(body, receive)
    if not sent:
        return (
            f"CSRF token missing: a write made with a dashboard session must send the page's "
            f'token (<meta name="csrf-token">) as the {CSRF_HEADER} header or the '
            f"{CSRF_FIELD} form field"
        )
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), session.csrf_token.encode()):
        return (
            "CSRF token wrong or stale: it is not this session's (reload the page, or log in again)"
        )
    return receive


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
