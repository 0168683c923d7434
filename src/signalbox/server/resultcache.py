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
* PostgreSQL: the store's own counter (:mod:`signalbox.metrics.dataversion`), bumped by
  every write transaction of the metric store as its last statement (so it commits with the
  data) and by compaction once done, under its lock; no version (no cache) while a
  compaction holds that lock. Commits elsewhere on the server (other schemas and databases,
  lease renewals, the monitor state) leave it alone: the server's snapshot, used before,
  emptied the cache at every commit anywhere on a shared server. One round trip, run in a
  thread, and shared: requests that arrive while a read runs all take the next read, which
  begins once that one is done (:meth:`ResultCache._shared_read`). A read that began before
  a request arrived is never its version, so the argument below holds as with a read of
  its own, and under load there is about one read per round trip instead of one per
  request.

A version read before the evaluation and an answer evaluated after it can only be as new
as the version or newer, never older, so an entry made under version *v* is a correct
answer to every request that reads *v*. If the version cannot be read (the database is
unreachable), the request bypasses the cache. Stores without a version (the in-memory
store, in-memory SQLite, whose writes this cache cannot see) get no cache.

**Identical misses evaluate once** (single-flight). When the data version changes, every
entry goes at once, and a board watched by many (or ``wrk``'s 32 connections) asks the same
key again within milliseconds: each would wait in the query queue to evaluate the same
query. Instead the first request to miss a key under a version *leads*: it evaluates (in the
query gate, as any query) and the others asking that key under that same version wait for
its answer on the event loop, holding no place in the queue and no thread, each within its
own ``query.timeout`` (counted from its arrival; past it, the queue's timeout error). The
shared answer is correct for them by the argument above: they read the same version as the
leader, before it evaluated or while it did, so no commit they could know of is missing.

* The leader's answer reaches its waiters even when it is not kept (warnings, too large, the
  version moved on during the evaluation: :meth:`ResultCache.put` decides, as before).
* An error is never shared: each waiter then evaluates the query itself, alone (no new
  flight). An error can belong to the leader's circumstances rather than to the query and
  the data (its deadline, earlier than any waiter's; the heavy lane full at that moment; a
  dropped database connection): sharing it would fail requests that would have succeeded,
  and re-evaluating only costs what every request cost before single-flight, through the
  same gate and within each waiter's own budget.
* A leader cancelled before its evaluation produced an answer (its client went and the
  server cancelled it; shutdown) *abandons* the flight: its waiters look again, and one of
  them leads. A leader cancelled while its thread evaluates still shares the answer when the
  thread finishes (a query thread is never abandoned).

Rollup tiers are chosen by the query's age relative to "now" (raw data within raw
retention); an entry made from raw samples stays valid until retention deletes them, which
is a commit, so it is never staler than the data, only possibly more exact than a fresh
evaluation would be.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from signalbox.exceptions import QueryError, QueryLimitError
from signalbox.limits import Budget, QueryLimits
from signalbox.limits import current as current_budget
from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.query import parse_expr
from signalbox.server.encoding import gzip_body

if TYPE_CHECKING:
    from signalbox.metrics.store import MetricReader
    from signalbox.server.querygate import QueryGate
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
    """The store's data version counter (:mod:`signalbox.metrics.dataversion`), read on the
    calling thread's connection of the store, outside any transaction (a transaction would
    read its own, older snapshot). The counter is created here if the store has none yet."""

    blocking = True

    def __init__(self, db: Database) -> None:
        from signalbox.metrics import dataversion

        self.db = db
        self._read = dataversion.read
        dataversion.ensure(db)

    def read(self) -> int | None:
        if self.db.in_transaction:
            return None
        try:
            return self._read(self.db)
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
            PREFIX + "shared_total",
            "counter",
            "Cacheable requests answered by an identical request's evaluation in flight.",
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

T = TypeVar("T")

ANSWERED, FAILED, ABANDONED = "answered", "failed", "abandoned"

