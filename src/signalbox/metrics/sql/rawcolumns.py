"""The raw samples of many series over a window, as arrays: what the range functions' vector
kernels (:mod:`signalbox.query.vectorkernels`) read, and what ``select`` cuts into each
series' lists when its window spans more than one raw partition.

Read one partition at a time, a 1-hour window over a dozen 5-minute partitions is three
statements per partition (stamps, rows, frames), rows sorted and grouped in Python and a
``SeriesPoints`` of lists per series, which the kernels then copy into arrays again. Here
the rows of every partition are one ``UNION ALL`` statement (a few series: index seeks by
the partition's written timestamps, as ``PartitionTables.raw_rows`` seeks; many: a range
scan filtered with numpy), the frames of the layouts holding the series one more,
unpacked with numpy, and the whole sorted by (series, time) with one ``lexsort``. Stale
markers are not read here: range functions ignore them (see
:class:`~signalbox.metrics.store.SeriesPoints`), and ``select`` reads them itself.

A row costs the driver more than the SQL that finds it (a 1-hour ``increase[1h]`` of 20
series is 2,400 rows), and each column more on top: series and time come back as one
integer, ``series_id * 2**32 + (ts - lo)``, exact while ids stay below 2**31 and the window
below 2**32 ms (49 days), taken apart with numpy; rows become arrays in one ``fromiter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from signalbox import limits
from signalbox.exceptions import StoreError
from signalbox.metrics.sql import rawcache, rawgrid
from signalbox.metrics.sql.partitions import IN_LIST_MAX, frames_table

if TYPE_CHECKING:
    from signalbox.metrics.partitions import Level
    from signalbox.metrics.sql.partitions import PartitionTables

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_KEY = np.dtype([("key", np.int64), ("value", np.float64)])
_ROW = np.dtype([("series", np.int64), ("ts", np.int64), ("value", np.float64)])
_SHIFT = 32
_LOW = (1 << _SHIFT) - 1

_GRID_SPAN = 1 << 53  # a grid's times are offsets from the window's start held as floats

STAMPS_MAX = 2000
"""More written timestamps than this in a partition (an import): a range scan, not seeks
(``PartitionTables.raw_rows``' rule)."""


def read(
    parts: PartitionTables, raw: Level, ids: Sequence[int], start_ms: int, end_ms: int
) -> tuple[Ints, Ints, Ints, Floats]:
    """Every raw sample of ``ids`` in ``[start_ms, end_ms]``: (the series that have one,
    ascending; their offsets, ``len + 1``; timestamps; values), sorted by series then time,
    NaN and infinities kept."""
    sid, ts, val = _samples(parts, raw, ids, start_ms, end_ms)
    heads = np.flatnonzero(np.diff(sid, prepend=-1))
    return sid[heads], np.append(heads, len(sid)).astype(np.int64), ts, val


def _samples(
    parts: PartitionTables, raw: Level, ids: Sequence[int], start_ms: int, end_ms: int
) -> tuple[Ints, Ints, Floats]:
    tables = parts.between(raw, start_ms, end_ms)
    if not tables or not ids:
        return _empty()
    wanted = np.unique(np.asarray(ids, dtype=np.int64))
    # with limits, the partitions' timestamp counts first: the estimate below and the rows'
    # plan (few series) from one statement (a second count was one of a 1h query's seven);
    # without, _rows counts only the partitions the raw cache leaves it to read
    counts = None
    credit = 0
    if limits.current() is not None:  # estimated first: a heavy query waits before it reads
        counts = _stamp_counts(parts, tables, start_ms, end_ms)
        credit = limits.ahead(len(ids) * sum(counts.values()))
    sids: list[Ints] = []
    stamps: list[Ints] = []
    values: list[Floats] = []

    def fill(ts: list[tuple[int, str]], want: Ints, lo: int, hi: int) -> tuple[Ints, Ints, Floats]:
        s: list[Ints] = []
        t: list[Ints] = []
        v: list[Floats] = []
        _rows(parts, ts, want, lo, hi, s, t, v, None)
        _frames(parts, ts, want, lo, hi, s, t, v)
        return (np.concatenate(s), np.concatenate(t), np.concatenate(v)) if s else _empty()

    tables, cached = rawcache.read(parts, tables, raw.span_ms, wanted, start_ms, end_ms, fill)
    for sid, ts, val in cached:
        sids.append(sid)
        stamps.append(ts)
        values.append(val)
    if tables:
        _rows(parts, tables, wanted, start_ms, end_ms, sids, stamps, values, counts)
        _frames(parts, tables, wanted, start_ms, end_ms, sids, stamps, values)
    if not sids:
        limits.charge(-credit)
        return _empty()
    sid, ts, val = np.concatenate(sids), np.concatenate(stamps), np.concatenate(values)
    limits.charge(len(sid) - credit)
    order = np.lexsort((ts, sid))
    sid, ts, val = sid[order], ts[order], val[order]
    same = sid[1:] == sid[:-1]
    if (same & (ts[1:] <= ts[:-1])).any():
        at = int(np.flatnonzero(same & (ts[1:] <= ts[:-1]))[0])
        raise StoreError(
            f"raw partitions hold two samples of series {int(sid[at])} at {int(ts[at])} ms "
            "(a row and a frame?)"
        )
    return sid, ts, val


def _empty() -> tuple[Ints, Ints, Floats]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)


