"""Nagios-compatible flap detection: weighted percent state change and its hysteresis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.monitors.definitions.model import State
from signalbox.monitors.engine.flapping import HISTORY_SIZE, is_flapping, percent_state_change, push

OK, CRIT = State.OK, State.CRITICAL


def nagios_reference(history: list[State]) -> float:
    """Nagios' loop over a full 21-slot ring buffer, transcribed literally."""
    assert len(history) == HISTORY_SIZE
    changes = 0.0
    last = history[0]
    for x in range(1, HISTORY_SIZE):
        if history[x] != last:
            changes += (x - 1) * (1.25 - 0.75) / (HISTORY_SIZE - 2) + 0.75
        last = history[x]
    return changes * 100.0 / (HISTORY_SIZE - 1)


def test_a_steady_state_has_no_state_change() -> None:
    assert percent_state_change([OK] * 21) == 0.0
    assert percent_state_change([]) == 0.0
    assert percent_state_change([CRIT]) == 0.0


def test_changing_on_every_check_is_one_hundred_percent() -> None:
    assert percent_state_change([OK, CRIT] * 10 + [OK]) == pytest.approx(100.0)


def test_the_newest_change_weighs_1_25_and_the_oldest_0_75() -> None:
    assert percent_state_change([OK] * 20 + [CRIT]) == pytest.approx(1.25 * 100 / 20)
    assert percent_state_change([OK] + [CRIT] * 20) == pytest.approx(0.75 * 100 / 20)


def test_a_short_history_weighs_its_changes_as_the_newest() -> None:
    assert percent_state_change([OK, CRIT]) == percent_state_change([OK] * 20 + [CRIT])


def test_only_the_last_21_results_count() -> None:
    assert percent_state_change([CRIT, OK] + [OK] * 20) == 0.0


@given(st.lists(st.sampled_from(list(State)), min_size=HISTORY_SIZE, max_size=HISTORY_SIZE))
def test_percent_matches_nagios_for_a_full_history(history: list[State]) -> None:
    assert percent_state_change(history) == pytest.approx(nagios_reference(history))


@given(st.lists(st.sampled_from(list(State)), max_size=60))
def test_percent_is_always_between_0_and_100(history: list[State]) -> None:
    assert 0.0 <= percent_state_change(history) <= 100.0


@given(st.integers(min_value=1, max_value=HISTORY_SIZE - 2))
def test_a_more_recent_single_change_weighs_more(at: int) -> None:
    older = [OK] * at + [CRIT] * (HISTORY_SIZE - at)
    newer = [OK] * (at + 1) + [CRIT] * (HISTORY_SIZE - at - 1)
    assert percent_state_change(newer) > percent_state_change(older)


@pytest.mark.parametrize(
    ("was", "percent", "expected"),
    [
        (False, 30.0, True),
        (False, 29.9, False),
        (True, 20.1, True),
        (True, 20.0, False),
        (False, 25.0, False),
        (True, 25.0, True),
    ],
)
def test_flapping_starts_at_high_stops_at_low_and_holds_in_between(
    was: bool, percent: float, expected: bool
) -> None:
    assert is_flapping(was, percent, low=20, high=30) is expected


def test_push_keeps_only_the_last_21_results() -> None:
    history: tuple[State, ...] = ()
    for i in range(30):
        history = push(history, CRIT if i % 2 else OK)
    assert len(history) == HISTORY_SIZE and history[-1] is CRIT
