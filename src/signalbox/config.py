"""``signalbox.toml`` → validated, frozen :class:`Settings`.

Lookup order: ``--config``, then ``$SIGNALBOX_CONFIG``, then ``./signalbox.toml``; a missing
file means every default. Relative paths in the file are relative to the file's folder, so a
config checked into a repo works from any working directory. Every error names the file, the
key, the value and what was expected (:class:`~signalbox.exceptions.ConfigError`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from signalbox.durations import Tier, parse_duration, parse_retention
from signalbox.exceptions import ConfigError

CONFIG_NAME = "signalbox.toml"
DEFAULT_RETENTION = "1m:8d,5m:35d,1h:400d"


class _Collect(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    interval: str = "15s"
    spool_dir: str = ".signalbox/spool"
    max_file_bytes: int = 4 * 1024 * 1024
    stale_after: str = "5m"


class _Statsd(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    listen: str = "127.0.0.1:8125"


class _Retention(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    raw: str = "1d"
    tiers: str = DEFAULT_RETENTION


class _Server(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8910


class _Monitors(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    paths: list[str] = msgspec.field(default_factory=lambda: ["monitors"])
    interval: str = "30s"
    repeat: str = "4h"


class _File(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str | None = None
    store: str | None = None
    data_dir: str = ".signalbox"
    collect: _Collect = msgspec.field(default_factory=_Collect)
    statsd: _Statsd = msgspec.field(default_factory=_Statsd)
    retention: _Retention = msgspec.field(default_factory=_Retention)
    server: _Server = msgspec.field(default_factory=_Server)
    monitors: _Monitors = msgspec.field(default_factory=_Monitors)
    notifiers: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Everything signalbox needs to run, resolved: absolute paths, seconds, parsed tiers."""

    source: str  # the config file, or "(defaults)"
    base_dir: Path
    host: str
    store_url: str
    data_dir: Path
    spool_dir: Path
    interval_s: float
    max_file_bytes: int
    stale_after_s: float
    statsd_enabled: bool
    statsd_host: str
    statsd_port: int
    raw_retention_s: int
    tiers: tuple[Tier, ...]
    server_host: str
    server_port: int
    monitor_paths: tuple[Path, ...]
    monitor_interval_s: float
    monitor_repeat_s: float
    notifiers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


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


_PATH_RE = re.compile(r"`\$((?:\.[A-Za-z0-9_\-]+|\[\d+\])*)`")


def _lookup(raw: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = raw
    for part in [p for p in dotted.split(".") if p]:
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


_TYPE_WORDS = {
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "str | null": "a string",
}


def _struct_error(file: str, raw: Mapping[str, Any], err: msgspec.ValidationError) -> ConfigError:
    msg = str(err)
    m = _PATH_RE.search(msg)
    dotted = m.group(1).lstrip(".") if m else ""
    text = msg.split(" - at ")[0]
    if text.startswith("Object contains unknown field"):
        field_name = text.split("`")[1]
        key = f"{dotted}.{field_name}" if dotted else field_name
        return ConfigError(
            file,
            key,
            _lookup(raw, key),
            "a known setting (check the spelling; `signalbox init` writes every setting with its default)",
        )
    m2 = re.match(r"Expected `([^`]*)`(?:, got `([^`]*)`)?", text)
    expected = _TYPE_WORDS.get(m2.group(1), m2.group(1)) if m2 else text
    return ConfigError(file, dotted or "(top level)", _lookup(raw, dotted), expected)


def _duration(file: str, key: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ConfigError(file, key, text, f"a duration like 15s, 5m or 1h ({e})") from None


def _host_port(file: str, key: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(file, key, text, "HOST:PORT like 127.0.0.1:8125")
    return host.strip("[]") or "127.0.0.1", int(port)


def settings_from_dict(
    raw: Mapping[str, Any], *, source: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    try:
        f = msgspec.convert(raw, _File)
    except msgspec.ValidationError as e:
        raise _struct_error(source, raw, e) from None

    def path(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (base_dir / q)

    data_dir = path(f.data_dir)
    store = f.store or f"sqlite:///{data_dir / 'signalbox.db'}"
    if not (store.startswith("sqlite:///") or store.startswith(("postgresql://", "postgres://"))):
        raise ConfigError(source, "store", store, "sqlite:///PATH or postgresql://...")
    if store.startswith("sqlite:///") and store != "sqlite:///:memory:":
        rel = store[len("sqlite:///") :]
        store = f"sqlite:///{path(rel)}"
    try:
        tiers = parse_retention(f.retention.tiers)
    except ValueError as e:
        raise ConfigError(
            source, "retention.tiers", f.retention.tiers, f"tiers like {DEFAULT_RETENTION} ({e})"
        ) from None
    raw_ret = _duration(source, "retention.raw", f.retention.raw)
    if raw_ret < 2 * tiers[0].resolution:
        raise ConfigError(
            source,
            "retention.raw",
            f.retention.raw,
            f"at least two buckets of the first tier ({2 * tiers[0].resolution}s)",
        )
    interval = _duration(source, "collect.interval", f.collect.interval)
    if interval < 1:
        raise ConfigError(source, "collect.interval", f.collect.interval, "at least 1s")
    if f.collect.max_file_bytes <= 0:
        raise ConfigError(
            source, "collect.max_file_bytes", f.collect.max_file_bytes, "a positive number of bytes"
        )
    if not 0 <= f.server.port <= 65535:
        raise ConfigError(source, "server.port", f.server.port, "a TCP port 0-65535")
    shost, sport = _host_port(source, "statsd.listen", f.statsd.listen)
    for name, cfg in f.notifiers.items():
        if not isinstance(cfg.get("type"), str):
            raise ConfigError(
                source,
                f"notifiers.{name}.type",
                cfg.get("type"),
                "a notifier type: webhook, alertmanager, command, email or log",
            )
    host = env.get("SIGNALBOX_HOST") or f.host or _hostname()
    return Settings(
        source=source,
        base_dir=base_dir,
        host=host,
        store_url=store,
        data_dir=data_dir,
        spool_dir=path(f.collect.spool_dir),
        interval_s=interval,
        max_file_bytes=f.collect.max_file_bytes,
        stale_after_s=_duration(source, "collect.stale_after", f.collect.stale_after),
        statsd_enabled=f.statsd.enabled,
        statsd_host=shost,
        statsd_port=sport,
        raw_retention_s=int(raw_ret),
        tiers=tiers,
        server_host=f.server.host,
        server_port=f.server.port,
        monitor_paths=tuple(path(p) for p in f.monitors.paths),
        monitor_interval_s=_duration(source, "monitors.interval", f.monitors.interval),
        monitor_repeat_s=_duration(source, "monitors.repeat", f.monitors.repeat),
        notifiers=dict(f.notifiers),
    )
