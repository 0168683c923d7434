"""Rollup tiers of the SQL metric store, each built from the level below.

Each tier is built from the one below it (raw → 1m → 5m → 1h), never in the collection
pass. Series stored as rows are read in (series, time) order a batch at a time and their
buckets computed with numpy (:mod:`signalbox.metrics.rowbuckets`: window functions in SQL
took SQLite ~25 us a row); series stored as frames (spool files, see :mod:`signalbox.metrics.sql.layouts`) become *frame buckets*, one
row per layout and bucket computed with numpy (:mod:`signalbox.metrics.framebuckets`), so a
minute of a million series is 2,000 rows appended in time order. A series whose bucket has
more than one source (two layouts, or frames and rows) is combined into the row table and
left out of the frame bucket. A bucket holds the samples of one series
in ``(end - resolution, end]`` -- the same half-open side as a PromQL window ``(t - range, t]``,
so a window whose ends are multiples of the resolution is made of whole buckets -- and is
keyed by its end. It keeps what makes range functions exact over whole buckets (see
:class:`~signalbox.metrics.store.SeriesPoints`): count, sum, min, max; first, last and the
sample before the last, with their times; the counter-reset correction (``drops``), resets
and changes; the least-squares sums; and the sum of squared deviations (``m2``). A coarser
bucket is combined from the finer tier's buckets: shifted sums, Chan's formula for ``m2``,
and the pairs that straddle two finer buckets for drops, resets and changes.

NaN, in every tier as in the samples: SQLite stores NaN as NULL, and both read back as NaN,
so ``min``/``max`` leave it out, comparisons with it are false (as in Go), and a bucket
holding one has a NULL (NaN) sum, ``sxy`` and ``m2``.

``metric_rollups`` keeps, per tier, the end of the last bucket built (the watermark):
readers take buckets up to it and raw samples after it.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from signalbox.exceptions import StoreError
from signalbox.metrics.partitions import RAW, Level
from signalbox.metrics.sql import sealing
from signalbox.metrics.sql.partitions import (
    BUCKET_COLUMNS,
    PartitionTables,
    fbuckets_table,
    frames_table,
)
from signalbox.storage.database import Database

if TYPE_CHECKING:
    from signalbox.metrics import framebuckets

log = logging.getLogger("signalbox.metrics")

_ROLLUP_GRACE_MS = 30_000  # late samples of the current pass still land in their bucket

COLUMNS = (
    "count, sum, min, max, first_ts, first, last_ts, last, prev_ts, prev, "
    "drops, resets, changes, sx, sxx, sxy, m2"
)
"""A bucket's statistics, in the order every statement here writes them."""

_COLS = f"series_id, ts, {COLUMNS}"
_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", "))


def watermark(db: Database, tier: int) -> int | None:
    """End of the last bucket built for ``tier``; None if it was never compacted."""
    rows = db.query("SELECT watermark_ms FROM metric_rollups WHERE tier = ?", (tier,))
    return int(rows[0][0]) if rows else None


def _set_watermark(db: Database, tier: int, wm: int) -> None:
    db.execute(db.dialect.upsert("metric_rollups", ["tier", "watermark_ms"], ["tier"]), (tier, wm))


