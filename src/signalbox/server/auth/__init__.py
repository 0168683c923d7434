"""Access control for ``signalbox serve``: API tokens with roles, and who may do what.

* :mod:`~signalbox.server.auth.roles` -- roles (``read`` < ``operate`` < ``admin``), the
  caller of a request, the token format and what counts as loopback (pure);
* :mod:`~signalbox.server.auth.store` -- tokens in the store, hashed (component ``auth``);
* :mod:`~signalbox.server.auth.middleware` -- the pure ASGI middleware that resolves the
  caller, and ``require(request, role)`` for routes.

The policy: reads are open to loopback connections unless ``[server] auth = "required"``
(then every request but the health checks needs a token); every write needs an
``operate`` or ``admin`` token, loopback or not; ``serve`` refuses to listen beyond
loopback unless reads need a token too (:func:`check_bind`). The CLI side is
``signalbox tokens`` (:mod:`signalbox.cli.tokens`).
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
