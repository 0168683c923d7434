"""The metric store's own data version on PostgreSQL: a counter its writes bump, which the
query results cache (:mod:`signalbox.server.resultcache`) reads to tell whether an answer it
keeps is still current.

Why not something PostgreSQL already has: the server's snapshot (``pg_current_snapshot()``)
changes with every commit anywhere on the server (other databases and schemas, lease
renewals), so on a shared server the cache was emptied every few milliseconds; the
statistics counters (``pg_stat_user_tables``) are flushed by each backend at most once a
second, after its commit, so a cache keyed by them would serve stale answers meanwhile.

How (one row per schema, ``metric_data_version``):

* each write transaction of the metric store (a collection pass, a StatsD flush, a monitor
  pass's samples, an import's batch) bumps it as its *last* statement, so the data and the
  new version commit together; the row lock is held from that statement to the commit
  only, so concurrent writers queue for a moment at their commits, not for a whole pass;
* compaction and retention (many transactions, all under ``Database.exclusive("compact")``)
  bump it once they are done, still holding that lock, and :func:`read` answers None (no
  cache) while any session holds or waits for that lock: an answer evaluated during a
  compaction may be read under the version it started with only until the bump.

SQLite needs none of this (``PRAGMA data_version`` is exact per file): :func:`bump` does
nothing there.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from signalbox.storage.database import _EXCLUSIVE_LOCK

if TYPE_CHECKING:
    from signalbox.storage.database import Database, Migration

__all__ = ["COMPONENT", "MIGRATIONS", "bump", "ensure", "read"]

COMPONENT = "metric_data_version"

MIGRATIONS: list[Migration] = [
    (
        1,
        "the metric store's data version (PostgreSQL's results cache)",
        [
            "CREATE TABLE metric_data_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
            "INSERT INTO metric_data_version (id, version) VALUES (1, 0)",
        ],
    ),
]
_NEWEST = MIGRATIONS[-1][0]

_ready: weakref.WeakSet[Database] = weakref.WeakSet()  # their table is committed


def ensure(db: Database) -> None:
    """Create the counter if this schema has none yet (PostgreSQL only). Inside a caller's
    transaction the creation joins it, and counts as done only once seen committed."""
    if db.dialect.name != "postgresql" or db in _ready:
        return
    if db.schema_version(COMPONENT) != _NEWEST:
        db.migrate(COMPONENT, MIGRATIONS)
        if db.in_transaction:  # it may yet roll back with the caller's transaction
            return
    _ready.add(db)


def bump(db: Database) -> None:
    """Say the metric data changed: last statement of a write transaction (its row lock is
    then held only until the commit), or after compaction, under its lock. SQLite: nothing."""
    if db.dialect.name != "postgresql":
        return
    ensure(db)
    db.execute("UPDATE metric_data_version SET version = version + 1 WHERE id = 1")


_READ = (
    "SELECT (SELECT version FROM metric_data_version WHERE id = 1), "
    "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = ?::int4::oid AND objid = hashtext(current_schema() || 'compact')::oid "
    "AND objsubid = 2)"
)


def read(db: Database) -> int | None:
    """The current version (one round trip); None while a compaction runs or is about to
    (its changes commit before its one bump), or when the schema has no counter yet."""
    version, compacting = db.query(_READ, (_EXCLUSIVE_LOCK,))[0]
    if compacting or version is None:
        return None
    return int(version)
