"""How long to wait before the next attempt: exponential backoff with jitter.

Pure arithmetic shared by everything that retries through the store (the notification
outbox, the task queue), so they back off alike and one test pins the schedule.
"""

from __future__ import annotations

import random

__all__ = ["backoff_s"]


def backoff_s(attempts: int, rng: random.Random, *, base_s: float, cap_s: float) -> float:
    """Delay before attempt ``attempts + 1``: doubling from ``base_s`` up to ``cap_s``,
    each drawn from the upper half of its value so retries of many rows spread out
    instead of arriving together (a thundering herd at the receiver)."""
    # the exponent is capped: 2.0 ** 1100 raises OverflowError, and any base doubled 1000
    # times is past every sensible cap anyway
    exp = min(cap_s, base_s * 2.0 ** min(max(0, attempts - 1), 1000))
    return exp * (0.5 + rng.random() / 2)
