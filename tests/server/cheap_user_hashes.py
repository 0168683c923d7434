"""Dashboard users whose password hashes cost a millisecond, for tests of what they may do.

:func:`~signalbox.server.auth.passwords.hash_password`'s defaults (scrypt ``n=2**15``) cost
about a tenth of a second a hash, by design; a test that creates two users for each of its
cases spends most of its setup there. A hash carries its parameters, so a user created with
``n=2**10`` signs in (``verify_password``) at that cost too, through the same code.
"""

from __future__ import annotations

import functools

import pytest

from signalbox.server.auth import users
from signalbox.server.auth.passwords import hash_password

CHEAP_N = 2**10


def cheap_user_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``UserStore.create`` (and ``passwd``) hash at scrypt ``n=CHEAP_N`` until the test ends."""
    monkeypatch.setattr(users, "hash_password", functools.partial(hash_password, n=CHEAP_N))
