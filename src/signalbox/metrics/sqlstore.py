"""The metric store on SQL: SQLite by default, PostgreSQL through the same code.

Layout (see :mod:`signalbox.metrics.partitions` for why partitions):

- ``series``: id, metric name, canonical label text (:mod:`signalbox.metrics.labelcodec`).
- ``samples_raw_<start>``: raw samples, one table per span, keyed (series_id, ts).
- ``samples_r<res>_<start>``: rollups (min, max, sum, count, last) per bucket, keyed by
  (series_id, bucket start); reported to readers stamped 1 ms before the bucket's end
  (the last instant it covers, so it never collides with a raw sample of the next bucket).
- ``metric_partitions`` lists the partition tables; ``metric_rollups`` keeps, per tier, the
  end of the last bucket built (the watermark).

Rollups are built in SQL from the level below (raw → 1m → 5m → 1h), so the work runs at
the database's speed and never in the collection pass.
"""

from __future__ import annotations

import math
import operator
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import groupby, repeat
from typing import Any

from signalbox.clock import Clock, SystemClock
from signalbox.durations import Tier
from signalbox.metrics.labelcodec import decode_labels, encode_labels
from signalbox.metrics.partitions import RAW, Level, levels, segments
from signalbox.metrics.samples import (
    Labels,
    Matcher,
    MetricMeta,
    Sample,
    merge_labels,
    series_matches,
)
from signalbox.metrics.store import SeriesPoints, WriteResult
from signalbox.storage.database import Database, Migration

