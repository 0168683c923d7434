"""The flag store contract, on every backend: memory, SQLite and PostgreSQL (a real server).

What the cache, the CLI and (later) the API and monitor actions rely on: a change applies to
the current state and keeps the gates it does not name; every change is audited with who,
when, why, old and new, in the same step; a refused change leaves nothing; two writers at
once both land, each audited against the state it really replaced.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from signalbox.flags.model import FlagChange, FlagState, parse_setting

T0 = 1_700_000_000_000


def test_a_set_stores_the_state_and_audits_it(fstore: Any) -> None:
    assert fstore.get("uploads") is None and fstore.states() == {}
    e = fstore.set("uploads", parse_setting("30%"), by="cli (ann@h)", reason="canary", now_ms=T0)
    assert (e.name, e.at_ms, e.by, e.reason, e.old) == (
        "uploads",
        T0,
        "cli (ann@h)",
        "canary",
        None,
    )
    assert e.new == FlagState("rollout", actors_share=30_000)
    got = fstore.get("uploads")
    assert got is not None
    assert (got.state, got.version, got.updated_ms, got.updated_by, got.reason) == (
        e.new, 1, T0, "cli (ann@h)", "canary",
    )  # fmt: skip
    assert set(fstore.states()) == {"uploads"}


def test_a_change_keeps_the_gates_it_does_not_name(fstore: Any) -> None:
    fstore.set(
        "f",
        parse_setting("10%", actors=["a", "b"], groups=["staff"]),
        by="x",
        reason="r",
        now_ms=T0,
    )
    fstore.set("f", parse_setting("off"), by="y", reason="incident", now_ms=T0 + 1)
    got = fstore.get("f")
    assert got.state == FlagState("off", 10_000, 0, frozenset({"a", "b"}), frozenset({"staff"}))
    assert got.version == 2
    fstore.set("f", FlagChange(switch="rollout"), by="y", reason="recovered", now_ms=T0 + 2)
    assert fstore.get("f").state.describe() == "10% of actors, actors a, b, groups staff"


def test_a_flag_never_stored_starts_from_the_base_given(fstore: Any) -> None:
    base = FlagState("rollout", actors_share=5_000)
    e = fstore.set("f", FlagChange(time_share=1_000), by="x", reason="r", now_ms=T0, base=base)
    assert e.old is None and e.new == FlagState("rollout", 5_000, 1_000)


def test_history_is_newest_first_per_flag_and_pages_by_id(fstore: Any) -> None:
    for i, (name, value) in enumerate([("a", "on"), ("b", "off"), ("a", "50%"), ("a", "off")]):
        fstore.set(name, parse_setting(value), by=f"u{i}", reason=f"r{i}", now_ms=T0 + i)
    hist = fstore.history("a")
    assert [(e.by, e.new.describe()) for e in hist] == [
        ("u3", "off (kill switch; kept for later: 50% of actors)"),
        ("u2", "50% of actors"),
        ("u0", "on"),
    ]  # fmt: skip
    assert hist[0].old == hist[1].new and hist[1].old == hist[2].new and hist[2].old is None
    assert [e.name for e in fstore.history()] == ["a", "a", "b", "a"]
    page = fstore.history("a", limit=1, before_id=hist[0].id)
    assert [e.id for e in page] == [hist[1].id]
    assert hist[0].to_dict()["old"]["percentage_of_actors"] == 50.0


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"by": "x", "reason": "  "}, "a reason is required"),
        ({"by": "", "reason": "r"}, "who made the change"),
    ],
)
def test_a_refused_change_leaves_no_state_and_no_audit(
    fstore: Any, kw: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fstore.set("f", parse_setting("on"), now_ms=T0, **kw)
    with pytest.raises(ValueError, match="changes nothing"):
        fstore.set("f", FlagChange(), by="x", reason="r", now_ms=T0)
    assert fstore.get("f") is None and fstore.history() == []


def test_evaluation_counts_add_up_across_calls(fstore: Any) -> None:
    fstore.record_evaluations({"a": 3, "b": 0}, T0)
    fstore.record_evaluations({"a": 2, "c": 1}, T0 + 5)
    assert fstore.evaluations() == {"a": (5, T0 + 5), "c": (1, T0 + 5)}


def test_two_writers_at_once_both_land_and_each_is_audited_against_what_it_replaced(
    fstore: Any,
) -> None:
    n = 15
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(field: str) -> None:
        try:
            start.wait()
            for i in range(1, n + 1):
                fstore.set(
                    "f",
                    FlagChange(switch="rollout", **{field: i * 1000}),
                    by=field,
                    reason=f"step {i}",
                    now_ms=T0 + i,
                )
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(f,)) for f in ("actors_share", "time_share")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    got = fstore.get("f")
    # neither writer's last change was lost to the other's
    assert (got.state.actors_share, got.state.time_share, got.version) == (
        n * 1000, n * 1000, 2 * n,
    )  # fmt: skip
    hist = list(reversed(fstore.history("f", limit=100)))
    assert len(hist) == 2 * n
    assert hist[0].old is None
    for before, after in itertools.pairwise(hist):
        assert after.old == before.new  # each audited against the state it replaced
