"""Roles, callers and the token format: the pure part of access control (no I/O).

A token is ``sbx_`` and 43 characters of :func:`secrets.token_urlsafe` (32 random bytes):
the prefix lets secret scanners (GitHub's, ``gitleaks``) recognise a leaked one, and 256
bits of randomness make a plain SHA-256 the right stored form (a slow password hash
protects guessable secrets; nobody guesses these). The token is shown once, when it is
created; the store keeps only its hash.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass

__all__ = [
    "ANONYMOUS",
    "LOOPBACK",
    "TOKEN_PREFIX",
    "Caller",
    "Role",
    "hash_token",
    "is_loopback_address",
    "is_loopback_host",
    "looks_like_token",
    "new_token",
]

TOKEN_PREFIX = "sbx_"
_TOKEN_BYTES = 32
_MAX_TOKEN_CHARS = 100  # a longer credential is not ours: refused without a lookup


class Role(enum.IntEnum):
    """What a token may do; each role may do everything the roles below it may.

    ``read``: every GET (metrics, monitors, pages). ``operate``: writes that run the
    system (silence, acknowledge, drill; later retries, pauses, flag changes). ``admin``:
    writes that change who may do what.
    """

    READ = 1
    OPERATE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """``read``, ``operate`` or ``admin``: how the CLI, the store and messages name it."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {text!r}: expected one of {', '.join(r.label for r in cls)}"
            ) from None

    def at_least(self) -> str:
        """``operate or admin``: the roles that satisfy a requirement of this one."""
        return " or ".join(r.label for r in Role if r >= self)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as the auth middleware resolved it.

    ``role`` None: nobody we know (no token off loopback, or reads need a token).
    ``token_id`` None: no token was sent (a loopback reader, or a dashboard user).
    ``user``: the dashboard user whose session cookie came with the request.
    """

    role: Role | None
    token_id: int | None = None
    token_name: str = ""
    user: str = ""

    @property
    def authenticated(self) -> bool:
        """Whether a credential (a token or a session) says who this is."""
        return self.token_id is not None or bool(self.user)

    @property
    def who(self) -> str:
        """How the audit trail names this caller: ``grafana (token #3)``, ``alice (dashboard)``."""
        if self.user:
            return f"{self.user} (dashboard)"
        if self.token_id is None:
            return "loopback" if self.role is not None else "anonymous"
        return f"{self.token_name} (token #{self.token_id})"


ANONYMOUS = Caller(None)
LOOPBACK = Caller(Role.READ)


def new_token() -> str:
    """A fresh token to show once: ``sbx_`` + 43 URL-safe characters."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The stored form of ``token``: its SHA-256 as hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_token(text: str) -> bool:
    """Whether ``text`` could be one of ours (else it is refused without a store lookup)."""
    return text.startswith(TOKEN_PREFIX) and len(text) <= _MAX_TOKEN_CHARS and text.isascii()


def is_loopback_address(host: str | None) -> bool:
    """Whether a peer address (``scope["client"][0]``) is this machine's loopback.

    IPv4-mapped IPv6 (``::ffff:127.0.0.1``, what a dual-stack socket reports) counts; a
    name (a test client's ``testclient``) or no address (a Unix socket) does not.
    """
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` (``serve --host``) listens on loopback only.

    ``localhost`` and loopback addresses do; every other name or address (``0.0.0.0``,
    ``::``, a LAN address, a host name that may resolve anywhere) does not.
    """
    if host.lower() in ("localhost", "localhost."):
        return True
    return is_loopback_address(host.strip("[]"))
