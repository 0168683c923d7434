"""Failed logins counted per key (a client address, a user name) in a sliding window (pure).

In memory, per ``serve`` process: a restart forgets the counts, which costs a guesser one
more window, not the protection. The number of keys is capped (user names come from the
request), and a full table first drops the keys whose failures have all aged out.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Iterable

__all__ = ["FailureLimiter"]


class FailureLimiter:
    """At most ``limit`` failures per key in any ``window_s``; then the key waits.

    Args:
        limit: failures a key may have in the window; the next attempt is refused.
        window_s: the window, in seconds.
        max_keys: keys tracked at most (the oldest go first past it).
    """

    def __init__(self, *, limit: int = 5, window_s: float = 300.0, max_keys: int = 10_000):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[str], now: float) -> int:
        """Whole seconds until every key in ``keys`` may try again; 0: they may now."""
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                if times is not None and len(times) >= self.limit:
                    wait = max(wait, times[0] + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def fail(self, keys: Iterable[str], now: float) -> None:
        """Count one failure against each key."""
        with self._lock:
            for key in keys:
                times = self._failures.pop(key, None)  # re-inserted: the newest key is last
                if times is None:
                    times = collections.deque(maxlen=self.limit)
                times.append(now)
                self._failures[key] = times
            if len(self._failures) > self.max_keys:
                self._prune(now)

    def clear(self, key: str) -> None:
        """Forget ``key``'s failures (a user who got in)."""
        with self._lock:
            self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        old = now - self.window_s
        for key in [k for k, t in self._failures.items() if t[-1] <= old]:
            del self._failures[key]
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]
