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
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from starlette.requests import HTTPConnection

from signalbox.clock import Clock
from signalbox.exceptions import UsageError
from signalbox.limits import QueryLimits
from signalbox.metrics.store import MetricReader
from signalbox.query import Engine

if TYPE_CHECKING:
    from signalbox.config import Settings
    from signalbox.flags.admin import FlagAdmin
    from signalbox.instrument.logsources import ConfiguredLogs
    from signalbox.metrics.samples import Labels
    from signalbox.monitors.backtest import BacktestReport
    from signalbox.monitors.definitions.model import Monitor
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.monitors.outbox.delivery import Delivery
    from signalbox.monitors.state.records import Ack, HistoryEntry, Silence
    from signalbox.monitors.status import StatusReport
    from signalbox.server.auth.store import TokenStore
    from signalbox.server.resultcache import ResultCache
    from signalbox.storage.database import Database
    from signalbox.storage.leader import Leadership
    from signalbox.tasks.store import QueueStore


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


class MonitorWrites(Protocol):
    """What operators do to monitors over HTTP (:mod:`signalbox.monitors.operate`); ``by``
    is the caller as the audit trail names it."""

    def silence(
        self, name: str, *, seconds: float, reason: str, matchers: Labels, by: str, now_ms: int
    ) -> Silence: ...

    def unsilence(self, name: str, *, by: str, now_ms: int) -> list[Silence]: ...

    def acknowledge(self, name: str, *, reason: str, by: str, now_ms: int) -> list[Ack]: ...

    def drill(self, name: str, *, by: str, now_ms: int) -> list[Delivery]: ...


class RunnerStatus:
    """:class:`MonitorStatusSource` and :class:`MonitorWrites` over a :class:`MonitorRunner`
    that never runs a pass (``serve``'s loop runs passes with a runner of its own).

    The runner's file cache is not meant for concurrent use, so requests take turns; a
    status read or a write is a few small queries, so the lock costs nothing noticeable.
    A drill's deliveries (network calls) run outside it.
    """

    def __init__(self, runner: MonitorRunner, settings: Settings | None = None) -> None:
        self.runner = runner
        self.settings = settings  # what a backtest replays with (None: no backtests)
        self._lock = threading.Lock()

    def definition(self, name: str) -> tuple[Monitor, str]:
        """The loaded monitor ``name`` and its YAML text as written in its file (the lines
        from its own to the next monitor's of that file).

        Raises:
            NotFoundError: no loaded monitor of that name.
        """
        from signalbox.monitors.definitions.source import monitor_source

        with self._lock:
            loaded = self.runner.load()
            m = self.runner.monitor(name, loaded)
        return m, monitor_source(m, loaded.monitors)

    def backtest(self, name: str, *, since_s: float, now_ms: int) -> BacktestReport:
        """Replay monitor ``name`` over the last ``since_s`` of stored history.

        Raises:
            NotFoundError: no loaded monitor of that name.
            UsageError: this server replays no monitors (no settings given).
        """
        from signalbox.monitors.backtest import BacktestRequest, run

        with self._lock:  # the monitor only: its YAML text is not needed to replay it
            m = self.runner.monitor(name)
        if self.settings is None or not m.file:
            raise UsageError(f"monitor {name!r} cannot be backtested here")
        request = BacktestRequest(Path(m.file), since_s=since_s, names=(name,), until_ms=now_ms)
        from signalbox.metrics.sql.store import SQLMetricStore

        store = self.runner.metric_store
        mine = store if isinstance(store, SQLMetricStore) else None
        return run(request, self.settings, store=mine)

    def status(self, now_ms: int) -> StatusReport:
        from signalbox.monitors.status import build_status

        with self._lock:
            return build_status(self.runner, now_ms)

    def history(self, name: str, *, since_ms: int, limit: int) -> list[HistoryEntry]:
        with self._lock:
            return self.runner.state.history(name, since_ms=since_ms, limit=limit)

    def silence(
        self, name: str, *, seconds: float, reason: str, matchers: Labels, by: str, now_ms: int
    ) -> Silence:
        from signalbox.monitors import operate

        with self._lock:
            return operate.silence(
                self.runner,
                name,
                seconds=seconds,
                reason=reason,
                matchers=matchers,
                by=by,
                now_ms=now_ms,
            )

    def unsilence(self, name: str, *, by: str, now_ms: int) -> list[Silence]:
        from signalbox.monitors import operate

        with self._lock:
            return operate.unsilence(self.runner, name, by=by, now_ms=now_ms)

    def acknowledge(self, name: str, *, reason: str, by: str, now_ms: int) -> list[Ack]:
        from signalbox.monitors import operate

        with self._lock:
            return operate.acknowledge(self.runner, name, reason=reason, by=by, now_ms=now_ms)

    def drill(self, name: str, *, by: str, now_ms: int) -> list[Delivery]:
        with self._lock:
            entries = self.runner.queue_drill(self.runner.monitor(name), now_ms, by=by)
        return self.runner.deliver_drill(entries, now_ms)


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
        monitor_writes: silences, acks and drills over HTTP; None: those routes answer 404.
        tokens: API tokens; with them the app resolves callers
            (:mod:`signalbox.server.auth`), without them its write routes refuse everyone.
        query_cache: answers of ``/api/v1/query`` and ``query_range`` at explicit times
            (:mod:`signalbox.server.resultcache`); None: every query is evaluated.
        queue: the task queue for ``/api/v1/tasks`` and the queues page; None: no tasks area.
        logs: the log files ``/api/v1/logs`` and the request-log page read (from the
            config, never from a request); None: no logs area.
        flags: the flag store and declarations for ``/api/v1/flags`` and the flags page;
            None: no flags area.
        leader: which ``serve`` instance leads (:mod:`signalbox.storage.leader`), said by
            ``/-/ready``; None: not said.
    """

    metrics: MetricReader
    engine: Engine
    clock: Clock
    monitors: MonitorStatusSource | None = None
    ready: tuple[ReadyCheck, ...] = ()
    limits: QueryLimits = field(default_factory=QueryLimits)
    monitor_writes: MonitorWrites | None = None
    tokens: TokenStore | None = None
    query_cache: ResultCache | None = None
    queue: QueueStore | None = None
    flags: FlagAdmin | None = None
    logs: ConfiguredLogs | None = None
    leader: Leadership | None = None

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
        monitor_writes: MonitorWrites | None = None,
        tokens: TokenStore | None = None,
        query_cache: ResultCache | None = None,
        queue: QueueStore | None = None,
        flags: FlagAdmin | None = None,
    ) -> Services:
        """Services over one metric store, with the query engine built for it."""
        engine = Engine(metrics, coarsest_resolution_s=coarsest_resolution_s)
        return cls(
            metrics,
            engine,
            clock,
            monitors,
            ready,
            limits or QueryLimits(),
            monitor_writes,
            tokens,
            query_cache,
            queue,
            flags,
        )

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)


def services(conn: HTTPConnection) -> Services:
    """The :class:`Services` of the app serving this request."""
    found: Services = conn.app.state.services
    return found