def build_closed(parts: PartitionTables, now_ms: int) -> None:
    """Roll up every bucket of every tier closed by ``now_ms`` and not built yet."""
    db, lvs = parts.db, parts.levels
    for i in range(1, len(lvs)):
        src, dst = lvs[i - 1], lvs[i]
        res = dst.tier * 1000
        limit = (now_ms - _ROLLUP_GRACE_MS) // res * res
        if src.tier != RAW:
            src_wm = watermark(db, src.tier)
            if src_wm is None:
                continue
            limit = min(limit, src_wm // res * res)
        wm = watermark(db, dst.tier)
        if wm is None:
            if not parts.starts[src.tier]:
                continue
            # the bucket holding the oldest partition's first possible key or sample
            wm = (min(parts.starts[src.tier]) - 1) // res * res
        if limit > wm:
            with db.transaction():
                if src.tier != RAW:  # a tier added since its source was sealed reads it whole
                    sealing.unseal_range(parts, wm, limit, [src])
                _rollup(parts, src, dst, wm, limit)
                _set_watermark(db, dst.tier, limit)


def rebuild(parts: PartitionTables, start_ms: int, end_ms: int, now_ms: int) -> None:
    """Recompute every tier's buckets holding samples of ``[start_ms, end_ms)``, up to each
    tier's watermark (after an import, which only adds samples). A tier without one was never
    compacted: the next compaction builds all of it, so building it here too would be done
    twice (an import into a new store).

    Where the level below is whole (raw samples within raw retention, finer buckets in a
    partition that existed before this rebuild), a bucket is cleared and built again from
    it. Where retention had dropped it, the level below holds only what the import wrote:
    there the buckets of the series it wrote are replaced (:func:`_merge`) and every other
    series keeps its bucket -- clearing them would lose history no raw sample can rebuild.
    """
    db, lvs = parts.db, parts.levels
    with db.transaction():  # sealed units become frame buckets again, to be rebuilt as such
        widest = max(lv.tier for lv in lvs) * 1000
        sealing.unseal_range(parts, start_ms - widest, end_ms + widest)
    kept = {lv.tier: set(parts.starts[lv.tier]) for lv in lvs[1:]}
    raw = lvs[0]
    raw_whole_from = raw.partition_start(now_ms - raw.retention_ms)
    for i in range(1, len(lvs)):
        src, dst = lvs[i - 1], lvs[i]
        res = dst.tier * 1000
        a, b = (start_ms - 1) // res * res, -(-end_ms // res) * res
        wm = watermark(db, dst.tier)
        if wm is None:  # never compacted: readers take raw samples, and the next compaction
            continue  # builds the tier whole from its oldest source (an import's, into a new store)
        b = min(b, max(wm, a))
        if b > a:

            def partial(lo: int, src: Level = src) -> bool:
                if src.tier == RAW:
                    return lo < raw_whole_from
                return src.partition_start(lo) not in kept[src.tier]

            with db.transaction():
                _rollup(parts, src, dst, a, b, rebuild_partial=partial)


def _clear(parts: PartitionTables, target: str, a: int, b: int) -> None:
    """Delete ``target``'s buckets ending in ``(a, b]``, row and frame: a rebuild may put a
    series' bucket in the other table than before, and must not leave it in both."""
    for t in (target, fbuckets_table(target)):
        parts.db.execute(f"DELETE FROM {t} WHERE ts > ? AND ts <= ?", (a, b))


def _rollup(
    parts: PartitionTables,
    src: Level,
    dst: Level,
    a: int,
    b: int,
    *,
    rebuild_partial: Callable[[int], bool] | None = None,
) -> None:
    """Buckets of ``dst`` ending in ``(a, b]`` (multiples of its resolution), inside the
    caller's transaction, one destination partition at a time. With ``rebuild_partial``
    (a rebuild), each chunk's buckets are cleared and built again, or merged where
    ``rebuild_partial(lo)`` says the level below holds only what an import wrote.

    Each chunk runs in a savepoint: a source partition that retention (of this or another
    process) dropped meanwhile has nothing left to roll up and is skipped, without undoing
    the buckets already built; any other error propagates.
    """
    db, res = parts.db, dst.tier * 1000
    lo = a
    while lo < b:
        # bucket ends in (lo, hi] all belong to the destination partition of lo + res, and
        # their samples (or finer buckets) to one source partition, but for the sample
        # exactly at a source partition's end, which the next partition holds
        part = dst.partition_start(lo + res)
        hi = min(b, (part + dst.span_ms - 1) // res * res, src.partition_start(lo) + src.span_ms)
        sources = _sources(parts, src, lo, hi)
        if sources:  # none: nothing below to build from, and nothing to clear either
            target = parts.ensure(dst, part)  # outside the savepoint: its creation must stay
            parts.ensure_fbuckets(target)
            try:
                with db.savepoint():
                    if rebuild_partial is not None and rebuild_partial(lo):
                        _merge(parts, target, sources, src.tier == RAW, res, lo, hi)
                    else:
                        if rebuild_partial is not None:
                            _clear(parts, target, lo, hi)
                        if src.tier == RAW:
                            _from_raw(parts, target, sources, res, lo, hi)
                        else:
                            _from_tier(parts, target, sources, res, lo, hi)
            except Exception as e:
                if not db.is_undefined_table(e):
                    raise
                log.info("a partition of %s was dropped by retention while being rolled up", src)
        lo = hi


def _merge(
    parts: PartitionTables, target: str, tables: list[str], raw: bool, res: int, a: int, b: int
) -> None:
    """Buckets ending in ``(a, b]`` of the series ``tables`` hold (only what an import wrote:
    retention dropped the rest) replaced from them, as row buckets; those series are marked
    absent in the frame buckets they were in. Every other series' bucket stays."""
    source = _union(parts, tables, raw)
    # frame buckets to mark: none where only rows were ever written (an import's history)
    if parts.read(
        f"SELECT 1 FROM {fbuckets_table(target)} WHERE ts > ? AND ts <= ? LIMIT 1", (a, b)
    ):
        touched = parts.read(
            f"SELECT DISTINCT series_id, {_end('ts', res)} FROM ({source}) AS t "
            "WHERE ts > ? AND ts <= ?",
            (a, b),
        )
        _mark_absent(parts, target, touched)
    if raw:
        _aggregate(parts, target, source, res, a, b)
    else:
        _combine_rows(parts, target, source, res, a, b)


def _mark_absent(parts: PartitionTables, target: str, touched: list[tuple[Any, ...]]) -> None:
    """Add each ``(series, bucket end)`` of ``touched`` to the absent positions of the frame
    bucket of ``target`` holding it: its row bucket is the one readers take."""
    import numpy as np

    ends: dict[int, set[int]] = {}
    for sid, end in touched:
        ends.setdefault(int(end), set()).add(int(sid))
    if not ends:
        return
    fb = fbuckets_table(target)
    found: dict[int, list[tuple[Any, ...]]] = {}  # bucket end -> (layout, absent) rows
    for lid, ts, absent in parts.read(
        f"SELECT layout_id, ts, absent FROM {fb} WHERE ts >= ? AND ts <= ?",
        (min(ends), max(ends)),
    ):
        if int(ts) in ends:
            found.setdefault(int(ts), []).append((lid, absent))
    series = parts.layouts.series_of(sorted({r[0] for rows in found.values() for r in rows}))
    for end, sids in sorted(ends.items()):
        rows = found.get(end)
        if not rows:
            continue
        wanted = np.fromiter(sids, dtype=np.int64, count=len(sids))
        updates = []
        for lid, absent in rows:
            ids = series.get(lid)
            if ids is None:
                continue
            hit = np.flatnonzero(np.isin(np.frombuffer(ids, dtype=np.int64), wanted))
            if not len(hit):
                continue
            if absent is not None:
                hit = np.union1d(hit, np.frombuffer(bytes(absent), dtype="<i8"))
            updates.append((hit.astype("<i8").tobytes(), lid, end))
        if updates:
            parts.db.executemany(
                f"UPDATE {fb} SET absent = ? WHERE layout_id = ? AND ts = ?", updates
            )


def _sources(parts: PartitionTables, src: Level, a: int, b: int) -> list[str]:
    """Tables of ``src`` whose rows (keyed by sample time or bucket end) may fall in ``(a, b]``."""
    return [table for _, table in parts.between(src, a + 1, b)]


def _union(parts: PartitionTables, tables: list[str], raw: bool) -> str:
    if raw:
        return " UNION ALL ".join(
            f"SELECT series_id, ts, value FROM {t} UNION ALL {parts.sql.frame_rows(frames_table(t))}"
            for t in tables
        )
    return " UNION ALL ".join(f"SELECT series_id, ts, {COLUMNS} FROM {t}" for t in tables)


def _from_raw(
    parts: PartitionTables, target: str, tables: list[str], res: int, a: int, b: int
) -> None:
    """Buckets ending in ``(a, b]`` from raw samples: the frames of each layout become one
    frame bucket per layout (numpy), the rows are aggregated in SQL into row buckets."""
    frames: list[tuple[Any, ...]] = []
    for t in tables:
        frames += parts.read(
            f"SELECT layout_id, ts, vals FROM {frames_table(t)} WHERE ts > ? AND ts <= ?", (a, b)
        )
    rows = " UNION ALL ".join(f"SELECT series_id, ts, value FROM {t}" for t in tables)
    if not frames:
        _aggregate(parts, target, rows, res, a, b)
        return
    by_end: dict[int, dict[int, list[tuple[int, Any]]]] = {}
    for lid, ts, vals in frames:
        by_end.setdefault(-(-ts // res) * res, {}).setdefault(lid, []).append((ts, vals))
    _walk(
        a, b, res, by_end,
        lambda lo, hi: _aggregate(parts, target, rows, res, lo, hi),
        lambda end: _raw_bucket(parts, target, tables, rows, res, end, by_end[end]),
    )  # fmt: skip


def _walk(
    a: int,
    b: int,
    res: int,
    ends: Iterable[int],
    rows_only: Callable[[int, int], None],
    bucket: Callable[[int], None],
) -> None:
    """``(a, b]`` in order: ``bucket(end)`` for each bucket end with frame data, and
    ``rows_only(lo, hi)`` for each stretch between them (buckets of row series alone)."""
    rest = a
    for end in sorted(ends):
        if rest < end - res:
            rows_only(rest, end - res)
        bucket(end)
        rest = end
    if rest < b:
        rows_only(rest, b)


def _raw_bucket(
    parts: PartitionTables,
    target: str,
    tables: list[str],
    rows: str,
    res: int,
    end: int,
    by_layout: dict[int, list[tuple[int, Any]]],
) -> None:
    """The bucket ending at ``end`` of every series, from frames and rows."""
    import numpy as np

    from signalbox.metrics import framebuckets

    lids = sorted(by_layout)
    row_series = _row_series(
        parts, [f"SELECT series_id, ts FROM {t}" for t in tables], end - res, end
    )
    series = parts.layouts.series_of(lids)
    overlap = _overlap(series, row_series)
    decode = parts.sql.decode_frame
    # layouts by the timestamps of their frames: those of one pass share them, and are
    # computed together
    groups: dict[tuple[int, ...], list[tuple[int, Any, Any]]] = {}
    for lid in lids:
        ids = series.get(lid)
        if ids is None:
            continue  # its layout was deleted meanwhile: the frames are going too
        got = sorted(by_layout[lid], key=_FIRST)
        values = np.array([decode(v) for _, v in got], dtype=np.float64)
        if values.shape[1] != len(ids):
            raise StoreError(
                f"frames of layout {lid} have {values.shape[1]} values for {len(ids)} series"
            )
        groups.setdefault(tuple(ts for ts, _ in got), []).append((lid, ids, values))
    out: list[tuple[Any, ...]] = []
    extra: list[tuple[int, int, float | None]] = []  # samples of overlapping series, as rows
    for stamps, members in groups.items():
        buckets = framebuckets.from_frames_many(end, stamps, [m[2] for m in members])
        for (lid, ids, values), bucket in zip(members, buckets, strict=True):
            gone = _positions_of(ids, overlap)
            if gone is not None:
                bucket.absent = gone
                for pos in gone.tolist():
                    sid = ids[pos]
                    extra += [(sid, ts, _nullable(values[k, pos])) for k, ts in enumerate(stamps)]
                if len(gone) == len(ids):
                    continue
            out.append(framebuckets.encode(lid, bucket))
    _write_frame_buckets(parts, target, out)
    if extra:
        _temp(
            parts,
            _EXTRA_RAW,
            "series_id BIGINT NOT NULL, ts BIGINT NOT NULL, value DOUBLE PRECISION",
        )
        parts.db.executemany(
            f"INSERT INTO {_EXTRA_RAW} (series_id, ts, value) VALUES (?, ?, ?)", extra
        )
        rows = f"{rows} UNION ALL SELECT series_id, ts, value FROM {_EXTRA_RAW}"
    _aggregate(parts, target, rows, res, end - res, end)


_EXTRA_RAW = "rollup_extra_raw"
_EXTRA_BUCKETS = "rollup_extra_buckets"
_FIRST = operator.itemgetter(0)


def _temp(parts: PartitionTables, name: str, cols: str) -> None:
    """An empty temporary table of this connection (samples of series that overlap)."""
    parts.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({cols})")
    parts.db.execute(f"DELETE FROM {name}")


def _nullable(v: Any) -> float | None:
    """NaN as the bucket tables keep it (NULL)."""
    f = float(v)
    return None if f != f else f


def _row_series(parts: PartitionTables, selects: list[str], a: int, b: int) -> set[int]:
    """Series with rows (samples or row buckets) in ``(a, b]``."""
    union = " UNION ALL ".join(selects)
    got = parts.read(
        f"SELECT DISTINCT series_id FROM ({union}) AS r WHERE ts > ? AND ts <= ?", (a, b)
    )
    return {r[0] for r in got}


def _overlap(series: dict[int, Any], row_series: set[int], absent: Iterable[int] = ()) -> set[int]:
    """The series whose bucket has more than one source: in two of these layouts (``series``:
    layout id -> series ids), in one and in rows, or at a position a finer frame bucket
    left to the rows (``absent`` series)."""
    import numpy as np

    overlap = set(absent)
    packed = [np.frombuffer(ids, dtype=np.int64) for ids in series.values()]
    every = np.sort(np.concatenate(packed)) if packed else np.empty(0, np.int64)
    if len(packed) > 1:
        overlap.update(every[1:][every[1:] == every[:-1]].tolist())
    if row_series and len(every):
        rs = np.fromiter(row_series, dtype=np.int64, count=len(row_series))
        at = np.searchsorted(every, rs).clip(0, len(every) - 1)
        overlap.update(rs[every[at] == rs].tolist())
    return overlap


def _positions_of(ids: Any, overlap: set[int]) -> Any:
    """Positions of layout series ``ids`` that are in ``overlap`` (None if none are)."""
    import numpy as np

    if not overlap:
        return None
    arr = np.frombuffer(ids, dtype=np.int64)
    hit = np.isin(arr, np.fromiter(overlap, dtype=np.int64, count=len(overlap)))
    found = np.flatnonzero(hit)
    return found if len(found) else None


def _write_frame_buckets(parts: PartitionTables, target: str, rows: list[tuple[Any, ...]]) -> None:
    from signalbox.metrics import framebuckets

    if not rows:
        return
    cols = framebuckets.COLUMNS.split(", ")
    parts.db.executemany(
        parts.db.dialect.upsert(fbuckets_table(target), cols, ["layout_id", "ts"]), rows
    )


def _end(col: str, res: int) -> str:
    """The end of the bucket of size ``res`` holding time ``col``."""
    return f"(({col} + {res - 1}) / {res}) * {res}"


def _aggregate(parts: PartitionTables, target: str, source: str, res: int, a: int, b: int) -> None:
    """Buckets ending in ``(a, b]`` from the raw samples ``(series_id, ts, value)`` of ``source``
    (in numpy, :mod:`signalbox.metrics.rowbuckets`)."""

    def compute(c: dict[str, Any]) -> dict[str, Any]:
        from signalbox.metrics import rowbuckets

        return rowbuckets.from_samples(c["series_id"], c["ts"], c["value"], res)

    _in_batches(
        parts,
        target,
        f"SELECT series_id, ts, value FROM ({source}) AS x WHERE ts > ? AND ts <= ? "
        "ORDER BY series_id, ts",
        (a, b),
        res,
        compute,
    )


_BATCH_ROWS = 100_000
"""Rows (samples or finer buckets) a rollup of row series holds in memory at once."""


def _in_batches(
    parts: PartitionTables,
    target: str,
    select: str,
    params: tuple[int, int],
    res: int,
    compute: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Rows of ``select`` (series id and time first, sorted by them) a batch at a time, each
    batch's buckets computed by ``compute`` and upserted into ``target``; the rows of the
    last bucket of a batch wait for the next, which may hold more of it. No rows, no numpy
    imported (a first pass rolls up the empty minutes before its samples)."""
    db = parts.db
    cur = db.execute(select, params)
    got = cur.fetchmany(_BATCH_ROWS)
    if not got:
        return
    from signalbox.metrics import rowbuckets

    names = [d[0] for d in cur.description]
    upsert = db.dialect.upsert(target, list(rowbuckets.FINER), ["series_id", "ts"])

    def write(batch: list[tuple[Any, ...]]) -> None:
        db.executemany(upsert, rowbuckets.rows(compute(rowbuckets.columns(batch, names))))

    carry: list[tuple[Any, ...]] = []
    while got:
        batch = carry + got if carry else got
        sid, end = batch[-1][0], -(-batch[-1][1] // res) * res
        i = len(batch)
        while i and batch[i - 1][0] == sid and -(-batch[i - 1][1] // res) * res == end:
            i -= 1
        carry = batch[i:]
        if i:
            write(batch[:i])
        got = cur.fetchmany(_BATCH_ROWS)
    if carry:
        write(carry)


def _from_tier(
    parts: PartitionTables, target: str, tables: list[str], res: int, a: int, b: int
) -> None:
    """Buckets ending in ``(a, b]`` combined from the finer buckets of ``tables``: frame
    buckets layout by layout (numpy), row buckets in SQL. Both are read by their bucket end
    (the frame buckets' index, the row buckets' index), never by scanning a partition.

    Only the keys of the window's frame buckets are read at first; their arrays are read a
    destination bucket and a chunk of layouts at a time (:data:`CHUNK_POSITIONS`), so an hour
    of a million series, or a day caught up at once, takes tens of MB, not GB."""
    keys: list[tuple[Any, ...]] = []
    for t in tables:
        parts.ensure_fbuckets(t)
        keys += parts.read(
            f"SELECT layout_id, ts, absent FROM {fbuckets_table(t)} WHERE ts > ? AND ts <= ?",
            (a, b),
        )
    rows = _union(parts, tables, False)
    if not keys:
        _combine_rows(parts, target, rows, res, a, b)
        return
    by_end: dict[int, dict[int, list[Any]]] = {}  # bucket end -> layout -> absent blobs
    for lid, ts, absent in keys:
        by_end.setdefault(-(-ts // res) * res, {}).setdefault(lid, []).append(absent)
    _walk(
        a, b, res, by_end,
        lambda lo, hi: _combine_rows(parts, target, rows, res, lo, hi),
        lambda end: _tier_bucket(parts, target, tables, rows, res, end, by_end[end]),
    )  # fmt: skip


CHUNK_POSITIONS = 100_000
"""Series positions whose finer frame buckets a rollup holds in memory at once."""
_CHUNK_LAYOUTS = 500  # and layouts (parameters of one statement)


def _tier_bucket(
    parts: PartitionTables,
    target: str,
    tables: list[str],
    rows: str,
    res: int,
    end: int,
    absents: dict[int, list[Any]],
) -> None:
    """The bucket ending at ``end`` of every series, from finer frame and row buckets."""
    import numpy as np

    from signalbox.metrics import framebuckets

    series = parts.layouts.series_of(sorted(absents))
    absent: set[int] = set()
    for lid, blobs in absents.items():
        ids = series.get(lid)
        for blob in blobs:
            if blob is not None and ids is not None:
                at = np.frombuffer(bytes(blob), dtype="<i8")
                absent.update(np.frombuffer(ids, dtype=np.int64)[at].tolist())
    row_series = _row_series(
        parts, [f"SELECT series_id, ts FROM {t}" for t in tables], end - res, end
    )
    overlap = _overlap(series, row_series, absent)
    extra: list[tuple[Any, ...]] = []  # finer buckets of overlapping series, as rows
    for chunk in _chunks(series):
        marks = ", ".join("?" * len(chunk))
        by_layout: dict[int, list[framebuckets.FrameBucket]] = {}
        for t in tables:
            for row in parts.read(
                f"SELECT {framebuckets.COLUMNS} FROM {fbuckets_table(t)} "
                f"WHERE ts > ? AND ts <= ? AND layout_id IN ({marks})",
                (end - res, end, *chunk),
            ):
                lid, fb = framebuckets.decode(row)
                by_layout.setdefault(lid, []).append(fb)
        groups: dict[tuple[Any, ...], list[tuple[int, Any, list[framebuckets.FrameBucket]]]] = {}
        for lid in chunk:
            ids = series[lid]
            fbs = sorted(by_layout.get(lid, ()), key=lambda f: f.end)
            if not fbs:
                continue  # deleted meanwhile (a rebuild of this window)
            if any(f.size != len(ids) for f in fbs):
                raise StoreError(
                    f"frame buckets of layout {lid} do not match its {len(ids)} series"
                )
            groups.setdefault(framebuckets.timing(fbs), []).append((lid, ids, fbs))
        out: list[tuple[Any, ...]] = []
        for members in groups.values():
            combined = framebuckets.combine_many(end, [m[2] for m in members])
            for (lid, ids, fbs), bucket in zip(members, combined, strict=True):
                gone = _positions_of(ids, overlap)
                if gone is not None:
                    bucket.absent = gone
                    for fb in fbs:
                        skip = set() if fb.absent is None else set(fb.absent.tolist())
                        extra += [_as_row(ids[p], fb, p) for p in gone.tolist() if p not in skip]
                    if len(gone) == len(ids):
                        continue
                out.append(framebuckets.encode(lid, bucket))
        _write_frame_buckets(parts, target, out)
    source = rows
    if extra:
        _temp(parts, _EXTRA_BUCKETS, BUCKET_COLUMNS)
        marks = ", ".join("?" * (2 + len(COLUMNS.split(", "))))
        parts.db.executemany(f"INSERT INTO {_EXTRA_BUCKETS} ({_COLS}) VALUES ({marks})", extra)
        source = f"{rows} UNION ALL SELECT {_COLS} FROM {_EXTRA_BUCKETS}"
    _combine_rows(parts, target, source, res, end - res, end)


def _chunks(series: dict[int, Any]) -> list[list[int]]:
    """The layouts of ``series`` (id -> series ids) in chunks of at most
    :data:`CHUNK_POSITIONS` positions (or one layout) and :data:`_CHUNK_LAYOUTS` layouts."""
    out: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for lid in sorted(series):
        n = len(series[lid])
        if cur and (size + n > CHUNK_POSITIONS or len(cur) >= _CHUNK_LAYOUTS):
            out.append(cur)
            cur, size = [], 0
        cur.append(lid)
        size += n
    if cur:
        out.append(cur)
    return out


def _as_row(sid: int, fb: framebuckets.FrameBucket, pos: int) -> tuple[Any, ...]:
    """Position ``pos`` of a frame bucket as a row bucket (``_COLS`` order)."""
    from signalbox.metrics import framebuckets

    f = {name: fb.field(name)[pos] for name in framebuckets.FIELDS}
    return (
        sid, fb.end, fb.count, _nullable(f["sum"]), _nullable(f["min"]), _nullable(f["max"]),
        fb.first_ts, _nullable(f["first"]), fb.last_ts, _nullable(f["last"]),
        fb.prev_ts or None, _nullable(f["prev"]) if fb.count > 1 else None,
        float(f["drops"]), int(f["resets"]), int(f["changes"]), fb.sx, fb.sxx,
        _nullable(f["sxy"]), _nullable(f["m2"]),
    )  # fmt: skip


def _combine_rows(
    parts: PartitionTables, target: str, source: str, res: int, a: int, b: int
) -> None:
    """Row buckets ending in ``(a, b]`` combined from the finer row buckets of ``source`` (in
    numpy, :mod:`signalbox.metrics.rowbuckets`)."""

    def compute(c: dict[str, Any]) -> dict[str, Any]:
        from signalbox.metrics import rowbuckets

        return rowbuckets.combine(c, res)

    _in_batches(
        parts,
        target,
        f"SELECT {_COLS} FROM ({source}) AS t WHERE t.ts > ? AND t.ts <= ? ORDER BY series_id, ts",
        (a, b),
        res,
        compute,
    )