MIGRATIONS: list[Migration] = [
    (
        1,
        "series, metadata, partitions and rollup watermarks",
        [
            "CREATE TABLE series (id {pk}, name TEXT NOT NULL, labels TEXT NOT NULL, created_ms BIGINT NOT NULL)",
            "CREATE UNIQUE INDEX series_key ON series (name, labels)",
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
]

_NAME, _LABELS, _VALUE, _TS = (operator.itemgetter(i) for i in range(4))
_ROLLUP_GRACE_MS = 30_000  # late samples of the current pass still land in their bucket
_IN_LIST_MAX = 500  # above this many series, scan the partition and filter in Python
_STAMPS_MAX = 2000  # more distinct timestamps in a partition (an import): range scan instead
_SERIES_TS = operator.itemgetter(0, 1)
_SERIES_ID = operator.itemgetter(0)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


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
        self._by_tier = {lv.tier: lv for lv in self.levels}
        db.migrate("metrics", MIGRATIONS)
        self._lock = threading.RLock()
        self._rows: dict[int, tuple[str, str]] = {}  # id -> (name, label text)
        self._by_name: dict[str, list[int]] = defaultdict(list)
        self._decoded: dict[int, Labels] = {}
        self._max_id = 0
        self._complete = False
        self._ids: dict[str, int] | None = None  # write path: "name{labels" -> id
        self._ids_max = 0
        self._snapshot_max = -1
        self._parts: dict[int, set[int]] = defaultdict(set)  # tier -> partition starts
        self._parts_loaded = False
        self._meta: dict[str, MetricMeta] | None = None

    # -- series cache ---------------------------------------------------------------------
    def _add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for sid, name, text in rows:
            if sid in self._rows:
                continue
            self._rows[sid] = (name, text)
            self._by_name[name].append(sid)

    def _refresh_series(self) -> None:
        """Load series created since the last refresh (ids only grow)."""
        rows = self.db.query(
            "SELECT id, name, labels FROM series WHERE id > ? ORDER BY id", (self._max_id,)
        )
        if rows:
            self._add_rows(rows)
            self._max_id = rows[-1][0]
        self._complete = True

    def _labels(self, sid: int) -> Labels:
        got = self._decoded.get(sid)
        if got is None:
            got = self._decoded[sid] = decode_labels(self._rows[sid][1])
        return got

    def _matching_ids(self, matchers: Sequence[Matcher]) -> list[int]:
        names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
        if names:
            # one metric name: ask the index instead of loading every series
            self._add_rows(
                self.db.query("SELECT id, name, labels FROM series WHERE name = ?", (names[0],))
            )
            candidates: Iterable[int] = list(self._by_name.get(names[0], ()))
        else:
            self._refresh_series()
            candidates = list(self._rows.keys())
        ms = list(matchers)
        return [
            sid for sid in candidates if series_matches(self._rows[sid][0], self._labels(sid), ms)
        ]

    # -- partitions -----------------------------------------------------------------------
    def _load_partitions(self, fresh: bool = False) -> None:
        """Know which partition tables exist. Readers ask ``fresh``: another process (the
        collector of ``serve``, an ``agent``) creates and drops partitions all the time."""
        if fresh or not self._parts_loaded:
            parts: dict[int, set[int]] = defaultdict(set)
            for tier, start in self.db.query("SELECT tier, start_ms FROM metric_partitions"):
                parts[tier].add(start)
            self._parts = parts
            self._parts_loaded = True

    def _ensure_partition(self, level: Level, start: int) -> str:
        table = level.table(start)
        if start in self._parts[level.tier]:
            return table
        if level.tier == RAW:
            cols = "series_id BIGINT NOT NULL, ts BIGINT NOT NULL, value DOUBLE PRECISION"
        else:
            cols = (
                "series_id BIGINT NOT NULL, ts BIGINT NOT NULL, min DOUBLE PRECISION, max DOUBLE PRECISION, "
                "sum DOUBLE PRECISION, count BIGINT NOT NULL, last DOUBLE PRECISION"
            )
        # Raw rows are clustered by (ts, series_id): a pass appends at the end of its
        # partition instead of touching every page of it. Rollups, written once per bucket
        # and read series by series over long windows, are clustered by (series_id, ts).
        key = "ts, series_id" if level.tier == RAW else "series_id, ts"
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ({cols}, PRIMARY KEY ({key})){self.db.dialect.without_rowid}"
        )
        self.db.execute(
            self.db.dialect.upsert(
                "metric_partitions", ["tier", "start_ms", "end_ms"], ["tier", "start_ms"]
            ),
            (level.tier, start, start + level.span_ms),
        )
        self._parts[level.tier].add(start)
        return table

    def _tables_between(self, level: Level, start_ms: int, end_ms: int) -> list[tuple[int, str]]:
        return [
            (s, level.table(s))
            for s in sorted(self._parts[level.tier])
            if s <= end_ms and s + level.span_ms > start_ms
        ]

    # -- writes ---------------------------------------------------------------------------
    def _series_ids(self) -> dict[str, int]:
        """``name{labels`` -> id for every series, loaded once per store object.

        ``collect --once`` is a new process every pass, so the map is kept in the database
        as one msgpack blob (series ids never change and series are never deleted, so the
        snapshot is always a correct subset), topped up with the series created since.
        Living in the same database, it is backed up and restored with the data it maps.
        """
        if self._ids is None:
            import msgspec

            rows = self.db.query("SELECT max_id, data FROM series_ids_snapshot WHERE id = 1")
            if rows:
                self._ids = msgspec.msgpack.decode(bytes(rows[0][1]), type=dict[str, int])
                self._ids_max = int(rows[0][0])
                self._snapshot_max = self._ids_max
                self._learn_new_series()
            else:
                self._ids = dict(self.db.query("SELECT name || '{' || labels, id FROM series"))
                self._ids_max = max(self._ids.values(), default=0)
                self._snapshot_max = -1
        return self._ids

    def _save_ids_snapshot(self) -> None:
        """Called inside the write transaction that created series."""
        import msgspec

        assert self._ids is not None
        blob = msgspec.msgpack.encode(self._ids)
        self.db.execute(
            self.db.dialect.upsert("series_ids_snapshot", ["id", "max_id", "data"], ["id"]),
            (1, self._ids_max, blob),
        )
        self._snapshot_max = self._ids_max

    def _learn_new_series(self) -> None:
        ids = self._series_ids()
        for key, sid in self.db.query(
            "SELECT name || '{' || labels, id FROM series WHERE id > ?", (self._ids_max,)
        ):
            ids[key] = sid
            self._ids_max = max(self._ids_max, sid)

    def write(
        self, samples: Sequence[Sample], default_ts_ms: int, *, add_labels: Labels = ()
    ) -> WriteResult:
        """Store a batch in one transaction: series ids from memory, rows by ``executemany``.

        The per-sample work is done column-wise with ``map``/``zip`` (in C): this is the hot
        path of every collection pass.
        """
        raw = self._by_tier[RAW]
        span = raw.span_ms
        names = list(map(_NAME, samples))
        label_col = list(map(_LABELS, samples))
        values = [v if v == v else None for v in map(_VALUE, samples)]  # NaN -> NULL
        stamps = list(map(_TS, samples))
        texts = {
            labels: "{" + encode_labels(merge_labels(labels, add_labels))
            for labels in set(label_col)
        }
        keys = list(map(operator.add, names, map(texts.__getitem__, label_col)))
        with self._lock, self.db.transaction():
            self._load_partitions(fresh=True)
            ids = self._series_ids()
            sids = list(map(ids.get, keys))
            missing: dict[str, tuple[str, str]] = {}
            if None in sids:
                for i, sid in enumerate(sids):
                    if sid is None:
                        missing[keys[i]] = (names[i], keys[i][len(names[i]) + 1 :])
                self.db.executemany(
                    "INSERT INTO series (name, labels, created_ms) VALUES (?, ?, ?) ON CONFLICT (name, labels) DO NOTHING",
                    [(n, t, int(self.clock.now() * 1000)) for n, t in missing.values()],
                )
                self._learn_new_series()
                self._save_ids_snapshot()
                sids = list(map(ids.__getitem__, keys))
            elif self._ids_max - self._snapshot_max > 1000:  # others added many: refresh it
                self._save_ids_snapshot()
            by_part: dict[int, list[tuple[Any, ...]]] = {}
            part_stamps: dict[int, set[int]] = {}
            if stamps.count(None) == len(stamps):  # a collection pass: all at the pass time
                start = default_ts_ms - default_ts_ms % span
                by_part[start] = list(zip(sids, repeat(default_ts_ms), values, strict=False))
                part_stamps[start] = {default_ts_ms}
            else:
                for sid, ts, value in zip(sids, stamps, values, strict=True):
                    t = default_ts_ms if ts is None else ts
                    start = t - t % span
                    by_part.setdefault(start, []).append((sid, t, value))
                    part_stamps.setdefault(start, set()).add(t)
            upsert = self.db.dialect.upsert(
                "{t}", ["series_id", "ts", "value"], ["series_id", "ts"]
            )
            stamp_sql = self.db.dialect.upsert(
                "metric_stamps", ["start_ms", "ts"], ["start_ms", "ts"]
            )
            for start in sorted(by_part):
                table = self._ensure_partition(raw, start)
                rows = by_part[start]
                self.db.executemany(upsert.replace("{t}", table), rows)
                self.db.executemany(stamp_sql, [(start, ts) for ts in sorted(part_stamps[start])])
            return WriteResult(written=len(keys), new_series=len(missing))

    def write_metadata(self, metas: Iterable[MetricMeta]) -> None:
        if self._meta is None:
            self._meta = self.metadata()
        known = self._meta
        rows = {m.name: (m.name, m.type, m.help, m.unit) for m in metas if known.get(m.name) != m}
        if not rows:
            return
        for name, t, h, u in rows.values():
            known[name] = MetricMeta(name, t, h, u)
        sql = self.db.dialect.upsert("metric_meta", ["name", "type", "help", "unit"], ["name"])
        with self._lock, self.db.transaction():
            self.db.executemany(sql, list(rows.values()))

    def metadata(self) -> dict[str, MetricMeta]:
        rows = self.db.query("SELECT name, type, help, unit FROM metric_meta")
        return {n: MetricMeta(n, t, h, u) for n, t, h, u in rows}

    # -- reads ----------------------------------------------------------------------------
    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        with self._lock:
            return [(self._rows[sid][0], self._labels(sid)) for sid in self._matching_ids(matchers)]

    def choose_level(self, start_ms: int, step_ms: int, now_ms: int | None = None) -> Level:
        """Raw while the window is within raw retention (exact, as Prometheus would answer);
        beyond it, the finest tier no finer than the step that still covers the start."""
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
        aggregates: bool = True,
    ) -> list[SeriesPoints]:
        with self._lock:
            ids = self._matching_ids(matchers)
            if not ids:
                return []
            level = self.choose_level(start_ms, step_ms)
            self._load_partitions(fresh=True)
            out: dict[int, SeriesPoints] = {}
            if level.tier == RAW:
                self._select_raw(ids, start_ms, end_ms, out)
            else:
                self._select_tier(level, ids, start_ms, end_ms, out, aggregates)
            return [out[sid] for sid in sorted(out)]

    def _points(
        self, sid: int, out: dict[int, SeriesPoints], resolution: int, aggregates: bool = True
    ) -> SeriesPoints:
        sp = out.get(sid)
        if sp is None:
            name, _ = self._rows[sid]
            sp = out[sid] = SeriesPoints(name, self._labels(sid), resolution=resolution)
            if resolution and aggregates:
                sp.mins, sp.maxs, sp.sums, sp.counts = [], [], [], []
        return sp

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read of one partition; a table dropped by retention in between reads as empty."""
        try:
            return self.db.query(sql, params)
        except Exception as e:
            if "no such table" in str(e) or "does not exist" in str(e):
                if self.db.dialect.name == "postgresql":
                    self.db.conn.rollback()
                return []
            raise

    def _raw_rows(
        self, start: int, table: str, ids: list[int], start_ms: int, end_ms: int
    ) -> list[tuple[Any, ...]]:
        """Rows of a (ts, series_id)-clustered raw partition, grouped by series, oldest first.

        A few series: one index seek per (written timestamp, series), using the partition's
        list of timestamps. Many series or many timestamps (an import): a range scan.
        """
        if len(ids) <= _IN_LIST_MAX:
            stamps = [
                r[0]
                for r in self.db.query(
                    "SELECT ts FROM metric_stamps WHERE start_ms = ? AND ts >= ? AND ts <= ?",
                    (start, start_ms, end_ms),
                )
            ]
            if not stamps:
                return []
            if len(stamps) <= _STAMPS_MAX:
                rows = self._read(
                    f"SELECT series_id, ts, value FROM {table} WHERE ts IN ({','.join('?' * len(stamps))}) "
                    f"AND series_id IN ({','.join('?' * len(ids))})",
                    (*stamps, *ids),
                )
                rows.sort(key=_SERIES_TS)
                return rows
        wanted = set(ids)
        rows = self._read(
            f"SELECT series_id, ts, value FROM {table} WHERE ts >= ? AND ts <= ?",
            (start_ms, end_ms),
        )
        rows = [r for r in rows if r[0] in wanted]
        rows.sort(key=_SERIES_TS)
        return rows

    def _rows_for(
        self, table: str, cols: str, ids: list[int], start_ms: int, end_ms: int
    ) -> list[tuple[Any, ...]]:
        if len(ids) <= _IN_LIST_MAX:
            marks = ",".join("?" * len(ids))
            return self._read(
                f"SELECT series_id, ts, {cols} FROM {table} WHERE series_id IN ({marks}) AND ts >= ? AND ts <= ? ORDER BY series_id, ts",
                (*ids, start_ms, end_ms),
            )
        wanted = set(ids)
        rows = self._read(
            f"SELECT series_id, ts, {cols} FROM {table} WHERE ts >= ? AND ts <= ? ORDER BY series_id, ts",
            (start_ms, end_ms),
        )
        return [r for r in rows if r[0] in wanted]

    def _select_raw(
        self,
        ids: list[int],
        start_ms: int,
        end_ms: int,
        out: dict[int, SeriesPoints],
        resolution: int = 0,
        aggregates: bool = True,
    ) -> None:
        for start, table in self._tables_between(self.levels[0], start_ms, end_ms):
            for sid, ts, value in self._raw_rows(start, table, ids, start_ms, end_ms):
                sp = self._points(sid, out, resolution, aggregates)
                v = _num(value)
                sp.timestamps.append(ts)
                sp.values.append(v)
                if resolution and aggregates:
                    assert (
                        sp.mins is not None
                        and sp.maxs is not None
                        and sp.sums is not None
                        and sp.counts is not None
                    )
                    sp.mins.append(v)
                    sp.maxs.append(v)
                    sp.sums.append(v)
                    sp.counts.append(1.0)

    def _select_tier(
        self,
        level: Level,
        ids: list[int],
        start_ms: int,
        end_ms: int,
        out: dict[int, SeriesPoints],
        aggregates: bool = True,
    ) -> None:
        """Buckets up to the tier's watermark, then raw points: in time order, never twice.

        Buckets past the watermark (written by ``rebuild_rollups`` after an import) are
        ignored because the raw samples they summarise are still there and are newer.
        """
        res_ms = level.tier * 1000
        wm = self._watermark(level.tier)
        if wm is None:  # never compacted: the tier is empty as far as readers are concerned
            self._select_raw(
                ids, start_ms, end_ms, out, resolution=level.tier, aggregates=aggregates
            )
            return
        # rows are keyed by bucket start; readers see the last millisecond the bucket covers
        last_start = min(end_ms - res_ms, wm - res_ms)
        if last_start >= start_ms - res_ms:
            for _, table in self._tables_between(level, start_ms - res_ms, last_start):
                cols = "min, max, sum, count, last" if aggregates else "last"
                rows = self._rows_for(table, cols, ids, start_ms - res_ms, last_start)
                # column-wise per series (a week of 1-minute buckets is 10k rows)
                shift = res_ms - 1
                for sid, group in groupby(rows, key=_SERIES_ID):
                    sp = self._points(sid, out, level.tier, aggregates)
                    columns = list(zip(*group, strict=True))
                    sp.timestamps.extend([t + shift for t in columns[1]])
                    sp.values.extend(_nums(columns[-1]))
                    if aggregates:
                        assert (
                            sp.mins is not None
                            and sp.maxs is not None
                            and sp.sums is not None
                            and sp.counts is not None
                        )
                        sp.mins.extend(_nums(columns[2]))
                        sp.maxs.extend(_nums(columns[3]))
                        sp.sums.extend(_nums(columns[4]))
                        sp.counts.extend(map(float, columns[5]))
        if wm <= end_ms:  # newer than the watermark: raw points, so recent data is never missing
            self._select_raw(
                ids, max(wm, start_ms), end_ms, out, resolution=level.tier, aggregates=aggregates
            )

    def latest(
        self, matchers: Sequence[Matcher] = (), *, since_ms: int | None = None
    ) -> list[tuple[str, Labels, int, float]]:
        with self._lock:
            ids = set(self._matching_ids(matchers)) if matchers else None
            self._load_partitions(fresh=True)
            found: dict[int, tuple[int, float]] = {}
            raw = self.levels[0]
            for start in sorted(self._parts[RAW], reverse=True):
                if since_ms is not None and start + raw.span_ms <= since_ms:
                    break
                table = raw.table(start)
                if ids is not None and len(ids) <= _IN_LIST_MAX:
                    if not ids:
                        break
                    newest: dict[int, tuple[Any, ...]] = {}
                    for row in self._raw_rows(
                        start, table, sorted(ids), start, start + raw.span_ms
                    ):
                        newest[row[0]] = row  # rows come oldest first per series
                    rows = list(newest.values())
                else:
                    rows = self._read(self.db.dialect.latest_per_series(table))
                for sid, ts, value in rows:
                    if sid in found or (ids is not None and sid not in ids):
                        continue
                    if since_ms is not None and ts < since_ms:
                        continue
                    found[sid] = (ts, _num(value))
            if any(sid not in self._rows for sid in found):
                self._refresh_series()
            return [
                (self._rows[sid][0], self._labels(sid), ts, v)
                for sid, (ts, v) in sorted(found.items())
            ]

    # -- rollups and retention ------------------------------------------------------------
    def _watermark(self, tier: int) -> int | None:
        rows = self.db.query("SELECT watermark_ms FROM metric_rollups WHERE tier = ?", (tier,))
        return int(rows[0][0]) if rows else None

    def _set_watermark(self, tier: int, wm: int) -> None:
        self.db.execute(
            self.db.dialect.upsert("metric_rollups", ["tier", "watermark_ms"], ["tier"]), (tier, wm)
        )

    def compact(self, now_ms: int) -> None:
        """Roll up every closed bucket of every tier, then drop partitions past retention."""
        with self._lock:
            self._load_partitions(fresh=True)
            for i in range(1, len(self.levels)):
                src, dst = self.levels[i - 1], self.levels[i]
                res = dst.tier * 1000
                limit = (now_ms - _ROLLUP_GRACE_MS) // res * res
                if src.tier != RAW:
                    src_wm = self._watermark(src.tier)
                    if src_wm is None:
                        continue
                    limit = min(limit, src_wm // res * res)
                wm = self._watermark(dst.tier)
                if wm is None:
                    if not self._parts[src.tier]:
                        continue
                    wm = min(self._parts[src.tier]) // res * res
                if limit > wm:
                    with self.db.transaction():
                        self._rollup(src, dst, wm, limit)
                        self._set_watermark(dst.tier, limit)
            self._drop_expired(now_ms)

    def rebuild_rollups(self, start_ms: int, end_ms: int) -> None:
        """Recompute every tier's buckets over ``[start_ms, end_ms)`` (after an import)."""
        with self._lock:
            self._load_partitions(fresh=True)
            for i in range(1, len(self.levels)):
                src, dst = self.levels[i - 1], self.levels[i]
                res = dst.tier * 1000
                a, b = start_ms // res * res, -(-end_ms // res) * res
                wm = self._watermark(dst.tier)
                if wm is not None:
                    b = min(b, max(wm, a))
                if b > a:
                    with self.db.transaction():
                        self._rollup(src, dst, a, b)

    def _rollup(self, src: Level, dst: Level, start_ms: int, end_ms: int) -> None:
        res = dst.tier * 1000
        cols = "series_id, ts, min, max, sum, count, last"
        if src.tier == RAW:
            inner = (
                "SELECT series_id, value AS v, value AS mn, value AS mx, value AS sm, 1 AS cnt, "
                "(ts / {r}) * {r} AS b, row_number() OVER (PARTITION BY series_id, ts / {r} ORDER BY ts DESC) AS rn "
                "FROM {t} WHERE ts >= ? AND ts < ?"
            )
        else:
            inner = (
                "SELECT series_id, last AS v, min AS mn, max AS mx, sum AS sm, count AS cnt, "
                "(ts / {r}) * {r} AS b, row_number() OVER (PARTITION BY series_id, ts / {r} ORDER BY ts DESC) AS rn "
                "FROM {t} WHERE ts >= ? AND ts < ?"
            )
        known = self._parts[src.tier]
        for a, b in segments(start_ms, end_ms, (src.span_ms, dst.span_ms)):
            sstart = src.partition_start(a)
            if sstart not in known:
                continue
            target = self._ensure_partition(dst, dst.partition_start(a))
            select = (
                f"SELECT series_id, b, min(mn), max(mx), sum(sm), sum(cnt), max(CASE WHEN rn = 1 THEN v END) "
                f"FROM ({inner.format(r=res, t=src.table(sstart))}) AS x GROUP BY series_id, b"
            )
            updates = ", ".join(
                f"{c} = excluded.{c}" for c in ("min", "max", "sum", "count", "last")
            )
            self.db.execute(
                f"INSERT INTO {target} ({cols}) {select} ON CONFLICT (series_id, ts) DO UPDATE SET {updates}",
                (a, b),
            )

    def _drop_expired(self, now_ms: int) -> None:
        for lv in self.levels:
            for start in sorted(self._parts[lv.tier]):
                if start + lv.span_ms > now_ms - lv.retention_ms:
                    break
                with self.db.transaction():
                    self.db.execute(f"DROP TABLE IF EXISTS {lv.table(start)}")
                    self.db.execute(
                        "DELETE FROM metric_partitions WHERE tier = ? AND start_ms = ?",
                        (lv.tier, start),
                    )
                    if lv.tier == RAW:
                        self.db.execute("DELETE FROM metric_stamps WHERE start_ms = ?", (start,))
                self._parts[lv.tier].discard(start)

    def close(self) -> None:
        self.db.close()