def _in_list(ids: Ints) -> str:
    return ",".join(map(str, ids.tolist()))  # our own integer ids: no quoting needed


def _rows(
    parts: PartitionTables,
    tables: list[tuple[int, str]],
    wanted: Ints,
    lo: int,
    hi: int,
    sids: list[Ints],
    stamps: list[Ints],
    values: list[Floats],
    counts: dict[int, int] | None,
) -> None:
    """The rows of the wanted series. A few series: every partition in one statement (one
    per partition if one was dropped by retention meanwhile), planned by ``counts`` (each
    partition's timestamps in the window, :func:`_stamp_counts`). Many: a range scan per
    partition, each turned into arrays and filtered before the next is read, so the
    tuples of one partition at most are held at once."""
    keyed = int(wanted[0]) >= 0 and int(wanted[-1]) < 1 << (_SHIFT - 1) and hi - lo <= _LOW
    # the key's ts - ? is bound to lo (never negative: ts >= lo), the statement's text kept
    head, first = (
        (f"SELECT series_id * {1 << _SHIFT} + (ts - ?), value", (lo,))
        if keyed
        else ("SELECT series_id, ts, value", ())
    )
    base = lo if keyed else None
    if len(wanted) > IN_LIST_MAX:
        for _, table in tables:
            rows = parts.read(f"{head} FROM {table} WHERE ts >= ? AND ts <= ?", (*first, lo, hi))
            _append(rows, base, wanted, sids, stamps, values)
        return
    if counts is None:
        counts = _stamp_counts(parts, tables, lo, hi)
    ids = _in_list(wanted)
    statements: list[tuple[str, tuple[int, ...]]] = []
    # SQLite: the partitions read by seeks as grids, a row per timestamp (rawgrid)
    grid = parts.db.dialect.name == "sqlite" and hi - lo < _GRID_SPAN
    seeks: list[tuple[int, str]] = []
    for start, table in tables:
        n = counts.get(start, 0)
        if not n:
            continue
        if grid and n <= STAMPS_MAX:
            seeks.append((start, table))
        elif n > STAMPS_MAX:
            statements.append(
                (
                    f"{head} FROM {table} WHERE ts >= ? AND ts <= ? AND series_id IN ({ids})",
                    (*first, lo, hi),
                )
            )
        else:
            statements.append(
                (
                    f"{head} FROM {table} WHERE ts IN (SELECT ts FROM "
                    f"metric_stamps WHERE start_ms = ? AND ts >= ? AND ts <= ?) "
                    f"AND series_id IN ({ids})",
                    (*first, start, lo, hi),
                )
            )
    if seeks:
        rawgrid.read(parts, seeks, wanted, lo, hi, sids, stamps, values)
    if not statements:
        return
    union = " UNION ALL ".join(sql for sql, _ in statements)
    got = parts._read_or_none(union, [p for _, ps in statements for p in ps])
    if got is None:  # a partition went away meanwhile: each alone, a missing one empty
        got = [row for sql, ps in statements for row in parts.read(sql, ps)]
    _append(got, base, None, sids, stamps, values)


