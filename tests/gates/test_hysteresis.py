"""High/low marks, pure: the gate closes at the high mark and reopens only below the low one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.gates.hysteresis import Limit, fmt, judge, max_limit, min_limit


def _run(lim: Limit, values: list[float]) -> list[bool]:
    tripped: frozenset[str] = frozenset()
    out = []
    for v in values:
        verdict = judge([("x", lim, v)], tripped)
        tripped = verdict.tripped
        out.append(verdict.open)
    return out


def test_ceiling_closes_at_high_and_reopens_only_below_low() -> None:
    lim = max_limit("Threads_running", 40)  # low 32
    assert _run(lim, [10, 39, 40, 35, 32, 31.9, 35, 39]) == [
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        True,
    ]


def test_reasons_say_the_value_the_mark_and_where_it_reopens() -> None:
    lim = max_limit("Threads_running", 40)
    v = judge([("Threads_running", lim, 41)])
    assert v.reasons == ("Threads_running 41 >= 40 (reopens below 32)",)
    v = judge([("Threads_running", lim, 35)], v.tripped)
    assert v.reasons == ("Threads_running 35: closed at 40, reopens below 32",)


def test_explicit_low_mark_and_ratio() -> None:
    assert max_limit("a", (40, 30)).reopen_at == 30
    assert max_limit("a", [40, 30]).reopen_at == 30
    assert max_limit("a", 50, 0.5).reopen_at == 25
    with pytest.raises(ValueError, match="above the high mark"):
        max_limit("a", (40, 41))
    with pytest.raises(ValueError, match="fraction"):
        max_limit("a", 40, 1.5)
    with pytest.raises(ValueError, match="number or"):
        max_limit("a", "40")  # type: ignore[arg-type]


def test_floor_closes_at_or_under_and_reopens_above_the_reopen_mark() -> None:
    lim = min_limit("free", 10, 12)
    assert _run(lim, [20, 10, 11, 12, 12.5, 9]) == [True, False, False, False, True, False]


def test_missing_value_trips_the_limit() -> None:
    v = judge([("Threads_running", max_limit("Threads_running", 40), None)])
    assert not v.open and v.reasons == ("Threads_running: no value",)
    assert not judge([("x", max_limit("x", 40), float("nan"))]).open


def test_one_tripped_limit_of_several_keeps_the_gate_closed() -> None:
    run, conn = max_limit("run", 40), max_limit("conn", 100)
    v = judge([("run", run, 50), ("conn", conn, 10)])
    assert v.tripped == {"run"}
    v = judge([("run", run, 20), ("conn", conn, 100)], v.tripped)
    assert v.tripped == {"conn"} and not v.open


def test_fmt_writes_numbers_as_people_do() -> None:
    assert fmt(40.0) == "40" and fmt(0.125) == "0.125" and fmt(2.4000000000000004) == "2.4"


@given(
    high=st.floats(1, 1e6),
    ratio=st.floats(0.01, 1),
    values=st.lists(st.floats(0, 2e6), max_size=40),
)
def test_state_follows_the_band(high: float, ratio: float, values: list[float]) -> None:
    """Closed at or over high, open under low, and in between: whatever it was before."""
    lim = max_limit("x", high, ratio)
    was_open = True
    for v, now_open in zip(values, _run(lim, values), strict=True):
        if v >= lim.close_at:
            assert not now_open
        elif v < lim.reopen_at:
            assert now_open
        else:
            assert now_open == was_open
        was_open = now_open
