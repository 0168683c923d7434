"""Processes starting together on one empty store: every component migrated once, by one of
them, and every one of them starts (no duplicate-table error, no version written twice).

The racers are real processes (forked, so they start in milliseconds), released together
by a barrier before they open the store: SQLite's file creation, its WAL switch and its
writer lock, and PostgreSQL's per-schema advisory lock are what is under test.
"""

from __future__ import annotations

import importlib
import multiprocessing
import random
import time
import traceback
from collections.abc import Sequence
from typing import Any

import pytest

from signalbox.storage import Database, open_database
from signalbox.storage.database import Migration
from signalbox.storage.ownership import is_signalbox_table
from tests.storage.helpers import is_pg, started
from tests.stores import pg_schema_url

# every component's migrations, as the stores apply them when they open
COMPONENTS = {
    "metrics": "signalbox.metrics.sql.store",
    "monitors": "signalbox.monitors.state.store",
    "monitor_outbox": "signalbox.monitors.outbox.store",
    "tasks": "signalbox.tasks.sqlstore",
    "auth": "signalbox.server.auth.store",
    "flags": "signalbox.flags.store",
    "storage_events": "signalbox.storage.notify",
    "storage_leases": "signalbox.storage.lease",
}
RACERS = 6


def _migrations(component: str) -> Sequence[Migration]:
    migrations: Sequence[Migration] = importlib.import_module(COMPONENTS[component]).MIGRATIONS
    return migrations


def _newest(component: str) -> int:
    return max(m[0] for m in _migrations(component))


def _racer(url: str, seed: int, barrier: Any, results: Any) -> None:
    """One starting process: open the store and migrate every component, in an order of its
    own (so they collide on different tables), reporting what it saw."""
    try:
        order = list(COMPONENTS)
        random.Random(seed).shuffle(order)
        barrier.wait(30)
        db = open_database(url)
        versions = {c: db.migrate(c, _migrations(c)) for c in order}
        db.close()
        results.put((seed, "ok", versions))
    except BaseException:
        results.put((seed, "error", traceback.format_exc()))


def test_processes_starting_together_on_an_empty_store_all_start(store_url: str) -> None:
    newest = {c: _newest(c) for c in COMPONENTS}  # imported here, not in each racer
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(store_url, i, barrier, results)) for i in range(RACERS)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [detail for _, outcome, detail in got if outcome != "ok"]
    assert not errors, errors[0]
    assert all(versions == newest for _, _, versions in got)
    assert [p.exitcode for p in procs] == [0] * RACERS
    db = open_database(store_url)
    rows = db.query("SELECT component, version FROM schema_version")
    tables = {t for t in db.table_names() if not t.startswith("sqlite_")}
    db.close()
    assert sorted(rows) == sorted(newest.items())  # one row each, the newest version
    assert "flag_state" in tables and "series" in tables and "task_jobs" in tables
    assert all(is_signalbox_table(t) for t in tables), sorted(tables)


_LATER: list[Migration] = [(1, "a component added later", ["CREATE TABLE later_t (k TEXT)"])]


def _blocking(url: str) -> tuple[Database, Any]:
    """Another process's view: a connection of its own inside a migration's transaction
    (SQLite's writer lock, or PostgreSQL's migration lock of the schema), left open."""
    other = open_database(url)
    tx = other.transaction()
    tx.__enter__()
    other.migrate("blocker", [(1, "b", ["CREATE TABLE blocker_t (k TEXT)"])])
    return other, tx


def test_an_up_to_date_component_opens_while_another_process_migrates(store_url: str) -> None:
    """Opening a store reads the versions: it never waits for another writer unless it has
    something to migrate, and then it waits for the other to finish and does its part."""
    db = open_database(store_url)
    flags = _migrations("flags")
    db.migrate("flags", flags)
    other, tx = _blocking(store_url)
    try:
        t0 = time.monotonic()
        assert started(lambda: db.migrate("flags", flags)).outcome(10) == _newest("flags")
        assert time.monotonic() - t0 < 2  # not the 30 s of a writer lock's wait
        later = started(lambda: db.migrate("later", _LATER))
        later.join(0.5)
        assert later.is_alive()  # a real migration waits for the other's transaction
    finally:
        tx.__exit__(None, None, None)
    assert later.outcome(30) == 1
    assert {"later_t", "blocker_t"} <= db.table_names()
    other.close()
    db.close()


@pytest.mark.service("postgresql")
def test_a_migration_in_another_schema_does_not_wait() -> None:
    """PostgreSQL's migration lock is per schema: stores sharing a database (one schema
    each) start independently."""
    with pg_schema_url() as busy_url, pg_schema_url() as free_url:
        other, tx = _blocking(busy_url)
        try:
            db = open_database(free_url)
            assert is_pg(db)
            assert started(lambda: db.migrate("later", _LATER)).outcome(10) == 1
            db.close()
        finally:
            tx.__exit__(None, None, None)
            other.close()
