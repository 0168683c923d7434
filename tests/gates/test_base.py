"""The gate contract: cached, shared by concurrent callers, fail closed, never raises."""

from __future__ import annotations

import threading
import time

import pytest

from signalbox.clock import FrozenClock
from signalbox.gates import Decision, Gate, as_gate


class Counting(Gate):
    """A gate whose probe answers from a list and counts its calls."""

    def __init__(self, answers: list[bool], **kwargs: object) -> None:
        super().__init__("counting", **kwargs)  # type: ignore[arg-type]
        self.answers = answers

    def probe(self) -> Decision:
        ok = self.answers.pop(0)
        return self.opened() if ok else self.closed("too busy", {"n": 1})


def test_check_answers_from_cache_within_the_interval() -> None:
    clock = FrozenClock()
    g = Counting([True, False], interval=2.0, clock=clock)
    assert g.check().open
    clock.advance(1.9)
    assert g.check().open  # cached: the second answer is not asked for yet
    assert g.probes == 1
    clock.advance(0.2)
    d = g.check()
    assert not d.open and d.reason == "too busy" and g.probes == 2


def test_concurrent_callers_share_one_probe() -> None:
    started = threading.Event()

    class Slow(Gate):
        def probe(self) -> Decision:
            started.set()
            time.sleep(0.2)
            return self.opened()

    g = Slow("slow", interval=60)
    results: list[Decision] = []
    threads = [threading.Thread(target=lambda: results.append(g.check())) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 32 and all(d.open for d in results)
    assert g.probes == 1


def test_a_probe_that_raises_closes_the_gate_with_its_error_and_hides_secrets() -> None:
    class Broken(Gate):
        def probe(self) -> Decision:
            raise ConnectionError("login as admin:s3cret@db refused")

    g = Broken("broken", delay=7)
    g.hide(["s3cret"])
    d = g.check()
    assert not d.open
    assert d.reason == "probe failed: ConnectionError: login as admin:***@db refused"
    assert d.delay_s == 7 and d.gate == "broken"


def test_closed_decisions_carry_a_delay_and_open_ones_none() -> None:
    class Odd(Gate):
        def __init__(self) -> None:
            super().__init__("odd", interval=0)
            self.n = 0

        def probe(self) -> Decision:
            self.n += 1
            if self.n == 1:
                return Decision(False, self.name, "no delay given")
            return Decision(True, self.name, "open", delay_s=5)

    g = Odd()
    assert g.check().delay_s == g.delay == 10.0
    assert g.check().delay_s == 0.0


def test_a_probe_returning_something_else_closes_the_gate() -> None:
    class Wrong(Gate):
        def probe(self) -> Decision:
            return True  # type: ignore[return-value]

    d = Wrong("wrong").check()
    assert not d.open and "not a Decision" in d.reason


def test_reset_forgets_the_cached_decision() -> None:
    g = Counting([True, False], interval=60)
    assert g.check().open
    g.reset()
    assert not g.check().open


def test_as_gate_wraps_a_callable_returning_bool_named_after_it() -> None:
    def quiet_hours() -> bool:
        return False

    g = as_gate(quiet_hours)
    d = g.check()
    assert (
        g.name == "test_as_gate_wraps_a_callable_returning_bool_named_after_it.<locals>.quiet_hours"
    )
    assert not d.open and d.reason.endswith("quiet_hours() returned False") and d.delay_s > 0
    assert as_gate(lambda: True).check().open


def test_as_gate_passes_a_decision_through_and_a_gate_as_is() -> None:
    g = as_gate(lambda: Decision(False, "", "disk 91% full", 30.0, {"used": 0.91}))
    d = g.check()
    assert d.gate == g.name and d.reason == "disk 91% full" and d.delay_s == 30.0
    assert d.reading == {"used": 0.91}
    c = Counting([True])
    assert as_gate(c) is c


def test_as_gate_refuses_what_is_not_callable_and_a_callable_returning_junk_closes() -> None:
    with pytest.raises(TypeError, match="not a gate"):
        as_gate(42)  # type: ignore[arg-type]
    d = as_gate(lambda: "yes").check()  # type: ignore[arg-type, return-value]
    assert not d.open and "not bool or Decision" in d.reason


def test_bad_interval_or_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        Counting([], interval=-1)
    with pytest.raises(ValueError, match="delay"):
        Counting([], delay=-1)
