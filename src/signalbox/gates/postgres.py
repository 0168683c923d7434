"""``postgres_load``: closed while a PostgreSQL server has too many client connections (or
too many of them busy), from ``pg_stat_activity``.

``max_connections`` counts client backends (what exhausts the server's own
``max_connections``); ``max_active`` counts those running a statement now, PostgreSQL's
counterpart of MySQL's ``Threads_running``. High/low marks with hysteresis as every gate.
The probe's own connection is one of the client backends it counts.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from signalbox.gates.base import Decision, Gate
from signalbox.gates.dsn import shown_dsn, url_password
from signalbox.gates.hysteresis import DEFAULT_LOW_RATIO, Limit, fmt, judge, marks, max_limit
from signalbox.gates.mysqlconn import DEFAULT_TIMEOUT_S

__all__ = ["PostgresLoadGate", "postgres_load"]

Mark = float | tuple[float, float] | list[float]

_QUERY = (
    "SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS connections, "
    "count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active, "
    "current_setting('max_connections')::int AS server_max_connections "
    "FROM pg_stat_activity"
)


class PostgresLoadGate(Gate):
    """See :func:`postgres_load`."""

    def __init__(
        self,
        dsn: str,
        limits: list[Limit],
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"expected postgresql://user@host:port/database, got {shown_dsn(dsn)}")
        if not limits:
            raise ValueError("postgres_load needs max_connections= or max_active=")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        from urllib.parse import urlsplit

        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        self.server = f"{host}:{parts.port or 5432}"
        super().__init__(name or f"postgres_load:{self.server}", **kwargs)
        self.hide([url_password(dsn)])
        self._dsn = dsn
        self.dsn = shown_dsn(dsn)
        self.limits = limits
        self.timeout = timeout
        self._conn: Any = None
        self._tripped: frozenset[str] = frozenset()

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "postgres_load needs psycopg: pip install 'signalbox[postgresql]'"
            ) from None
        # libpq's connect_timeout is whole seconds, at least 2; statement_timeout bounds
        # the query once connected.
        return psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=max(2, round(self.timeout)),
            options=f"-c statement_timeout={int(self.timeout * 1000)}",
            application_name="signalbox-gate",
        )

    def _read(self) -> dict[str, Any]:
        reused = self._conn is not None
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
                reused = False
            try:
                row = self._conn.execute(_QUERY).fetchone()
                return {
                    "connections": row[0],
                    "active": row[1],
                    "server_max_connections": row[2],
                }
            except Exception:
                self.close()
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def probe(self) -> Decision:
        try:
            got = self._read()
        except Exception as e:  # fail closed, naming the server and what went wrong
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            error = self.redact(first)
            if "timeout" in error or "timed out" in error:
                error += f" (no answer within {fmt(max(2, round(self.timeout)))} s)"
            return self.closed(
                f"cannot probe {self.server}: {error}", {"server": self.server, "error": error}
            )
        verdict = judge(
            ((lim.name, lim, float(got[lim.name])) for lim in self.limits), self._tripped
        )
        self._tripped = verdict.tripped
        reading = {"server": self.server, **got, "marks": marks(self.limits)}
        if verdict.open:
            return self.opened("within marks", reading)
        return self.closed(f"{self.server}: " + "; ".join(verdict.reasons), reading)

    def close(self) -> None:
        """Close the probe's connection (it reopens on the next probe)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # already broken: nothing left to release
                conn.close()


def postgres_load(
    dsn: str,
    *,
    max_connections: Mark | None = None,
    max_active: Mark | None = None,
    low: float = DEFAULT_LOW_RATIO,
    name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float | None = None,
    delay: float | None = None,
) -> PostgresLoadGate:
    """A gate closed while the PostgreSQL server at ``dsn`` is too busy.

    Args:
        dsn: ``postgresql://user[:password]@host[:port]/database``.
        max_connections: high mark of client connections (``pg_stat_activity``).
        max_active: high mark of client connections running a statement now.
        low: the low mark as a fraction of each high mark (default 0.8); or give a mark as
            ``(high, low)``.
        timeout: connect timeout (libpq: whole seconds, at least 2) and statement timeout.
    """
    limits = [
        max_limit(key, mark, low)
        for key, mark in (("connections", max_connections), ("active", max_active))
        if mark is not None
    ]
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return PostgresLoadGate(dsn, limits, name=name, timeout=timeout, **kwargs)
