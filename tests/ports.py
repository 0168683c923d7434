"""A port for a server a test starts later (``serve``, a peer, a receiver), picked now.

The kernel's choice (``bind(("127.0.0.1", 0))``) comes from the ephemeral range, the same
range every client connection's local port and every other test's ``bind(0)`` receiver
takes theirs from: between the pick and the server's own bind, one of those took the port
once (``serve``: "Address already in use", a webhook receiver of the same test bound
after). So ports come from below the ephemeral range, each xdist worker from its own
share, in turn from a random start, each checked free by a bind."""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator

_FLOOR = 10_000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _share() -> range:
    """This process's ports: its xdist worker's share of the range below the ephemeral one."""
    top = max(_ephemeral_low(), _FLOOR + 2_000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    k = int(worker) % count if worker.isdigit() else 0
    width = (top - _FLOOR) // count
    return range(_FLOOR + k * width, _FLOOR + (k + 1) * width)


def _turns() -> Iterator[int]:
    share = _share()
    start = random.randrange(len(share))
    return itertools.cycle([*share[start:], *share[:start]])


_PORTS = _turns()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of this worker's share that nothing is bound to now (TCP, or ``kind``)."""
    for _ in range(len(_share())):
        port = next(_PORTS)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
