"""Access control for ``signalbox serve``: API tokens and dashboard users with roles, and
who may do what.

* :mod:`~signalbox.server.auth.roles` -- roles (``read`` < ``operate`` < ``admin``), the
  caller of a request, the token format and what counts as loopback (pure);
* :mod:`~signalbox.server.auth.store` -- tokens in the store, hashed (component ``auth``,
  whose migrations create the users' and sessions' tables too);
* :mod:`~signalbox.server.auth.passwords` -- scrypt password hashes (pure);
* :mod:`~signalbox.server.auth.users` -- dashboard users in the store;
* :mod:`~signalbox.server.auth.sessions` -- their sessions, ids hashed, with CSRF tokens;
* :mod:`~signalbox.server.auth.ratelimit` -- failed logins counted per key (pure);
* :mod:`~signalbox.server.auth.logins` -- a login attempt, over users, sessions and limits;
* :mod:`~signalbox.server.auth.middleware` -- the pure ASGI middleware that resolves the
  caller (token or session cookie), checks CSRF, and ``require(request, role)`` for routes;
* :mod:`~signalbox.server.auth.pages` -- ``/login`` and ``/logout``.

The policy: reads are open to loopback connections unless ``[server] auth = "required"``
(then every request but the health checks, the login page and the static files needs a
token or a session); every write needs an ``operate`` or ``admin`` token or user, loopback
or not, and a session's writes its CSRF token; ``serve`` refuses to listen beyond
loopback unless reads need credentials too (:func:`check_bind`). The CLI side is
``signalbox tokens`` (:mod:`signalbox.cli.tokens`) and ``signalbox users``
(:mod:`signalbox.cli.users`); admins also manage tokens over HTTP
(:mod:`signalbox.server.api.tokens`).
"""

from __future__ import annotations

from signalbox.exceptions import UsageError
from signalbox.server.auth.roles import is_loopback_host

__all__ = ["check_bind"]


def check_bind(host: str, port: int, *, reads_need_token: bool) -> None:
    """Refuse to serve beyond loopback while reads are open to anyone who can connect.

    Raises:
        UsageError: ``host`` is not a loopback address and reads need no token.
    """
    if reads_need_token or is_loopback_host(host):
        return
    shown = f"[{host}]" if ":" in host else host
    raise UsageError(
        f"refusing to serve on http://{shown}:{port}/ with reads open: beyond loopback every "
        'request needs a token; set auth = "required" in [server] of signalbox.toml and '
        "create tokens with `signalbox tokens create`, or listen on 127.0.0.1"
    )
