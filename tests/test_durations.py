from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.durations import format_duration, parse_duration, parse_retention


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15), ("5m", 300), ("1h30m", 5400), ("8d", 691200), ("250ms", 0.25), ("1w", 604800)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "5x", "-5s"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(0, 10**8))
def test_format_then_parse_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_retention_tiers_must_grow_and_nest() -> None:
    assert [(t.resolution, t.retention) for t in parse_retention("1m:8d,5m:35d,1h:400d")] == [
        (60, 691200),
        (300, 3024000),
        (3600, 34560000),
    ]
    for bad in ["1m", "1m:8d,90s:9d", "1m:8d,5m:1d", "0s:1d", "1m:30s"]:
        with pytest.raises(ValueError):
            parse_retention(bad)
