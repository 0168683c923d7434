"""Opening a PostgreSQL schema while another process runs its first migrations.

The ownership check at open (:func:`signalbox.storage.ownership.check_postgresql`) refuses a
schema with tables named like signalbox's but no ``schema_version``. Another process's first
migration commits both together, but two reads outside a transaction each see the commits
made before them: read before that commit and the table list after it, and the schema looked
foreign (two ``serve`` started together, one refused). These tests set each interleaving up
with two connections, as two processes would have them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from signalbox.exceptions import StoreError
from signalbox.metrics.sql.store import MIGRATIONS as METRICS
from signalbox.storage import Database, open_database, ownership
from tests.storage.helpers import started
from tests.stores import pg_schema_url

pytestmark = pytest.mark.service("postgresql")


@pytest.fixture
def migrating() -> Iterator[tuple[str, Database, Any]]:
    """A new schema's URL, and another process's connection inside the transaction of the
    schema's first migration (the metrics tables, not committed yet), with that transaction."""
    with pg_schema_url() as url:
        other = open_database(url)
        tx = other.transaction()
        tx.__enter__()
        other.migrate("metrics", METRICS)
        try:
            yield url, other, tx
        finally:
            tx.__exit__(None, None, None)  # a no-op once the test has committed it
            other.close()


def test_a_migration_committed_between_the_checks_two_reads_is_seen_whole(
    migrating: tuple[str, Database, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other process commits right after the check's first look found no schema_version:
    the check looks again, under the migration lock, and sees signalbox's schema."""
    url, _, tx = migrating
    first_look = ownership._schema_version_columns
    looks: list[set[str]] = []

    def look_then_other_commits(db: Database) -> set[str]:
        columns = first_look(db)
        looks.append(columns)
        if len(looks) == 1:
            tx.__exit__(None, None, None)  # the other's commit lands now
        return columns

    monkeypatch.setattr(ownership, "_schema_version_columns", look_then_other_commits)
    db = open_database(url)  # was: ForeignDatabaseError "tables named like signalbox's"
    try:
        assert looks[0] == set()  # the migration was not committed at the first look
        assert {"component", "version"} <= looks[-1]
        assert db.schema_version("metrics") == max(m[0] for m in METRICS)
    finally:
        db.close()


def test_opening_waits_for_a_first_migration_in_progress(
    migrating: tuple[str, Database, Any],
) -> None:
    url, _, tx = migrating
    opening = started(lambda: open_database(url))
    opening.join(0.5)
    assert opening.is_alive()  # waiting on the migration lock, not judging half a schema
    tx.__exit__(None, None, None)
    db: Database = opening.outcome(10)
    assert db.schema_version("metrics") == max(m[0] for m in METRICS)
    db.close()


def test_a_migration_that_never_ends_is_named_after_the_wait(
    migrating: tuple[str, Database, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, _ = migrating
    monkeypatch.setattr(ownership, "MIGRATION_WAIT_S", 0.3)
    with pytest.raises(StoreError, match="another process has been migrating this schema"):
        open_database(url)


def test_openers_do_not_wait_for_each_other() -> None:
    """The check holds the lock shared: stores opened together on a new schema (nothing
    migrating) all open, each while the others hold it."""
    with pg_schema_url() as url:
        held = open_database(url)
        with held.transaction():
            held.lock_migrations(shared=True)  # as an opener's check holds it
            db = started(lambda: open_database(url)).outcome(5)
            db.close()
        held.close()
