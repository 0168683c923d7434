""":func:`tests.serving.wait_for`, polled every 100 ms instead of every 200 ms.

For tests that wait, one condition after another, for what a ``serve`` (or agent, or
Alertmanager) process does next: a 200 ms poll lets ~0.1 s pass, on average, after each
condition holds before the test goes on; over a test's dozen waits that is a second or two
of its time; 100 ms halves it, at a query or two more a second."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EVERY_S = 0.1


def wait_for(fn: Callable[[], T | None], timeout: float = 30.0) -> T:
    """``fn()``'s first truthy answer, polled; connection errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
            last = got
        except OSError as e:
            last = e
        time.sleep(EVERY_S)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")
