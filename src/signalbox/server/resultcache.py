"""The query API's results cache: an identical query over identical data is answered from
memory, as Thanos' and Cortex's query-frontend results caches answer it.

A dashboard that refreshes every 10 s, or many people watching one Grafana board, ask the
same ``/api/v1/query_range`` again and again (Grafana aligns ``start`` and ``end`` to the
step, so the URLs repeat exactly); each one costs tens of milliseconds of reading and
arithmetic, and a server on one core serves them one after the other. Here the encoded
answer is kept, keyed by

* the endpoint, the query as the parser understood it (its syntax tree, and the tree
  printed back: ``rate(x[5m])`` and ``rate( x [5m] )`` share an entry), ``start``, ``end``
  and ``step`` in milliseconds (``time`` for instant queries);
* the **data version** of the metric store (:class:`DataVersion`), read before the query is
  evaluated. When it differs from the version the entries were made under, every entry is
  dropped (``signalbox_query_cache_invalidations_total``).

Only queries at explicit times are cached (``query_range`` always; ``query`` with
``time=``): a query relative to "now" has a different answer every time it is asked.
Answers with warnings (estimates from rollups) and errors are never cached. The entries are
bounded by their bytes (``[server] query_cache_mb``; 0 turns the cache off) and the least
recently used go first (``signalbox_query_cache_evictions_total``).

**What guarantees an answer is never stale.** The data version changes whenever any
connection other than the cache's own commits to the store, whatever process it belongs to
(``serve``'s collection passes, StatsD flushes, rollups, compaction and retention deletes,
the monitor loop; ``signalbox import``, ``collect --once``, an ``agent``):

* SQLite: ``PRAGMA data_version`` on a connection of the cache's own, which never writes
  (SQLite changes it when another connection, of this process or another, commits to the
  file); a few microseconds, read on the event loop, bounded by a 50 ms busy timeout.
* PostgreSQL: the current snapshot, ``pg_current_snapshot()`` (PostgreSQL 13 or later):
  which transactions are committed as of now, across the whole server. A commit anywhere
  changes it (a committed transaction leaves the in-progress list or raises ``xmax``) and a
  read-only query never does; it is exact, but cluster-wide, so writes to other databases
  of the same server also empty the cache. One round trip, run in a query thread.

A version read before the evaluation and an answer evaluated after it can only be as new
as the version or newer, never older, so an entry made under version *v* is a correct
answer to every request that reads *v*. If the version cannot be read (the database is
unreachable), the request bypasses the cache. Stores without a version (the in-memory
store, in-memory SQLite, whose writes this cache cannot see) get no cache.

Rollup tiers are chosen by the query's age relative to "now" (raw data within raw
retention); an entry made from raw samples stays valid until retention deletes them, which
is a commit, so it is never staler than the data, only possibly more exact than a fresh
evaluation would be.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol

from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.query import parse_expr

if TYPE_CHECKING:
    from signalbox.metrics.store import MetricReader
    from signalbox.storage.database import Database

__all__ = [
    "CACHE_METRICS",
    "DataVersion",
    "PostgresDataVersion",
    "ResultCache",
    "SQLiteDataVersion",
    "data_version",
]

ENTRY_OVERHEAD = 256
"""Bytes counted per entry beside the answer and the query text (the key, the dict slot)."""

TEXTS_KEPT = 4096
"""Query texts remembered with their parsed form (a miss parses; a repeat does not)."""

_SQLITE_BUSY_MS = 50


class DataVersion(Protocol):
    """A value that changes whenever the metric store's data may have changed.

    Attributes:
        blocking: ``read`` waits on the network (run it in a thread, not the event loop).
    """

    blocking: bool

    def read(self) -> Hashable | None:
        """The current version; None when it cannot be told now (use no cache)."""
        ...

    def close(self) -> None: ...


class SQLiteDataVersion:
    """``PRAGMA data_version`` of a connection that only ever reads it.

    SQLite changes the value when *another* connection commits, so the connection here must
    be this object's alone. A new connection starts its own count, so the version carries
    which connection (``epoch``) read it: a reconnect can never repeat an older version.
    """

    blocking = False

    def __init__(self, db: Database) -> None:
        self._connect = db.dedicated_connection
        self._lock = threading.Lock()
        self._conn: Any = None
        self._epoch = 0

    def read(self) -> tuple[int, int] | None:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self._conn.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
                    self._epoch += 1
                return self._epoch, int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except Exception:  # unreadable now (locked, closed): no cache for this request
                self._drop()
                return None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # nothing more to release
                conn.close()


class PostgresDataVersion:
    """PostgreSQL's current snapshot as text (``xmin:xmax:xip,...``), read on the calling
    thread's connection of the store, outside any transaction (a transaction's snapshot
    would be its own, older one)."""

    blocking = True

    def __init__(self, db: Database) -> None:
        self.db = db

    def read(self) -> str | None:
        if self.db.in_transaction:
            return None
        try:
            return str(self.db.query("SELECT pg_current_snapshot()::text")[0][0])
        except Exception:  # unreachable now: no cache for this request
            return None

    def close(self) -> None:
        """Nothing of its own: it reads on the store's connections."""


