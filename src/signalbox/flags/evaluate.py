"""Is a flag on for this actor? Pure: a state, an actor, the registered groups and a random
draw in; an answer and the gate that gave it out.

Gates combine as Flipper's do: any open gate enables the flag, except that the switch
``off`` (the kill switch) beats every other gate. In order:

1. switch ``off`` -> off (``killed``); switch ``on`` -> on (``on``);
2. the actor is in the actor allowlist -> on (``actor``);
3. the actor belongs to an allowed group (a registered predicate says so) -> on (``group``);
4. the actor's bucket is below the percentage of actors -> on (``percentage_of_actors``);
5. a random draw is below the percentage of time -> on (``percentage_of_time``);
6. otherwise off (``no_gate``).

**The bucket** (sticky: the same in every process, on every restart, in every language)::

    bucket = crc32(utf8(flag_name + ":" + actor_id)) mod 100000
    on     = bucket < round(percentage * 1000)        # 30% -> buckets 0..29999

``crc32`` is zlib's (ISO-HDLC, the one of Python's ``zlib.crc32``, Go's ``hash/crc32``
IEEE table, Java's ``java.util.zip.CRC32``, Ruby's ``Zlib.crc32``), as an unsigned 32-bit
integer. ``actor_id`` is the actor as a string: a ``str`` as is, an ``int`` in decimal, any
object with a ``flag_id`` attribute by that. Raising the percentage only adds buckets, so it
only ever adds actors. The flag's name is part of the hash, so one actor is not first in
every rollout. With 100%, every call is on, one without an actor too; below it, a call
without an actor is never in the percentage of actors.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Literal

from signalbox.flags.model import BUCKETS, FlagState

__all__ = ["Reason", "actor_id", "bucket", "evaluate"]

Reason = Literal[
    "killed",
    "on",
    "actor",
    "group",
    "percentage_of_actors",
    "percentage_of_time",
    "no_gate",
    "bad_actor",
]

Groups = Mapping[str, Callable[[object], bool]]


def actor_id(actor: object) -> str | None:
    """The string an actor is hashed and allowlisted by (None: no usable id).

    ``bool`` is refused although it is an ``int``: ``True`` as an actor is a bug.
    """
    if isinstance(actor, str):
        return actor
    if isinstance(actor, int) and not isinstance(actor, bool):
        return str(actor)
    fid = getattr(actor, "flag_id", None)
    if isinstance(fid, str | int) and not isinstance(fid, bool):
        return str(fid)
    return None


def bucket(name: str, actor: str) -> int:
    """The actor's bucket for flag ``name`` (see the module docstring)."""
    return zlib.crc32(f"{name}:{actor}".encode()) % BUCKETS


def evaluate(
    name: str,
    state: FlagState,
    actor: object = None,
    *,
    groups: Groups | None = None,
    draw: float = 1.0,
    on_group_error: Callable[[str, BaseException], None] | None = None,
) -> tuple[bool, Reason]:
    """The answer for ``actor`` and the gate that gave it.

    ``draw`` is a random number in [0, 1) for the percentage of time (1.0: never in it).
    A group predicate that raises counts as "not in the group" and is reported to
    ``on_group_error``; an actor without a usable id is in no allowlist and no percentage
    (reason ``bad_actor`` when nothing else opened the flag).
    """
    if state.switch == "off":
        return False, "killed"
    if state.switch == "on":
        return True, "on"
    key = None if actor is None else actor_id(actor)
    if key is not None and key in state.actors:
        return True, "actor"
    if actor is not None and state.groups and groups:
        for g in sorted(state.groups):
            pred = groups.get(g)
            if pred is None:
                continue
            try:
                if pred(actor):
                    return True, "group"
            except Exception as e:
                if on_group_error is not None:
                    on_group_error(g, e)
    if state.actors_share >= BUCKETS:
        return True, "percentage_of_actors"
    if key is not None and state.actors_share and bucket(name, key) < state.actors_share:
        return True, "percentage_of_actors"
    if state.time_share >= BUCKETS or (state.time_share and draw * BUCKETS < state.time_share):
        return True, "percentage_of_time"
    if actor is not None and key is None:
        return False, "bad_actor"
    return False, "no_gate"
