"""The metric store's own data version on PostgreSQL: a counter its writes bump, which the
query results cache (:mod:`signalbox.server.resultcache`) reads to tell whether an answer it
keeps is still current.

Why not something PostgreSQL already has: the server's snapshot (``pg_current_snapshot()``)
changes with every commit anywhere on the server (other databases and schemas, lease
renewals), so on a shared server the cache was emptied every few milliseconds; the
statistics counters (``pg_stat_user_tables``) are flushed by each backend at most once a
second, after its commit, so a cache keyed by them would serve stale answers meanwhile.

How (table ``metric_data_version``, a counter per PostgreSQL backend; the version is
their sum, which every commit that bumps raises):

* each write transaction of the metric store (a collection pass, a StatsD flush, a monitor
  pass's samples, an import's batch) bumps its backend's row as its last statement, so the
  data and the new version commit together. One row per backend (``pg_backend_pid()``: a
  backend runs one transaction at a time) so that writers never wait for each other's
  commits, as they would on one shared row (a transaction joined by a caller who keeps it
  open would hold every other writer back); a reused pid only bumps an old row again;
* compaction and retention (many transactions, all under ``Database.exclusive("compact")``)
  bump it once they are done, still holding that lock, and :func:`read` answers None (no
  cache) while any session holds that lock: an answer evaluated during a compaction may
  be read under the version it started with only until the bump.

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
    (
        2,
        "the data version counted per backend: writers never wait on one row",
        [
            "DROP TABLE metric_data_version",
            "CREATE TABLE metric_data_version (backend BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
        ],
    ),
]
_NEWEST = MIGRATIONS[-1][0]

_ready: weakref.WeakSet[Database] = weakref.WeakSet()  # migrated by this process already


def ensure(db: Database) -> None:
    """Create the counter if this schema has none yet (PostgreSQL only): when the metric
    store opens, outside any write (a migration inside one would hold its lock, and every
    other writer's first bump, until that write commits)."""
    if db.dialect.name != "postgresql" or db in _ready:
        return
    db.migrate(COMPONENT, MIGRATIONS)
    _ready.add(db)


def bump(db: Database, *, fold: bool = False) -> None:
    """Say the metric data changed: the last statement of a write transaction, or after a
    compaction, under its lock; this backend's row only, so writers never wait for each
    other. The store made sure of the table when it opened (:func:`ensure`). SQLite:
    nothing.

    ``fold`` (compaction's bump): the rows of backends that are gone are folded into this
    one in the same statement, so the table holds about one row per live writer instead of
    one per connection ever made, and the sum -- the version -- still only grows."""
    if db.dialect.name != "postgresql":
        return
    db.execute(_FOLD if fold else _BUMP)


_BUMP = (
    "INSERT INTO metric_data_version (backend, version) VALUES (pg_backend_pid(), 1) "
    "ON CONFLICT (backend) DO UPDATE SET version = metric_data_version.version + 1"
)
_FOLD = (
    "WITH gone AS (DELETE FROM metric_data_version WHERE backend <> pg_backend_pid() "
    "AND backend NOT IN (SELECT pid FROM pg_stat_activity) RETURNING version) "
    "INSERT INTO metric_data_version (backend, version) "
    "SELECT pg_backend_pid(), 1 + coalesce((SELECT sum(version) FROM gone), 0) "
    "ON CONFLICT (backend) DO UPDATE "
    "SET version = metric_data_version.version + EXCLUDED.version"
)


_READ = (
    "SELECT (SELECT coalesce(sum(version), 0)::bigint FROM metric_data_version), "
    "NOT pg_try_advisory_xact_lock_shared(?, hashtext(current_schema() || 'compact'))"
)
"""The sum, and whether a compaction holds its lock (``Database.exclusive``'s key): a shared
lock on that key is refused while it does. Taken at transaction level, so it is let go with
the statement (autocommit) and can never be left held; reading ``pg_locks`` instead (it
copies the server's whole lock table) cost 1.9 times the snapshot read this replaced, this
1.3 times (``bench/cache_version.py``). A compaction whose turn begins in the
microseconds it is held skips that turn, as when another process compacts."""


def read(db: Database) -> int | None:
    """The current version (one round trip, outside a transaction); None while a
    compaction runs (its changes commit before its one bump)."""
    if db.in_transaction:  # the lock would be held to the caller's commit
        return None
    version, compacting = db.query(_READ, (_EXCLUSIVE_LOCK,))[0]
    if compacting:
        return None
    return int(version)
