"""``mysql_replication``: closed unless every server of a master-master pair is up and
replicating the other, within a lag bound.

The seed's "the shard's master-master pair doesn't have both servers in production": heavy
writes to a pair that has lost its redundancy (one server down, or replication stopped in
either direction) pile up unreplicated changes on the one copy left. Each server is asked for
its ``server_id`` and its replica status (MariaDB's ``SHOW ALL SLAVES STATUS`` or MySQL 8's
``SHOW REPLICA STATUS``; :mod:`signalbox.gates.mysql_rows` reads both), and must have a
channel from every other server of the list with both threads running and its lag under
``max_lag`` (with hysteresis: once over, it reopens below the low mark).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signalbox.gates.base import Decision, Gate
from signalbox.gates.dsn import MySQLDSN, parse_mysql_dsn
from signalbox.gates.hysteresis import DEFAULT_LOW_RATIO, judge, max_limit
from signalbox.gates.mysql_rows import Channel, channels, from_peer, replication_problems
from signalbox.gates.mysqlconn import DEFAULT_TIMEOUT_S, MySQLProbeConnection, describe_error

__all__ = ["DEFAULT_MAX_LAG_S", "MySQLReplicationGate", "mysql_replication"]

DEFAULT_MAX_LAG_S = 30.0


@dataclass(frozen=True, slots=True)
class _Seen:
    server_id: int | None
    channels: list[Channel]
    error: str = ""


def _read_server(cur: Any) -> _Seen:
    cur.execute("SELECT @@server_id AS server_id, @@version AS version")
    row = cur.fetchone() or {}
    version = str(row.get("version") or "")
    if "mariadb" in version.lower():
        cur.execute("SHOW ALL SLAVES STATUS")
    else:  # MySQL 8.0.22+ says REPLICA; older servers only know SLAVE
        try:
            cur.execute("SHOW REPLICA STATUS")
        except Exception as e:
            if "syntax" not in str(e).lower():
                raise
            cur.execute("SHOW SLAVE STATUS")
    rows = cur.fetchall()
    sid = row.get("server_id")
    return _Seen(int(sid) if sid is not None else None, channels(rows))


class MySQLReplicationGate(Gate):
    """See :func:`mysql_replication`."""

    def __init__(
        self,
        dsns: list[str],
        *,
        max_lag: float = DEFAULT_MAX_LAG_S,
        low: float = DEFAULT_LOW_RATIO,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        if isinstance(dsns, str) or len(dsns) < 2:
            raise ValueError(
                "mysql_replication needs the DSNs of at least two servers (dsns=[a, b])"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        targets = [parse_mysql_dsn(d) for d in dsns]
        labels = [t.label for t in targets]
        if len(set(labels)) != len(labels):
            raise ValueError(f"mysql_replication: the same server twice in {labels}")
        super().__init__(name or "mysql_replication:" + ",".join(labels), **kwargs)
        self.hide([t.password for t in targets])
        self.targets: list[MySQLDSN] = targets
        self.lag_limit = max_limit("lag", float(max_lag), low, unit=" s")
        self._timeout = timeout
        self._conns = [MySQLProbeConnection(t, timeout) for t in targets]
        self._tripped: frozenset[str] = frozenset()

    def probe(self) -> Decision:
        seen: list[_Seen] = []
        for conn in self._conns:
            try:
                seen.append(conn.run(_read_server))
            except Exception as e:  # an unreachable server is the loudest problem of all
                seen.append(_Seen(None, [], self.redact(describe_error(e, self._timeout))))
        problems: list[str] = []
        lags: list[tuple[str, float | None]] = []
        servers: list[dict[str, Any]] = []
        for i, (target, me) in enumerate(zip(self.targets, seen, strict=True)):
            info: dict[str, Any] = {"server": target.label, "reachable": not me.error}
            servers.append(info)
            if me.error:
                info["error"] = me.error
                problems.append(f"{target.label} unreachable: {me.error}")
                continue
            info["server_id"] = me.server_id
            info["replicating"] = {}
            for j, peer in enumerate(self.targets):
                if j == i:
                    continue
                chan = from_peer(me.channels, seen[j].server_id, peer.host, peer.port)
                found = replication_problems(target.label, me.channels, peer.label, chan)
                info["replicating"][peer.label] = _channel_reading(chan)
                problems += found
                if chan is not None and not found:
                    lags.append((f"{target.label} lag behind {peer.label}", chan.lag_s))
        verdict = judge(((k, self.lag_limit, v) for k, v in lags), self._tripped)
        self._tripped = verdict.tripped
        reading: dict[str, Any] = {
            "servers": servers,
            "max_lag_s": self.lag_limit.close_at,
            "lag_reopens_below_s": self.lag_limit.reopen_at,
        }
        problems += verdict.reasons
        if problems:
            return self.closed("; ".join(problems), reading)
        return self.opened("every server replicates the other(s) within the lag bound", reading)

    def close(self) -> None:
        """Close the probes' connections (they reopen on the next probe)."""
        for c in self._conns:
            c.close()


def _channel_reading(c: Channel | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "channel": c.name,
        "io_running": c.io_running,
        "sql_running": c.sql_running,
        "lag_s": c.lag_s,
        "source": c.source,
        "last_io_error": c.last_io_error,
        "last_sql_error": c.last_sql_error,
    }


def mysql_replication(
    dsns: list[str],
    *,
    max_lag: float = DEFAULT_MAX_LAG_S,
    low: float = DEFAULT_LOW_RATIO,
    name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float | None = None,
    delay: float | None = None,
) -> MySQLReplicationGate:
    """A gate open only while every server in ``dsns`` is reachable and replicates every
    other one (IO and SQL threads running) no more than ``max_lag`` seconds behind.

    Args:
        dsns: ``mysql://...`` URLs of the pair (``[a, b]``); the user needs the
            ``REPLICATION CLIENT`` (MySQL) / ``SLAVE MONITOR`` (MariaDB) privilege.
        max_lag: seconds behind its source a server may be; the gate reopens once the lag
            is below ``max_lag * low``.
        timeout: connect and read timeout of each server's probe, seconds.

    A closed decision's reason names each server and what is wrong with it (unreachable,
    not a replica, IO or SQL thread stopped with the server's last error, lag).
    """
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return MySQLReplicationGate(
        list(dsns), max_lag=max_lag, low=low, name=name, timeout=timeout, **kwargs
    )
