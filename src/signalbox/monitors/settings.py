"""The monitors area's settings: ``[monitors]`` and every ``[notifiers.NAME]``.

Notifier tables are checked here, when the config loads, so a bad one stops every command
that loads the config with exit 2 instead of surfacing only when a notification is due.

``retry_delay`` and ``retry_max_delay`` are the outbox's backoff: a failed delivery is
tried again after about ``retry_delay``, doubling up to ``retry_max_delay`` (each wait drawn
from the upper half of its value), on the notifier's own schedule, not the evaluation
interval's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec

from signalbox.section import Source, known_table, table

if TYPE_CHECKING:
    from signalbox.monitors.notify._config import NotifierSpec

__all__ = ["TABLES", "MonitorsSettings", "monitors_settings"]

TABLES = ("monitors", "notifiers")


class MonitorsTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    paths: list[str] = msgspec.field(default_factory=lambda: ["monitors"])
    interval: str = "30s"
    repeat: str = "4h"
    retry_delay: str = "10s"
    retry_max_delay: str = "10m"


def _no_notifiers() -> Mapping[str, NotifierSpec]:
    return MappingProxyType({})


@dataclass(frozen=True)
class MonitorsSettings:
    """Monitor files, how often they are evaluated, the default repeat, the notifiers by
    name, and the backoff of failed deliveries."""

    paths: tuple[Path, ...]
    interval_s: float
    repeat_s: float
    notifiers: Mapping[str, NotifierSpec] = field(default_factory=_no_notifiers)
    retry_delay_s: float = 10.0
    retry_max_delay_s: float = 600.0
    paths_configured: bool = True
    """False when ``paths`` is the default (``monitors``): a missing default directory means
    "no monitors yet", not a broken configuration."""


def monitors_settings(src: Source, raw: Mapping[str, Any]) -> MonitorsSettings:
    """``[monitors]`` and ``[notifiers.*]`` of the file's top-level table ``raw``, checked."""
    monitors = table(src, "monitors", raw.get("monitors"), MonitorsTable)
    tables = known_table(src, "notifiers", raw.get("notifiers"))
    notifiers: dict[str, NotifierSpec] = {}
    if tables:  # a cron `collect --once` with no notifiers does not import their checks
        from signalbox.monitors.notify._config import parse_notifier

        notifiers = {
            str(name): parse_notifier(str(name), cfg, file=src.file) for name, cfg in tables.items()
        }
    retry_delay_s = src.duration("monitors.retry_delay", monitors.retry_delay)
    if not retry_delay_s > 0:
        raise src.error("monitors.retry_delay", monitors.retry_delay, "a positive duration")
    retry_max_delay_s = src.duration("monitors.retry_max_delay", monitors.retry_max_delay)
    if retry_max_delay_s < retry_delay_s:
        raise src.error(
            "monitors.retry_max_delay",
            monitors.retry_max_delay,
            f"a duration no shorter than monitors.retry_delay ({monitors.retry_delay})",
        )
    return MonitorsSettings(
        paths=tuple(src.path(p) for p in monitors.paths),
        interval_s=src.duration("monitors.interval", monitors.interval),
        repeat_s=src.duration("monitors.repeat", monitors.repeat),
        notifiers=MappingProxyType(notifiers),
        retry_delay_s=retry_delay_s,
        retry_max_delay_s=retry_max_delay_s,
        paths_configured="paths" in (raw.get("monitors") or {}),
    )
