"""What a flag is: its declaration (reviewed like code), its runtime state (in the store),
a change to that state, and the audit entry every change leaves. Pure: frozen records,
parsing of what people type, JSON forms; no I/O.

Percentages are kept as *shares* of :data:`BUCKETS` (100,000 buckets, so 0.001% steps, as
Flipper's scaling factor does): integers compare exactly and round-trip through any store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "BUCKETS",
    "GROUP_RE",
    "NAME_RE",
    "SWITCHES",
    "AuditEntry",
    "FlagChange",
    "FlagDecl",
    "FlagState",
    "StoredFlag",
    "Switch",
    "check_actor",
    "check_group",
    "format_share",
    "parse_setting",
    "parse_share",
]

BUCKETS = 100_000
"""Percentages are shares of this many buckets; an actor's bucket is
``crc32(utf8(name + ":" + actor)) % BUCKETS`` (see :mod:`signalbox.flags.evaluate`)."""

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}\Z")
"""A flag name: lowercase letters, digits, ``_ . -`` (up to 100), like monitor names."""
GROUP_RE = NAME_RE
MAX_ACTOR_CHARS = 200
MAX_LIST = 1000  # actors or groups in one allowlist: more is a segment, not a flag

Switch = Literal["on", "off", "rollout"]
SWITCHES: tuple[Switch, ...] = ("on", "off", "rollout")
"""``on``: everyone. ``off``: nobody, whatever the other gates say (the kill switch).
``rollout``: the gates decide (actors, groups, percentage of actors, percentage of time)."""

_PERCENT = re.compile(r"(\d{1,3})(?:\.(\d{1,3}))?%\Z")


def parse_share(text: str, what: str = "percentage") -> int:
    """``"30%"`` / ``"12.5%"`` / ``"0.001%"`` -> a share of :data:`BUCKETS`.

    Raises:
        ValueError: naming ``what`` and the value, with what was expected.
    """
    m = _PERCENT.match(text.strip())
    share = None
    if m:
        share = int(m.group(1)) * 1000 + int((m.group(2) or "").ljust(3, "0"))
    if share is None or share > BUCKETS:
        raise ValueError(
            f"{what}: expected a percentage from 0% to 100% with at most 3 decimals, like 30% "
            f"or 0.5%, got {text!r}"
        )
    return share


def format_share(share: int) -> str:
    """A share of :data:`BUCKETS` as people write it: ``30%``, ``12.5%``."""
    whole, frac = divmod(share, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "%"


def check_actor(actor: str, what: str = "actor") -> str:
    """An actor id as an allowlist keeps it: one printable line, no comma, not empty."""
    if not actor or len(actor) > MAX_ACTOR_CHARS or "," in actor or not actor.isprintable():
        raise ValueError(
            f"{what}: expected an actor id of 1 to {MAX_ACTOR_CHARS} printable characters "
            f"without commas, got {actor!r}"
        )
    return actor


def check_group(group: str, what: str = "group") -> str:
    if not GROUP_RE.match(group):
        raise ValueError(
            f"{what}: expected a group name (lowercase letters, digits, _ . -), got {group!r}"
        )
    return group


@dataclass(frozen=True, slots=True)
class FlagState:
    """Which gates are open. Any open gate enables the flag, unless ``switch`` is ``off``."""

    switch: Switch = "off"
    actors_share: int = 0
    time_share: int = 0
    actors: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @property
    def fully_on(self) -> bool:
        return self.switch == "on" or (
            self.switch == "rollout"
            and (self.actors_share == BUCKETS or self.time_share == BUCKETS)
        )

    @property
    def fully_off(self) -> bool:
        return self.switch == "off" or (
            self.switch == "rollout"
            and not (self.actors_share or self.time_share or self.actors or self.groups)
        )

    def describe(self) -> str:
        """``on``, ``off``, or the open gates: ``30% of actors, actors a, b, groups staff``."""
        if self.switch == "on":
            return "on"
        if self.switch == "off":
            kept = replace(self, switch="rollout")
            return (
                "off" if kept.fully_off else f"off (kill switch; kept for later: {kept.describe()})"
            )
        parts = []
        if self.actors_share:
            parts.append(f"{format_share(self.actors_share)} of actors")
        if self.time_share:
            parts.append(f"{format_share(self.time_share)} of the time")
        if self.actors:
            parts.append("actors " + ", ".join(sorted(self.actors)))
        if self.groups:
            parts.append("groups " + ", ".join(sorted(self.groups)))
        return ", ".join(parts) if parts else "nobody (0%)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "switch": self.switch,
            "percentage_of_actors": self.actors_share / 1000,
            "percentage_of_time": self.time_share / 1000,
            "actors": sorted(self.actors),
            "groups": sorted(self.groups),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FlagState:
        """The inverse of :meth:`to_dict` (what the store keeps in its audit)."""
        switch = d.get("switch")
        if switch not in SWITCHES:
            raise ValueError(f"switch: expected one of on, off, rollout, got {switch!r}")
        return cls(
            switch=switch,
            actors_share=round(float(d.get("percentage_of_actors", 0)) * 1000),
            time_share=round(float(d.get("percentage_of_time", 0)) * 1000),
            actors=frozenset(d.get("actors", ())),
            groups=frozenset(d.get("groups", ())),
        )


@dataclass(frozen=True, slots=True)
class FlagDecl:
    """A flag as declared in a ``flags/*.yaml`` file (``file``/``line``) or in code (``file``
    empty): the state it has until someone changes it in the store, and who to ask."""

    name: str
    description: str
    owner: str = ""
    default: FlagState = field(default_factory=FlagState)
    file: str = ""
    line: int = 0
    values: tuple[str | int | float, str | int | float] | None = None
    """``(when on, when off)`` for a flag that selects a string or number (OpenFeature's
    string and number resolution); None for a plain on/off flag."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else "code"


@dataclass(frozen=True, slots=True)
class StoredFlag:
    """A flag's runtime state as the store holds it; ``version`` grows by one per change."""

    name: str
    state: FlagState
    version: int
    updated_ms: int
    updated_by: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.state.to_dict(),
            "version": self.version,
            "updated_ms": self.updated_ms,
            "updated_by": self.updated_by,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class FlagChange:
    """What a ``flags set`` changes; None keeps the current value, so two people changing
    different gates of one flag at once both get their change."""

    switch: Switch | None = None
    actors_share: int | None = None
    time_share: int | None = None
    actors: frozenset[str] | None = None
    groups: frozenset[str] | None = None

    def apply(self, state: FlagState) -> FlagState:
        changes: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("switch", "actors_share", "time_share", "actors", "groups")
            if getattr(self, k) is not None
        }
        return replace(state, **changes)

    @property
    def empty(self) -> bool:
        return all(
            getattr(self, k) is None
            for k in ("switch", "actors_share", "time_share", "actors", "groups")
        )


def parse_setting(
    value: str,
    *,
    actors: Iterable[str] | None = None,
    groups: Iterable[str] | None = None,
    time: str | None = None,
) -> FlagChange:
    """What ``flags set NAME on|off|30% [--actors a,b] [--groups g] [--time 5%]`` means.

    ``on`` and ``off`` set the switch (``off`` is the kill switch: the other gates are kept,
    ready for when it is switched back, but closed); a percentage rolls out to that share of
    actors. Allowlists given replace the current ones (an empty string empties them).

    Raises:
        ValueError: naming the bad part.
    """
    v = value.strip().lower()
    change: dict[str, Any] = {}
    if v in ("on", "off"):
        change["switch"] = v
    elif v.endswith("%"):
        change["switch"] = "rollout"
        change["actors_share"] = parse_share(v, "value")
    else:
        raise ValueError(f"value: expected on, off or a percentage like 30%, got {value!r}")
    if time is not None:
        change["time_share"] = parse_share(time, "--time")
        if change["switch"] == "on":
            raise ValueError("--time: a flag switched on is on all the time; give a percentage")
    if actors is not None:
        listed = [a.strip() for a in actors if a.strip()]
        if len(listed) > MAX_LIST:
            raise ValueError(f"--actors: at most {MAX_LIST} actors, got {len(listed)}")
        change["actors"] = frozenset(check_actor(a, "--actors") for a in listed)
    if groups is not None:
        listed = [g.strip() for g in groups if g.strip()]
        if len(listed) > MAX_LIST:
            raise ValueError(f"--groups: at most {MAX_LIST} groups, got {len(listed)}")
        change["groups"] = frozenset(check_group(g, "--groups") for g in listed)
    return FlagChange(**change)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change of one flag: who (``cli (user@host)``, ``alice (dashboard)``,
    ``ci-bot (token #3)``, ``monitor disk_full``), when, why, and the state before and after
    (``old`` None: the flag had no stored state, it followed its declaration)."""

    id: int
    name: str
    at_ms: int
    by: str
    reason: str
    old: FlagState | None
    new: FlagState

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "at_ms": self.at_ms,
            "by": self.by,
            "reason": self.reason,
            "old": None if self.old is None else self.old.to_dict(),
            "new": self.new.to_dict(),
        }

    def describe(self) -> str:
        old = "(declared default)" if self.old is None else self.old.describe()
        return f"{self.name}: {old} -> {self.new.describe()} by {self.by}: {self.reason}"
