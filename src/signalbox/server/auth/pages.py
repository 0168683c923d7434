"""The dashboard's login and logout: ``GET/POST /login``, ``POST /logout``.

What decides (rate limit, password, session) is :class:`~signalbox.server.auth.logins.Logins`;
this module reads the form and sets cookies:

* ``signalbox_session``: the session id. ``HttpOnly`` (no script reads it),
  ``SameSite=Strict`` (no other site's page makes the browser send it), ``Path=/``,
  ``Secure`` when the request came over https, ``Max-Age`` the session's absolute life;
* ``signalbox_login``: the login form's own CSRF token (a random value, set by
  ``GET /login`` and echoed by the form: another site cannot read it to forge a login into
  an account of its choosing), dropped once the login succeeds.

After a login the browser goes to ``next``, a local path only (:func:`safe_next`): never
another host, whatever the spelling (``//evil.com``, ``/\\evil.com``, ``https://...``).
"""

from __future__ import annotations

import hmac
import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from signalbox import __version__
from signalbox.exceptions import NotFoundError
from signalbox.server.api import read_body
from signalbox.server.auth.logins import Logins
from signalbox.server.auth.middleware import (
    CSRF_FIELD,
    LOGINS,
    SESSION_COOKIE,
    cookie,
    current_viewer,
)
from signalbox.server.auth.sessions import looks_like_secret, new_secret
from signalbox.server.dashboard import templates

__all__ = ["LOGIN_COOKIE", "routes", "safe_next"]

LOGIN_COOKIE = "signalbox_login"
_MAX_NEXT_CHARS = 2000
_MAX_FORM_BYTES = 8 * 1024


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this server; else ``/``.

    Only printable ASCII without spaces (what a URL's path and query are, percent-encoded;
    browsers drop tabs and line breaks, so ``/\\t/evil.com`` would become ``//evil.com``),
    starting with one ``/`` and no backslash (browsers read ``/\\`` as ``//``), with no
    scheme or host once parsed; never back to the login or logout.
    """
    if not target or len(target) > _MAX_NEXT_CHARS:
        return "/"
    if not all(0x20 < ord(c) < 0x7F for c in target):
        return "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return target


def _logins(request: Request) -> Logins:
    found: Logins | None = request.scope.get(LOGINS)
    if found is None:
        raise NotFoundError(
            "page", "/login", "dashboard login needs access control: this app has no store"
        )
    return found


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(
    request: Request,
    *,
    next_path: str,
    error: str = "",
    name: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    token = cookie(request.scope, LOGIN_COOKIE)
    if token is None or not looks_like_secret(token):
        token = new_secret()
    html = (
        templates()
        .get_template("login.html")
        .render(
            version=__version__,
            demo=bool(getattr(request.app.state.options, "demo", False)),
            page="login",
            login_csrf=token,
            next=next_path,
            error=error,
            name=name,
        )
    )
    response = HTMLResponse(html, status_code=status, headers=headers)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/login",
        secure=_https(request),
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def login_form(request: Request) -> Response:
    """The form, signed in or not (logging in again, maybe as someone else, starts a new
    session and ends the one the browser held)."""
    _logins(request)
    return _login_page(request, next_path=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    logins = _logins(request)
    body = await read_body(request, _MAX_FORM_BYTES)
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)

    def field(key: str) -> str:
        values = form.get(key, [])
        return values[0] if len(values) == 1 else ""

    next_path = safe_next(field("next"))
    name = field("name").strip()
    expected = cookie(request.scope, LOGIN_COOKIE) or ""
    sent = field(CSRF_FIELD)
    if not (
        looks_like_secret(expected)
        and hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode())
    ):
        return _login_page(
            request,
            next_path=next_path,
            name=name[:64],
            error="This login form has expired or came from another site (CSRF check); try again.",
            status=403,
        )
    result = await run_in_threadpool(
        logins.attempt,
        name,
        field("password"),
        client=_client(request),
        replacing=cookie(request.scope, SESSION_COOKIE),
    )
    if result.retry_after_s:
        return _login_page(
            request,
            next_path=next_path,
            name=name[:64],
            error=f"Too many failed logins: try again in {result.retry_after_s} s.",
            status=429,
            headers={"Retry-After": str(result.retry_after_s)},
        )
    if result.session is None:
        return _login_page(
            request,
            next_path=next_path,
            name=name[:64],
            error="Wrong user name or password.",
            status=401,
        )
    response = RedirectResponse(next_path, status_code=303)
    max_age = (result.session.expires_ms - result.session.created_ms) // 1000
    response.set_cookie(
        SESSION_COOKIE,
        result.secret,
        max_age=max_age,
        path="/",
        secure=_https(request),
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login", httponly=True, samesite="strict")
    return response


async def logout(request: Request) -> Response:
    """End the session (the middleware checked its CSRF token first) and forget the cookie."""
    logins = _logins(request)
    secret = cookie(request.scope, SESSION_COOKIE)
    if secret:
        await run_in_threadpool(logins.sessions.end, secret)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_https(request), httponly=True, samesite="strict"
    )
    return response


def routes() -> list[BaseRoute]:
    """The login and logout routes; the dashboard's templates learn who is viewing
    (``viewer()`` in ``base.html``: the user, the CSRF token for ``<meta>``)."""
    templates().globals["viewer"] = current_viewer
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
