"""The gates area's settings: ``[gates.NAME]`` tables, one gate each.

::

    [gates.db]
    kind = "mysql_load"
    dsn_env = "SHARD7_DSN"          # or dsn = "mysql://monitor@db7:3306/" (no password in files)
    max_running = 40                # or [40, 30]: high and low mark
    max_connected = 400
    status = {Innodb_row_lock_current_waits = 5}
    low = 0.8                       # low marks as a fraction of high ones
    timeout = "2s"                  # connect and read timeout of the probe
    interval = "2s"                 # probe at most this often (shared by every job)
    delay = "10s"                   # suggested first delay when closed

    [gates.pair]
    kind = "mysql_replication"
    dsns = ["mysql://monitor@db7a:3306/", "mysql://monitor@db7b:3306/"]
    max_lag = "30s"

    [gates.traffic]
    kind = "metric"
    query = "sum(rate(http_requests_total[1m]))"
    below = 500                     # and/or above = ...; no_data = "closed" | "open"

Other kinds: ``postgres_load`` (``dsn``, ``max_connections``, ``max_active``), ``monitor``
(``monitor``, default the table's name; ``max_age``), ``flag`` (``flag``, default the
table's name; ``path``), ``file`` (``path``).

Probes are shared across the cluster: a worker whose queue store is SQLite or PostgreSQL
probes each gate through one record in that store, so forty workers on ten hosts run one
probe per interval, not forty (:mod:`signalbox.gates.shared`). To keep probes local::

    [gates]
    shared = false                  # every gate of this process's workers probes locally

    [gates.db]
    shared = false                  # or this gate alone

Each table is checked when the config loads, so a bad gate stops every command with exit 2
and an error naming the file, ``gates.NAME.KEY`` and what was expected; the gates themselves
are built (no I/O until their first probe) by :func:`build_gates`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from signalbox.section import Source, known_table, table

if TYPE_CHECKING:
    from signalbox.config import Settings
    from signalbox.gates.base import Gate

__all__ = [
    "KINDS",
    "TABLES",
    "GateSpec",
    "GatesSettings",
    "build_gate",
    "build_gates",
    "gates_settings",
    "sharing_enabled",
]

TABLES = ("gates",)

Mark = float | list[float]


class _Common(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    kind: str = ""
    interval: str = "2s"
    delay: str = "10s"
    shared: bool = True


class _MySQLLoad(_Common, frozen=True):
    dsn: str = ""
    dsn_env: str = ""
    max_running: Mark | None = None
    max_connected: Mark | None = None
    status: dict[str, Mark] = msgspec.field(default_factory=dict)
    low: float = 0.8
    timeout: str = "2s"


class _Replication(_Common, frozen=True):
    dsns: list[str] = msgspec.field(default_factory=list)
    dsns_env: list[str] = msgspec.field(default_factory=list)
    max_lag: str = "30s"
    low: float = 0.8
    timeout: str = "2s"


class _Postgres(_Common, frozen=True):
    dsn: str = ""
    dsn_env: str = ""
    max_connections: Mark | None = None
    max_active: Mark | None = None
    low: float = 0.8
    timeout: str = "2s"


class _Metric(_Common, frozen=True):
    query: str = ""
    below: Mark | None = None
    above: Mark | None = None
    low: float = 0.8
    no_data: str = "closed"


class _Monitor(_Common, frozen=True):
    monitor: str = ""
    max_age: str = "10m"


class _Flag(_Common, frozen=True):
    flag: str = ""
    path: str = ""


class _File(_Common, frozen=True):
    path: str = ""


KINDS: dict[str, type[_Common]] = {
    "mysql_load": _MySQLLoad,
    "mysql_replication": _Replication,
    "postgres_load": _Postgres,
    "metric": _Metric,
    "monitor": _Monitor,
    "flag": _Flag,
    "file": _File,
}


@dataclass(frozen=True)
class GateSpec:
    """One configured gate: its name, kind and the keyword arguments of the gate's
    function (durations in seconds, paths absolute). ``repr`` never shows a DSN."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.options.items() if k not in ("dsn", "dsns")}
        return f"GateSpec(name={self.name!r}, kind={self.kind!r}, options={shown!r})"


class GatesSettings(dict[str, GateSpec]):
    """``[gates]``: the gates by name, and whether workers share their probes (``shared``,
    true unless ``[gates] shared = false``)."""

    def __init__(self, specs: Mapping[str, GateSpec] | None = None, *, shared: bool = True) -> None:
        super().__init__(specs or {})
        self.shared = shared


