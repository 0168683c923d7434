"""The partition tables of one SQL metric store: create, list, write, read and drop them.

Layout (see :mod:`signalbox.metrics.partitions` for why partitions):

- ``samples_raw_<start>``: raw samples, one table per span, keyed (ts, series_id).
- ``frames_raw_<start>``: beside it, raw samples of spool files stored as frames (one row per
  file and pass; see :mod:`signalbox.metrics.sql.layouts`), keyed (layout_id, ts). Every
  reader of a raw partition reads both.
- ``buckets_r<res>_<start>``: rollup buckets of series stored as rows (see
  :mod:`signalbox.metrics.sql.rollup`), keyed by (series_id, bucket end), with an index on
  the bucket end so the next tier reads one bucket's rows without scanning the partition.
  Partitions converted from schema 4's ``samples_r<res>_<start>`` are marked ``exact = 0``
  in ``metric_partitions`` (their statistics are estimates).
- ``fbuckets_r<res>_<start>``: beside it, the buckets of series stored as frames, one row
  per layout and bucket (see :mod:`signalbox.metrics.framebuckets`), keyed (layout_id, ts).
  A series' bucket is in one of the two tables, never both.
- ``sbuckets_r<res>_<start>``: the frame buckets of closed units (an hour of 1-minute
  buckets), series-major (see :mod:`signalbox.metrics.sql.sealing`): a unit's frame buckets
  are in this table or the one above, never both.
- ``pbuckets_r<res>_<start>``: the row buckets of closed units, packed: one row per series
  and unit keyed (series_id, ts = unit start), every statistic an array (see
  :mod:`signalbox.metrics.rowsealed`). A series' buckets of a unit are in this table or in
  ``buckets_r``, never both, and every read of row buckets reads both tables in one
  statement (:meth:`PartitionTables.bucket_rows`), so a unit sealed or unsealed meanwhile
  is seen once.
- ``metric_partitions`` lists the partition tables; other processes (the collector of
  ``serve``, an ``agent``) create and drop them, so readers reload the list.
- ``metric_stamps`` lists the timestamps written into each raw partition, so a read of a
  few series can seek by (ts, series) instead of scanning the partition.
"""

from __future__ import annotations

import logging
import operator
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any

from signalbox import limits
from signalbox.exceptions import StoreError
from signalbox.metrics.partitions import RAW, Level
from signalbox.metrics.sql import rawcache
from signalbox.metrics.sql.frames import RawSQL, raw_sql
from signalbox.metrics.sql.layouts import Layouts
from signalbox.storage.database import Database

log = logging.getLogger("signalbox.metrics")

DROP_LOCK_TIMEOUT_S = 10.0
"""How long retention's ``DROP TABLE`` waits for a partition's readers before trying later."""

IN_LIST_MAX = 500  # above this many series, scan the partition and filter in Python
_STAMPS_MAX = 2000  # more distinct timestamps in a partition (an import): range scan instead
_DROP_BATCH = 50  # expired partitions dropped in one transaction
_SERIES_TS = operator.itemgetter(0, 1)
_FIRST = operator.itemgetter(0)
_TS = operator.itemgetter(1)


BUCKET_COLUMNS = (
    "series_id BIGINT NOT NULL, ts BIGINT NOT NULL, count BIGINT NOT NULL, sum DOUBLE PRECISION, "
    "min DOUBLE PRECISION, max DOUBLE PRECISION, first_ts BIGINT NOT NULL, first DOUBLE PRECISION, "
    "last_ts BIGINT NOT NULL, last DOUBLE PRECISION, prev_ts BIGINT, prev DOUBLE PRECISION, "
    "drops DOUBLE PRECISION NOT NULL, resets BIGINT NOT NULL, changes BIGINT NOT NULL, "
    "sx DOUBLE PRECISION NOT NULL, sxx DOUBLE PRECISION NOT NULL, sxy DOUBLE PRECISION, "
    "m2 DOUBLE PRECISION"
)
"""A rollup bucket (see :mod:`signalbox.metrics.sql.rollup`), keyed by (series_id, ts = its end)."""


def frames_table(raw_table: str) -> str:
    return raw_table.replace("samples_", "frames_", 1)


def fbuckets_table(bucket_table: str) -> str:
    """The frame buckets beside a rollup partition's row buckets."""
    return "f" + bucket_table


def packed_table(bucket_table: str) -> str:
    """Closed units of a rollup partition's row buckets, packed one row per series (see
    :mod:`signalbox.metrics.rowsealed`)."""
    return "p" + bucket_table


def sealed_table(bucket_table: str) -> str:
    """Closed units of the frame buckets beside a rollup partition, series-major (see
    :mod:`signalbox.metrics.sealed`)."""
    return "s" + bucket_table


