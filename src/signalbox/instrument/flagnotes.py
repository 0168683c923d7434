"""Which feature flags a request evaluated, with their answers, as its ``flags`` note; and
the staff override asked for by the request (Etsy's ``?features=``).

When the process has a flags client (:func:`signalbox.flags.configure`), the middleware
starts recording the request's flags as it arrives (:func:`signalbox.flags.begin_request`:
the override parameter and header are read there, and apply only once the app calls
``flags.mark_staff()``), and the access-log line gets ``flags="name=on,other=off"``: each
distinct (flag, answer) pair in evaluation order, so an incident can be traced to a flag.
Without a flags client nothing is done (one dictionary lookup a request): apps that do not
use flags pay nothing, and this module never imports the flags package on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalbox.flags.context import RequestFlags

__all__ = ["begin", "end", "text"]

Started = tuple["RequestFlags", "Token[RequestFlags | None]"]
RUNTIME = "signalbox.flags.runtime"
"""The flags client's module: until it is imported, no request has flags to record."""
_modules = sys.modules


def begin(
    query_string: bytes | str | None,
    headers: Iterable[tuple[bytes, bytes]] | None = None,
    environ: Mapping[str, Any] | None = None,
) -> Started | None:
    """Start recording (ASGI: ``headers`` pairs; WSGI: ``environ``); None when the process
    has no flags client."""
    runtime = _modules.get(RUNTIME)  # not even imported: no flags client
    if runtime is None or runtime.current() is None:
        return None
    from signalbox.flags.context import begin_request, current_request
    from signalbox.flags.runtime import override_settings

    header = None
    if environ is not None:
        name = override_settings()[2]
        header = environ.get("HTTP_" + name.upper().replace("-", "_"))
    token = begin_request(query_string=query_string, header=header, headers=headers)
    req = current_request()
    assert req is not None
    return req, token


def end(started: Started) -> None:
    """Stop recording in this context (the answers stay on the request's object)."""
    from signalbox.flags.context import end_request

    end_request(started[1])


def text(req: RequestFlags) -> str:
    """``name=on,other=off``: the distinct (flag, answer) pairs, in evaluation order."""
    return ",".join(f"{n}={'on' if v else 'off'}" for n, v in dict.fromkeys(req.seen))
