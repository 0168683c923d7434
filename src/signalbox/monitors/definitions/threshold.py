"""Threshold strings as monitors write them (``"> 4"``, ``"<= 0.5"``, ``"!= 0"``).

Pure: parsing, evaluation and the few set questions the linter asks ("does critical fire
anywhere warning does not?"). A threshold is a half-line, a point or a point's complement
over the reals, so two thresholds can be compared exactly by probing the handful of points
where their answers can change; :func:`find_value` does that.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from signalbox.exceptions import SignalboxError

Op = Literal[">", ">=", "<", "<=", "==", "!="]
OPERATORS: tuple[Op, ...] = (">", ">=", "<", "<=", "==", "!=")

_THRESHOLD = re.compile(
    r"\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*\Z"
)
_EXPECTED = 'expected an operator (>, >=, <, <=, ==, !=) and a number, like "> 4"'


class ThresholdError(SignalboxError, ValueError):
    """A threshold string that does not parse; ``text`` is what the user wrote."""

    def __init__(self, text: object, expected: str = _EXPECTED) -> None:
        self.text, self.expected = text, expected
        shown = f"'{text}'" if isinstance(text, str) else repr(text)
        super().__init__(f"bad threshold {shown}: {expected}")


def format_number(value: float) -> str:
    """Numbers as a person reads them in a reason: ``8``, ``8.6``, ``0.001``, ``1e+20``."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 6)) if abs(value) >= 1e-6 else f"{value:.6g}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """``value OP number``: holds for the values that fire (or, for ``recover``, that recover)."""

    op: Op
    value: float

    def holds(self, x: float) -> bool:
        """Does ``x`` satisfy the threshold? NaN satisfies none (as in PromQL comparisons)."""
        v = self.value
        if self.op == ">":
            return x > v
        if self.op == ">=":
            return x >= v
        if self.op == "<":
            return x < v
        if self.op == "<=":
            return x <= v
        if self.op == "==":
            return x == v
        return x != v and not math.isnan(x)

    @property
    def direction(self) -> Literal["above", "below"] | None:
        """Which way the threshold points; ``==``/``!=`` point nowhere."""
        if self.op in (">", ">="):
            return "above"
        if self.op in ("<", "<="):
            return "below"
        return None

    def __str__(self) -> str:
        return f"{self.op} {format_number(self.value)}"


def parse_threshold(text: object) -> Threshold:
    """Parse ``"> 4"`` and friends; raise :class:`ThresholdError` saying what was expected.

    Only strings are accepted: a bare YAML number (``warning: 4``) has no direction, and
    guessing one would be the silent misreading the linter exists to prevent.
    """
    if not isinstance(text, str):
        raise ThresholdError(text, _EXPECTED + " (a quoted string in YAML)")
    m = _THRESHOLD.match(text)
    if not m:
        raise ThresholdError(text)
    value = float(m.group("num"))
    if math.isinf(value):
        raise ThresholdError(text, "expected a finite number after the operator")
    op: Op = m.group("op")  # type: ignore[assignment]  # the regex admits only OPERATORS
    return Threshold(op, value)


def probe_points(thresholds: Iterable[Threshold]) -> list[float]:
    """Points that decide every set question about ``thresholds``.

    Each threshold's answer is constant between consecutive bounds, so the bounds, the
    midpoints between them and one point beyond each end cover every case.
    """
    bounds = sorted({t.value for t in thresholds})
    if not bounds:
        return [0.0]
    points = [bounds[0] - 1.0, *bounds, bounds[-1] + 1.0]
    points += [(a + b) / 2 for a, b in itertools.pairwise(bounds)]
    return sorted(points)


def find_value(pred: Callable[[float], bool], thresholds: Iterable[Threshold]) -> float | None:
    """The smallest probe point where ``pred`` holds, or None: exact for threshold predicates."""
    for x in probe_points(thresholds):
        if pred(x):
            return x
    return None


def contradictions(
    warning: Threshold | None, critical: Threshold | None, recover: Threshold | None
) -> list[tuple[str, str]]:
    """``(key, message)`` for each way a monitor's thresholds contradict each other.

    Critical must fire only where warning fires, and somewhere warning alone does not
    (else warning could never show). Recover must lie strictly on the OK side: no value may
    both recover and fire. Messages name a witness value so the reviewer sees the overlap.
    """
    out: list[tuple[str, str]] = []
    w, c, r = warning, critical, recover
    if w is not None and c is not None:
        x = find_value(lambda v: c.holds(v) and not w.holds(v), (w, c))
        if x is not None:
            out.append(("critical", (
                f'critical "{c}" fires at {format_number(x)} where warning "{w}" does not: '
                'critical must be the stricter condition, like warning: "> 4", critical: "> 8"'
            )))  # fmt: skip
        elif find_value(lambda v: w.holds(v) and not c.holds(v), (w, c)) is None:
            out.append(("critical", (
                f'critical "{c}" and warning "{w}" fire on the same values, so warning could '
                "never show: make critical stricter or drop warning"
            )))  # fmt: skip
    if r is not None:
        fires = [t for t in (w, c) if t is not None]
        x = find_value(lambda v: r.holds(v) and any(f.holds(v) for f in fires), (r, *fires))
        if x is not None:
            lowest = "warning" if w is not None else "critical"
            out.append(("recover", (
                f'recover "{r}" overlaps {lowest} "{fires[0]}" (both hold at {format_number(x)}): '
                'recover must lie strictly on the OK side, like recover: "< 3" with warning: "> 4"'
            )))  # fmt: skip
    return out
