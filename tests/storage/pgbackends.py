"""Which PostgreSQL backends a local process holds: its TCP sockets' local ports (from
``/proc``) matched to ``pg_stat_activity.client_port``. By process rather than by
application_name: other tests' processes on the same server carry the same names."""

from __future__ import annotations

import os
from pathlib import Path

from tests.storage.helpers import pg_admin


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _local_ports(pid: int) -> set[int]:
    """The local ports of ``pid``'s TCP sockets (IPv4 and IPv6)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def backends_of(pid: int) -> list[tuple[str, str]]:
    """``(application_name, state)`` of each PostgreSQL backend process ``pid`` is connected
    to over TCP, sorted."""
    ports = _local_ports(pid)
    if not ports:
        return []
    rows = pg_admin(
        "SELECT application_name, coalesce(state, ''), client_port FROM pg_stat_activity "
        "WHERE client_addr IS NOT NULL"
    )
    return sorted((str(a), str(s)) for a, s, port in rows if port in ports)
