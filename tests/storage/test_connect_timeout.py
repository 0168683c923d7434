"""A PostgreSQL host that drops packets fails a pass within the connect timeout, not after
psycopg's 130 s (or the OS's TCP timeout): ``pg_connector`` adds ``connect_timeout`` unless
the URL (or ``PGCONNECT_TIMEOUT``) sets it.

The unreachable host is a real listening socket whose accept queue is full: the kernel then
drops every further SYN, as a host behind a black-holing firewall does.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.storage.connections import PG_CONNECT_TIMEOUT_S, pg_connect_timeout
from tests.cli.helpers import run


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port that never answers a new connection (its backlog is full)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # more than the queue holds: the rest stay in SYN_SENT
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        probe = socket.socket()
        probe.settimeout(0.5)
        with pytest.raises(TimeoutError):  # the premise: a connection is never answered
            probe.connect(("127.0.0.1", port))
        probe.close()
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_the_default_is_added_and_the_users_own_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    url = "postgresql://127.0.0.1:5432/test"
    assert pg_connect_timeout(url) == ({"connect_timeout": 10}, 10) and PG_CONNECT_TIMEOUT_S == 10
    assert pg_connect_timeout(url + "?connect_timeout=3") == ({}, 3)
    assert pg_connect_timeout("host=127.0.0.1 dbname=test connect_timeout=45") == ({}, 45)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "7")  # libpq's environment setting wins too
    assert pg_connect_timeout(url) == ({}, 7)


def test_collect_once_against_a_host_dropping_packets_fails_within_the_bound(
    tmp_path: Path,
) -> None:
    """``collect --once`` (cron's entry point) with ``connect_timeout=2`` in the URL: exit 2
    with one line naming the store and the wait, within the bound (psycopg alone waits
    130 s)."""
    with black_hole() as port:
        url = f"postgresql://signalbox@127.0.0.1:{port}/test?connect_timeout=2"
        (tmp_path / "signalbox.toml").write_text(f'store = "{url}"\n')
        started = time.monotonic()
        done = run("collect", "--once", cwd=tmp_path)
        took = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"cannot connect to PostgreSQL at {url}: no answer within 2s "
        "(connect_timeout in the store URL sets how long to wait)"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert took < 2 + 20  # the process start and a loaded machine, far below 130 s
