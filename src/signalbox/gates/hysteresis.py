"""High and low marks: a gate closes at its high mark and reopens only past its low mark.

Without the gap, a load hovering at the limit opens and closes the gate on every probe and
the queue sees a stampede of jobs each time it opens -- which pushes the load straight back
over the limit. Pure: the caller keeps which limits were tripped and passes them back in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_LOW_RATIO",
    "Limit",
    "Verdict",
    "fmt",
    "judge",
    "marks",
    "max_limit",
    "min_limit",
]

DEFAULT_LOW_RATIO = 0.8
"""Default low mark as a fraction of the high mark (close at 40, reopen below 32)."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One bound on one value.

    ``kind="max"``: trips when the value reaches ``close_at`` (``value >= close_at``) and
    clears once it is below ``reopen_at``. ``kind="min"``: trips when the value falls to
    ``close_at`` (``value <= close_at``) and clears once it is above ``reopen_at``.
    """

    name: str
    close_at: float
    reopen_at: float
    kind: Literal["max", "min"] = "max"
    unit: str = ""  # appended to numbers in reasons (" s")

    def __post_init__(self) -> None:
        if not (math.isfinite(self.close_at) and math.isfinite(self.reopen_at)):
            raise ValueError(f"{self.name}: marks must be finite numbers")
        if self.kind == "max" and self.reopen_at > self.close_at:
            raise ValueError(
                f"{self.name}: low mark {fmt(self.reopen_at)} is above the high mark "
                f"{fmt(self.close_at)}"
            )
        if self.kind == "min" and self.reopen_at < self.close_at:
            raise ValueError(
                f"{self.name}: reopen mark {fmt(self.reopen_at)} is below the floor "
                f"{fmt(self.close_at)}"
            )

    def trips(self, value: float) -> bool:
        return value >= self.close_at if self.kind == "max" else value <= self.close_at

    def holds(self, value: float) -> bool:
        """Whether an already tripped limit stays tripped at ``value``."""
        return value >= self.reopen_at if self.kind == "max" else value <= self.reopen_at


def max_limit(
    name: str,
    spec: float | tuple[float, float] | list[float],
    low_ratio: float = DEFAULT_LOW_RATIO,
    unit: str = "",
) -> Limit:
    """A ceiling from a user's spec: ``40`` (low mark ``40 * low_ratio``) or ``(40, 30)``.

    Raises:
        ValueError: not a number or a pair of numbers, or the low mark above the high one.
    """
    if not 0 < low_ratio <= 1:
        raise ValueError(f"low must be a fraction in (0, 1], got {low_ratio!r}")
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2 or not all(_is_number(x) for x in spec):
            raise ValueError(f"{name}: expected a number or [high, low], got {spec!r}")
        high, low = float(spec[0]), float(spec[1])
    elif _is_number(spec):
        high = float(spec)
        low = high * low_ratio if high > 0 else high
    else:
        raise ValueError(f"{name}: expected a number or [high, low], got {spec!r}")
    return Limit(name, high, low, "max", unit)


def min_limit(name: str, floor: float, reopen_at: float | None = None) -> Limit:
    """A floor: trips at or under ``floor``, clears above ``reopen_at`` (default: ``floor``)."""
    return Limit(name, float(floor), float(floor if reopen_at is None else reopen_at), "min")


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`judge` found: which keys hold the gate closed now, and why."""

    tripped: frozenset[str]
    reasons: tuple[str, ...]

    @property
    def open(self) -> bool:
        return not self.tripped


def judge(
    checks: Iterable[tuple[str, Limit, float | None]], tripped_before: frozenset[str] = frozenset()
) -> Verdict:
    """Apply each ``(key, limit, value)``; ``tripped_before`` are the keys tripped last time.

    A missing value (None or NaN) trips its limit: a variable the server no longer reports is
    no evidence that the load is fine (fail closed).
    """
    tripped: set[str] = set()
    reasons: list[str] = []
    for key, lim, value in checks:
        if value is None or math.isnan(value):
            tripped.add(key)
            reasons.append(f"{key}: no value")
            continue
        was = key in tripped_before
        if was and lim.holds(value):
            tripped.add(key)
            side = "below" if lim.kind == "max" else "above"
            u = lim.unit
            reasons.append(
                f"{key} {fmt(value)}{u}: closed at {fmt(lim.close_at)}{u}, "
                f"reopens {side} {fmt(lim.reopen_at)}{u}"
            )
        elif not was and lim.trips(value):
            tripped.add(key)
            op = ">=" if lim.kind == "max" else "<="
            side = "below" if lim.kind == "max" else "above"
            u = lim.unit
            reasons.append(
                f"{key} {fmt(value)}{u} {op} {fmt(lim.close_at)}{u} "
                f"(reopens {side} {fmt(lim.reopen_at)}{u})"
            )
    return Verdict(frozenset(tripped), tuple(reasons))


def marks(limits: Iterable[Limit]) -> Mapping[str, dict[str, float]]:
    """``{name: {"close_at": ..., "reopen_at": ...}}`` for a decision's reading."""
    return {
        lim.name: {"close_at": float(fmt(lim.close_at)), "reopen_at": float(fmt(lim.reopen_at))}
        for lim in limits
    }


def fmt(value: float) -> str:
    """A number as people write it: ``40``, not ``40.0``; ``0.125``, not ``0.12500000001``."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"
