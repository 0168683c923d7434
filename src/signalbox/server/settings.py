"""The server area's settings: ``[server]`` (where ``serve`` listens unless told otherwise, and
the resident memory past which ``serve`` and ``agent`` log a warning: ``memory_warn_bytes``,
0 for never)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from signalbox.section import Source, table

__all__ = ["TABLES", "ServerSettings", "server_settings"]

TABLES = ("server",)


class ServerTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8910
    memory_warn_bytes: int = 0


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    memory_warn_bytes: int = 0


def server_settings(src: Source, raw: Mapping[str, Any]) -> ServerSettings:
    """``[server]`` of the file's top-level table ``raw``, checked."""
    server = table(src, "server", raw.get("server"), ServerTable)
    if not 0 <= server.port <= 65535:
        raise src.error("server.port", server.port, "a TCP port 0-65535")
    if server.memory_warn_bytes < 0:
        raise src.error(
            "server.memory_warn_bytes", server.memory_warn_bytes, "bytes, or 0 for no warning"
        )
    return ServerSettings(server.host, server.port, server.memory_warn_bytes)
