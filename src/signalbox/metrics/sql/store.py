"""The metric store on SQL: SQLite by default, PostgreSQL through the same code.

The store writes batches, answers selections and runs compaction; the parts it is built on
live in their own modules:

- :mod:`signalbox.metrics.sql.series`: the ``series`` table (id, metric name, canonical label
  text from :mod:`signalbox.metrics.labelcodec`) and its caches for readers and writers.
- :mod:`signalbox.metrics.sql.partitions`: the sample tables, one per level and time span
  (see :mod:`signalbox.metrics.partitions` for why partitions), and the SQL that reads and
  writes one of them.
- :mod:`signalbox.metrics.sql.rollup`: rollup tiers built in SQL from the level below, and
  the per-tier watermark that tells readers where buckets end and raw samples take over.
- :mod:`signalbox.metrics.sql.stale`: stale markers (series that stopped being reported).
"""

from __future__ import annotations

import logging
import math
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import groupby, islice
from typing import Any

from signalbox import limits
from signalbox.clock import Clock, SystemClock
from signalbox.durations import Tier
from signalbox.exceptions import StoreError
from signalbox.metrics import dataversion
from signalbox.metrics.labelcodec import encode_labels
from signalbox.metrics.partitions import RAW, Level, levels
from signalbox.metrics.samples import (
    Labels,
    Matcher,
    MetricMeta,
    Sample,
    SeriesKey,
    merge_labels,
)
from signalbox.metrics.sql import framereads, rawcache, sealing
from signalbox.metrics.sql import layouts as sqllayouts
from signalbox.metrics.sql import legacy as sqllegacy
from signalbox.metrics.sql import meta as sqlmeta
from signalbox.metrics.sql import rollup as sqlrollup
from signalbox.metrics.sql import stale as sqlstale
from signalbox.metrics.sql.layouts import Layouts
from signalbox.metrics.sql.partitions import IN_LIST_MAX, PartitionTables
from signalbox.metrics.sql.series import SERIES_KEY_INDEX, SeriesIndex, WriteKeys
from signalbox.metrics.store import (
    BucketSeriesColumns,
    DuplicateSeries,
    Ended,
    Frame,
    LatestColumns,
    NewLayout,
    RawSeriesColumns,
    SeriesPoints,
    SpoolFileState,
    WriteResult,
    inline_columns,
)
from signalbox.storage.database import Database, Migration

MIGRATIONS: list[Migration] = [
    (
        1,
        "series, metadata, partitions and rollup watermarks",
        [
            "CREATE TABLE series (id {pk}, name TEXT NOT NULL, labels TEXT NOT NULL, created_ms BIGINT NOT NULL)",
            SERIES_KEY_INDEX,
            "CREATE TABLE metric_meta (name TEXT PRIMARY KEY, type TEXT NOT NULL, help TEXT NOT NULL, unit TEXT NOT NULL)",
            "CREATE TABLE metric_partitions (tier INTEGER NOT NULL, start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL, PRIMARY KEY (tier, start_ms))",
            "CREATE TABLE metric_rollups (tier INTEGER PRIMARY KEY, watermark_ms BIGINT NOT NULL)",
        ],
    ),
    (
        2,
        "a snapshot of the series-id map, so a short-lived writer loads it in one read",
        [
            "CREATE TABLE series_ids_snapshot (id INTEGER PRIMARY KEY, max_id BIGINT NOT NULL, data {blob} NOT NULL)"
        ],
    ),
    (
        3,
        "the timestamps written into each raw partition, so reads can seek by (ts, series)",
        [
            "CREATE TABLE metric_stamps (start_ms BIGINT NOT NULL, ts BIGINT NOT NULL, PRIMARY KEY (start_ms, ts))"
        ],
    ),
    *sqllayouts.MIGRATIONS,
    sqllegacy.MIGRATION,
    sqlstale.MIGRATION,
    sealing.MIGRATION,
    rawcache.MIGRATION,
]
log = logging.getLogger("signalbox.metrics.sql.store")

_FRAMES_SINCE = sqllayouts.MIGRATIONS[0][0]  # the version that put frames beside raw partitions
_BUCKETS_SINCE = sqllegacy.MIGRATION[0]  # the version of exact rollup buckets

_NAME, _LABELS, _VALUE, _TS = (operator.itemgetter(i) for i in range(4))
_META_LOOKUP_MAX = 2000  # metadata records a write compares by name instead of loading all
_META_BULK_MIN = 50_000  # records a write upserts in bulk, unread (see metrics.sql.meta)
_SERIES_ID = operator.itemgetter(0)


