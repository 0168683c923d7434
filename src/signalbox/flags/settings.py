"""The flags area's settings: ``[flags]`` of ``signalbox.toml``.

``paths`` are the declaration files (``flags/*.yaml`` beside the config by default);
``refresh`` is how stale a process's view of the store may get (a flip is seen everywhere
within it); ``listen`` (on by default) also re-reads as soon as the store announces a change
(PostgreSQL's LISTEN/NOTIFY, one connection per process; SQLite's event table, read every
200 ms), so a flip is seen within a second: turn it off where LISTEN is not available (a
transaction-pooling proxy in front of PostgreSQL). ``stale_after`` is when a flag fully on
or off and unchanged counts as flag debt (``flags list --stale``). The staff override (Etsy's ``?features=``) is off unless
``override = true``, and even then applies only to requests the app marks as staff.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from signalbox.section import Source, table

__all__ = ["TABLES", "FlagsSettings", "flags_settings"]

TABLES = ("flags",)

_PARAM = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}\Z")


class FlagsTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    paths: list[str] = msgspec.field(default_factory=lambda: ["flags"])
    refresh: str = "2s"
    listen: bool = True
    stale_after: str = "30d"
    override: bool = False
    override_param: str = "features"
    override_header: str = "X-Signalbox-Features"


@dataclass(frozen=True)
class FlagsSettings:
    """``[flags]`` resolved: absolute paths, seconds."""

    paths: tuple[Path, ...] = ()
    refresh_s: float = 2.0
    listen: bool = True
    stale_after_s: float = 30 * 86400.0
    override: bool = False
    override_param: str = "features"
    override_header: str = "X-Signalbox-Features"


def flags_settings(src: Source, raw: Mapping[str, Any]) -> FlagsSettings:
    """``[flags]`` of the file's top-level table ``raw``, checked."""
    t = table(src, "flags", raw.get("flags"), FlagsTable)
    refresh = src.duration("flags.refresh", t.refresh)
    if not 0.05 <= refresh <= 3600:
        raise src.error("flags.refresh", t.refresh, "a duration from 50ms to 1h, like 2s")
    stale = src.duration("flags.stale_after", t.stale_after)
    if not stale > 0:
        raise src.error("flags.stale_after", t.stale_after, "a positive duration like 30d")
    if not _PARAM.match(t.override_param):
        raise src.error(
            "flags.override_param", t.override_param, "a query parameter name like features"
        )
    if not _HEADER.match(t.override_header):
        raise src.error(
            "flags.override_header", t.override_header, "a header name like X-Signalbox-Features"
        )
    return FlagsSettings(
        paths=tuple(src.path(p) for p in t.paths),
        refresh_s=refresh,
        listen=t.listen,
        stale_after_s=stale,
        override=t.override,
        override_param=t.override_param,
        override_header=t.override_header,
    )