def _stamp_counts(
    parts: PartitionTables, tables: list[tuple[int, str]], lo: int, hi: int
) -> dict[int, int]:
    """How many timestamps each raw partition (by its start) holds in ``[lo, hi]``; their
    sum is what ``PartitionTables.stamp_count`` says of the window (every stamp lies in
    the partition that holds its time)."""
    starts = ",".join(str(int(start)) for start, _ in tables)
    return dict(
        parts.db.query(
            f"SELECT start_ms, count(*) FROM metric_stamps WHERE start_ms IN ({starts}) "
            "AND ts >= ? AND ts <= ? GROUP BY start_ms",
            (lo, hi),
        )
    )


def _append(
    rows: list[tuple[Any, ...]],
    base: int | None,
    wanted: Ints | None,
    sids: list[Ints],
    stamps: list[Ints],
    values: list[Floats],
) -> None:
    """Rows as arrays, only the ``wanted`` series' if given: ``(key, value)`` rows keyed
    from ``base`` (see the module's docstring), else ``(series_id, ts, value)``."""
    if not rows:
        return
    # fromiter reads a NULL value (SQLite's NaN) as NaN, as np.array(..., float64) does
    if base is None:
        got = np.fromiter(rows, dtype=_ROW, count=len(rows))
        sid, ts = got["series"], got["ts"]
    else:
        got = np.fromiter(rows, dtype=_KEY, count=len(rows))
        key = got["key"]
        sid, ts = key >> _SHIFT, (key & _LOW) + base
    val = got["value"]
    if wanted is not None:
        keep = np.isin(sid, wanted)
        sid, ts, val = sid[keep], ts[keep], val[keep]
    sids.append(np.ascontiguousarray(sid))
    stamps.append(np.ascontiguousarray(ts))
    values.append(np.ascontiguousarray(val))


def _frames(
    parts: PartitionTables,
    tables: list[tuple[int, str]],
    wanted: Ints,
    lo: int,
    hi: int,
    sids: list[Ints],
    stamps: list[Ints],
    values: list[Floats],
) -> None:
    """The wanted series' values in the frames of the layouts holding them, unpacked."""
    where = parts.layouts.positions(wanted.tolist())
    if not where:
        return
    picks = {
        lid: (np.array([p for p, _ in ps], dtype=np.int64), np.array([s for _, s in ps]))
        for lid, ps in where.items()
    }
    lids = np.array(sorted(where), dtype=np.int64)
    decode = parts.sql.decode_frame_array
    for i in range(0, len(lids), IN_LIST_MAX):
        chunk = _in_list(lids[i : i + IN_LIST_MAX])
        sql = " UNION ALL ".join(
            f"SELECT layout_id, ts, vals FROM {frames_table(t)} WHERE ts >= ? AND ts <= ? "
            f"AND layout_id IN ({chunk})"
            for _, t in tables
        )
        frames = parts._read_or_none(sql, [lo, hi] * len(tables))
        if frames is None:
            frames = []
            for _, t in tables:
                frames += parts.read(
                    f"SELECT layout_id, ts, vals FROM {frames_table(t)} WHERE ts >= ? "
                    f"AND ts <= ? AND layout_id IN ({chunk})",
                    (lo, hi),
                )
        for lid, ts, vals in frames:
            pos, sid = picks[lid]
            got = decode(vals)
            if len(got) <= int(pos.max()):
                raise StoreError(
                    f"a frame of layout {lid} at {ts} ms has {len(got)} values, "
                    f"fewer than its series"
                )
            sids.append(sid)
            stamps.append(np.full(len(pos), ts, dtype=np.int64))
            values.append(got[pos])
