"""The cache in memory: answers from declarations then the store, counts, outages, requests,
dark launches; its fast decisions agree with the pure evaluation."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.flags import context
from signalbox.flags.cache import FlagCache
from signalbox.flags.declarations import declare
from signalbox.flags.evaluate import evaluate
from signalbox.flags.memstore import MemoryFlagStore
from signalbox.flags.model import BUCKETS, FlagDecl, FlagState, parse_setting

T0 = 1_700_000_000.0


def decl(name: str, default: FlagState | None = None) -> FlagDecl:
    return FlagDecl(name, f"{name} feature", "team", default or FlagState("off"))


class FlakyStore(MemoryFlagStore):
    """A memory store whose reads fail while ``down`` (the SQL outages are in test_processes)."""

    down = False

    def states(self) -> Any:
        if self.down:
            raise OSError("connection refused")
        return super().states()


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


def make(store: Any, *decls: FlagDecl, **kw: Any) -> FlagCache:
    return FlagCache(store, {d.name: d for d in decls}, clock=FrozenClock(T0), **kw)


def test_declared_defaults_answer_until_the_store_says_otherwise(store: FlakyStore) -> None:
    c = make(store, decl("a", FlagState("on")), decl("b"))
    assert c.enabled("a") and not c.enabled("b")
    store.set("a", parse_setting("off"), by="x", reason="incident", now_ms=0)
    store.set("b", parse_setting("100%"), by="x", reason="launch", now_ms=0)
    assert c.enabled("a")  # not refreshed yet
    assert c.refresh()
    assert not c.enabled("a") and c.enabled("b", "anyone")


def test_an_undeclared_flag_is_off_and_reported_once(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.set("ghost", parse_setting("on"), by="x", reason="r", now_ms=0)
    c = make(store)
    c.refresh()
    with caplog.at_level(logging.WARNING, logger="signalbox.flags"):
        assert not c.enabled("ghost") and not c.enabled("ghost", "a")
    assert [r.getMessage() for r in caplog.records] == [
        "flag 'ghost' is not declared (in flags/*.yaml or flags.declare()): it is off"
    ]
    assert c.undeclared == {"ghost": 2}


def test_a_flag_declared_in_code_after_start_is_taken_in_at_once(store: FlakyStore) -> None:
    c = make(store)
    declare("late", default=True, description="declared at import of a module")
    assert c.enabled("late") and c.undeclared == {}


def test_an_outage_keeps_the_last_state_says_so_once_and_recovers(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    c = make(store, decl("a"))
    store.set("a", parse_setting("on"), by="x", reason="r", now_ms=0)
    assert c.refresh() and c.enabled("a")
    store.down = True
    clock = c.clock
    assert isinstance(clock, FrozenClock)
    with caplog.at_level(logging.WARNING, logger="signalbox.flags"):
        for _ in range(3):
            clock.advance(2)
            assert not c.refresh()
            assert c.enabled("a")
    assert [r.getMessage() for r in caplog.records] == [
        "flag store unreachable (connection refused): flags keep the last state read until it answers"
    ]
    got = {s.name: s.value for s in c.samples() if not s.labels}
    assert got["signalbox_flags_store_up"] == 0.0
    assert got["signalbox_flags_state_age_seconds"] == 6.0
    assert got["signalbox_flags_refresh_failures_total"] == 3.0
    store.down = False
    store.set("a", parse_setting("off"), by="x", reason="r", now_ms=0)
    assert c.refresh() and not c.enabled("a")
    assert {s.name: s.value for s in c.samples() if not s.labels}["signalbox_flags_store_up"] == 1


def test_a_store_that_cannot_be_opened_yet_leaves_the_declared_defaults(
    store: FlakyStore,
) -> None:
    tries: list[int] = []

    def opener() -> FlakyStore:
        tries.append(1)
        if len(tries) < 2:
            raise OSError("no route to host")
        return store

    c = make(opener, decl("a", FlagState("on")))
    assert not c.refresh() and c.enabled("a")
    store.set("a", parse_setting("off"), by="x", reason="r", now_ms=0)
    assert c.refresh() and not c.enabled("a")


def test_evaluation_counts_reach_the_store_as_deltas(store: FlakyStore) -> None:
    c = make(store, decl("a"), decl("b"))
    for _ in range(3):
        c.enabled("a")
    c.refresh()
    c.enabled("a")
    c.refresh()
    c.refresh()
    assert store.evaluations() == {"a": (4, int(T0 * 1000))}
    assert c.counts() == {"a": 4, "b": 0}


def test_a_request_records_its_evaluations_and_only_staff_get_overrides(
    store: FlakyStore,
) -> None:
    c = make(store, decl("a"), decl("b", FlagState("on")))
    token = context.begin_request(
        query_string=b"x=1&features=a,-b,Bad!", allowed=True, param="features"
    )
    assert not c.enabled("a") and c.enabled("b")  # asked for, not yet staff
    assert context.mark_staff()
    assert c.enabled("a") and not c.enabled("b", "u1") and not c.enabled("nope")
    assert context.end_request(token) == [
        ("a", False), ("b", True), ("a", True), ("b", False), ("nope", False),
    ]  # fmt: skip
    assert context.evaluated() == []
    token = context.begin_request(query_string="features=a", allowed=False, param="features")
    assert not context.mark_staff() and not c.enabled("a")  # override off in the config
    context.end_request(token)


def test_dark_runs_for_the_rolled_out_share_and_never_raises(store: FlakyStore) -> None:
    c = make(store, decl("new_search", FlagState("rollout", actors_share=50_000)))
    ran: list[str] = []

    def new_path(q: str) -> str:
        ran.append(q)
        if q == "boom":
            raise RuntimeError("bug in the new path")
        return q.upper()

    actors = [f"u{i}" for i in range(200)]
    for a in actors:
        c.dark("new_search", new_path, "q", actor=a, control="Q")
    c.dark("new_search", new_path, "boom", actor="u0" if c.enabled("new_search", "u0") else "u1")
    on = sum(c.enabled("new_search", a) for a in actors)
    s = c.dark_stats["new_search"]
    assert 60 < on < 140 and (s.runs, s.matches, s.mismatches) == (on + 1, on, 0)
    assert s.errors == 1 and len(ran) == on + 1


ACTOR = st.one_of(st.text(max_size=12), st.integers(-(10**6), 10**6), st.none())


@settings(max_examples=60)
@given(
    switch=st.sampled_from(["on", "off", "rollout"]),
    share=st.integers(0, BUCKETS),
    actors=st.frozensets(st.sampled_from(["a", "b", "1"]), max_size=2),
    probe=st.lists(ACTOR, min_size=1, max_size=20),
)
def test_the_compiled_decision_agrees_with_the_pure_evaluation(
    switch: Any, share: int, actors: frozenset[str], probe: list[object]
) -> None:
    state = FlagState(switch, actors_share=share, actors=actors)
    store = MemoryFlagStore()
    store.set("f", parse_setting("off"), by="x", reason="r", now_ms=0)
    c = make(store, decl("f", state))
    for a in probe:
        assert c.enabled("f", a) == evaluate("f", state, a)[0], a


def test_the_override_header_is_found_in_wsgi_or_asgi_headers(store: FlakyStore) -> None:
    c = make(store, decl("a"), decl("b", FlagState("on")))
    asgi = [(b"host", b"x"), (b"x-signalbox-features", b"a,-b")]
    for headers in (asgi, {"X-Signalbox-Features": "a,-b"}):
        token = context.begin_request(headers=headers, allowed=True)
        context.mark_staff()
        assert c.enabled("a") and not c.enabled("b")
        context.end_request(token)
    token = context.begin_request(headers=asgi)  # no client installed: override off
    assert not context.mark_staff() and not c.enabled("a")
    context.end_request(token)