SETTINGS_KEYS = ("shared",)
"""Keys of ``[gates]`` itself; every other key names a gate's table."""


def sharing_enabled(settings: Settings) -> bool:
    """Whether the workers of ``settings`` share gate probes through their store."""
    return bool(getattr(getattr(settings, "gates", None), "shared", True))


def gates_settings(src: Source, raw: Mapping[str, Any]) -> GatesSettings:
    """``[gates.*]`` of the file's top-level table ``raw``, checked (every gate built once,
    without I/O, so a bad query, DSN or mark is a config error now)."""
    tables = dict(known_table(src, "gates", raw.get("gates")))
    shared = tables.pop("shared", True)
    if not isinstance(shared, bool):
        raise src.error("gates.shared", shared, "true or false")
    specs: dict[str, GateSpec] = {}
    for name, cfg in tables.items():
        key = f"gates.{name}"
        cfg = known_table(src, key, cfg)
        kind = cfg.get("kind")
        if kind not in KINDS:
            raise src.error(f"{key}.kind", kind, "one of " + ", ".join(sorted(KINDS)))
        t = table(src, key, cfg, KINDS[kind])
        specs[str(name)] = spec = GateSpec(str(name), kind, _options(src, key, str(name), t))
        try:
            build_gate(spec)
        except (ValueError, TypeError) as e:
            raise src.error(key, {k: v for k, v in cfg.items() if "dsn" not in k}, str(e)) from None
        except Exception as e:  # QueryError: a query outside the supported subset
            from signalbox.exceptions import QueryError

            if not isinstance(e, QueryError):
                raise
            raise src.error(
                f"{key}.query", cfg.get("query"), f"PromQL signalbox runs ({e})"
            ) from None
    return GatesSettings(specs, shared=shared)


def _dsn(src: Source, key: str, dsn: str, env: str) -> str:
    if dsn and env:
        raise src.error(f"{key}.dsn_env", env, "either dsn or dsn_env, not both")
    if env:
        value = src.environ.get(env, "")
        if not value:
            raise src.error(
                f"{key}.dsn_env", env, f"the name of a set environment variable (${env} is empty)"
            )
        return value
    if not dsn:
        raise src.error(
            f"{key}.dsn", None, "a database URL (or dsn_env naming a variable holding one)"
        )
    return dsn


def _check_marks(src: Source, key: str, t: Any, names: tuple[str, ...]) -> None:
    """Each mark a number or [high, low] with low <= high, and ``low`` a fraction."""
    from signalbox.gates.hysteresis import max_limit

    low = getattr(t, "low", 0.8)
    if not 0 < low <= 1:
        raise src.error(f"{key}.low", low, "a fraction in (0, 1], like 0.8")
    marks = [(f"{key}.{n}", getattr(t, n)) for n in names]
    marks += [(f"{key}.status.{k}", v) for k, v in getattr(t, "status", {}).items()]
    for where, mark in marks:
        if mark is None:
            continue
        try:
            max_limit(where, tuple(mark) if isinstance(mark, list) else mark, low)
        except ValueError as e:
            why = str(e).split(": ", 1)[-1]
            raise src.error(where, mark, f"a number or [high, low] ({why})") from None


def _mysql_dsn(src: Source, key: str, dsn: str) -> str:
    from signalbox.gates.dsn import parse_mysql_dsn

    try:
        parse_mysql_dsn(dsn)
    except ValueError:
        raise src.error(key, dsn, "a mysql://user@host:port/database URL") from None
    return dsn


