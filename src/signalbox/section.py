"""One table of ``signalbox.toml`` checked against a msgspec Struct, key by key.

Each area (metrics, monitors, server, ...) declares its tables as msgspec Structs and
resolves them into frozen settings of its own; this module is what they share. Values are
checked against the Struct's *type information* (:func:`msgspec.inspect.type_info`), one
key at a time, so an error knows the file, the dotted key, the value and what was expected
without reading msgspec's message text. Values that may be secrets are never shown
(:func:`signalbox.redact.shown`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from signalbox.durations import parse_duration
from signalbox.exceptions import ConfigError
from signalbox.redact import shown

if TYPE_CHECKING:
    import msgspec.inspect as mi

__all__ = ["Source", "expected_for", "table"]

S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True)
class Source:
    """Where settings come from: the file (named in errors), its folder and the environment."""

    file: str
    base_dir: Path
    environ: Mapping[str, str]

    def error(self, key: str, value: object, expected: str) -> ConfigError:
        return ConfigError(self.file, key, shown(key, value), expected)

    def path(self, p: str) -> Path:
        """``p`` with ``~`` expanded; relative to the config file's folder."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    def duration(self, key: str, text: str) -> float:
        try:
            return parse_duration(text)
        except ValueError as e:
            raise self.error(key, text, f"a duration like 15s, 5m or 1h ({e})") from None

    def host_port(self, key: str, text: str) -> tuple[str, int]:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise self.error(key, text, "HOST:PORT like 127.0.0.1:8125")
        return host.strip("[]") or "127.0.0.1", int(port)


def table(src: Source, key: str, raw: object, struct: type[S]) -> S:
    """``raw`` — the table at dotted ``key``, None when the file has none — as ``struct``.

    Every key of ``raw`` must be a field of ``struct`` and hold a value of its type; the
    first that does not is a :class:`ConfigError` naming ``key.field``.
    """
    if raw is None:
        return struct()
    try:  # a valid table (every run of a working config) costs no type-info walk
        return msgspec.convert(raw, struct)
    except msgspec.ValidationError:
        pass
    _check(src, key, raw, _info(struct))
    return msgspec.convert(raw, struct)


@functools.cache
def _info(struct: type[msgspec.Struct]) -> mi.StructType:
    import msgspec.inspect as mi  # only when a table is wrong: it imports inspect

    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    return info


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _check(src: Source, key: str, value: object, t: mi.Type) -> None:
    """Raise a ConfigError at the first place ``value`` (found at ``key``) is not a ``t``."""
    import msgspec.inspect as mi  # only when a table is wrong: it imports inspect

    if isinstance(t, mi.StructType):
        if not isinstance(value, Mapping):
            raise src.error(key or "(top level)", value, f"a table ([{key}])" if key else "a table")
        fields = {f.encode_name: f for f in t.fields}
        for k, v in value.items():
            f = fields.get(k)
            if f is None:
                known = ", ".join(sorted(fields))
                where = f"in [{key}]" if key else "at the top level"
                raise src.error(
                    _join(key, str(k)),
                    v,
                    f"a known setting {where} ({known}); check the spelling, "
                    "`signalbox init` writes every setting with its default",
                )
            _check(src, _join(key, k), v, f.type)
        return
    if isinstance(t, mi.UnionType):
        for alt in t.types:
            try:
                _check(src, key, value, alt)
            except ConfigError:
                continue
            return
        raise src.error(key, value, expected_for(t))
    if isinstance(t, mi.ListType):
        if not isinstance(value, list):
            raise src.error(key, value, expected_for(t))
        for i, item in enumerate(value):
            try:
                _check(src, f"{key}[{i}]", item, t.item_type)
            except ConfigError as e:
                raise src.error(e.key, item, expected_for(t.item_type)) from None
        return
    if isinstance(t, mi.DictType):
        if not isinstance(value, Mapping):
            raise src.error(key, value, expected_for(t))
        for k, v in value.items():
            if not isinstance(k, str):
                raise src.error(key, value, expected_for(t))
            _check(src, f"{key}.{k}", v, t.value_type)
        return
    if not _is(value, t):
        raise src.error(key, value, expected_for(t))


def _is(value: object, t: mi.Type) -> bool:
    """Whether a scalar ``value`` is a ``t``, constraints included."""
    import msgspec.inspect as mi  # only when a table is wrong: it imports inspect

    if isinstance(t, (mi.AnyType, mi.CustomType)):
        return True
    if isinstance(t, mi.NoneType):
        return value is None
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.StrType):
        return isinstance(value, str) and len(value) >= (t.min_length or 0)
    if isinstance(t, (mi.IntType, mi.FloatType)):
        ok = (int,) if isinstance(t, mi.IntType) else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        v = float(value)
        return (
            (t.ge is None or v >= t.ge)
            and (t.gt is None or v > t.gt)
            and (t.le is None or v <= t.le)
            and (t.lt is None or v < t.lt)
        )
    return False  # a type the settings tables never use


def expected_for(t: mi.Type) -> str:
    """What a person should write for a value of type ``t``."""
    import msgspec.inspect as mi  # only when a table is wrong: it imports inspect

    if isinstance(t, (mi.IntType, mi.FloatType)):
        word = "an integer" if isinstance(t, mi.IntType) else "a number"
        low = t.ge if t.ge is not None else t.gt
        high = t.le if t.le is not None else t.lt
        if t.gt is not None and t.gt == 0 and high is None:
            return f"a positive {word.split()[-1]}"
        if low is not None and high is not None:
            return f"{word} from {low} to {high}"
        if low is not None:
            return f"{word} of at least {low}"
        return word
    if isinstance(t, mi.StrType):
        return "a non-empty string" if t.min_length else "a string"
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.ListType):
        item = expected_for(t.item_type)
        return "a list of " + (item.replace("a ", "", 1) + "s" if item.startswith("a ") else item)
    if isinstance(t, (mi.DictType, mi.StructType)):
        return "a table"
    if isinstance(t, mi.UnionType):
        return " or ".join(expected_for(a) for a in t.types if not isinstance(a, mi.NoneType))
    return "a value of another type"


def known_table(src: Source, key: str, raw: object) -> Mapping[str, Any]:
    """``raw`` as a table (empty when absent), or a ConfigError naming ``key``."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise src.error(key, raw, f"a table ([{key}])")
    return raw