def data_version(metrics: MetricReader) -> DataVersion | None:
    """The version source for ``metrics``, or None when this cache cannot see its writes
    (the in-memory store, in-memory SQLite)."""
    from signalbox.metrics.sql.store import SQLMetricStore

    if not isinstance(metrics, SQLMetricStore):
        return None
    db = metrics.db
    if db.dialect.name == "postgresql":
        return PostgresDataVersion(db)
    if db.dialect.name == "sqlite" and db.path not in ("", ":memory:"):
        return SQLiteDataVersion(db)
    return None


PREFIX = "signalbox_query_cache_"

CACHE_METRICS: dict[str, MetricMeta] = {
    m.name: m
    for m in (
        MetricMeta(PREFIX + "hits_total", "counter", "Query API answers served from the cache."),
        MetricMeta(
            PREFIX + "misses_total",
            "counter",
            "Cacheable query API requests (explicit times) that were evaluated.",
        ),
        MetricMeta(
            PREFIX + "evictions_total",
            "counter",
            "Cache entries dropped, least recently used first, to stay within query_cache_mb.",
        ),
        MetricMeta(
            PREFIX + "invalidations_total",
            "counter",
            "Cache entries dropped because the store's data changed.",
        ),
        MetricMeta(PREFIX + "bytes", "gauge", "Bytes the cached answers take."),
        MetricMeta(PREFIX + "entries", "gauge", "Answers in the cache."),
    )
}

Key = tuple[Hashable, ...]


class ResultCache:
    """Encoded query answers by (endpoint, query, times) under one data version; LRU by bytes.

    Thread-safe: the event loop looks up, query threads look up and store, the collection
    loop reads the counters (this is a
    :class:`~signalbox.metrics.collect.SampleSource`: ``serve`` stores them every pass).

    Args:
        max_bytes: the answers (and their keys) take at most this much.
        version: the store's data version (see the module docstring).
    """

    def __init__(self, max_bytes: int, version: DataVersion) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.version = version
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        self._bytes = 0
        self._seen: Hashable | None = None  # the version the entries were made under
        self._texts: OrderedDict[str, tuple[str, Hashable]] = OrderedDict()
        self.hits = self.misses = self.evictions = self.invalidations = 0

    # -- keys -------------------------------------------------------------------------
    def known_query(self, text: str) -> tuple[str, Hashable] | None:
        """The parsed form of a query text seen before, without parsing (the event loop
        looks up with it: parsing a long query there would hold up every request)."""
        with self._lock:
            found = self._texts.get(text)
            if found is not None:
                self._texts.move_to_end(text)
            return found

    def parse_query(self, text: str) -> tuple[str, Hashable]:
        """The query as the parser understood it: printed back and as its tree (both in
        the key, so neither a lossy printer nor a tree equality that ignores a detail, such
        as ``0`` against ``-0``, can make two different queries one entry).

        Raises:
            QueryError: ``text`` is not a query (nothing is cached for it).
        """
        found = self.known_query(text)
        if found is not None:
            return found
        tree = parse_expr(text)
        parsed = (str(tree), tree)
        with self._lock:
            self._texts[text] = parsed
            if len(self._texts) > TEXTS_KEPT:
                self._texts.popitem(last=False)
        return parsed

    # -- entries ----------------------------------------------------------------------
    def get(self, key: Key, version: Hashable, *, count_miss: bool = True) -> bytes | None:
        """The answer kept for ``key`` if it was made under ``version``."""
        with self._lock:
            if version != self._seen:
                self._invalidate(version)
            body = self._entries.get(key)
            if body is None:
                if count_miss:
                    self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return body

    def put(self, key: Key, version: Hashable, body: bytes) -> None:
        """Keep ``body`` as the answer for ``key``, evaluated after ``version`` was read.

        Dropped when the data has changed since (another request saw a newer version), or
        when it alone would take more than the whole cache."""
        size = len(body) + sum(len(k) for k in key if isinstance(k, str)) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        with self._lock:
            if version != self._seen:
                return
            old = self._sizes.pop(key, None)
            if old is not None:
                self._bytes -= old
            self._entries[key] = body
            self._entries.move_to_end(key)
            self._sizes[key] = size
            self._bytes += size
            while self._bytes > self.max_bytes:
                gone, _ = self._entries.popitem(last=False)
                self._bytes -= self._sizes.pop(gone)
                self.evictions += 1

    def _invalidate(self, version: Hashable) -> None:
        self.invalidations += len(self._entries)
        self._entries.clear()
        self._sizes.clear()
        self._bytes = 0
        self._seen = version

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- the server's own metrics -----------------------------------------------------
    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        """The counters and sizes as samples stamped ``now_ms`` (a collection pass stores
        them, with the host label, beside ``signalbox_process_*``)."""
        with self._lock:
            values = {
                "hits_total": self.hits,
                "misses_total": self.misses,
                "evictions_total": self.evictions,
                "invalidations_total": self.invalidations,
                "bytes": self._bytes,
                "entries": len(self._entries),
            }
        samples = [Sample(PREFIX + k, (), float(v), now_ms) for k, v in values.items()]
        return samples, list(CACHE_METRICS.values())

    def close(self) -> None:
        """Release the version source's connection (``serve`` calls it when it stops)."""
        self.version.close()