class PartitionTables:
    """Which partition tables exist for each level, and the SQL that touches one of them."""

    def __init__(self, db: Database, levels: tuple[Level, ...], layouts: Layouts) -> None:
        self.db = db
        self.levels = levels
        self.layouts = layouts
        self.sql: RawSQL = raw_sql(db.dialect)
        self.starts: dict[int, set[int]] = defaultdict(set)  # tier -> partition starts
        self.inexact: set[tuple[int, int]] = set()  # (tier, start) converted from schema 4
        self._loaded = False
        self._signature: tuple[Any, ...] = ()
        self._fbuckets: set[str] = set()  # rollup partitions whose frame-bucket table exists

    def load(self, fresh: bool = False) -> None:
        """Know which partition tables exist. Readers ask ``fresh``: another process (the
        collector of ``serve``, an ``agent``) creates and drops partitions all the time."""
        if not fresh and self._loaded:
            return
        # a one-row signature first: the list (hundreds of rows with 5-minute partitions) is
        # read again only when it changed, since each row fetched costs a trip through the
        # GIL, and every query asks
        (sig,) = self.db.query(
            "SELECT count(*), coalesce(sum(start_ms), 0), coalesce(sum(tier), 0) "
            "FROM metric_partitions"
        )
        if self._loaded and sig == self._signature:
            return
        starts: dict[int, set[int]] = defaultdict(set)
        inexact: set[tuple[int, int]] = set()
        for tier, start, exact in self.db.query(
            "SELECT tier, start_ms, exact FROM metric_partitions"
        ):
            starts[tier].add(start)
            if not exact:
                inexact.add((tier, start))
        self.starts = starts
        self.inexact = inexact
        self._signature = sig
        self._loaded = True

    def forget(self) -> None:
        """After a rolled-back transaction: the tables it created are gone."""
        self.starts = defaultdict(set)
        self._fbuckets = set()
        self._loaded = False

    def ensure(self, level: Level, start: int) -> str:
        """The table of ``level``'s partition starting at ``start``, created if missing."""
        table = level.table(start)
        if start in self.starts[level.tier]:
            return table
        # another writer may be creating it right now (two agents' first pass of a day)
        self.db.create_table_if_missing(self._create_sql(level, table))
        if level.tier == RAW:
            self.ensure_frames(table)
        else:
            self.ensure_fbuckets(table)
        self.db.execute(
            self.db.dialect.upsert(
                "metric_partitions", ["tier", "start_ms", "end_ms"], ["tier", "start_ms"]
            ),
            (level.tier, start, start + level.span_ms),
        )
        self.starts[level.tier].add(start)
        return table

    def ensure_raw(self, starts: Iterable[int]) -> None:
        """The raw partitions starting at ``starts``, the missing ones created together.

        PostgreSQL: one statement (and one savepoint) for all their tables, not two each. An
        import of two days writes 576 five-minute partitions, and their DDL one statement at
        a time, each in a savepoint, was most of the import's time (~20 ms a table, ~6 ms in a
        batch). If another writer creates one of them meanwhile, the batch is undone and the
        tables are created one at a time as :meth:`ensure` does. SQLite's DDL is cheap and
        its driver runs one statement a call: one at a time."""
        raw = self.levels[0]
        missing = sorted(set(starts) - self.starts[RAW])
        if len(missing) > 1 and self.db.dialect.name == "postgresql":
            ddl: list[str] = []
            for start in missing:
                table = raw.table(start)
                ddl += [self._create_sql(raw, table), self._frames_sql(table)]
            try:
                with self.db.savepoint():
                    self.db.execute(";\n".join(ddl))
            except Exception as e:
                if not self.db.dialect.is_duplicate_create(e):
                    raise
            else:
                self.db.executemany(
                    self.db.dialect.upsert(
                        "metric_partitions", ["tier", "start_ms", "end_ms"], ["tier", "start_ms"]
                    ),
                    [(RAW, start, start + raw.span_ms) for start in missing],
                )
                self.starts[RAW].update(missing)
                return
        for start in missing:
            self.ensure(raw, start)

    def _create_sql(self, level: Level, table: str) -> str:
        if level.tier == RAW:
            cols = "series_id BIGINT NOT NULL, ts BIGINT NOT NULL, value DOUBLE PRECISION"
        else:
            cols = BUCKET_COLUMNS
        # Raw rows are clustered by (ts, series_id): a pass appends at the end of its
        # partition instead of touching every page of it. Rollups, written once per bucket
        # and read series by series over long windows, are clustered by (series_id, ts).
        key = "ts, series_id" if level.tier == RAW else "series_id, ts"
        return f"CREATE TABLE IF NOT EXISTS {table} ({cols}, PRIMARY KEY ({key})){self.db.dialect.without_rowid}"

    def _frames_sql(self, raw_table: str) -> str:
        # a rowid table: frames are a few KiB each, too big for a clustered (WITHOUT ROWID) key
        return (
            f"CREATE TABLE IF NOT EXISTS {frames_table(raw_table)} (layout_id BIGINT NOT NULL, "
            f"ts BIGINT NOT NULL, vals {self.sql.frame_type} NOT NULL, PRIMARY KEY (layout_id, ts))"
        )

    def ensure_frames(self, raw_table: str) -> None:
        self.db.create_table_if_missing(self._frames_sql(raw_table))

    def ensure_fbuckets(self, table: str) -> None:
        """The frame-bucket table beside rollup partition ``table``, and the indexes on both
        tables' bucket end; all created if missing (partitions of earlier versions have
        none)."""
        if table in self._fbuckets:
            return
        db = self.db
        if db.dialect.name == "postgresql" and self._fbuckets_complete(table):
            self._fbuckets.add(table)
            return
        # a rowid table, as frames: a row is a few KiB to a few hundred KiB, appended in time
        # order, so a minute's rows never touch the pages of earlier minutes
        db.create_table_if_missing(
            f"CREATE TABLE IF NOT EXISTS {fbuckets_table(table)} (layout_id BIGINT NOT NULL, "
            "ts BIGINT NOT NULL, count BIGINT NOT NULL, first_ts BIGINT NOT NULL, "
            "last_ts BIGINT NOT NULL, prev_ts BIGINT, sx DOUBLE PRECISION NOT NULL, "
            f"sxx DOUBLE PRECISION NOT NULL, stats {db.dialect.blob_type} NOT NULL, "
            f"absent {db.dialect.blob_type}, PRIMARY KEY (layout_id, ts))"
        )
        if db.dialect.name == "postgresql":  # uncompressed out of line: substr reads 8 bytes
            db.execute(
                f"ALTER TABLE {fbuckets_table(table)} ALTER COLUMN stats SET STORAGE EXTERNAL"
            )
        # rollups read a bucket's window of the finer tier by ts alone: without these they
        # scan the whole day-long partition (a late 5m bucket at 100k series 186 -> 75 ms)
        db.create_table_if_missing(f"CREATE INDEX IF NOT EXISTS {table}_ts ON {table} (ts)")
        fb = fbuckets_table(table)
        db.create_table_if_missing(f"CREATE INDEX IF NOT EXISTS {fb}_ts ON {fb} (ts)")
        # closed units of the frame buckets, series-major (see signalbox.metrics.sealed)
        sb = sealed_table(table)
        db.create_table_if_missing(
            f"CREATE TABLE IF NOT EXISTS {sb} (layout_id BIGINT NOT NULL, ts BIGINT NOT NULL, "
            f"chunk BIGINT NOT NULL, data {db.dialect.blob_type} NOT NULL, "
            "PRIMARY KEY (layout_id, ts, chunk))"
        )
        if db.dialect.name == "postgresql":
            db.execute(f"ALTER TABLE {sb} ALTER COLUMN data SET STORAGE EXTERNAL")
        db.create_table_if_missing(f"CREATE INDEX IF NOT EXISTS {sb}_ts ON {sb} (ts)")
        # closed units of the row buckets, packed (see signalbox.metrics.rowsealed); a rowid
        # table: in a clustered (WITHOUT ROWID) one, SQLite keeps at most ~4 KB of a row in
        # its page and the rest of a 8.6 KB unit in an overflow page of its own (20 KB a row)
        pb = packed_table(table)
        db.create_table_if_missing(
            f"CREATE TABLE IF NOT EXISTS {pb} (series_id BIGINT NOT NULL, ts BIGINT NOT NULL, "
            f"data {db.dialect.blob_type} NOT NULL, PRIMARY KEY (series_id, ts))"
        )
        if db.dialect.name == "postgresql":  # read whole, often: not compressed
            db.execute(f"ALTER TABLE {pb} ALTER COLUMN data SET STORAGE EXTERNAL")
        db.create_table_if_missing(f"CREATE INDEX IF NOT EXISTS {pb}_ts ON {pb} (ts)")
        self._fbuckets.add(table)

    def _fbuckets_complete(self, table: str) -> bool:
        """PostgreSQL: everything :meth:`ensure_fbuckets` makes beside ``table`` exists
        already, storage settings included (one catalog read). A new process compacts
        every pass (``collect --once``): its DDL, each with a savepoint, was ~25 round
        trips a pass, and each ``ALTER TABLE`` an exclusive lock on a table others read."""
        fb, sb, pb = fbuckets_table(table), sealed_table(table), packed_table(table)
        names = [fb, sb, pb, f"{table}_ts", f"{fb}_ts", f"{sb}_ts", f"{pb}_ts"]
        ((relations, external),) = self.db.query(
            "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = "
            "current_schema()::regnamespace AND relname = ANY(?)), "
            "(SELECT count(*) FROM pg_attribute WHERE attstorage = 'e' AND ("
            "(attrelid = to_regclass(quote_ident(current_schema()) || '.' || ?) AND attname = 'stats') "
            "OR (attrelid = to_regclass(quote_ident(current_schema()) || '.' || ?) AND attname = 'data') "
            "OR (attrelid = to_regclass(quote_ident(current_schema()) || '.' || ?) AND attname = 'data')))",
            (names, fb, sb, pb),
        )
        return bool(relations == len(names) and external == 3)

    def between(self, level: Level, start_ms: int, end_ms: int) -> list[tuple[int, str]]:
        """(start, table) of ``level``'s partitions overlapping ``[start_ms, end_ms]``, oldest first."""
        return [
            (s, level.table(s))
            for s in sorted(self.starts[level.tier])
            if s <= end_ms and s + level.span_ms > start_ms
        ]

    # -- writes ---------------------------------------------------------------------------
    def write_raw(
        self,
        sids: list[int],
        stamps: list[int | None],
        values: list[float | None],
        default_ts_ms: int,
    ) -> None:
        """Upsert raw samples (columns; a None stamp means ``default_ts_ms``) into their
        partitions, noting the timestamps written. Runs inside the caller's transaction."""
        raw = self.levels[0]
        span = raw.span_ms
        # partition start -> columns (series ids, stamps, values)
        by_part: dict[int, tuple[list[int], list[int], list[float | None]]] = {}
        part_stamps: dict[int, set[int]] = {}
        if stamps.count(None) == len(stamps):  # a collection pass: all at the pass time
            start = default_ts_ms - default_ts_ms % span
            by_part[start] = (sids, [default_ts_ms] * len(sids), values)
            part_stamps[start] = {default_ts_ms}
        else:
            for sid, ts, value in zip(sids, stamps, values, strict=True):
                t = default_ts_ms if ts is None else ts
                start = t - t % span
                cols = by_part.get(start)
                if cols is None:
                    cols = by_part[start] = ([], [], [])
                cols[0].append(sid)
                cols[1].append(t)
                cols[2].append(value)
                part_stamps.setdefault(start, set()).add(t)
        stamp_sql = self.db.dialect.upsert("metric_stamps", ["start_ms", "ts"], ["start_ms", "ts"])
        self.ensure_raw(by_part)
        for start in sorted(by_part):
            table = self.ensure(raw, start)
            self.sql.upsert_rows(self.db, table, *by_part[start])
            self.db.executemany(stamp_sql, [(start, ts) for ts in sorted(part_stamps[start])])
        rawcache.bump(self.db, by_part)  # what a process keeps of these partitions is old

    def write_frames(self, frames: list[tuple[int, list[float]]], ts: int) -> int:
        """Upsert frames (layout id, values) at ``ts``; returns the partition's start.
        Runs inside the caller's transaction."""
        raw = self.levels[0]
        start = raw.partition_start(ts)
        table = frames_table(self.ensure(raw, start))
        self.sql.upsert_frames(self.db, table, frames, ts)
        rawcache.bump(self.db, (start,))
        return start

    def drop_expired(self, now_ms: int, *, lock_timeout_s: float = DROP_LOCK_TIMEOUT_S) -> None:
        """Drop whole partitions past their level's retention.

        ``DROP TABLE`` waits for every open reader of the table; bounded by
        ``lock_timeout_s``, a partition still held is left for the next compaction instead of
        stalling collection, which waits on this store's lock meanwhile.
        """
        for lv in self.levels:
            expired = [
                s
                for s in sorted(self.starts[lv.tier])
                if s + lv.span_ms <= now_ms - lv.retention_ms
            ]
            for i in range(0, len(expired), _DROP_BATCH):
                batch = expired[i : i + _DROP_BATCH]
                if len(batch) > 1 and self._drop_batch(lv, batch, lock_timeout_s):
                    self.starts[lv.tier].difference_update(batch)
                    continue
                for start in batch:  # one at a time: stops at a partition still held
                    if not self._drop_one(lv, start, lock_timeout_s):
                        return
                    self.starts[lv.tier].discard(start)
        raw = self.levels[0]
        oldest = (
            min(self.starts[RAW]) if self.starts[RAW] else now_ms - raw.retention_ms - raw.span_ms
        )
        self.layouts.drop_older_than(oldest, self.bucketed_layouts)

    def _drop_one(self, lv: Level, start: int, lock_timeout_s: float) -> bool:
        """Drop one partition; False (logged) if a reader held it past ``lock_timeout_s``."""
        try:
            self._drop(lv, start, lock_timeout_s)
        except StoreError as e:
            cause = e.__cause__
            if cause is None or not self.db.dialect.is_lock_timeout(cause):
                raise
            log.warning("retention: %s; %s is dropped at a later compaction", e, lv.table(start))
            return False
        return True

    def _drop_batch(self, lv: Level, starts: list[int], lock_timeout_s: float) -> bool:
        """Drop ``starts``' partitions in one transaction (PostgreSQL: one ``DROP TABLE`` of
        them all): a compaction after an import of days drops hundreds of 5-minute
        partitions, and a transaction each was ~28 ms a partition. False, nothing dropped,
        if a reader held one past ``lock_timeout_s``: the caller goes one at a time."""
        tables = []
        for start in starts:
            table = lv.table(start)
            if lv.tier == RAW:
                tables += [table, frames_table(table)]
            else:
                tables += [table, fbuckets_table(table), sealed_table(table), packed_table(table)]
        keys = ",".join("?" * len(starts))
        try:
            with self.db.transaction(lock_timeout_s=lock_timeout_s):
                if self.db.dialect.name == "postgresql":
                    self.db.execute(f"DROP TABLE IF EXISTS {', '.join(tables)}")
                else:  # SQLite drops one table a statement
                    for t in tables:
                        self.db.execute(f"DROP TABLE IF EXISTS {t}")
                if lv.tier != RAW:  # packed units gone: their cached decodings too
                    from signalbox.metrics.sql import unitcache

                    unitcache.bump(self.db)
                self.db.execute(
                    f"DELETE FROM metric_partitions WHERE tier = ? AND start_ms IN ({keys})",
                    (lv.tier, *starts),
                )
                if lv.tier == RAW:
                    self.db.execute(f"DELETE FROM metric_stamps WHERE start_ms IN ({keys})", starts)
                    rawcache.forget(self.db, starts)
        except StoreError as e:
            cause = e.__cause__
            if cause is None or not self.db.dialect.is_lock_timeout(cause):
                raise
            return False
        if lv.tier != RAW:
            self._fbuckets.difference_update(lv.table(s) for s in starts)
        return True

    def bucketed_layouts(self) -> set[int]:
        """Layouts some frame bucket still refers to (they outlive their raw frames)."""
        out: set[int] = set()
        for lv in self.levels[1:]:
            for start in self.starts[lv.tier]:
                for t in (fbuckets_table(lv.table(start)), sealed_table(lv.table(start))):
                    out.update(r[0] for r in self.read(f"SELECT DISTINCT layout_id FROM {t}"))
        return out

    def _drop(self, lv: Level, start: int, lock_timeout_s: float) -> None:
        """One partition and its bookkeeping, in one transaction bounded by a lock timeout."""
        with self.db.transaction(lock_timeout_s=lock_timeout_s):
            self.db.execute(f"DROP TABLE IF EXISTS {lv.table(start)}")
            if lv.tier == RAW:
                self.db.execute(f"DROP TABLE IF EXISTS {frames_table(lv.table(start))}")
            else:
                self.db.execute(f"DROP TABLE IF EXISTS {fbuckets_table(lv.table(start))}")
                self.db.execute(f"DROP TABLE IF EXISTS {sealed_table(lv.table(start))}")
                self.db.execute(f"DROP TABLE IF EXISTS {packed_table(lv.table(start))}")
                from signalbox.metrics.sql import unitcache

                unitcache.bump(self.db)  # packed units gone: their cached decodings too
                self._fbuckets.discard(lv.table(start))
            self.db.execute(
                "DELETE FROM metric_partitions WHERE tier = ? AND start_ms = ?",
                (lv.tier, start),
            )
            if lv.tier == RAW:
                self.db.execute("DELETE FROM metric_stamps WHERE start_ms = ?", (start,))
                rawcache.forget(self.db, (start,))

    # -- reads ----------------------------------------------------------------------------
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read of one partition; a table dropped by retention in between reads as empty."""
        rows = self._read_or_none(sql, params)
        return [] if rows is None else rows

    def _read_or_none(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]] | None:
        """The rows, or None if a table was dropped by retention in between. Inside a
        transaction (a rollup) the read runs in a savepoint, so a missing table undoes the
        read only, never the caller's earlier writes; any other error propagates."""
        db = self.db
        try:
            if db.in_transaction:
                with db.savepoint():
                    return db.query(sql, params)
            with query_deadline(db):
                return db.query(sql, params)
        except Exception as e:
            if db.is_undefined_table(e):
                return None
            raise

    def raw_source(self, table: str) -> str:
        """A subquery of every (series_id, ts, value) of a raw partition: rows and frames."""
        frames = self.sql.frame_rows(frames_table(table))
        return f"(SELECT series_id, ts, value FROM {table} UNION ALL {frames})"

    def raw_rows(
        self, start: int, table: str, ids: list[int], start_ms: int, end_ms: int
    ) -> list[tuple[Any, ...]]:
        """(series_id, ts, value) of a raw partition, grouped by series, oldest first.

        A few series: one index seek per (written timestamp, series), using the partition's
        list of timestamps, and the values at their positions in the frames of the layouts
        holding them. Many series or many timestamps (an import): a range scan, and frames
        unpacked in Python.
        """
        if len(ids) <= IN_LIST_MAX:
            rows = self._few_rows(start, table, ids, start_ms, end_ms)
            if rows is not None:
                rows.extend(self._few_frame_values(table, ids, start_ms, end_ms))
                rows.sort(key=_SERIES_TS)
                return rows
        wanted = set(ids)
        rows = self.read(
            f"SELECT series_id, ts, value FROM {table} WHERE ts >= ? AND ts <= ?",
            (start_ms, end_ms),
        )
        rows.extend(self.frame_values(table, wanted, start_ms, end_ms))
        return _by_series(rows, wanted)

    def stamp_count(self, start_ms: int, end_ms: int) -> int:
        """How many timestamps the raw partitions hold in ``[start_ms, end_ms]``: what a
        read of them will cost per series, known before reading."""
        rows = self.db.query(
            "SELECT count(*) FROM metric_stamps WHERE ts >= ? AND ts <= ?", (start_ms, end_ms)
        )
        return int(rows[0][0])

    def _few_rows(
        self, start: int, table: str, ids: list[int], start_ms: int, end_ms: int
    ) -> list[tuple[Any, ...]] | None:
        """Rows of a few series by index seeks; None when a range scan is cheaper.

        The partition's timestamps are joined in SQL, not fetched: every row a driver
        fetches is a round trip through the GIL, which a busy server makes costly."""
        (n,) = self.db.query(
            "SELECT count(*) FROM metric_stamps WHERE start_ms = ? AND ts >= ? AND ts <= ?",
            (start, start_ms, end_ms),
        )[0]
        if not n:
            return []
        if n > _STAMPS_MAX:
            return None
        return self.read(
            f"SELECT series_id, ts, value FROM {table} WHERE ts IN (SELECT ts FROM metric_stamps "
            f"WHERE start_ms = ? AND ts >= ? AND ts <= ?) "
            f"AND series_id IN ({','.join('?' * len(ids))})",
            (start, start_ms, end_ms, *ids),
        )

    def _few_frame_values(
        self, table: str, ids: list[int], start_ms: int, end_ms: int
    ) -> list[tuple[Any, ...]]:
        elem = self.sql.frame_element()
        return self.read(
            f"SELECT ls.series_id, f.ts, {elem} FROM metric_layout_series AS ls "
            f"JOIN {frames_table(table)} AS f ON f.layout_id = ls.layout_id "
            f"WHERE ls.series_id IN ({','.join('?' * len(ids))}) AND f.ts >= ? AND f.ts <= ?",
            (*ids, start_ms, end_ms),
        )

    def frame_values(
        self, table: str, wanted: set[int] | None, start_ms: int, end_ms: int
    ) -> list[tuple[int, int, float]]:
        """(series_id, ts, value) from the frames of a raw partition, unpacked in Python:
        only the frames of layouts holding a wanted series (2,000 self-metrics beside a
        million spool series read no spool frame), all of them when every series is."""
        if wanted is None:
            frames = self.read(
                f"SELECT layout_id, ts, vals FROM {frames_table(table)} WHERE ts >= ? AND ts <= ?",
                (start_ms, end_ms),
            )
            return self._unpack(frames, None, frames_table(table))
        lids = sorted(self.layouts.positions(sorted(wanted)))
        out: list[tuple[int, int, float]] = []
        for i in range(0, len(lids), IN_LIST_MAX):
            chunk = lids[i : i + IN_LIST_MAX]
            frames = self.read(
                f"SELECT layout_id, ts, vals FROM {frames_table(table)} WHERE ts >= ? "
                f"AND ts <= ? AND layout_id IN ({','.join('?' * len(chunk))})",
                (start_ms, end_ms, *chunk),
            )
            out += self._unpack(frames, wanted, frames_table(table))
        return out

    def latest_frame_values(self, table: str) -> list[tuple[int, int, float]]:
        """(series_id, ts, value) of the newest frame of each layout in a raw partition."""
        return self._unpack(
            self.read(self.sql.latest_per_layout(frames_table(table))),
            None,
            frames_table(table),
        )

    def _unpack(
        self, frames: list[tuple[Any, ...]], wanted: set[int] | None, table_of_frames: str
    ) -> list[tuple[int, int, float]]:
        if not frames:
            return []
        series = self.layouts.series_of({f[0] for f in frames})
        decode = self.sql.decode_frame
        out: list[tuple[int, int, float]] = []
        for lid, ts, vals in frames:
            sids = series.get(lid)
            if sids is None:  # deleted with its partition in between: nothing to read
                continue
            values = decode(vals)
            if len(values) != len(sids):
                raise StoreError(
                    f"{table_of_frames}: a frame of layout {lid} has {len(values)} values for {len(sids)} series"
                )
            got = zip(sids, repeat(ts), values)
            out.extend(got if wanted is None else (r for r in got if r[0] in wanted))
        return out

    def one_series_rows(
        self, tables: list[str], cols: str, sid: int, start_ms: int, end_ms: int
    ) -> list[tuple[Any, ...]] | None:
        """Rows (ts, ``cols``...) of one series from several (series_id, ts)-clustered
        partitions, oldest first, in one statement (a statement per partition costs more than its rows); None if
        a partition went away meanwhile (retention), so the caller reads them one by one.
        Packed units (see :meth:`bucket_rows`) are read in the same statement and given as rows."""
        unit = self._unit(tables[0]) if tables else 0
        width = len(cols.split(", "))
        blob = f", CAST(NULL AS {self.db.dialect.blob_type})" if unit else ""
        part = f"SELECT ts, {cols}{blob} FROM {{t}} WHERE series_id = ? AND ts >= ? AND ts <= ?"
        selects = [part.format(t=t) for t in tables]
        params: list[Any] = [sid, start_ms, end_ms] * len(tables)
        if unit:
            nulls = ", NULL" * width
            selects += [
                f"SELECT ts{nulls}, data FROM {packed_table(t)} WHERE series_id = ? AND ts > ? AND ts <= ?"
                for t in tables
            ]
            params += [sid, start_ms - unit, end_ms] * len(tables)
        order = " ORDER BY 1" if unit else ""  # a unit's key (its start) sorts with its buckets
        rows = self._read_or_none(" UNION ALL ".join(selects) + order, params)
        if rows is None:
            return None
        if unit:
            rows = _unpacked(rows, cols, start_ms, end_ms, keyed=False)
        stamps = list(map(_FIRST, rows))
        if not all(map(operator.lt, stamps, stamps[1:])):  # partitions in order, each by key
            rows.sort(key=_FIRST)
        return rows

    def rows_for(
        self, table: str, cols: str, ids: list[int], start_ms: int, end_ms: int
    ) -> list[tuple[Any, ...]]:
        """Rows of a (series_id, ts)-clustered rollup partition, grouped by series, oldest
        first; packed units (see :meth:`bucket_rows`) given as rows in their place."""
        got = self._bucket_rows(
            table, f"series_id, ts, {cols}", ids, start_ms, end_ms, " ORDER BY 1, 2"
        )
        if got is None:
            return []
        return _unpacked(got, cols, start_ms, end_ms, keyed=True)

    def bucket_rows(
        self, table: str, cols: str, ids: Sequence[int], start_ms: int, end_ms: int
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The row buckets of ``ids`` ending in ``[start_ms, end_ms]`` of rollup partition
        ``table``: ``cols`` (``series_id`` first) of the rows, in no order, and (series id,
        unit start, blob) of the packed units holding some of them (the caller cuts them to
        the window). Both in one statement (see :meth:`_bucket_rows`)."""
        got = self._bucket_rows(table, cols, ids, start_ms, end_ms)
        if got is None:
            return [], []
        packed = [(r[0], r[1], r[-1]) for r in got if r[-1] is not None]
        rows = [r[:-1] for r in got if r[-1] is None] if packed else [r[:-1] for r in got]
        return rows, packed

    def _bucket_rows(
        self,
        table: str,
        cols: str,
        ids: Sequence[int],
        start_ms: int,
        end_ms: int,
        order: str = "",
    ) -> list[tuple[Any, ...]] | None:
        """``cols`` (``series_id`` first) of the row buckets of ``ids`` ending in
        ``[start_ms, end_ms]`` and a trailing None, then (series id, unit start, NULLs...,
        blob) of the packed units holding some: one statement, so a unit sealed or unsealed
        meanwhile is seen in one form, never both or neither; None if the partition is gone
        (retention). Many series: the partition's range, the others dropped after
        (:data:`IN_LIST_MAX`)."""
        unit = self._unit(table)
        few = len(ids) <= IN_LIST_MAX
        where = f"series_id IN ({','.join('?' * len(ids))}) AND " if few else ""
        keys: list[Any] = list(ids) if few else []
        blob = f"CAST(NULL AS {self.db.dialect.blob_type})"
        rows_sql = f"SELECT {cols}, {blob} FROM {table} WHERE {where}ts >= ? AND ts <= ?"
        got = None
        if unit:
            nulls = ", NULL" * (len(cols.split(", ")) - 2)
            got = self._read_or_none(
                f"{rows_sql} UNION ALL SELECT series_id, ts{nulls}, data "
                f"FROM {packed_table(table)} WHERE {where}ts > ? AND ts <= ?{order}",
                (*keys, start_ms, end_ms, *keys, start_ms - unit, end_ms),
            )
        if got is None:  # not sealed, or a partition of an earlier version never compacted since
            got = self._read_or_none(rows_sql + order, (*keys, start_ms, end_ms))
            if got is None:
                return None
        return got if few else _wanted(got, ids)

    def _unit(self, table: str) -> int:
        """The sealed unit of the rollup partition ``table`` (``buckets_r<res>_<start>``)."""
        tier = int(table.split("_")[1][1:])
        lv = next((x for x in self.levels if x.tier == tier), None)
        return 0 if lv is None else lv.unit_ms


def _wanted(rows: list[tuple[Any, ...]], ids: Sequence[int]) -> list[tuple[Any, ...]]:
    wanted = set(ids)
    return [r for r in rows if r[0] in wanted]


def _unpacked(
    rows: list[tuple[Any, ...]],
    cols: str,
    start_ms: int,
    end_ms: int,
    *,
    keyed: bool,
) -> list[tuple[Any, ...]]:
    """``rows`` (a trailing column: a packed unit's blob, or None for a row bucket) with the
    trailing column dropped and each packed unit replaced, in its place, by the rows of its
    buckets ending in ``[start_ms, end_ms]``: ``(ts, *cols)``, or ``(series_id, ts, *cols)``
    when ``keyed`` (the rows' series id first), as a bucket table reads them (NULL for no
    ``prev_ts``; NaN stays NaN, as PostgreSQL reads it). Every unit is cut out of one grid
    of them all: a few numpy operations, whatever their number."""
    where = [i for i, r in enumerate(rows) if r[-1] is not None]
    if not where:
        return [r[:-1] for r in rows]
    import numpy as np

    from signalbox.metrics import rowsealed  # numpy: only with packed units

    blobs = [b if type(b := rows[i][-1]) is bytes else bytes(b) for i in where]
    ids, grid = rowsealed.unpack_many([rows[i][0] if keyed else 0 for i in where], blobs)
    ends = rowsealed.column(grid, "ts")
    keep = (ends >= start_ms) & (ends <= end_ms)
    sizes = np.frombuffer(b"".join(b[:8] for b in blobs), dtype="<i8")
    kept = np.add.reduceat(keep.astype(np.int64), np.cumsum(sizes) - sizes).tolist()
    columns: list[Any] = []
    if keyed:
        columns.append(ids[keep].tolist())
    for name in ["ts", *cols.split(", ")]:
        col = rowsealed.column(grid, name)[keep]
        if name == "prev_ts" and (col < 0).any():
            columns.append([None if t < 0 else t for t in col.tolist()])
        else:
            columns.append(col.tolist())
    expanded = list(zip(*columns, strict=True))
    out: list[tuple[Any, ...]] = []
    at = b = 0
    for r in rows:
        if r[-1] is None:
            out.append(r[:-1])
        else:
            n = kept[b]
            out += expanded[at : at + n]
            at += n
            b += 1
    return out


def _by_series(rows: list[tuple[Any, ...]], wanted: set[int]) -> list[tuple[Any, ...]]:
    """The rows of ``wanted`` series, grouped by series, oldest first.

    The same order as ``sorted(key=(series, ts))``, but not one C call over millions of rows:
    that holds the GIL for seconds (``/-/healthy`` and every other query wait meanwhile).
    Grouping is a Python loop, which lets other threads run, and each series' own sort is
    short (its rows arrive mostly in time order).
    """
    groups: dict[int, list[tuple[Any, ...]]] = {}
    for r in rows:
        sid = r[0]
        if sid in wanted:
            g = groups.get(sid)
            if g is None:
                groups[sid] = g = []
            g.append(r)
    out: list[tuple[Any, ...]] = []
    for sid in sorted(groups):
        g = groups[sid]
        g.sort(key=_TS)
        out += g
    return out


@contextmanager
def query_deadline(db: Database) -> Iterator[None]:
    """Stop a partition read when the query it serves is past its deadline
    (:mod:`signalbox.limits`): one scan of a big partition can outlast a timeout that is only
    checked between reads. SQLite: a progress handler; PostgreSQL: ``statement_timeout`` for
    the statement. Free when no query is being limited (collection, rollups, monitors)."""
    budget = limits.current()
    if budget is None:
        yield
        return
    left_ms = max(1, int((budget.deadline - time.monotonic()) * 1000))
    if db.dialect.name == "sqlite":
        conn = db.conn
        conn.set_progress_handler(limits.expired(), 10_000)
        try:
            yield
        except sqlite3.OperationalError as e:
            if str(e) == "interrupted" and budget.expired():
                raise budget.timeout("reading the store") from None
            raise
        finally:
            conn.set_progress_handler(None, 0)
        return
    db.execute(f"SET statement_timeout = {left_ms}")
    try:
        yield
    except Exception as e:
        if getattr(e, "sqlstate", None) == "57014":  # query_canceled: by our statement_timeout
            raise budget.timeout("reading the store") from None
        raise
    finally:
        db.execute("RESET statement_timeout")