IN_FLIGHT_STAGE = "the query queue (waiting for an identical query in flight)"
"""Where a waiter's timeout says it was: like the gate's queue, a wait for its turn."""


class _Flight:
    """One evaluation in flight, which requests asking the same key under the same version
    wait for (on the event loop: only the event loop touches it, apart from ``body``).

    Attributes:
        body: the answer, set by the leader's query thread as soon as it has one (so a
            leader cancelled while its thread finished still shares it).
        outcome: ``ANSWERED``, ``FAILED`` or ``ABANDONED`` once ``done`` is set.
        waiting: requests waiting for it now.
    """

    __slots__ = ("body", "done", "outcome", "waiting")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.body: bytes | None = None
        self.outcome = ""
        self.waiting = 0


class _VersionRead:
    """One read of a blocking data version (:meth:`ResultCache._shared_read`): its place in
    the order reads began, and its value once ``done`` (None: unreadable)."""

    __slots__ = ("done", "seq", "value")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.done = anyio.Event()
        self.value: Hashable | None = None


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
        self._gzipped: dict[Key, bytes] = {}  # an entry's gzip form, once a client asked
        self._sizes: dict[Key, int] = {}
        self._bytes = 0
        self._seen: Hashable | None = None  # the version the entries were made under
        self._texts: OrderedDict[str, tuple[str, Hashable]] = OrderedDict()
        self.hits = self.misses = self.shared = self.evictions = self.invalidations = 0
        # evaluations in flight by (key, version): event-loop state, no lock
        self._flights: dict[tuple[Key, Hashable], _Flight] = {}
        # the PostgreSQL version's reads, shared (_shared_read): event-loop state, no lock
        self._read: _VersionRead | None = None
        self._reads_begun = 0
        self.version_reads = 0
        """Reads of a blocking version source made so far (shared by the requests)."""
        # threads that read the version and parse a new query text, per gate (per server
        # and event loop): bounded like the gate's, and never the pool /-/ready uses
        self._readers: weakref.WeakKeyDictionary[QueryGate, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

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
                self._gzipped.pop(key, None)
            self._entries[key] = body
            self._entries.move_to_end(key)
            self._sizes[key] = size
            self._bytes += size
            self._evict()

    def put_gzipped(self, key: Key, version: Hashable, body: bytes, gzipped: bytes) -> None:
        """Keep ``gzipped``, the gzip form of ``body``, beside the entry for ``key`` if
        that entry is still ``body`` under ``version`` (counted in its bytes)."""
        with self._lock:
            if version != self._seen or self._entries.get(key) is not body:
                return
            if key in self._gzipped:
                return
            self._gzipped[key] = gzipped
            self._sizes[key] += len(gzipped)
            self._bytes += len(gzipped)
            self._evict()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes:
            gone, _ = self._entries.popitem(last=False)
            self._gzipped.pop(gone, None)
            self._bytes -= self._sizes.pop(gone)
            self.evictions += 1

    # -- answering: a hit, a share of the evaluation in flight, or an evaluation ---------
    async def answer(
        self,
        gate: QueryGate,
        text: str,
        key_of: Callable[[tuple[str, Hashable]], Key],
        evaluate: Callable[[], tuple[bytes, bool]],
    ) -> bytes:
        """The encoded answer to a cacheable request, plain: :meth:`respond`'s body."""
        return (await self.respond(gate, text, key_of, evaluate))[0]

    async def respond(
        self,
        gate: QueryGate,
        text: str,
        key_of: Callable[[tuple[str, Hashable]], Key],
        evaluate: Callable[[], tuple[bytes, bool]],
        *,
        gzip: bool = False,
    ) -> tuple[bytes, bool]:
        """The encoded answer to a cacheable request (on the event loop): kept, shared from
        an identical request's evaluation in flight, or evaluated through ``gate``; and
        whether it is gzipped (when ``gzip``, the client accepts it, and the answer is
        long enough: :mod:`signalbox.server.encoding`). A kept answer's gzip form is made
        once, in a thread, and kept beside it; a fresh answer's in its query thread.

        Args:
            gate: the server's query gate (the evaluation's queue, thread and budget).
            text: the query as sent.
            key_of: the entry's key from the parsed query (see :meth:`parse_query`).
            evaluate: the answer encoded and whether it may be kept (runs in a query thread).

        Raises:
            QueryLimitError: the request's ``query.timeout`` ran out, counted from now,
                waiting included; or whatever ``evaluate`` raises (errors are not shared).
        """
        deadline = time.monotonic() + gate.limits.timeout_s
        parsed = self.known_query(text)
        if not self.version.blocking:
            version = self.version.read()  # SQLite: microseconds, as a lookup always did
            if parsed is None:
                parsed = await anyio.to_thread.run_sync(
                    self._parse_or_none, text, limiter=self._reader(gate)
                )
        else:  # PostgreSQL: a read begun after this request arrived, shared (see _shared_read)
            version = await self._shared_read(gate)
            if parsed is None and version is not None:
                parsed = await anyio.to_thread.run_sync(
                    self._parse_or_none, text, limiter=self._reader(gate)
                )
        if version is None or parsed is None:  # no version now, or no query: no cache

            def uncached() -> tuple[bytes, bool]:  # in the query thread
                body = evaluate()[0]
                packed = gzip_body(body) if gzip else None
                return (body, False) if packed is None else (packed, True)

            return await _run_by(gate, deadline, uncached)
        key = key_of(parsed)
        alone = False
        while True:
            body = self.get(key, version, count_miss=False)
            if body is not None:
                return await self._hit(gate, key, version, body, gzip)
            flight = None if alone else self._flights.get((key, version))
            if flight is None:
                return await self._evaluate(
                    gate, deadline, key, version, evaluate, lead=not alone, gzip=gzip
                )
            flight.waiting += 1
            try:
                with anyio.move_on_after(deadline - time.monotonic()):
                    await flight.done.wait()
            finally:
                flight.waiting -= 1
            if not flight.done.is_set():
                raise _timeout(gate.limits, deadline, IN_FLIGHT_STAGE)
            if flight.outcome == ANSWERED and flight.body is not None:
                with self._lock:
                    self.shared += 1
                    packed = self._gzipped.get(key) if gzip else None
                return (flight.body, False) if packed is None else (packed, True)
            # failed: evaluate alone (errors are not shared); abandoned: look again
            alone = flight.outcome == FAILED

    async def _evaluate(
        self,
        gate: QueryGate,
        deadline: float,
        key: Key,
        version: Hashable,
        evaluate: Callable[[], tuple[bytes, bool]],
        *,
        lead: bool,
        gzip: bool = False,
    ) -> tuple[bytes, bool]:
        """Evaluate in a query thread and keep the answer when it may be kept; when
        ``lead``, as the flight the requests asking the same key and version wait for."""
        flight = _Flight() if lead else None
        if flight is not None:
            self._flights[key, version] = flight

        def run() -> tuple[bytes, bool]:  # in the query thread
            with self._lock:
                self.misses += 1
            body, keep = evaluate()
            if keep:
                self.put(key, version, body)
            if flight is not None:
                flight.body = body  # the waiters may go now: the gzip below is this one's
            packed = gzip_body(body) if gzip else None
            if packed is None:
                return body, False
            if keep:
                self.put_gzipped(key, version, body, packed)
            return packed, True

        failed = False
        try:
            return await _run_by(gate, deadline, run)
        except Exception:
            failed = True
            raise
        finally:  # no await here: a cancellation cannot leave the waiters waiting
            if flight is not None:
                if self._flights.get((key, version)) is flight:
                    del self._flights[key, version]
                if flight.body is not None:
                    flight.outcome = ANSWERED
                else:
                    flight.outcome = FAILED if failed else ABANDONED
                flight.done.set()

    async def _hit(
        self, gate: QueryGate, key: Key, version: Hashable, body: bytes, gzip: bool
    ) -> tuple[bytes, bool]:
        """A kept answer, in gzip form when asked and worth it: made at the first hit that
        asks (in a thread: ~800 kB take milliseconds), then kept beside the answer."""
        if not gzip:
            return body, False
        with self._lock:
            packed = self._gzipped.get(key)
        if packed is None:
            packed = await anyio.to_thread.run_sync(gzip_body, body, limiter=self._reader(gate))
            if packed is None:
                return body, False
            self.put_gzipped(key, version, body, packed)
        return packed, True

    def _parse_or_none(self, text: str) -> tuple[str, Hashable] | None:
        """The parsed query (None: not a query; the evaluation says why, in the API's
        error shape). In a thread: a long text must not hold up the event loop."""
        try:
            return self.parse_query(text)
        except QueryError:
            return None

    async def _shared_read(self, gate: QueryGate) -> Hashable | None:
        """The data version from a read that *began after this call did*, shared by every
        request that arrived before that read began (on the event loop).

        A read of the PostgreSQL version is a round trip in a thread; under load (a board
        watched by many, ``wrk``'s 32 connections) each cache hit made one. Here at most
        one read runs at a time: a request arriving while one runs waits for it to end and
        then for the next, which begins once the running one is done and answers every
        request that arrived meanwhile. A read that began before a request arrived is
        never its answer: it may predate a commit the request's client knows of (it
        wrote, then asked). So each answer still reflects every commit made before its
        request arrived -- the guarantee of a read per request -- and a hit waits at most
        about two reads instead of a thread of its own. A read that fails, or whose
        reader is cancelled, answers None (no cache) to those sharing it."""
        arrived = self._reads_begun
        while True:
            read = self._read
            if read is not None and read.seq > arrived:  # begun after this request arrived
                await read.done.wait()
                return read.value
            if read is not None and not read.done.is_set():  # begun before: wait it out
                await read.done.wait()
                continue
            self._reads_begun += 1
            read = self._read = _VersionRead(self._reads_begun)
            try:
                read.value = await anyio.to_thread.run_sync(
                    self.version.read, limiter=self._reader(gate)
                )
            except Exception:  # unreadable now (sources say None; this one raised)
                read.value = None
            finally:  # no await here: a cancellation cannot leave the others waiting
                with self._lock:
                    self.version_reads += 1
                read.done.set()
            return read.value

    def _reader(self, gate: QueryGate) -> anyio.CapacityLimiter:
        found = self._readers.get(gate)
        if found is None:
            found = self._readers[gate] = anyio.CapacityLimiter(gate.limits.max_concurrency)
        return found

    @property
    def waiting(self) -> int:
        """Requests waiting now for an identical request's evaluation (from another thread,
        a snapshot: the values are copied at once, as the event loop may add one)."""
        return sum(f.waiting for f in list(self._flights.values()))

    def in_flight(self) -> int:
        """Evaluations in flight that others may wait for."""
        return len(self._flights)

    def _invalidate(self, version: Hashable) -> None:
        self.invalidations += len(self._entries)
        self._entries.clear()
        self._gzipped.clear()
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
                "shared_total": self.shared,
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


async def _run_by(gate: QueryGate, deadline: float, fn: Callable[[], T]) -> T:
    """``fn()`` through ``gate`` by ``deadline``: the request's own budget, which began when
    it arrived, not when it reached the gate (time spent waiting for a flight counts).

    The gate gives every query a fresh budget; here its deadline is moved up to the
    request's, both for the turn in the queue and for the evaluation in the thread."""

    def bounded() -> T:  # in the query thread, under the gate's budget
        budget = current_budget()
        if budget is not None and budget.deadline > deadline:
            budget.deadline = deadline
            budget.check_deadline("the query queue")
        return fn()

    with anyio.move_on_after(deadline - time.monotonic()):
        return await gate.run(bounded)
    raise _timeout(gate.limits, deadline, "the query queue")


def _timeout(limits: QueryLimits, deadline: float, stage: str) -> QueryLimitError:
    """The timeout error the gate gives (503, ``timeout``), for a request due at ``deadline``."""
    return Budget(limits, started=deadline - limits.timeout_s).timeout(stage)
