"""Builders for the worker tests: a registry of their own, a frozen clock, a queue store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.storage import open_database
from signalbox.tasks import registry
from signalbox.tasks.registry import Registry
from signalbox.tasks.settings import TasksSettings
from signalbox.tasks.sqlstore import SQLQueueStore
from tests.stores import sqlite_url

NOW = 1_700_000_000.0

FAST = TasksSettings(
    retries=2,
    retry_delay_s=10.0,
    retry_max_delay_s=100.0,
    defer_delay_s=10.0,
    defer_max_delay_s=60.0,
    hold_delay_s=60.0,
    lease_s=30.0,
    poll_interval_s=0.05,
)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def store(tmp_path: Path, clock: FrozenClock) -> Iterator[SQLQueueStore]:
    """A SQLite queue that this process's enqueues go to, stamped by ``clock``."""
    s = SQLQueueStore(open_database(sqlite_url(tmp_path), page_size=4096))
    registry.configure(s, clock=clock)
    yield s
    registry.reset()
    s.close()