def _repeats(
    covered: set[int],
    sids: Sequence[int],
    rows: list[int],
    fresh: list[tuple[NewLayout, Sequence[int]]],
) -> bool:
    """Does a series of the rows or new layouts of a write repeat, or one of the frames'
    (``covered``)? Sorted, not a set: a million ids would cost ~40 MB as a set."""
    others = [sids[i] for i in rows]
    for _, ids in fresh:
        others.extend(ids)
    others.sort()
    return any(map(operator.eq, others, islice(others, 1, None))) or not covered.isdisjoint(others)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


# the per-bucket lists besides timestamps, values and first_ts (see SeriesPoints), and the
# column of a bucket row each is read from
_COLUMN_OF = {
    "counts": "count", "sums": "sum", "mins": "min", "maxs": "max", "firsts": "first",
    "prev_ts": "prev_ts", "prevs": "prev", "drops": "drops", "resets": "resets",
    "changes": "changes", "sx": "sx", "sxx": "sxx", "sxy": "sxy", "m2": "m2",
}  # fmt: skip
_STATS = tuple(_COLUMN_OF)
_BUCKET_READ_LAST = "last_ts, last, first_ts"
_INTS = frozenset({"counts", "resets", "changes"})


def _stats(aggregates: bool | frozenset[str]) -> tuple[str, ...]:
    """The statistics a select reads, in ``_STATS`` order."""
    if aggregates is True:
        return _STATS
    if aggregates is False:
        return ()
    unknown = aggregates.difference(_COLUMN_OF)
    if unknown:
        raise StoreError(f"unknown bucket statistics asked for: {sorted(unknown)}")
    return tuple(c for c in _STATS if c in aggregates)


def _append_buckets(
    sp: SeriesPoints, stats: tuple[str, ...], columns: list[tuple[Any, ...]]
) -> None:
    """Rollup rows, column-wise: ``_BUCKET_READ_LAST`` then ``stats``, without the key."""
    assert sp.first_ts is not None
    sp.timestamps.extend(columns[0])
    sp.values.extend(_nums(columns[1]))
    sp.first_ts.extend(columns[2])
    for name, col in zip(stats, columns[3:], strict=True):
        target: list[Any] = getattr(sp, name)
        if name == "prev_ts":
            target.extend(0 if t is None else t for t in col)
        elif name in _INTS:
            target.extend(map(int, col))
        else:
            target.extend(_nums(col))


def _append_samples(sp: SeriesPoints, stamps: Sequence[int], values: Sequence[Any]) -> None:
    """Raw samples after a tier's buckets, each a bucket of one sample (only the statistics
    this read asked for)."""
    assert sp.first_ts is not None
    vs = _nums(values)
    sp.timestamps.extend(stamps)
    sp.values.extend(vs)
    sp.first_ts.extend(stamps)
    n = len(vs)
    zero_or_nan = [0.0 * v for v in vs]  # a NaN sample's m2 and sxy are NaN
    one_sample = {
        "counts": [1] * n, "sums": vs, "mins": vs, "maxs": vs, "firsts": vs,
        "prev_ts": [0] * n, "prevs": [math.nan] * n, "drops": [0.0] * n, "resets": [0] * n,
        "changes": [0] * n, "sx": [0.0] * n, "sxx": [0.0] * n, "sxy": zero_or_nan,
        "m2": zero_or_nan,
    }  # fmt: skip
    for name, col in one_sample.items():
        target = getattr(sp, name)
        if target is not None:
            target.extend(col)


def _in_time_order(sp: SeriesPoints) -> None:
    """Sort a series' points by time, every per-point list alike, if they are not (buckets of
    one series read from rows and from frames, or from two layouts of a file that changed
    shape)."""
    ts = sp.timestamps
    if all(map(operator.lt, ts, islice(ts, 1, None))):
        return
    order = sorted(range(len(ts)), key=ts.__getitem__)
    for name in sp.columns():
        col = getattr(sp, name)
        setattr(sp, name, [col[i] for i in order])


def _nums(vs: Sequence[Any]) -> list[float]:
    """NULL (how SQLite stores NaN) back to NaN, column-wise."""
    if None in vs:
        return [math.nan if v is None else float(v) for v in vs]
    return list(map(float, vs))


