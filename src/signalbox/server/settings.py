"""The server area's settings: ``[server]`` (where ``serve`` listens unless told otherwise, the
resident memory past which ``serve`` and ``agent`` log a warning: ``memory_warn_bytes``, 0 for
never, ``auth``: who needs credentials, and ``query_cache_mb``: the query results cache's
size in MiB, 0 for none: :mod:`signalbox.server.resultcache`; ``packed_cache_mb``: the
decoded packed units kept in memory, 0 for none: :mod:`signalbox.metrics.sql.unitcache`;
``raw_cache_mb``: the raw partitions' samples kept in memory, 0 for none:
:mod:`signalbox.metrics.sql.rawcache`; ``leader_ttl``: the TTL of the lease the ``serve``
instances of one PostgreSQL store elect their leader with, :mod:`signalbox.storage.leader`).

``auth = "writes"`` (the default): writes need a token or a signed-in user, reads are open to
loopback connections. ``auth = "required"``: every request but the health checks, the login
form and the static files needs a token or a signed-in user; ``serve`` listens beyond
loopback only then (:mod:`signalbox.server.auth`)."""

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
    auth: str = "writes"
    query_cache_mb: int = 64
    packed_cache_mb: int = 64
    raw_cache_mb: int = 32
    leader_ttl: str = "10s"


AUTH_MODES = ("writes", "required")


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    memory_warn_bytes: int = 0
    auth: str = "writes"
    query_cache_mb: int = 64
    leader_ttl_s: float = 10.0
    packed_cache_mb: int = 64
    raw_cache_mb: int = 32

    @property
    def reads_need_token(self) -> bool:
        return self.auth == "required"


def server_settings(src: Source, raw: Mapping[str, Any]) -> ServerSettings:
    """``[server]`` of the file's top-level table ``raw``, checked."""
    server = table(src, "server", raw.get("server"), ServerTable)
    if not 0 <= server.port <= 65535:
        raise src.error("server.port", server.port, "a TCP port 0-65535")
    if server.memory_warn_bytes < 0:
        raise src.error(
            "server.memory_warn_bytes", server.memory_warn_bytes, "bytes, or 0 for no warning"
        )
    if server.auth not in AUTH_MODES:
        raise src.error(
            "server.auth",
            server.auth,
            '"writes" (credentials for writes, reads open on loopback) or "required" '
            "(credentials for reads too)",
        )
    if not 0 <= server.query_cache_mb <= 1 << 20:
        raise src.error(
            "server.query_cache_mb",
            server.query_cache_mb,
            "MiB for the query results cache (0-1048576; 0 turns it off)",
        )
    if not 0 <= server.packed_cache_mb <= 1 << 20:
        raise src.error(
            "server.packed_cache_mb",
            server.packed_cache_mb,
            "MiB for the decoded packed units (0-1048576; 0 turns it off)",
        )
    if not 0 <= server.raw_cache_mb <= 1 << 20:
        raise src.error(
            "server.raw_cache_mb",
            server.raw_cache_mb,
            "MiB for raw partitions' samples kept in memory (0-1048576; 0 turns it off)",
        )
    leader_ttl_s = src.duration("server.leader_ttl", server.leader_ttl)
    if not 1 <= leader_ttl_s <= 3600:
        raise src.error(
            "server.leader_ttl",
            server.leader_ttl,
            "a duration from 1s to 1h: how long a dead leader keeps the lease before another "
            "serve instance takes over",
        )
    return ServerSettings(
        server.host,
        server.port,
        server.memory_warn_bytes,
        server.auth,
        server.query_cache_mb,
        leader_ttl_s,
        server.packed_cache_mb,
        server.raw_cache_mb,
    )
