"""What the server's routes need, built once by the caller and put on ``app.state``.

Routes never open stores or read settings themselves: ``serve`` builds :class:`Services`
from ``signalbox.toml`` (:func:`signalbox.server.serve.build_services`), tests build them
over a memory store or a temp database, so every route runs the same in both. Each area of
the API takes what it needs from here; an area whose service is ``None`` is not mounted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from starlette.requests import HTTPConnection

from signalbox.clock import Clock
from signalbox.limits import QueryLimits
from signalbox.metrics.store import MetricReader
from signalbox.query import Engine

if TYPE_CHECKING:
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.monitors.state.records import HistoryEntry
    from signalbox.monitors.status import StatusReport
    from signalbox.storage.database import Database


@dataclass(frozen=True, slots=True)
class ReadyCheck:
    """One dependency ``/-/ready`` probes: ``probe()`` raises when it is not usable."""

    name: str
    probe: Callable[[], object]


def database_ready(name: str, db: Database) -> ReadyCheck:
    """A check that runs the cheapest statement there is on ``db`` (a round trip, no table)."""
    return ReadyCheck(name, lambda: db.query("SELECT 1"))


class MonitorStatusSource(Protocol):
    """Monitor states as ``monitors status`` shows them: the files and the state store."""

    def status(self, now_ms: int) -> StatusReport: ...

    def history(self, name: str, *, since_ms: int, limit: int) -> list[HistoryEntry]: ...


class RunnerStatus:
    """:class:`MonitorStatusSource` over a :class:`MonitorRunner` that never runs a pass.

    The runner's file cache is not meant for concurrent use, so requests take turns; a
    status read is a few small queries, so the lock costs nothing noticeable.
    """

    def __init__(self, runner: MonitorRunner) -> None:
        self.runner = runner
        self._lock = threading.Lock()

    def status(self, now_ms: int) -> StatusReport:
        from signalbox.monitors.status import build_status

        with self._lock:
            return build_status(self.runner, now_ms)

    def history(self, name: str, *, since_ms: int, limit: int) -> list[HistoryEntry]:
        with self._lock:
            return self.runner.state.history(name, since_ms=since_ms, limit=limit)


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the routes use. Later areas (tasks, flags, auth) add their field here.

    Args:
        metrics: the metric store the API, ``/metrics`` and the index read (reads only).
        engine: the query engine over ``metrics``.
        clock: "now" for queries without a time and for ``/metrics`` freshness.
        monitors: monitor states for ``/api/v1/monitors`` and the index; None: no
            monitors area (the index then shows none).
        ready: what ``/-/ready`` probes, in order; empty means always ready.
        limits: what one query over HTTP may cost (``[query]``), and how many run at once.
    """

    metrics: MetricReader
    engine: Engine
    clock: Clock
    monitors: MonitorStatusSource | None = None
    ready: tuple[ReadyCheck, ...] = ()
    limits: QueryLimits = field(default_factory=QueryLimits)

    @classmethod
    def over(
        cls,
        metrics: MetricReader,
        *,
        clock: Clock,
        coarsest_resolution_s: int = 3600,
        monitors: MonitorStatusSource | None = None,
        ready: tuple[ReadyCheck, ...] = (),
        limits: QueryLimits | None = None,
    ) -> Services:
        """Services over one metric store, with the query engine built for it."""
        engine = Engine(metrics, coarsest_resolution_s=coarsest_resolution_s)
        return cls(metrics, engine, clock, monitors, ready, limits or QueryLimits())

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)


def services(conn: HTTPConnection) -> Services:
    """The :class:`Services` of the app serving this request."""
    found: Services = conn.app.state.services
    return found
