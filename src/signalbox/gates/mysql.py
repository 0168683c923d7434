"""``mysql_load``: closed while a MySQL/MariaDB server is busier than its marks allow.

Reads ``SHOW GLOBAL STATUS`` -- ``Threads_running`` (queries executing now: the best single
sign of a server in trouble, as gh-ost's ``--max-load`` uses it), ``Threads_connected``, or
any numeric status variable -- and applies high/low marks with hysteresis
(:mod:`signalbox.gates.hysteresis`). The probe's own connection is counted by the server in
both thread counts, as any client's is.
"""

from __future__ import annotations

from typing import Any

from signalbox.gates.base import Decision, Gate
from signalbox.gates.dsn import parse_mysql_dsn, shown_dsn
from signalbox.gates.hysteresis import DEFAULT_LOW_RATIO, Limit, judge, marks, max_limit
from signalbox.gates.mysql_rows import status_values
from signalbox.gates.mysqlconn import DEFAULT_TIMEOUT_S, MySQLProbeConnection, describe_error

__all__ = ["MySQLLoadGate", "mysql_load"]

Mark = float | tuple[float, float] | list[float]

_ALIASES = {"max_running": "Threads_running", "max_connected": "Threads_connected"}


class MySQLLoadGate(Gate):
    """See :func:`mysql_load`."""

    def __init__(
        self,
        dsn: str,
        limits: list[Limit],
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        target = parse_mysql_dsn(dsn)
        super().__init__(name or f"mysql_load:{target.label}", **kwargs)
        if not limits:
            raise ValueError(
                "mysql_load needs at least one mark (max_running=, max_connected=, ...)"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.hide([target.password])
        self.dsn = shown_dsn(dsn)
        self.limits = limits
        self._timeout = timeout
        self._conn = MySQLProbeConnection(target, timeout)
        self._tripped: frozenset[str] = frozenset()

    def probe(self) -> Decision:
        names = [lim.name for lim in self.limits]

        def read(cur: Any) -> dict[str, float]:
            cur.execute(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ("
                + ", ".join(["%s"] * len(names))
                + ")",
                names,
            )
            return status_values((r["Variable_name"], r["Value"]) for r in cur.fetchall())

        server = self._conn.dsn.label
        try:
            values = self._conn.run(read)
        except Exception as e:  # fail closed, naming the server and what went wrong
            error = self.redact(describe_error(e, self._timeout))
            return self.closed(
                f"cannot probe {server}: {error}", {"server": server, "error": error}
            )
        got = {lim.name: _number(values.get(lim.name.lower())) for lim in self.limits}
        verdict = judge(
            ((n, lim, got[n]) for n, lim in zip(names, self.limits, strict=True)), self._tripped
        )
        self._tripped = verdict.tripped
        reading: dict[str, Any] = {
            "server": self._conn.dsn.label,
            "status": got,
            "marks": marks(self.limits),
        }
        if verdict.open:
            return self.opened("within marks", reading)
        return self.closed(f"{server}: " + "; ".join(verdict.reasons), reading)

    def close(self) -> None:
        """Close the probe's connection (it reopens on the next probe)."""
        self._conn.close()


def _number(v: float | None) -> float | int | None:
    """Counts as integers in readings (``12``, not ``12.0``)."""
    return int(v) if v is not None and v.is_integer() else v


def mysql_load(
    dsn: str,
    *,
    max_running: Mark | None = None,
    max_connected: Mark | None = None,
    low: float = DEFAULT_LOW_RATIO,
    name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float | None = None,
    delay: float | None = None,
    **status_variables: Mark,
) -> MySQLLoadGate:
    """A gate closed while the server at ``dsn`` is too busy.

    Args:
        dsn: ``mysql://user[:password]@host[:port]/database``.
        max_running: high mark of ``Threads_running``.
        max_connected: high mark of ``Threads_connected``.
        low: the low mark as a fraction of each high mark (default 0.8: closes at 40,
            reopens below 32). Give any mark as ``(high, low)`` to set its low mark alone.
        timeout: connect and read timeout of the probe, seconds.
        **status_variables: high marks of any other numeric status variable
            (``Innodb_row_lock_current_waits=5``).

    The gate closes when a value reaches its high mark and reopens only once every tripped
    value is below its low mark. A probe that cannot connect or times out closes it.
    """
    raw: dict[str, Mark] = {}
    for key, mark in (("max_running", max_running), ("max_connected", max_connected)):
        if mark is not None:
            raw[_ALIASES[key]] = mark
    raw.update(status_variables)
    limits = [max_limit(var, mark, low) for var, mark in raw.items()]
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return MySQLLoadGate(dsn, limits, name=name, timeout=timeout, **kwargs)
