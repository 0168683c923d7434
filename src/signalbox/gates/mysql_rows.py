"""What MySQL and MariaDB answer, read without I/O: status rows and replica status rows.

MariaDB says ``SHOW SLAVE STATUS`` / ``Slave_IO_Running`` / ``Seconds_Behind_Master``;
MySQL 8 says ``SHOW REPLICA STATUS`` / ``Replica_IO_Running`` / ``Seconds_Behind_Source``.
Both spellings are folded into one :class:`Channel` here, so the gate's logic (and its
tests) never see the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Channel", "channels", "from_peer", "replication_problems", "status_values"]


def status_values(rows: Iterable[Sequence[Any]]) -> dict[str, float]:
    """``SHOW GLOBAL STATUS`` rows ``(Variable_name, Value)`` → ``{lowercase name: number}``.

    Status variable names are case-insensitive in the server, so they are here too;
    non-numeric values (``Ssl_cipher``, ``ON``) are left out.
    """
    out: dict[str, float] = {}
    for row in rows:
        if len(row) < 2:
            continue
        name, value = row[0], row[1]
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        try:
            out[str(name).lower()] = float(value)
        except (TypeError, ValueError):
            continue
    return out


@dataclass(frozen=True, slots=True)
class Channel:
    """One replication channel of one server, whichever spelling the server used."""

    name: str
    source_host: str
    source_port: int | None
    source_server_id: int | None
    io_running: str  # Yes / No / Connecting / Preparing
    sql_running: str  # Yes / No
    lag_s: float | None  # None: NULL (not replicating, or unknown)
    last_io_error: str
    last_sql_error: str

    @property
    def source(self) -> str:
        return f"{self.source_host}:{self.source_port}" if self.source_port else self.source_host


def _pick(row: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if n in row:
            v = row[n]
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def channels(rows: Iterable[Mapping[str, Any]]) -> list[Channel]:
    """Rows of ``SHOW ALL SLAVES STATUS`` / ``SHOW SLAVE STATUS`` / ``SHOW REPLICA STATUS``
    (as dicts by column name) → :class:`Channel` records."""
    out: list[Channel] = []
    for r in rows:
        out.append(
            Channel(
                name=str(_pick(r, "Connection_name", "Channel_Name", "Channel_name") or ""),
                source_host=str(_pick(r, "Master_Host", "Source_Host") or ""),
                source_port=_int(_pick(r, "Master_Port", "Source_Port")),
                source_server_id=_int(_pick(r, "Master_Server_Id", "Source_Server_Id")),
                io_running=str(_pick(r, "Slave_IO_Running", "Replica_IO_Running") or "No"),
                sql_running=str(_pick(r, "Slave_SQL_Running", "Replica_SQL_Running") or "No"),
                lag_s=_float(_pick(r, "Seconds_Behind_Master", "Seconds_Behind_Source")),
                last_io_error=str(_pick(r, "Last_IO_Error") or "").strip(),
                last_sql_error=str(_pick(r, "Last_SQL_Error") or "").strip(),
            )
        )
    return out


def from_peer(
    chans: Sequence[Channel], peer_server_id: int | None, peer_host: str, peer_port: int
) -> Channel | None:
    """The channel replicating from the peer: by the peer's ``server_id`` when the channel
    has seen it, else by host and port as configured (a channel that never connected reports
    ``Master_Server_Id = 0``)."""
    for c in chans:
        if peer_server_id and c.source_server_id == peer_server_id:
            return c
    for c in chans:
        if c.source_port == peer_port and c.source_host in (peer_host, _loopback_alias(peer_host)):
            return c
    if len(chans) == 1 and not chans[0].source_server_id:
        return chans[0]  # one channel that never connected: the only candidate to report on
    return None


def _loopback_alias(host: str) -> str:
    return {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(host, host)


def replication_problems(
    server: str, chans: Sequence[Channel], peer: str, channel: Channel | None
) -> list[str]:
    """Why ``server`` is not replicating ``peer`` through ``channel`` (empty: it is).

    Lag is judged by the caller (with hysteresis); a NULL lag while both threads run is a
    problem here, since the server cannot say how far behind it is.
    """
    if not chans:
        return [
            f"{server} is not a replica (no replication configured), so it does not copy {peer}"
        ]
    if channel is None:
        others = ", ".join(sorted({c.source for c in chans}))
        return [f"{server} does not replicate from {peer} (it replicates from {others})"]
    problems: list[str] = []
    via = f" channel '{channel.name}'" if channel.name else ""
    if channel.io_running != "Yes":
        err = f": {channel.last_io_error}" if channel.last_io_error else ""
        problems.append(
            f"{server}{via}: replication IO thread from {peer} is {channel.io_running}{err}"
        )
    if channel.sql_running != "Yes":
        err = f": {channel.last_sql_error}" if channel.last_sql_error else ""
        problems.append(
            f"{server}{via}: replication SQL thread from {peer} is {channel.sql_running}{err}"
        )
    if not problems and channel.lag_s is None:
        problems.append(f"{server}{via}: lag behind {peer} unknown (Seconds_Behind_Master NULL)")
    return problems
