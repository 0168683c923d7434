"""The flag store on every backend: memory, SQLite and PostgreSQL (a real server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stores import pg_schema_url, sqlite_url


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def fstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        from signalbox.flags.memstore import MemoryFlagStore

        yield MemoryFlagStore()
        return
    from signalbox.flags.store import open_flag_store

    if request.param == "sqlite":
        s = open_flag_store(sqlite_url(tmp_path))
        yield s
        s.close()
    else:
        with pg_schema_url() as url:
            s = open_flag_store(url)
            yield s
            s.close()


@pytest.fixture(autouse=True)
def _no_code_declarations() -> Iterator[None]:
    from signalbox.flags.declarations import reset_code_declarations

    reset_code_declarations()
    yield
    reset_code_declarations()
