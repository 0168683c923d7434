"""Store builders shared by the contract suites: memory, SQLite, PostgreSQL (a real server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"

# A test's commits do not wait for their WAL flush to disk: what a commit makes visible, and
# when, is the same (no test crashes the server, the only thing that loses such commits).
# The suite's PostgreSQL tests are thousands of small transactions (every migration, every
# sealed hour of a compaction): with the flush, a retention contract took 5x as long.
_NO_FLUSH = "-csynchronous_commit%3Doff"


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"sbtest_{uuid.uuid4().hex[:12]}"
    admin_options = "-csynchronous_commit=off"
    with psycopg.connect(PG_BASE, autocommit=True, options=admin_options) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        # search_path last: tests.diskfull.pg_schema_of reads the schema after it
        yield f"{PG_BASE}?options={_NO_FLUSH}%20-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True, options=admin_options) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'signalbox.db'}"


SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
"""Parameters of a fixture over both SQL backends (PostgreSQL required where CI says so)."""


@contextmanager
def sql_metric_store(backend: str, tmp_dir: Path, **options: Any) -> Iterator[Any]:
    """A fresh ``SQLMetricStore`` on ``backend`` ("sqlite": a file in ``tmp_dir``;
    "postgresql": a schema of its own), built with ``options``, closed afterwards."""
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.storage import open_database

    if backend == "sqlite":
        s = SQLMetricStore(open_database(sqlite_url(tmp_dir)), **options)
        try:
            yield s
        finally:
            s.close()
        return
    with pg_schema_url() as url:
        s = SQLMetricStore(open_database(url), **options)
        try:
            yield s
        finally:
            s.close()
