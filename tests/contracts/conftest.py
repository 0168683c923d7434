"""The store fixture of the contract suites: memory, SQLite and PostgreSQL (a real server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from tests.stores import pg_schema_url, sqlite_url

T0 = 1_700_000_000_000


def _sql_store(url: str, clock: FrozenClock) -> Any:
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.storage import open_database

    return SQLMetricStore(open_database(url), clock=clock)


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    clock = FrozenClock(T0 / 1000 + 600)
    if request.param == "memory":
        from signalbox.metrics.memstore import MemoryMetricStore

        yield MemoryMetricStore(raw_retention_s=86400)
    elif request.param == "sqlite":
        s = _sql_store(sqlite_url(tmp_path), clock)
        yield s
        s.close()
    else:
        with pg_schema_url() as url:
            s = _sql_store(url, clock)
            yield s
            s.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    clock = FrozenClock(T0 / 1000 + 600)
    if request.param == "sqlite":
        s = _sql_store(sqlite_url(tmp_path), clock)
        yield s
        s.close()
    else:
        with pg_schema_url() as url:
            s = _sql_store(url, clock)
            yield s
            s.close()