class SQLMetricStore:
    """:class:`~signalbox.metrics.store.MetricStore` over a :class:`Database`."""

    def __init__(
        self,
        db: Database,
        *,
        raw_retention_s: int = 86400,
        tiers: tuple[Tier, ...] = (
            Tier(60, 8 * 86400),
            Tier(300, 35 * 86400),
            Tier(3600, 400 * 86400),
        ),
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.clock = clock or SystemClock()
        self.levels = levels(raw_retention_s, tiers)
        before = db.schema_version("metrics")
        if before != MIGRATIONS[-1][0]:
            db.migrate("metrics", MIGRATIONS)
        dataversion.ensure(db)  # the results cache's counter, before any write needs it
        self._lock = threading.RLock()
        self._series = SeriesIndex(db)
        self._layouts = Layouts(db)
        self._partitions = PartitionTables(db, self.levels, self._layouts)
        if 0 < before < _FRAMES_SINCE:  # raw partitions of an older schema get their frames table
            self._partitions.load()
            with db.transaction():
                for start in self._partitions.starts[RAW]:
                    self._partitions.ensure_frames(self.levels[0].table(start))
        if 0 < before < _BUCKETS_SINCE:
            self._partitions.load(fresh=True)
            sqllegacy.convert(self._partitions, int(self.clock.now() * 1000))
        self._meta: dict[str, MetricMeta] | None = None

    # -- writes ---------------------------------------------------------------------------
    def write(
        self,
        samples: Sequence[Sample],
        default_ts_ms: int,
        *,
        add_labels: Labels = (),
        frames: Sequence[Frame] = (),
        layouts: Sequence[NewLayout] = (),
        ended: Ended | None = None,
        spool_files: Mapping[str, SpoolFileState | None] | None = None,
    ) -> WriteResult:
        """Store a batch in one transaction: series ids from memory, rows by ``executemany``,
        frames one row per spool file, stale markers of the ``ended`` series.

        The per-sample work is done column-wise with ``map``/``zip`` (in C): this is the hot
        path of every collection pass.
        """
        with self._lock, self._writing():
            self._partitions.load(fresh=True)
            if any(nl.columns is not None for nl in layouts):
                samples, layouts = self._columns_to_keep(samples, layouts, add_labels)
            names = list(map(_NAME, samples))
            label_sets = list(map(_LABELS, samples))
            columns = [nl.columns for nl in layouts if nl.columns is not None]
            keys = WriteKeys(names, label_sets, add_labels, columns)
            sids, created = self._series.ids_for(keys, self.clock)
            written = len(keys)
            if frames or layouts:
                rows = self._write_frames(samples, sids, default_ts_ms, add_labels, frames, layouts)
                written += sum(len(f.values) for f in frames)
            else:
                rows = list(range(len(samples)))
            if rows:
                picked = samples if len(rows) == len(samples) else [samples[i] for i in rows]
                values = [v if v == v else None for v in map(_VALUE, picked)]  # NaN -> NULL
                row_sids = (
                    list(sids[: len(samples)])
                    if len(rows) == len(samples)
                    else [sids[i] for i in rows]
                )
                self._partitions.write_raw(row_sids, list(map(_TS, picked)), values, default_ts_ms)
            if ended is not None and (ended.layouts or ended.series):
                self._end(ended, sids, frames, add_labels, default_ts_ms)
            if spool_files:
                sqlstale.save_spool_files(self.db, encode_labels(add_labels), spool_files)
            return WriteResult(written=written, new_series=created)

    def _columns_to_keep(
        self, samples: Sequence[Sample], layouts: Sequence[NewLayout], add_labels: Labels
    ) -> tuple[Sequence[Sample], Sequence[NewLayout]]:
        """The write as given, unless a columnar new layout is one the store has, or the
        write names its shape twice (two files of one shape: the same series twice, which
        the checks of :meth:`_write_frames` find among samples): then every columnar
        layout's series go in as samples (:func:`inline_columns`), as before columns."""
        store = self._layouts
        store.load()
        extra = encode_labels(add_labels)
        digests = [nl.layout for nl in layouts]
        if len(set(digests)) == len(digests) and not any(
            store.has(nl.layout, extra) for nl in layouts if nl.columns is not None
        ):
            return samples, layouts
        return inline_columns(samples, layouts)

    def _end(
        self,
        ended: Ended,
        sids: Sequence[int],
        frames: Sequence[Frame],
        add_labels: Labels,
        ts: int,
    ) -> None:
        """Markers for the ended series this write does not store; inside its transaction."""
        extra = encode_labels(add_labels)
        store = self._layouts
        store.load()
        gone: set[int] = set()
        lids = [store.resolve(d, extra) for d in set(ended.layouts) if store.has(d, extra)]
        for ids in store.series_of(lids).values():
            gone.update(ids)
        if ended.series:
            pairs = {
                (name, encode_labels(merge_labels(labels, add_labels)))
                for name, labels in ended.series
            }
            gone.update(sqlstale.series_ids(self.db, sorted(pairs)))
        if not gone:
            return
        gone.difference_update(sids)
        written = store.series_of(store.resolve(f.layout, extra) for f in frames)
        for ids in written.values():
            gone.difference_update(ids)
        sqlstale.record(self.db, gone, ts)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction; the caches in memory keep what it taught them only if it
        commits. After a rollback they hold nothing it wrote: its series ids, layouts and
        partitions do not exist (and SQLite gives those ids out again). Joined to a caller's
        transaction, whose outcome is not known here, they keep nothing of it either."""
        joined = self.db.in_transaction
        try:
            with self.db.transaction():
                yield
                dataversion.bump(self.db)  # last: the results cache's version commits with it
        except BaseException:
            self._forget_uncommitted()
            raise
        if joined:
            self._forget_uncommitted()
        else:
            self._series.commit()

    def _forget_uncommitted(self) -> None:
        self._series.rollback()
        self._layouts.forget()
        self._partitions.forget()

    def _write_frames(
        self,
        samples: Sequence[Sample],
        sids: Sequence[int],
        ts: int,
        add_labels: Labels,
        frames: Sequence[Frame],
        layouts: Sequence[NewLayout],
    ) -> list[int]:
        """Write ``frames`` and the samples of new ``layouts`` as frames; return the indexes
        of the samples left to write as rows. Inside the write transaction."""
        extra = encode_labels(add_labels)
        store = self._layouts
        store.load()
        known = [store.resolve(f.layout, extra) for f in frames]
        series = store.series_of(known)
        in_layout = bytearray(len(samples))
        fresh: list[tuple[NewLayout, Sequence[int]]] = []
        at = len(samples)  # the columnar layouts' ids follow the samples'
        for nl in layouts:
            if nl.columns is not None:  # checked by _columns_to_keep: new, and once
                fresh.append((nl, sids[at : at + nl.size]))
                at += nl.size
                continue
            part = samples[nl.start : nl.start + nl.length]
            stamped = list(map(_TS, part)).count(None) != len(part)  # counted in C
            if stamped or store.has(nl.layout, extra):
                continue  # stamped samples, or a shape sent twice: plain rows then
            fresh.append((nl, sids[nl.start : nl.start + nl.length]))
            in_layout[nl.start : nl.start + nl.length] = b"\x01" * nl.length
        rows = [i for i, flag in enumerate(in_layout) if not flag]
        for lid, f in zip(known, frames, strict=True):
            if len(series[lid]) != len(f.values):
                raise StoreError(
                    f"a frame has {len(f.values)} values for a layout of {len(series[lid])} series"
                )
        covered = store.series_set(known)
        # ids as a range: the write created every one of its series, each once (see
        # SeriesIndex.ids_for), so none repeats: a first pass of a million checks nothing
        if covered is None or (
            not isinstance(sids, range) and _repeats(covered, sids, rows, fresh)
        ):
            raise DuplicateSeries("one series appears twice in a write with frames")
        start = self.levels[0].partition_start(ts)
        out = list(zip(known, (f.values for f in frames), strict=True))
        lids = store.register_many([(nl.layout, ids) for nl, ids in fresh], extra, start)
        for (nl, _), lid in zip(fresh, lids, strict=True):
            if nl.columns is not None:
                out.append((lid, nl.columns.values))
                continue
            out.append((lid, [s[2] for s in samples[nl.start : nl.start + nl.length]]))
        store.touch([f.layout for f in frames], extra, start)
        self._partitions.write_frames(out, ts)
        return rows

    def spool_files(self, add_labels: Labels = ()) -> dict[str, SpoolFileState]:
        return sqlstale.spool_files(self.db, encode_labels(add_labels))

    def known_layouts(self, add_labels: Labels = ()) -> frozenset[bytes]:
        with self._lock:
            return self._layouts.known(encode_labels(add_labels))

    def write_metadata(self, metas: Iterable[MetricMeta]) -> None:
        """Upsert the metadata that differs from what this store last wrote; the cache
        learns it only once it commits (a write that failed, on a full disk, is tried
        again by the next call instead of being taken as done). Past
        :data:`_META_BULK_MIN` records (a first pass over a million ``.prom`` names) with
        nothing cached, they go in bulk, compared in SQL, and nothing is cached."""
        with self._lock:
            metas = list(metas)
            if self._meta is None and len(metas) >= _META_BULK_MIN:
                with self.db.transaction():
                    sqlmeta.upsert(self.db, metas)
                return
            if self._meta is None and len(metas) <= _META_LOOKUP_MAX:
                # a few names (a pass whose files all went as frames: the self-metrics) in a
                # store that may hold a million: read only those, not the whole table
                known = self._metadata_of(sorted({m.name for m in metas}))
            else:
                if self._meta is None:
                    self._meta = self.metadata()
                known = self._meta
            rows = {m.name: m for m in metas if known.get(m.name) != m}
            if not rows:
                return
            sql = self.db.dialect.upsert("metric_meta", ["name", "type", "help", "unit"], ["name"])
            with self.db.transaction():
                self.db.executemany(sql, [(m.name, m.type, m.help, m.unit) for m in rows.values()])
            if not self.db.in_transaction and known is self._meta:  # else: not known
                known.update(rows)

    def metadata(self) -> dict[str, MetricMeta]:
        rows = self.db.query("SELECT name, type, help, unit FROM metric_meta")
        return {n: MetricMeta(n, t, h, u) for n, t, h, u in rows}

    def _metadata_of(self, names: list[str]) -> dict[str, MetricMeta]:
        out: dict[str, MetricMeta] = {}
        for i in range(0, len(names), IN_LIST_MAX):
            chunk = names[i : i + IN_LIST_MAX]
            for n, t, h, u in self.db.query(
                "SELECT name, type, help, unit FROM metric_meta "
                f"WHERE name IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[n] = MetricMeta(n, t, h, u)
        return out

    # -- reads ----------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Know every series' name and labels now, before a query needs them: ``serve``
        calls it in a thread at start, so its first ``sum by (shard)`` over a million
        series does not read them (~0.8 s) itself. The read runs without the store's lock:
        a query of a few series does not wait for it; one that would read many series waits
        for it (holding the lock: queries after it queue behind) rather than read them twice
        (:meth:`SeriesIndex.take_warm`). Raises
        what the read raised (a locked or lost database): the queries then read as they
        would have without it."""
        index = self._series
        with self._lock:
            fut = index.begin_warm()
        index.fill_warm(fut)
        with self._lock:
            index.take_warm(wait=True)

    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        with self._lock:
            index = self._series
            return [(index.rows[sid][0], index.labels(sid)) for sid in index.matching_ids(matchers)]

    def names(self) -> list[str]:
        # a loose index scan of series_key (name, labels): one seek per name, not a pass
        # over every series (the rows of a million series are seconds of Python)
        rows = self.db.query(
            "WITH RECURSIVE n(name) AS (SELECT min(name) FROM series UNION ALL "
            "SELECT (SELECT min(name) FROM series WHERE name > n.name) FROM n "
            "WHERE n.name IS NOT NULL) SELECT name FROM n WHERE name IS NOT NULL"
        )
        return [r[0] for r in rows]

    def choose_level(
        self, start_ms: int, step_ms: int, now_ms: int | None = None, align_ms: int = 0
    ) -> Level:
        """Raw while the window is within raw retention (exact, as Prometheus would answer);
        beyond it, the coarsest tier no coarser than the step that still covers the start
        and whose buckets line up with every window (``align_ms``, see
        :meth:`~signalbox.metrics.store.MetricReader.select`), so the answer is exact; if
        none lines up, the finest covering tier that does, else the step's tier (an estimate)."""
        now = int(self.clock.now() * 1000) if now_ms is None else now_ms
        raw, tiers = self.levels[0], self.levels[1:]
        if start_ms >= now - raw.retention_ms:
            return raw
        # a little slack: a query's window starts a lookback (5m) before the first step, and
        # partitions are dropped whole, so the retention edge is ragged anyway
        covering = [lv for lv in tiers if start_ms >= now - lv.retention_ms - lv.retention_ms // 50]
        fine_enough = [
            lv for lv in covering if lv.tier * 1000 <= max(step_ms, tiers[0].tier * 1000)
        ]
        if align_ms:
            aligned = [lv for lv in covering if align_ms % (lv.tier * 1000) == 0]
            exact = [lv for lv in aligned if lv in fine_enough]
            if exact:
                return exact[-1]
            if aligned:
                return aligned[0]
        if fine_enough:
            return fine_enough[-1]
        return covering[0] if covering else tiers[-1]

    def select(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool | frozenset[str] = True,
        align_ms: int = 0,
    ) -> list[SeriesPoints]:
        with self._lock:  # the caches: which series match, which partitions exist
            ids = self._series.matching_ids(matchers)
            if not ids:
                return []
            level = self.choose_level(start_ms, step_ms, align_ms=align_ms)
            self._partitions.load(fresh=True)
        # The reads run outside the lock, on this thread's connection, so one heavy query
        # never holds up the others (or a write). What they touch of the caches is safe
        # without it: entries of committed series and layouts are only ever added, each
        # dict or set read in one C call; a partition dropped meanwhile reads as empty.
        out: dict[int, SeriesPoints] = {}
        if level.tier == RAW:
            self._select_raw(ids, start_ms, end_ms, out)
        else:
            self._select_tier(level, ids, start_ms, end_ms, out, _stats(aggregates))
        for sid, marks in sqlstale.between(self.db, list(out), start_ms, end_ms).items():
            out[sid].stale = marks
        return [out[sid] for sid in sorted(out)]

    def latest_columns(
        self, matchers: Sequence[Matcher], at_ms: int, lookback_ms: int
    ) -> LatestColumns | None:
        """The newest raw sample in ``(at - lookback, at]`` of every matching series not
        ended by a stale marker, as arrays (see :mod:`signalbox.metrics.sql.latest`); None
        when ``select`` should answer instead: a few series (it is as fast there), a window
        older than raw retention (rollups answer), or nothing in the window (the engine
        then probes further back)."""
        with self._lock:
            ids = self._series.matching_ids(matchers)
            raw = self.levels[0]
            if len(ids) <= IN_LIST_MAX or self.choose_level(at_ms - lookback_ms, 0) != raw:
                return None
            self._partitions.load(fresh=True)
        from signalbox.metrics.sql import latest as sqllatest  # numpy: not for a plain pass

        sid, val = sqllatest.newest(self.db, self._partitions, raw, ids, at_ms, lookback_ms)
        if not len(sid):
            return None
        rows = self._series.rows
        return LatestColumns(sid, val, lambda ids: list(map(rows.__getitem__, ids)))

    def raw_columns(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, step_ms: int = 0
    ) -> RawSeriesColumns | None:
        """Every raw sample in ``[start_ms, end_ms]`` of the matching series, as arrays (see
        :mod:`signalbox.metrics.sql.rawcolumns`), for range functions; None when ``select``
        should answer instead: the window is past raw retention (rollups answer), or holds
        nothing (the engine then probes further back)."""
        with self._lock:
            ids = self._series.matching_ids(matchers)
            raw = self.levels[0]
            if not ids or self.choose_level(start_ms, step_ms) != raw:
                return None
            self._partitions.load(fresh=True)
        from signalbox.metrics.sql import rawcolumns as sqlrawcolumns  # numpy, as above

        got, starts, ts, val = sqlrawcolumns.read(self._partitions, raw, ids, start_ms, end_ms)
        if not len(got):
            return None
        index = self._series
        keys = [(index.rows[s][0], index.labels(s)) for s in got.tolist()]
        return RawSeriesColumns(got, starts, ts, val, keys)

    def stale_markers(self, ids: Sequence[int], start_ms: int, end_ms: int) -> dict[int, list[int]]:
        """The stale marker times in ``[start_ms, end_ms]`` of these series (ascending), as
        :meth:`select` attaches them: for instant selectors read as :meth:`raw_columns`."""
        return sqlstale.between(self.db, list(ids), start_ms, end_ms)

    def bucket_columns(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool | frozenset[str] = True,
        align_ms: int = 0,
    ) -> BucketSeriesColumns | None:
        """What :meth:`select` returns when it reads a rollup tier, as arrays (see
        :mod:`signalbox.metrics.sql.bucketcolumns`), for range functions; None when
        ``select`` should answer instead: the window is within raw retention (see
        :meth:`raw_columns`), holds nothing, or buckets without exact statistics."""
        with self._lock:
            ids = self._series.matching_ids(matchers)
            if not ids:
                return None
            level = self.choose_level(start_ms, step_ms, align_ms=align_ms)
            if level.tier == RAW:
                return None
            self._partitions.load(fresh=True)
        from signalbox.metrics.sql import bucketcolumns  # numpy, as above

        index = self._series

        def keys(sids: list[int]) -> list[SeriesKey]:
            return [(index.rows[s][0], index.labels(s)) for s in sids]

        return bucketcolumns.read(
            self.db, self._partitions, self.levels, level, ids, start_ms, end_ms,
            _stats(aggregates), _COLUMN_OF, keys,
        )  # fmt: skip

    def _points(
        self,
        sid: int,
        out: dict[int, SeriesPoints],
        resolution: int,
        stats: tuple[str, ...] = _STATS,
    ) -> SeriesPoints:
        sp = out.get(sid)
        if sp is None:
            name, _ = self._series.rows[sid]
            sp = out[sid] = SeriesPoints(name, self._series.labels(sid), resolution=resolution)
            if resolution:
                sp.first_ts = []
                for col in stats:
                    setattr(sp, col, [])
        return sp

    def _select_raw(
        self,
        ids: list[int],
        start_ms: int,
        end_ms: int,
        out: dict[int, SeriesPoints],
        resolution: int = 0,
        stats: tuple[str, ...] = _STATS,
    ) -> None:
        """Raw samples in ``[start_ms, end_ms]``; with a ``resolution``, each one a bucket of
        one sample after a tier's buckets (see :class:`SeriesPoints`).

        Over several partitions (a 1-hour window is twelve 5-minute ones) the rows of all
        of them are one statement and their frames one more, as for the range functions
        (:mod:`~signalbox.metrics.sql.rawcolumns`), not three statements per partition."""
        parts = self._partitions
        tables = parts.between(self.levels[0], start_ms, end_ms)
        if len(tables) > 1:
            self._select_raw_columns(ids, start_ms, end_ms, out, resolution, stats)
            return
        # A query past its samples or time stops here. What the reads will hold is estimated
        # first (series x timestamps written in the range), so a heavy query turns heavy and
        # waits its turn before it reads; each read then settles against the estimate.
        credit = 0
        if tables and limits.current() is not None:
            credit = limits.ahead(len(ids) * parts.stamp_count(start_ms, end_ms))
        for start, table in tables:
            rows = parts.raw_rows(start, table, ids, start_ms, end_ms)
            used = min(credit, len(rows))
            credit -= used
            limits.charge(len(rows) - used)
            if not resolution:
                for sid, group in groupby(rows, key=_SERIES_ID):
                    _, stamps, values = zip(*group, strict=True)
                    sp = self._points(sid, out, 0)
                    sp.timestamps.extend(stamps)
                    sp.values.extend(_nums(values))
                continue
            for sid, group in groupby(rows, key=_SERIES_ID):
                _, stamps, values = zip(*group, strict=True)
                _append_samples(self._points(sid, out, resolution, stats), stamps, values)
        limits.charge(-credit)  # what the estimate held beyond the rows read

    def _select_raw_columns(
        self,
        ids: list[int],
        start_ms: int,
        end_ms: int,
        out: dict[int, SeriesPoints],
        resolution: int,
        stats: tuple[str, ...],
    ) -> None:
        """:meth:`_select_raw` through :func:`~signalbox.metrics.sql.rawcolumns.read`: the
        samples as arrays, sorted by series and time, then cut into each series' lists
        (NULL, SQLite's NaN, is NaN there already; ``tolist`` gives Python ints and floats)."""
        from signalbox.metrics.sql import rawcolumns as sqlrawcolumns  # numpy: not for a plain pass

        got, starts, ts, val = sqlrawcolumns.read(
            self._partitions, self.levels[0], ids, start_ms, end_ms
        )
        stamps, values, bounds = ts.tolist(), val.tolist(), starts.tolist()
        for i, sid in enumerate(got.tolist()):
            a, b = bounds[i], bounds[i + 1]
            if resolution:
                sp = self._points(sid, out, resolution, stats)
                _append_samples(sp, stamps[a:b], values[a:b])
            else:
                sp = self._points(sid, out, 0)
                sp.timestamps.extend(stamps[a:b])
                sp.values.extend(values[a:b])

    def _select_tier(
        self,
        level: Level,
        ids: list[int],
        start_ms: int,
        end_ms: int,
        out: dict[int, SeriesPoints],
        stats: tuple[str, ...] = _STATS,
    ) -> None:
        """Buckets up to the tier's watermark, then raw points: in time order, never twice.

        Every bucket holding a sample of ``[start_ms, end_ms]`` is read, the one reaching past
        ``end_ms`` included, so the engine sees whether a window's end splits it. Buckets past
        the watermark (written by ``rebuild_rollups`` after an import) are ignored because
        the raw samples they summarise are still there and are newer.
        """
        res_ms = level.tier * 1000
        wm = sqlrollup.watermark(self.db, level.tier)
        if wm is None:  # never compacted: the tier is empty as far as readers are concerned
            self._select_raw(ids, start_ms, end_ms, out, resolution=level.tier, stats=stats)
            return
        # rows are keyed by bucket end; a bucket ending at e holds samples of (e - res, e]
        lo, hi = start_ms, min(end_ms + res_ms - 1, wm)
        parts = self._partitions
        if hi >= lo:
            cols = ", ".join((_BUCKET_READ_LAST, *(_COLUMN_OF[c] for c in stats)))
            tables = parts.between(level, lo, hi)
            if any((level.tier, s) in parts.inexact for s, _ in tables):
                for sid in ids:
                    self._points(sid, out, level.tier, stats).approximate = True
            names = [t for _, t in tables]
            one = None
            if len(ids) == 1 and len(names) > 1:  # one series over many partitions: one query
                one = parts.one_series_rows(names, cols, ids[0], lo, hi)
            # (series id or None when the rows are of that one series only, rows)
            batches: Iterable[tuple[int | None, list[tuple[Any, ...]]]]
            if one is not None:
                batches = [(ids[0], one)]
            else:  # lazily: each partition's rows are charged before the next is read
                batches = ((None, parts.rows_for(t, cols, ids, lo, hi)) for t in names)
            # every bucket of every series, estimated before reading (see _select_raw)
            ahead = limits.ahead(len(ids) * max(0, (hi - lo) // res_ms + 1))
            for only, rows in batches:
                limits.charge(len(rows) - ahead)
                ahead = 0
                # column-wise per series (a week of 1-minute buckets is 10k rows)
                groups = [(only, rows)] if only is not None else groupby(rows, key=_SERIES_ID)
                for sid, group in groups:
                    columns = list(zip(*group, strict=True))
                    if not columns:
                        continue
                    if only is None:
                        del columns[0]  # the series id
                    assert sid is not None
                    sp = self._points(sid, out, level.tier, stats)
                    _append_buckets(sp, stats, columns[1:])
            # series stored as frames: their buckets, one row per layout and bucket
            for sid, fcols in framereads.read(
                parts, names, ids, lo, hi, stats, level.unit_ms
            ).items():
                sp = self._points(sid, out, level.tier, stats)
                for name, col in fcols.items():
                    getattr(sp, name).extend(col)
                _in_time_order(sp)
        if wm < end_ms:  # newer than the watermark: raw points, so recent data is never missing
            self._select_raw(
                ids,
                max(wm + 1, start_ms),
                end_ms,
                out,
                resolution=level.tier,
                stats=stats,
            )

    def latest(
        self, matchers: Sequence[Matcher] = (), *, since_ms: int | None = None
    ) -> list[tuple[str, Labels, int, float]]:
        with self._lock:
            index, parts = self._series, self._partitions
            ids = set(index.matching_ids(matchers)) if matchers else None
            parts.load(fresh=True)
            found: dict[int, tuple[int, float]] = {}
            raw = self.levels[0]
            for start in sorted(parts.starts[RAW], reverse=True):
                if since_ms is not None and start + raw.span_ms <= since_ms:
                    break
                table = raw.table(start)
                if ids is not None and len(ids) <= IN_LIST_MAX:
                    if not ids:
                        break
                    rows = parts.raw_rows(start, table, sorted(ids), start, start + raw.span_ms)
                else:
                    rows = parts.read(parts.sql.latest_per_series(table))
                    rows.extend(parts.latest_frame_values(table))
                newest: dict[int, tuple[int, float]] = {}
                for sid, ts, value in rows:
                    if sid in found or (ids is not None and sid not in ids):
                        continue
                    if since_ms is not None and ts < since_ms:
                        continue
                    seen = newest.get(sid)
                    if seen is None or ts >= seen[0]:
                        newest[sid] = (ts, _num(value))
                found.update(newest)
                if ids is not None:
                    ids.difference_update(newest)
            orphans = index.orphans(found)
            few = matchers and len(found) <= IN_LIST_MAX
            oldest = min((t for t, _ in found.values()), default=0)  # older markers end nothing
            ends = sqlstale.newest(self.db, found if few else None, since_ms=oldest)
            return [
                (index.rows[sid][0], index.labels(sid), ts, v)
                for sid, (ts, v) in sorted(found.items())
                if sid not in orphans and ends.get(sid, -(2**63)) < ts
            ]

    # -- rollups and retention ------------------------------------------------------------
    def compact(self, now_ms: int, *, seal: bool = True) -> None:
        """Roll up every closed bucket of every tier, seal or pack a budget of closed units
        (unless ``seal`` is False: an import packs them all after, :meth:`pack_closed`),
        then drop partitions past retention, and stale markers older than the longest
        retention. One process at a time per store (on PostgreSQL: two compacting at once
        deadlocked on the tables one creates while the other reads); a process finding
        another at it skips its turn."""
        with self._lock, self.db.exclusive("compact", wait=False) as mine:
            if not mine:  # another process is compacting this store: it does this work
                log.debug("%s: another process is compacting; skipped", self.db.url)
                return
            with self._forgetting_partitions():
                self._partitions.load(fresh=True)
                sqlrollup.build_closed(self._partitions, now_ms)
                if seal:
                    sealing.seal_closed(self._partitions)
                self._partitions.drop_expired(now_ms)
                sqlstale.drop_before(self.db, now_ms - max(lv.retention_ms for lv in self.levels))
                dataversion.bump(self.db, fold=True)  # under the lock (metrics/dataversion.py)

    def pack_closed(
        self, progress: Callable[[int, int], None] | None = None, *, step: int | None = None
    ) -> tuple[int, int]:
        """Seal and pack every closed unit now, not a budget per compaction (after an import
        of months, serve's compactions would take an hour to pack it): passes of about
        ``step`` positions and bucket rows (compaction's budgets by default), each under
        the compaction lock, each chunk of series its own transaction as in a compaction.
        Memory is one chunk's; a failure or an interrupt between or inside chunks leaves
        what was packed packed and the rest rows, for a later compaction. ``progress``
        is told (positions sealed, bucket rows packed) so far after each pass; returns them."""
        sealed = packed = 0
        while True:
            with self._lock, self.db.exclusive("compact"), self._forgetting_partitions():
                self._partitions.load(fresh=True)
                s, p = sealing.seal_closed(self._partitions, step, step)
            if not s and not p:
                return sealed, packed
            sealed, packed = sealed + s, packed + p
            if progress:
                progress(sealed, packed)

    def rebuild_rollups(self, start_ms: int, end_ms: int) -> None:
        """Recompute every tier's buckets over ``[start_ms, end_ms)`` (after an import)."""
        with self._lock, self.db.exclusive("compact"), self._forgetting_partitions():
            self._partitions.load(fresh=True)
            sqlrollup.rebuild(self._partitions, start_ms, end_ms, int(self.clock.now() * 1000))
            dataversion.bump(self.db)  # still under the lock (metrics/dataversion.py)

    @contextmanager
    def _forgetting_partitions(self) -> Iterator[None]:
        """A failed compaction may have created tables that its rollback removed."""
        try:
            yield
        except BaseException:
            self._partitions.forget()
            raise

    def close(self) -> None:
        self.db.close()
