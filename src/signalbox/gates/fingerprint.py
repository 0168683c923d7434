"""A gate's fingerprint: the same configuration in every process, told apart from another one.

Processes share a gate's probe through a record keyed by the gate's name *and* this
fingerprint, so two different gates that happen to share a name (``db`` for shard 7 in one
deploy, ``db`` for shard 8 in the next) never answer for each other, while the same gate
built by forty workers on ten hosts lands on one record. The fingerprint is therefore
computed from what the gate *is* (its class, interval, delay and public attributes: DSN
shown without its password, marks, query, path, the callable's qualified name), never from
what a process happens to hold (locks, connections, caches, memory addresses), and never
from a secret: passwords are left out before hashing, not merely hashed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalbox.gates.base import Gate

__all__ = ["canonical", "fingerprint"]

_NOT_CONFIG = frozenset({"name", "interval", "delay", "probes", "shared"})
"""Public attributes of every gate that are not part of what it checks (the name is the
record's other key; interval and delay are added explicitly)."""
_SECRET_FIELDS = frozenset({"password", "passwd", "secret", "token"})
_DEPTH = 6


def canonical(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data that is equal in every process for an equal config:
    containers and dataclasses walked (secret fields dropped), callables by qualified name,
    anything else by its type's name (a repr would carry a memory address)."""
    if depth > _DEPTH:
        return "..."
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact, and JSON has no NaN
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(canonical(v, depth + 1), sort_keys=True) for v in value)
    if isinstance(value, Mapping):
        return {
            str(k): canonical(v, depth + 1)
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            if str(k).lower() not in _SECRET_FIELDS
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: canonical(getattr(value, f.name), depth + 1)
            for f in dataclasses.fields(value)
            if f.repr and f.name.lower() not in _SECRET_FIELDS
        }
    if isinstance(value, functools.partial):
        return {
            "partial": canonical(value.func, depth + 1),
            "args": canonical(value.args, depth + 1),
            "keywords": canonical(value.keywords, depth + 1),
        }
    if callable(value):
        module = getattr(value, "__module__", None) or ""
        name = getattr(value, "__qualname__", None) or type(value).__qualname__
        code = getattr(value, "__code__", None)
        # two lambdas of one module share a qualified name: where they start tells them apart
        return f"{module}.{name}{_where(code)}" if code is not None else f"{module}.{name}"
    return type(value).__qualname__


def _where(code: Any) -> str:
    """``:line:column`` where a function's code starts (columns: two lambdas on one line)."""
    for line, _end, col, _end_col in list(code.co_positions())[1:]:  # past RESUME (col 0)
        if line is not None and col is not None:
            return f":{line}:{col}"
    return f":{code.co_firstlineno}"


def describe(gate: Gate) -> dict[str, Any]:
    """What the fingerprint is made of (shown by tests and in an operator's debugging)."""
    kind = type(gate)
    config = {k: v for k, v in vars(gate).items() if not k.startswith("_") and k not in _NOT_CONFIG}
    return {
        "kind": f"{kind.__module__}.{kind.__qualname__}",
        "interval": repr(float(gate.interval)),
        "delay": repr(float(gate.delay)),
        "config": canonical(config),
    }


def fingerprint(gate: Gate) -> str:
    """16 hex digits naming ``gate``'s configuration (see the module docstring). Registered
    secrets (:meth:`Gate.hide`) are replaced before hashing, should one sit in a public
    attribute under an unexpected name."""
    text = gate.redact(json.dumps(describe(gate), sort_keys=True, separators=(",", ":")))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
