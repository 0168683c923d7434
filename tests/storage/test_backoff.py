"""The retry schedule every queue in the store shares."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from signalbox.storage.backoff import backoff_s


@given(st.integers(1, 40), st.integers(0, 2**32))
def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half(
    attempts: int, seed: int
) -> None:
    d = backoff_s(attempts, random.Random(seed), base_s=10, cap_s=600)
    full = min(600.0, 10 * 2 ** (attempts - 1))
    assert full / 2 <= d <= full


@given(st.integers(7, 10**9))
def test_backoff_stays_at_the_cap_however_many_attempts(attempts: int) -> None:
    # 2.0 ** 1100 alone would raise OverflowError
    assert 30 <= backoff_s(attempts, random.Random(1), base_s=1, cap_s=60) <= 60


def test_the_first_attempts_wait_about_the_base() -> None:
    rng = random.Random(3)
    assert all(5 <= backoff_s(a, rng, base_s=10, cap_s=600) <= 10 for a in (0, 1))
