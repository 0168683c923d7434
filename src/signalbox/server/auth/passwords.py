"""Dashboard passwords: scrypt hashes with their parameters, compared in constant time (pure).

A stored hash reads ``scrypt$<n>$<r>$<p>$<salt>$<key>`` (salt and key in unpadded URL-safe
base64): each hash carries the parameters it was made with, so raising them later leaves
every stored password verifiable. The defaults (``n=2**15, r=8, p=1``: 32 MiB and about a
tenth of a second a hash) slow a guesser holding a stolen table down to a few guesses a
second a core, where a SHA-256 (right for 256-bit API tokens, see
:mod:`~signalbox.server.auth.roles`) would allow billions.

A check against a user that does not exist hashes anyway (:data:`DUMMY_HASH`), so the time a
login takes does not tell which user names exist (:func:`dummy_hash`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import threading

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "check_password",
    "dummy_hash",
    "hash_password",
    "verify_password",
]

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_BYTES = 32
_SALT_BYTES = 16
_MAXMEM = 128 * 1024 * 1024  # a stored hash with parameters past this is refused, not run

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # scrypt's cost does not grow with length; a form body's does

_SLOTS = threading.BoundedSemaphore(4)
"""Hashes run at once in this process: each holds 32 MiB, and a burst of logins must not
hold a gigabyte."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _SLOTS:
        return hashlib.scrypt(
            password.encode("utf-8", "surrogatepass"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=_MAXMEM,
            dklen=_KEY_BYTES,
        )


def check_password(password: str) -> str:
    """``password`` if it is acceptable; else :class:`ValueError` saying why."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    return password


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of ``password``: a fresh random salt, the parameters and the key."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time compare).

    A malformed ``stored`` (or parameters past the memory cap) is never a match.
    """
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        got = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:  # wrong shape, bad base64, or parameters scrypt refuses
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked against when no user has the name given, so both answers take as long
    (made on first use: importing this module costs no hash)."""
    return hash_password(secrets.token_urlsafe(16))
