"""Run the real ``signalbox`` executable of this environment, over every store backend.

:func:`store_project` is the fixture that CLI tests touching a store take: a project
directory whose ``signalbox.toml`` names a fresh store, once on SQLite and once on a
fresh PostgreSQL schema, so every command is exercised end to end on both. Test modules
import it (``from tests.cli.helpers import store_project``) to use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from signalbox.storage import Database, open_database
from tests.ports import free_port as free_port  # re-exported for the tests here
from tests.stores import pg_schema_url, sqlite_url

SIGNALBOX = str(Path(sys.executable).parent / "signalbox")


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    e.update(env or {})
    return subprocess.run(
        [SIGNALBOX, *args], cwd=cwd, env=e, input=input, capture_output=True, text=True, timeout=120
    )


@dataclass(frozen=True)
class StoreProject:
    """A project directory whose ``signalbox.toml`` starts with ``store = <url>``."""

    root: Path
    backend: str  # "sqlite" or "postgresql"
    store_url: str

    @property
    def config(self) -> Path:
        return self.root / "signalbox.toml"

    def configure(self, extra: str = "") -> Path:
        """(Re)write ``signalbox.toml``: the store first (a top-level key), then ``extra``."""
        self.config.write_text(f'store = "{self.store_url}"\n{extra}')
        return self.config

    def database(self) -> Database:
        """A connection of the test's own to the project's store, to look inside it."""
        return open_database(self.store_url)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]


@pytest.fixture(params=BACKENDS)
def store_project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreProject]:
    """A project over a fresh store: SQLite in tmp_path, or PostgreSQL in its own schema."""
    with fresh_project(request.param, tmp_path / "project", tmp_path) as project:
        yield project


@contextmanager
def fresh_project(backend: str, root: Path, db_dir: Path) -> Iterator[StoreProject]:
    """A configured project in ``root`` over a fresh store: SQLite in ``db_dir``, or
    PostgreSQL in a schema of its own (dropped after)."""
    root.mkdir()
    if backend == "sqlite":
        project = StoreProject(root, "sqlite", sqlite_url(db_dir))
        project.configure()
        yield project
    else:
        with pg_schema_url() as url:
            project = StoreProject(root, "postgresql", url)
            project.configure()
            yield project
