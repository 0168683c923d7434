"""``signalbox.toml`` → validated, frozen :class:`Settings`, composed from each area's own.

Lookup order: ``--config``, then ``$SIGNALBOX_CONFIG``, then ``./signalbox.toml``; a missing
file means every default. Relative paths in the file are relative to the file's folder, so a
config checked into a repo works from any working directory.

This module finds and reads the file and composes the result; each area checks its own
tables and resolves them into frozen settings of its own (``settings.metrics`` from
:mod:`signalbox.metrics.settings`, ``settings.monitors`` from
:mod:`signalbox.monitors.settings`, ``settings.server`` from
:mod:`signalbox.server.settings`). Every error names the file, the dotted key, the value
(never a secret in clear) and what was expected (:class:`~signalbox.exceptions.ConfigError`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from signalbox.exceptions import ConfigError
from signalbox.flags import settings as flags_area
from signalbox.flags.settings import FlagsSettings
from signalbox.gates import settings as gates_area
from signalbox.gates.settings import GateSpec
from signalbox.instrument import logsources as logs_area
from signalbox.instrument import settings as instrument_area
from signalbox.instrument.logsources import LogsSettings
from signalbox.instrument.settings import InstrumentSettings
from signalbox.limits import QueryLimits
from signalbox.metrics import settings as metrics_area
from signalbox.metrics.forward import settings as forward_area
from signalbox.metrics.forward.settings import ForwardSettings
from signalbox.metrics.settings import DEFAULT_RETENTION, MetricsSettings
from signalbox.monitors import settings as monitors_area
from signalbox.monitors.settings import MonitorsSettings
from signalbox.query import settings as query_area
from signalbox.redact import redact_credentials
from signalbox.section import Source, table
from signalbox.server import settings as server_area
from signalbox.server.settings import ServerSettings
from signalbox.tasks import settings as tasks_area
from signalbox.tasks.settings import TasksSettings

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_RETENTION",
    "Settings",
    "find_config",
    "load_settings",
    "settings_from_dict",
]

CONFIG_NAME = "signalbox.toml"


class _TopLevel(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str | None = None
    store: str | None = None
    data_dir: str = ".signalbox"


# Each area's tables; the rest of the file's keys are the top-level settings above.
_AREA_TABLES: dict[str, tuple[str, ...]] = {
    "metrics": metrics_area.TABLES,
    "monitors": monitors_area.TABLES,
    "server": server_area.TABLES,
    "query": query_area.TABLES,
    "gates": gates_area.TABLES,
    "tasks": tasks_area.TABLES,
    "flags": flags_area.TABLES,
    "instrument": instrument_area.TABLES,
    "logs": logs_area.TABLES,
    "forward": forward_area.TABLES,
}


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything signalbox needs to run, resolved: absolute paths, seconds, parsed tiers.

    Shared settings at the top; each area's under its name (``settings.metrics.spool_dir``,
    ``settings.monitors.notifiers``, ``settings.server.port``).
    """

    source: str  # the config file, or "(defaults)"
    base_dir: Path
    host: str
    store_url: str
    data_dir: Path
    metrics: MetricsSettings
    monitors: MonitorsSettings
    server: ServerSettings
    query: QueryLimits = field(default_factory=QueryLimits)
    gates: Mapping[str, GateSpec] = field(default_factory=dict)
    tasks: TasksSettings = field(default_factory=TasksSettings)
    flags: FlagsSettings = field(default_factory=FlagsSettings)
    instrument: InstrumentSettings = field(default_factory=InstrumentSettings)
    logs: LogsSettings = field(default_factory=LogsSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)

    def __repr__(self) -> str:
        return (
            f"Settings(source={self.source!r}, host={self.host!r}, "
            f"store_url={redact_credentials(self.store_url)!r}, data_dir={str(self.data_dir)!r}, "
            f"metrics={self.metrics!r}, monitors={self.monitors!r}, server={self.server!r}, "
            f"query={self.query!r})"
        )


def _hostname() -> str:
    import socket  # here, not at the top: a config that names its host never needs it

    return socket.gethostname()


def find_config(
    explicit: str | None = None, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path | None:
    """The config file to use, or None for all defaults. An explicit path must exist."""
    env = os.environ if environ is None else environ
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(str(p), "--config", explicit, "an existing signalbox.toml file")
        return p
    if env.get("SIGNALBOX_CONFIG"):
        p = Path(env["SIGNALBOX_CONFIG"])
        if not p.is_file():
            raise ConfigError(str(p), "SIGNALBOX_CONFIG", str(p), "an existing signalbox.toml file")
        return p
    p = (cwd or Path.cwd()) / CONFIG_NAME
    return p if p.is_file() else None


def load_settings(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """The settings of the config file found as the module docstring says."""
    env = os.environ if environ is None else environ
    path = find_config(explicit, env, cwd)
    if path is None:
        return settings_from_dict({}, source="(defaults)", base_dir=cwd or Path.cwd(), environ=env)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), "(syntax)", None, f"valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "(file)", None, f"a readable UTF-8 file ({e})") from None
    return settings_from_dict(raw, source=str(path), base_dir=path.parent.resolve(), environ=env)


def _store_url(src: Source, store: str | None, data_dir: Path) -> str:
    url = store or f"sqlite:///{data_dir / 'signalbox.db'}"
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
        raise src.error("store", url, "sqlite:///PATH or postgresql://...")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        url = f"sqlite:///{src.path(url[len('sqlite:///') :])}"
    return url


def settings_from_dict(
    raw: Mapping[str, Any], *, source: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from a decoded ``signalbox.toml`` (tests build settings with this too).

    ``source`` names the file in errors; relative paths resolve against ``base_dir``.
    """
    src = Source(source, base_dir, os.environ if environ is None else environ)
    area_tables = {t for tables in _AREA_TABLES.values() for t in tables}
    top = {k: v for k, v in raw.items() if k not in area_tables}
    known = sorted({*_TopLevel.__struct_fields__, *area_tables})
    for k, v in top.items():
        if k not in _TopLevel.__struct_fields__:
            raise src.error(
                str(k),
                v,
                f"a known setting at the top level ({', '.join(known)}); check the spelling, "
                "`signalbox init` writes every setting with its default",
            )
    f = table(src, "", top, _TopLevel)
    data_dir = src.path(f.data_dir)
    return Settings(
        source=source,
        base_dir=base_dir,
        host=src.environ.get("SIGNALBOX_HOST") or f.host or _hostname(),
        store_url=_store_url(src, f.store, data_dir),
        data_dir=data_dir,
        metrics=metrics_area.metrics_settings(src, raw),
        monitors=monitors_area.monitors_settings(src, raw),
        server=server_area.server_settings(src, raw),
        query=query_area.query_settings(src, raw),
        gates=gates_area.gates_settings(src, raw),
        tasks=tasks_area.tasks_settings(src, raw),
        flags=flags_area.flags_settings(src, raw),
        instrument=instrument_area.instrument_settings(src, raw),
        logs=logs_area.logs_settings(src, raw),
        forward=forward_area.forward_settings(src, raw),
    )
