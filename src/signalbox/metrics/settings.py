"""The metrics area's settings: ``[collect]``, ``[statsd]`` and ``[retention]``.

The tables as written (msgspec Structs) and the frozen, resolved :class:`MetricsSettings`
(absolute paths, seconds, parsed tiers) the collector and the store are built from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from signalbox.durations import Tier, parse_retention
from signalbox.section import Source, table

__all__ = [
    "DEFAULT_RETENTION",
    "TABLES",
    "MetricsSettings",
    "RetentionSettings",
    "StatsdSettings",
    "metrics_settings",
]

DEFAULT_RETENTION = "1m:8d,5m:35d,1h:400d"
TABLES = ("collect", "statsd", "retention")


class CollectTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    interval: str = "15s"
    spool_dir: str = ".signalbox/spool"
    max_file_bytes: int = 4 * 1024 * 1024
    stale_after: str = "5m"
    buffer_max_samples: int = 250_000


class StatsdTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    listen: str = "127.0.0.1:8125"
    max_series: int = 100_000
    max_new_series_per_interval: int = 10_000
    max_new_series_per_source: int = 5_000
    stale_after: str = "15m"


class RetentionTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    raw: str = "1d"
    tiers: str = DEFAULT_RETENTION


@dataclass(frozen=True)
class StatsdSettings:
    """The listener's address and the aggregator's bounds.

    At most ``max_series`` live series; per collection interval at most
    ``max_new_series_per_interval`` new ones, ``max_new_series_per_source`` of them from
    one sending address; a series that received nothing for ``stale_after_s`` is forgotten.
    """

    enabled: bool
    host: str
    port: int
    max_series: int = 100_000
    max_new_series_per_interval: int = 10_000
    max_new_series_per_source: int = 5_000
    stale_after_s: float = 900.0


@dataclass(frozen=True)
class RetentionSettings:
    """Raw samples kept ``raw_s`` seconds; rollup ``tiers`` finest first."""

    raw_s: int
    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class MetricsSettings:
    spool_dir: Path
    interval_s: float
    max_file_bytes: int
    stale_after_s: float
    statsd: StatsdSettings
    retention: RetentionSettings
    buffer_max_samples: int = 250_000
    """Most samples of passes the store refused that ``serve``/``agent`` hold for later
    (:mod:`signalbox.metrics.buffer`)."""


def metrics_settings(src: Source, raw: Mapping[str, Any]) -> MetricsSettings:
    """The metrics tables of the file's top-level table ``raw``, checked and resolved."""
    collect = table(src, "collect", raw.get("collect"), CollectTable)
    statsd = table(src, "statsd", raw.get("statsd"), StatsdTable)
    retention = table(src, "retention", raw.get("retention"), RetentionTable)
    try:
        tiers = parse_retention(retention.tiers)
    except ValueError as e:
        raise src.error(
            "retention.tiers", retention.tiers, f"tiers like {DEFAULT_RETENTION} ({e})"
        ) from None
    raw_s = src.duration("retention.raw", retention.raw)
    if raw_s < 2 * tiers[0].resolution:
        raise src.error(
            "retention.raw",
            retention.raw,
            f"at least two buckets of the first tier ({2 * tiers[0].resolution}s)",
        )
    interval = src.duration("collect.interval", collect.interval)
    if interval < 1:
        raise src.error("collect.interval", collect.interval, "at least 1s")
    if collect.max_file_bytes <= 0:
        raise src.error(
            "collect.max_file_bytes", collect.max_file_bytes, "a positive number of bytes"
        )
    if collect.buffer_max_samples <= 0:
        raise src.error(
            "collect.buffer_max_samples",
            collect.buffer_max_samples,
            "a positive number of samples (held while the store refuses writes)",
        )
    host, port = src.host_port("statsd.listen", statsd.listen)
    statsd_settings = _statsd_settings(src, statsd, host, port)
    return MetricsSettings(
        spool_dir=src.path(collect.spool_dir),
        interval_s=interval,
        max_file_bytes=collect.max_file_bytes,
        stale_after_s=src.duration("collect.stale_after", collect.stale_after),
        statsd=statsd_settings,
        retention=RetentionSettings(int(raw_s), tiers),
        buffer_max_samples=collect.buffer_max_samples,
    )


def _statsd_settings(src: Source, t: StatsdTable, host: str, port: int) -> StatsdSettings:
    """``[statsd]`` checked: positive bounds, each budget within the one above it."""
    if t.max_series <= 0:
        raise src.error("statsd.max_series", t.max_series, "a positive number of series")
    if not 0 < t.max_new_series_per_interval <= t.max_series:
        raise src.error(
            "statsd.max_new_series_per_interval",
            t.max_new_series_per_interval,
            f"a positive number of series, at most statsd.max_series ({t.max_series})",
        )
    if not 0 < t.max_new_series_per_source <= t.max_new_series_per_interval:
        raise src.error(
            "statsd.max_new_series_per_source",
            t.max_new_series_per_source,
            "a positive number of series, at most statsd.max_new_series_per_interval "
            f"({t.max_new_series_per_interval})",
        )
    stale_after = src.duration("statsd.stale_after", t.stale_after)
    if stale_after < 1:
        raise src.error("statsd.stale_after", t.stale_after, "at least 1s")
    return StatsdSettings(
        t.enabled,
        host,
        port,
        max_series=t.max_series,
        max_new_series_per_interval=t.max_new_series_per_interval,
        max_new_series_per_source=t.max_new_series_per_source,
        stale_after_s=stale_after,
    )
