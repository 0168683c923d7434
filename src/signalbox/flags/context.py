"""The flags of the request in progress: which were evaluated (with their answers), and the
staff override (Etsy's ``?features=``), in one context variable.

For the instrumentation middleware, three calls::

    token = flags.begin_request(query_string=b"features=new_ui,-old_cart",
                                header="new_checkout")          # as the request arrives
    ...                                                          # the app runs; it calls
    flags.mark_staff()                                           # once it knows a staff user
    seen = flags.end_request(token)   # [("new_ui", True), ("search_v2", False), ...]

Overrides are *asked for* by the query parameter or header (names from ``[flags]``:
``override_param``, ``override_header``) but *apply* only when the override is enabled in
the config and the app has marked the request as staff: a customer who types
``?features=`` gets nothing. ``name`` forces a flag on, ``-name`` off.

Outside a request nothing is recorded, so library code can evaluate flags anywhere. The
hot path reads the variable once per evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from urllib.parse import parse_qsl

from signalbox.flags.model import NAME_RE

__all__ = [
    "RequestFlags",
    "begin_request",
    "current_request",
    "end_request",
    "evaluated",
    "mark_staff",
    "parse_overrides",
]

MAX_OVERRIDES = 50


class RequestFlags:
    """One request's flags: ``seen`` in evaluation order; ``overrides`` apply while ``active``."""

    __slots__ = ("active", "asked", "overrides", "seen")

    def __init__(self, asked: Mapping[str, bool], *, allowed: bool) -> None:
        self.asked = dict(asked)
        self.overrides: dict[str, bool] = {}
        self.active = False
        self.seen: list[tuple[str, bool]] = []
        if not allowed:
            self.asked = {}

    def mark_staff(self) -> None:
        if self.asked:
            self.overrides = self.asked
            self.active = True


_request: ContextVar[RequestFlags | None] = ContextVar("signalbox_flags_request", default=None)


def parse_overrides(text: str) -> dict[str, bool]:
    """``"new_ui,-old_cart"`` -> ``{"new_ui": True, "old_cart": False}``; names that are not
    flag names are dropped (a request cannot make us log junk), and so is anything past
    :data:`MAX_OVERRIDES`."""
    out: dict[str, bool] = {}
    for part in text.split(","):
        p = part.strip()
        on = not p.startswith("-")
        name = p.lstrip("-+")
        if NAME_RE.match(name) and len(out) < MAX_OVERRIDES:
            out[name] = on
    return out


def begin_request(
    *,
    query_string: bytes | str | None = None,
    header: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]] | None = None,
    allowed: bool | None = None,
    param: str | None = None,
) -> Token[RequestFlags | None]:
    """Start recording a request's flags; returns the token :func:`end_request` takes.

    ``query_string`` is the raw query (the override parameter is looked up in it); the
    override header's value is ``header``, or looked up in ``headers`` (a WSGI-style
    mapping of names to values, case-insensitive, or ASGI's ``scope["headers"]`` pairs).
    ``allowed`` / ``param`` / the header name default to ``[flags]`` of the installed
    flags client (override off when none is installed).
    """
    from signalbox.flags.runtime import override_settings

    cfg_allowed, cfg_param, cfg_header = override_settings()
    allowed = cfg_allowed if allowed is None else allowed
    param = cfg_param if param is None else param
    asked: dict[str, bool] = {}
    if allowed:
        if query_string:
            qs = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
            for key, value in parse_qsl(qs, keep_blank_values=False):
                if key == param:
                    asked.update(parse_overrides(value))
        if header is None and headers is not None:
            header = _find_header(headers, cfg_header)
        if header:
            asked.update(parse_overrides(header))
    return _request.set(RequestFlags(asked, allowed=bool(allowed)))


def _find_header(
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]], name: str
) -> str | None:
    want = name.lower()
    if isinstance(headers, Mapping):
        for k, v in headers.items():
            if k.lower() == want:
                return v
        return None
    wanted = want.encode("latin-1")
    for k, v in headers:
        if k.lower() == wanted:
            return v.decode("latin-1")
    return None


def end_request(token: Token[RequestFlags | None]) -> list[tuple[str, bool]]:
    """Stop recording; return ``(flag, answer)`` for each evaluation, in order."""
    req = _request.get()
    _request.reset(token)
    return [] if req is None else req.seen


def current_request() -> RequestFlags | None:
    return _request.get()


def evaluated() -> list[tuple[str, bool]]:
    """The current request's evaluations so far (empty outside a request)."""
    req = _request.get()
    return [] if req is None else list(req.seen)


def mark_staff() -> bool:
    """The app says the current request is a staff member's: its asked-for overrides apply
    from now on. Returns whether any override is now in force."""
    req = _request.get()
    if req is None:
        return False
    req.mark_staff()
    return req.active
