"""Connections and schema for every store signalbox keeps, and the primitives areas build on.

* :mod:`~signalbox.storage.database` -- the connection policy (a connection per thread,
  autocommit reads, transactions, savepoints, lock timeouts) and per-component migrations;
* :mod:`~signalbox.storage.dialect` -- what differs between SQLite and PostgreSQL, asked by
  name (upsert, serial keys, ``SKIP LOCKED``, which error means "no such table");
* :mod:`~signalbox.storage.claim` and :mod:`~signalbox.storage.backoff` -- queue rows claimed
  with a lease and retried with backoff (the notification outbox, the task queue);
* :mod:`~signalbox.storage.lease` -- a named lease with a TTL (leader election);
* :mod:`~signalbox.storage.notify` -- notify/listen, with a polling fallback on SQLite;
* :mod:`~signalbox.storage.ownership` -- whose database it is: signalbox's SQLite files
  carry ``PRAGMA application_id``, another application's database is refused untouched;
* :mod:`~signalbox.storage.integrity` and :mod:`~signalbox.storage.failures` -- a damaged
  database found at open (``quick_check`` where cheap) or at the first error, and a full
  disk, named with what to do.

Area-specific SQL lives in its area; the dialect differences live here and nowhere else.
"""

from signalbox.storage.database import Database, open_database

__all__ = ["Database", "open_database"]
