"""Durations as users write them (``15s``, ``5m``, ``1h30m``, ``8d``) and retention specs.

Pure functions; the same grammar as Prometheus durations so a value copied from a PromQL
range works in the config and in monitors.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Return seconds for ``text``; raise ValueError naming what was wrong."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(
                f"bad duration {text!r}: expected a number and a unit (ms, s, m, h, d, w, y), like 30s or 1h30m"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` (``90`` -> ``1m30s``)."""
    if seconds == 0:
        return "0s"
    out, rest = [], seconds
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if rest >= size:
            n = int(rest // size)
            out.append(f"{n}{unit}")
            rest -= n * size
    if rest > 1e-9:
        out.append(f"{round(rest * 1000)}ms")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Tier:
    """One rollup level: buckets of ``resolution`` seconds kept for ``retention`` seconds."""

    resolution: int
    retention: int

    def __str__(self) -> str:
        return f"{format_duration(self.resolution)}:{format_duration(self.retention)}"


def parse_retention(text: str) -> tuple[Tier, ...]:
    """Parse ``1m:8d,5m:35d,1h:400d`` into tiers, finest first.

    Each resolution must be a whole number of seconds, divide the next one evenly, and
    each tier must keep data at least as long as the one before, so a coarser tier can
    always be built from a finer one.
    """
    tiers: list[Tier] = []
    for raw in text.split(","):
        part = raw.strip()
        if ":" not in part:
            raise ValueError(f"bad retention tier {part!r}: expected RESOLUTION:KEEP like 1m:8d")
        res_s, keep_s = part.split(":", 1)
        res, keep = parse_duration(res_s), parse_duration(keep_s)
        if res < 1 or res != int(res):
            raise ValueError(
                f"bad retention tier {part!r}: resolution must be a whole number of seconds >= 1s"
            )
        if keep < res:
            raise ValueError(f"bad retention tier {part!r}: must keep at least one bucket")
        tiers.append(Tier(int(res), int(keep)))
    if not tiers:
        raise ValueError("retention needs at least one tier")
    for a, b in itertools.pairwise(tiers):
        if b.resolution <= a.resolution or b.resolution % a.resolution:
            raise ValueError(
                f"retention tiers must grow, each resolution a multiple of the one before: {a} then {b}"
            )
        if b.retention < a.retention:
            raise ValueError(
                f"retention tiers must keep coarser data at least as long: {a} then {b}"
            )
    return tuple(tiers)