def _options(src: Source, key: str, name: str, t: _Common) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "interval": src.duration(f"{key}.interval", t.interval),
        "delay": src.duration(f"{key}.delay", t.delay),
        "name": name,
        "shared": t.shared,
    }
    if isinstance(t, (_MySQLLoad, _Replication, _Postgres)):
        opts["low"] = t.low
        opts["timeout"] = src.duration(f"{key}.timeout", t.timeout)
        if not opts["timeout"] > 0:
            raise src.error(f"{key}.timeout", t.timeout, "a positive duration like 2s")
    if isinstance(t, _MySQLLoad):
        _check_marks(src, key, t, ("max_running", "max_connected"))
        opts["dsn"] = _mysql_dsn(src, f"{key}.dsn", _dsn(src, key, t.dsn, t.dsn_env))
        if t.max_running is not None:
            opts["max_running"] = t.max_running
        if t.max_connected is not None:
            opts["max_connected"] = t.max_connected
        opts["status"] = dict(t.status)
        if t.max_running is None and t.max_connected is None and not t.status:
            raise src.error(key, None, "at least one mark: max_running, max_connected or status")
    elif isinstance(t, _Replication):
        if t.dsns and t.dsns_env:
            raise src.error(f"{key}.dsns_env", t.dsns_env, "either dsns or dsns_env, not both")
        dsns = list(t.dsns) or [_dsn(src, f"{key}.dsns_env", "", env) for env in t.dsns_env]
        if len(dsns) < 2:
            raise src.error(f"{key}.dsns", len(dsns), "the URLs of at least two servers")
        opts["dsns"] = [_mysql_dsn(src, f"{key}.dsns[{i}]", d) for i, d in enumerate(dsns)]
        opts["max_lag"] = src.duration(f"{key}.max_lag", t.max_lag)
    elif isinstance(t, _Postgres):
        _check_marks(src, key, t, ("max_connections", "max_active"))
        opts["dsn"] = dsn = _dsn(src, key, t.dsn, t.dsn_env)
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise src.error(f"{key}.dsn", dsn, "a postgresql://user@host:port/database URL")
        if t.max_connections is None and t.max_active is None:
            raise src.error(key, None, "at least one mark: max_connections or max_active")
        opts["max_connections"] = t.max_connections
        opts["max_active"] = t.max_active
    elif isinstance(t, _Metric):
        if not t.query:
            raise src.error(f"{key}.query", None, "a PromQL query")
        if t.below is None and t.above is None:
            raise src.error(key, None, "below = N or above = N (or both)")
        _check_marks(src, key, t, ("below",))
        if t.no_data not in ("closed", "open"):
            raise src.error(f"{key}.no_data", t.no_data, '"closed" or "open"')
        opts.update(query=t.query, below=t.below, above=t.above, low=t.low, no_data=t.no_data)
    elif isinstance(t, _Monitor):
        opts["monitor"] = t.monitor or name
        opts["max_age"] = src.duration(f"{key}.max_age", t.max_age)
    elif isinstance(t, _Flag):
        opts["flag"] = t.flag or name
        # no path: the flags client's own declarations, [flags] paths (flags/ by default)
        opts["path"] = str(src.path(t.path)) if t.path else None
    elif isinstance(t, _File):
        if not t.path:
            raise src.error(f"{key}.path", None, "the path of the throttle file")
        opts["path"] = str(src.path(t.path))
    return opts


def _mark(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def build_gate(spec: GateSpec, settings: Settings | None = None) -> Gate:
    """The gate ``spec`` describes (no I/O: probes connect on first use). ``settings`` gives
    the metric, monitor and flag gates their store; without it they find the config
    themselves at their first probe."""
    o = dict(spec.options)
    shared = o.pop("shared", True)
    gate = _build(spec, o, settings)
    if not shared:
        gate.shared = False
    return gate


def _build(spec: GateSpec, o: dict[str, Any], settings: Settings | None) -> Gate:
    from signalbox import gates

    common = {"name": o.pop("name"), "interval": o.pop("interval"), "delay": o.pop("delay")}
    if spec.kind == "mysql_load":
        status = {k: _mark(v) for k, v in o.pop("status").items()}
        marks = {k: _mark(o.pop(k)) for k in ("max_running", "max_connected") if k in o}
        return gates.mysql_load(o.pop("dsn"), **marks, **o, **common, **status)
    if spec.kind == "mysql_replication":
        return gates.mysql_replication(o.pop("dsns"), **o, **common)
    if spec.kind == "postgres_load":
        return gates.postgres_load(
            o.pop("dsn"),
            max_connections=_mark(o.pop("max_connections")),
            max_active=_mark(o.pop("max_active")),
            **o,
            **common,
        )
    if spec.kind == "metric":
        return gates.metric(
            o.pop("query"),
            below=_mark(o.pop("below")),
            above=_mark(o.pop("above")),
            settings=settings,
            **o,
            **common,
        )
    if spec.kind == "monitor":
        return gates.monitor(
            o.pop("monitor"), max_age=o.pop("max_age"), settings=settings, **common
        )
    if spec.kind == "flag":
        return gates.flag(o.pop("flag"), path=o.pop("path"), settings=settings, **common)
    if spec.kind == "file":
        return gates.file(o.pop("path"), **common)
    raise ValueError(f"unknown gate kind {spec.kind!r}")


def build_gates(settings: Settings) -> dict[str, Gate]:
    """Every gate of ``settings`` (``[gates.NAME]``), by name, in the file's order."""
    specs: Mapping[str, GateSpec] = getattr(settings, "gates", {}) or {}
    return {name: build_gate(spec, settings) for name, spec in specs.items()}
