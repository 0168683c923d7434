"""The server's app over every store: memory, SQLite and PostgreSQL (a real server).

:class:`Site` is what ``serve`` builds, in-process: a metric store, the monitor state in a
database, a :class:`MonitorRunner` that tests drive to make real monitor states, and the
app over :class:`Services` built from them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from signalbox.clock import FrozenClock
from signalbox.limits import QueryLimits
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import MetricStore
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.outbox.store import Outbox
from signalbox.monitors.state.store import MonitorStore
from signalbox.query import Engine
from signalbox.server.app import AppOptions, create_app
from signalbox.server.services import RunnerStatus, Services, database_ready
from signalbox.storage import Database, open_database
from tests.stores import pg_schema_url, sqlite_url

NOW = 1_700_000_040.0

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.service("postgresql")),
]
SQL_BACKENDS = BACKENDS[1:]


@dataclass
class Site:
    """One app and everything under it."""

    backend: str
    store: MetricStore
    db: Database  # the monitor state's database (the metric store's own, for SQL)
    runner: MonitorRunner
    services: Services
    clock: FrozenClock
    monitors_dir: Path

    def app(
        self, options: AppOptions | None = None, middleware: Sequence[Middleware] = ()
    ) -> Starlette:
        return create_app(self.services, options, middleware=middleware)

    def client(
        self, options: AppOptions | None = None, middleware: Sequence[Middleware] = ()
    ) -> TestClient:
        return TestClient(self.app(options, middleware))


@contextlib.contextmanager
def open_site(
    backend: str,
    tmp_path: Path,
    *,
    monitors_yaml: str = "",
    url: str | None = None,
    limits: QueryLimits | None = None,
) -> Iterator[Site]:
    """A :class:`Site` on ``backend`` (PostgreSQL: a fresh schema, or ``url``)."""
    clock = FrozenClock(NOW)
    mdir = tmp_path / "monitors"
    mdir.mkdir(exist_ok=True)
    if monitors_yaml:
        (mdir / "m.yaml").write_text(monitors_yaml)
    with contextlib.ExitStack() as stack:
        store: MetricStore
        if backend == "memory":
            store = MemoryMetricStore()
            db = open_database("sqlite:///:memory:")
            stack.callback(db.close)
            coarsest = 0
        else:
            if url is None:
                url = (
                    stack.enter_context(pg_schema_url())
                    if backend == "postgresql"
                    else sqlite_url(tmp_path)
                )
            sql = SQLMetricStore(open_database(url), clock=clock)
            stack.callback(sql.close)
            store, db, coarsest = sql, sql.db, sql.levels[-1].tier
        runner = MonitorRunner(
            paths=[mdir],
            metric_store=store,
            state=MonitorStore(db),
            outbox=Outbox(db, rng=random.Random(3)),
            notifiers={},
            repeat_s=3600,
            engine=Engine(store, coarsest_resolution_s=coarsest),
        )
        services = Services.over(
            store,
            clock=clock,
            coarsest_resolution_s=coarsest,
            monitors=RunnerStatus(runner),
            ready=(database_ready(f"store {db.url}", db),),
            limits=limits,
        )
        yield Site(backend, store, db, runner, services, clock, mdir)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=SQL_BACKENDS)
def sql_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
