"""Gate fixtures: a private MariaDB master-master pair, and a port that accepts and hangs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.conftest import REQUIRED
from tests.gates.mariadb_pair import INSTALL_DB, MARIADBD, MariaDBPair


@pytest.fixture(scope="session")
def mariadb_pair() -> Iterator[MariaDBPair]:
    """Two private ``mariadbd`` replicating each other, for the whole session.

    Tests that use it carry ``@pytest.mark.peer("mariadbd")`` (skip on a laptop without
    MariaDB, fail in CI); a test that breaks the pair repairs it before it returns.
    """
    import os

    for tool in (MARIADBD, INSTALL_DB):
        if not os.access(tool, os.X_OK):
            msg = f"{tool} is needed for the master-master tests"
            if REQUIRED:
                pytest.fail(msg)
            pytest.skip(msg)
    with MariaDBPair.started() as pair:
        yield pair


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port whose listener never accepts nor answers: TCP connects (the kernel completes
    the handshake into the backlog), then nothing -- the receiver that hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])
