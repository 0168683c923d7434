"""``[forward.graphite]`` and ``[forward.ganglia]``: where each collection pass is also sent.

A peer is on when its table is present; ``address`` is then required. Each forwarder holds at
most ``max_buffer`` samples waiting for its peer (older passes are dropped past it, and
counted), gives a socket operation ``timeout`` before it calls the peer broken, and sends at
most every ``interval`` (``"0s"``: each pass as it comes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from signalbox.section import Source, known_table, table

__all__ = [
    "TABLES",
    "ForwardSettings",
    "GangliaSettings",
    "GraphiteSettings",
    "PeerSettings",
    "forward_settings",
]

TABLES = ("forward",)
GRAPHITE_PORT = 2003
GANGLIA_PORT = 8649


class GraphiteTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    address: str = ""
    prefix: str = ""
    naming: str = "tags"
    interval: str = "0s"
    max_buffer: int = 100_000
    timeout: str = "2s"


class GangliaTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    address: str = ""
    group: str = "signalbox"
    lifetime: str = "10m"
    interval: str = "0s"
    max_buffer: int = 100_000
    timeout: str = "2s"


_PEERS = ("ganglia", "graphite")


@dataclass(frozen=True)
class PeerSettings:
    """What every forwarder has: the peer's address and the sender's bounds."""

    host: str
    port: int
    interval_s: float = 0.0
    max_buffer: int = 100_000
    timeout_s: float = 2.0


@dataclass(frozen=True)
class GraphiteSettings(PeerSettings):
    """``naming``: ``tags`` (``name;k=v``, Graphite 1.1+) or ``dotted`` (``name.k.v``)."""

    prefix: str = ""
    naming: Literal["tags", "dotted"] = "tags"


@dataclass(frozen=True)
class GangliaSettings(PeerSettings):
    """``lifetime_s``: gmetric's dmax, how long gmond keeps a series nobody updates."""

    group: str = "signalbox"
    lifetime_s: float = 600.0


@dataclass(frozen=True)
class ForwardSettings:
    graphite: GraphiteSettings | None = None
    ganglia: GangliaSettings | None = None

    @property
    def any(self) -> bool:
        return self.graphite is not None or self.ganglia is not None


def _address(src: Source, key: str, text: str, default_port: int) -> tuple[str, int]:
    if not text.strip():
        raise src.error(key, text, f"the peer's HOST:PORT, like 127.0.0.1:{default_port}")
    if ":" not in text or text.endswith("]"):  # a host, or [IPv6], without a port
        text = f"{text}:{default_port}"
    host, port = src.host_port(key, text)
    if port == 0:
        raise src.error(
            key, text, f"the peer's HOST:PORT with a port, like 127.0.0.1:{default_port}"
        )
    return host, port


def _common(src: Source, key: str, t: GraphiteTable | GangliaTable) -> dict[str, Any]:
    if t.max_buffer <= 0:
        raise src.error(f"{key}.max_buffer", t.max_buffer, "a positive number of samples")
    interval = src.duration(f"{key}.interval", t.interval)
    timeout = src.duration(f"{key}.timeout", t.timeout)
    if not 0 < timeout <= 60:
        raise src.error(f"{key}.timeout", t.timeout, "a duration from 1ms to 60s")
    return {"interval_s": interval, "max_buffer": t.max_buffer, "timeout_s": timeout}


def forward_settings(src: Source, raw: Mapping[str, Any]) -> ForwardSettings:
    """``[forward]`` of the file's top-level table ``raw``, checked and resolved."""
    t = known_table(src, "forward", raw.get("forward"))
    for k, v in t.items():
        if k not in _PEERS:
            raise src.error(f"forward.{k}", v, f"a peer's table in [forward] ({', '.join(_PEERS)})")
    graphite = ganglia = None
    if "graphite" in t:
        g = table(src, "forward.graphite", t["graphite"], GraphiteTable)
        host, port = _address(src, "forward.graphite.address", g.address, GRAPHITE_PORT)
        if g.naming not in ("tags", "dotted"):
            raise src.error("forward.graphite.naming", g.naming, '"tags" or "dotted"')
        if any(c.isspace() or c == ";" for c in g.prefix) or g.prefix.startswith("."):
            raise src.error(
                "forward.graphite.prefix",
                g.prefix,
                "a Graphite path without spaces or ';' that does not start with '.'",
            )
        graphite = GraphiteSettings(
            host,
            port,
            prefix=g.prefix.rstrip("."),
            naming="tags" if g.naming == "tags" else "dotted",
            **_common(src, "forward.graphite", g),
        )
    if "ganglia" in t:
        g2 = table(src, "forward.ganglia", t["ganglia"], GangliaTable)
        host, port = _address(src, "forward.ganglia.address", g2.address, GANGLIA_PORT)
        lifetime = src.duration("forward.ganglia.lifetime", g2.lifetime)
        if not g2.group.strip():
            raise src.error("forward.ganglia.group", g2.group, "a non-empty group name")
        ganglia = GangliaSettings(
            host,
            port,
            group=g2.group,
            lifetime_s=lifetime,
            **_common(src, "forward.ganglia", g2),
        )
    return ForwardSettings(graphite, ganglia)
