"""Pure evaluation: gates combined as Flipper's, the kill switch, sticky documented buckets."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.flags.evaluate import actor_id, bucket, evaluate
from signalbox.flags.model import BUCKETS, FlagState

ACTORS = [f"user-{i}" for i in range(100_000)]


def test_the_bucket_is_the_documented_crc32_so_other_languages_can_match_it() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the CRC-32/ISO-HDLC check value
    assert bucket("checkout", "42") == zlib.crc32(b"checkout:42") % 100_000
    assert bucket("checkout", "42") == 3_614_202_167 % 100_000 == 2_167  # a fixed vector
    assert bucket("néw", "ü") == zlib.crc32("néw:ü".encode()) % 100_000


@settings(max_examples=15)
@given(
    pct=st.integers(min_value=0, max_value=BUCKETS),
    name=st.from_regex(r"[a-z]{1,12}", fullmatch=True),
)
def test_a_percentage_of_actors_holds_within_tolerance_over_100k_actors(
    pct: int, name: str
) -> None:
    share = sum(bucket(name, a) < pct for a in ACTORS)
    # binomial spread over 100k draws: 5 sigma is at most ~800 actors
    assert abs(share - pct) <= 800, (share, pct)


@settings(max_examples=30)
@given(
    name=st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
    low=st.integers(0, BUCKETS),
    high=st.integers(0, BUCKETS),
    actors=st.lists(st.text(min_size=1, max_size=20), max_size=200),
)
def test_raising_a_percentage_only_adds_actors(
    name: str, low: int, high: int, actors: list[str]
) -> None:
    low, high = min(low, high), max(low, high)
    before = {a for a in actors if evaluate(name, FlagState("rollout", low), a)[0]}
    after = {a for a in actors if evaluate(name, FlagState("rollout", high), a)[0]}
    assert before <= after


def test_the_same_actor_gets_the_same_answer_every_time_and_for_int_or_str_ids() -> None:
    s = FlagState("rollout", actors_share=50_000)
    answers = {evaluate("f", s, 1234)[0] for _ in range(5)} | {evaluate("f", s, "1234")[0]}
    assert len(answers) == 1

    class User:
        flag_id = 1234

    assert evaluate("f", s, User())[0] in answers


def test_any_open_gate_enables_and_off_beats_them_all() -> None:
    groups: dict[str, Any] = {"staff": lambda a: str(a).startswith("staff-")}
    s = FlagState("rollout", actors={"ann"}, groups=frozenset({"staff"}))
    assert evaluate("f", s, "ann", groups=groups) == (True, "actor")
    assert evaluate("f", s, "staff-bob", groups=groups) == (True, "group")
    assert evaluate("f", s, "carol", groups=groups) == (False, "no_gate")
    assert evaluate("f", s, None, groups=groups) == (False, "no_gate")
    killed = FlagState("off", BUCKETS, BUCKETS, frozenset({"ann"}), frozenset({"staff"}))
    assert evaluate("f", killed, "ann", groups=groups, draw=0.0) == (False, "killed")
    assert evaluate("f", FlagState("on"), None) == (True, "on")


def test_percentage_of_time_uses_the_draw() -> None:
    s = FlagState("rollout", time_share=25_000)
    assert evaluate("f", s, draw=0.2499) == (True, "percentage_of_time")
    assert evaluate("f", s, draw=0.25) == (False, "no_gate")
    always = FlagState("rollout", time_share=BUCKETS)
    assert evaluate("f", always) == (True, "percentage_of_time") and always.fully_on


def test_everyone_at_100_percent_even_without_an_actor() -> None:
    assert evaluate("f", FlagState("rollout", BUCKETS), None) == (True, "percentage_of_actors")


def test_a_group_predicate_that_raises_is_not_in_the_group_and_is_reported() -> None:
    seen: list[str] = []

    def boom(actor: object) -> bool:
        raise RuntimeError("db down")

    s = FlagState("rollout", groups=frozenset({"vip"}))
    answer = evaluate("f", s, "a", groups={"vip": boom}, on_group_error=lambda g, e: seen.append(g))
    assert answer == (False, "no_gate") and seen == ["vip"]


@pytest.mark.parametrize("actor", [True, 1.5, object(), ["a"]])
def test_an_actor_without_a_usable_id_is_in_no_gate_but_the_switch(actor: object) -> None:
    assert actor_id(actor) is None
    assert evaluate("f", FlagState("rollout", 99_999), actor) == (False, "bad_actor")
    assert evaluate("f", FlagState("on"), actor) == (True, "on")
