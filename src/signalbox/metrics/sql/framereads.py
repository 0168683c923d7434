"""Reading frame buckets (see :mod:`signalbox.metrics.framebuckets`) for a select: the
buckets of the wanted series, position by position, as per-series columns.

Many series of a layout: whole rows are decoded and the wanted positions taken with numpy.
A few: only their 8 bytes per statistic are read (``substr`` of the stored arrays), so one
series over a week of 1-minute buckets reads ~100 KB, not the week's frames of its file.

``arrays``: the columns as lists of numpy arrays (pieces to concatenate) instead of Python
lists: the vector kernels' reads (:mod:`signalbox.metrics.sql.bucketcolumns`) take the
decoded arrays as they are, not a float object per bucket and statistic and back.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signalbox import limits
from signalbox.metrics.sql import sealing
from signalbox.metrics.sql.partitions import PartitionTables, fbuckets_table

if TYPE_CHECKING:
    from signalbox.metrics.framebuckets import FrameBucket

# SeriesPoints list -> the FrameBucket statistic it is read from ("" : a per-layout number)
_FIELD_OF = {
    "values": "last", "counts": "", "sums": "sum", "mins": "min", "maxs": "max",
    "firsts": "first", "prev_ts": "", "prevs": "prev", "drops": "drops", "resets": "resets",
    "changes": "changes", "sx": "", "sxx": "", "sxy": "sxy", "m2": "m2",
}  # fmt: skip
_INTS = frozenset({"resets", "changes"})
_FEW = 4  # wanted positions per layout up to which only their bytes are read

Columns = dict[str, list[Any]]


def read(
    parts: PartitionTables,
    tables: Sequence[str],
    ids: Sequence[int],
    lo: int,
    hi: int,
    stats: tuple[str, ...],
    unit: int = 0,
    *,
    arrays: bool = False,
) -> dict[int, Columns]:
    """Per series: ``timestamps``, ``values``, ``first_ts`` and ``stats`` (SeriesPoints
    names) of its frame buckets ending in ``[lo, hi]`` of the rollup partitions ``tables``,
    the sealed ones (units of ``unit`` ms, 0: none) included, not in time order (the caller
    sorts). ``arrays``: each column a list of numpy arrays to concatenate (``prev_ts`` with
    0 for none), not of numbers."""
    where = parts.layouts.positions(ids)
    out: dict[int, Columns] = {}
    if not where:
        return out
    names = ("timestamps", "values", "first_ts", *stats)
    for table in tables:
        few = {lid: ps for lid, ps in where.items() if len(ps) <= _FEW}
        many = [lid for lid, ps in where.items() if len(ps) > _FEW]
        for lid, ps in few.items():
            # sealed units first: they are older than the frame buckets not sealed yet
            _read_few_sealed(parts, table, lid, ps, lo, hi, unit, names, out, arrays)
            _read_few(parts, fbuckets_table(table), lid, ps, lo, hi, names, out, arrays)
        for i in range(0, len(many), 200):
            chunk = many[i : i + 200]
            _read_many(parts, table, chunk, where, lo, hi, names, out, unit, arrays)
    return out


def _columns(out: dict[int, Columns], sid: int, names: Sequence[str]) -> Columns:
    got = out.get(sid)
    if got is None:
        got = out[sid] = {n: [] for n in names}
    return got


def _read_many(
    parts: PartitionTables,
    table: str,
    lids: list[int],
    where: dict[int, list[tuple[int, int]]],
    lo: int,
    hi: int,
    names: Sequence[str],
    out: dict[int, Columns],
    unit: int,
    arrays: bool = False,
) -> None:
    """Whole rows of many positions of these layouts, decoded and cut with numpy; sealed
    units unsealed whole."""
    import numpy as np

    from signalbox.metrics import framebuckets

    marks = ",".join("?" * len(lids))
    rows = parts.read(
        f"SELECT {framebuckets.COLUMNS} FROM {fbuckets_table(table)} WHERE layout_id IN ({marks}) "
        "AND ts >= ? AND ts <= ? ORDER BY layout_id, ts",
        (*lids, lo, hi),
    )
    by_layout: dict[int, list[framebuckets.FrameBucket]] = sealing.read_buckets(
        parts, table, lids, lo, hi, unit
    )
    for row in rows:
        lid, fb = framebuckets.decode(row)
        by_layout.setdefault(lid, []).append(fb)
    for lid, fbs in by_layout.items():
        ps = where[lid]
        pos = np.array([p for p, _ in ps], dtype=np.int64)
        limits.charge(len(fbs) * len(ps))
        # per name: one list per position, one item per bucket
        per_name: dict[str, Any] = {}
        for n in names:
            field = _FIELD_OF.get(n, "")
            if field:
                cols = np.stack([fb.field(field)[pos] for fb in fbs]).T
                cols = cols.astype(np.int64) if field in _INTS else cols
                per_name[n] = cols if arrays else cols.tolist()
            else:
                shared = [_scalar(fb, n) for fb in fbs]
                if arrays:
                    shared = _shared_array(n, shared)
                per_name[n] = [shared] * len(ps)
        gone = [None if fb.absent is None else set(fb.absent.tolist()) for fb in fbs]
        for j, (p, sid) in enumerate(ps):
            keep = [b for b, g in enumerate(gone) if g is None or p not in g]
            if not keep:
                continue
            into = _columns(out, sid, names)
            for n in names:
                got = per_name[n][j]
                if arrays:
                    into[n].append(got if len(keep) == len(fbs) else got[keep])
                else:
                    into[n].extend(got if len(keep) == len(fbs) else [got[b] for b in keep])


def _shared_array(name: str, values: list[Any]) -> Any:
    """A shared per-bucket number as an array: times (``prev_ts`` 0 for none) as int64."""
    import numpy as np

    if name in ("timestamps", "first_ts", "prev_ts"):
        return np.array([0 if v is None else v for v in values], dtype=np.int64)
    return np.array(values, dtype=np.float64)


def _scalar(fb: FrameBucket, name: str) -> Any:
    """A statistic every position of a frame bucket shares."""
    return {
        "timestamps": fb.last_ts,
        "first_ts": fb.first_ts,
        "counts": fb.count,
        "prev_ts": fb.prev_ts,
        "sx": fb.sx,
        "sxx": fb.sxx,
    }[name]


def _read_few(
    parts: PartitionTables,
    table: str,
    lid: int,
    ps: list[tuple[int, int]],
    lo: int,
    hi: int,
    names: Sequence[str],
    out: dict[int, Columns],
    arrays: bool = False,
) -> None:
    """A few positions of one layout: 8 bytes per statistic each, cut out in SQL, and made
    columns with numpy (no Python work per bucket: 8 days of 1-minute buckets are 11,520)."""
    import numpy as np

    from signalbox.metrics import framebuckets

    size = parts.layouts.series_of([lid]).get(lid)
    if size is None:
        return
    n = len(size)
    fields = [f for f in framebuckets.FIELDS if any(_FIELD_OF.get(x) == f for x in names)]
    idx = {f: i for i, f in enumerate(framebuckets.FIELDS)}
    cuts = []
    for p, _ in ps:
        for f in fields:
            many = (idx[f] * n + p) * 8 + 1
            cuts.append(f"substr(stats, CASE WHEN count = 1 THEN {p * 8 + 1} ELSE {many} END, 8)")
    rows = parts.read(
        f"SELECT ts, count, first_ts, last_ts, prev_ts, sx, sxx, absent, {', '.join(cuts)} "
        f"FROM {table} WHERE layout_id = ? AND ts >= ? AND ts <= ? ORDER BY ts",
        (lid, lo, hi),
    )
    limits.charge(len(rows) * len(ps))
    if not rows:
        return
    # every cut of every row as one array: (row, position, field)
    nf = max(len(fields), 1)
    cut = (
        np.frombuffer(
            b"".join(map(bytes, itertools.chain.from_iterable(r[8:] for r in rows))), dtype="<f8"
        ).reshape(len(rows), len(ps), len(fields))
        if fields
        else np.full((len(rows), len(ps), nf), np.nan)
    )
    _, counts, firsts, lasts, prevs, sxs, sxxs, absents = (
        list(c) for c in zip(*(r[:8] for r in rows), strict=True)
    )
    one = np.array(counts) == 1  # the value alone: every other statistic follows from it
    shared = {
        "timestamps": lasts, "first_ts": firsts, "counts": counts,
        "prev_ts": [t or 0 for t in prevs], "sx": sxs, "sxx": sxxs,
    }  # fmt: skip
    if arrays:
        shared = {k: _shared_array(k, v) for k, v in shared.items()}
    gone = [(i, _absent(a)) for i, a in enumerate(absents) if a is not None]
    for j, (p, sid) in enumerate(ps):
        drop = [i for i, g in gone if p in g]
        keep = None if not drop else np.setdiff1d(np.arange(len(rows)), drop)
        if keep is not None and not len(keep):
            continue
        per_field = {}
        for k, f in enumerate(fields):
            col = cut[:, j, k].copy()
            if one.any():
                col[one] = _one_of(f, cut[one, j, 0])
            per_field[f] = col if keep is None else col[keep]
        into = _columns(out, sid, names)
        for nm in names:
            f = _FIELD_OF.get(nm, "")
            if arrays:
                piece: Any = shared[nm] if not f else per_field[f]
                if f in _INTS:
                    piece = piece.astype(np.int64)
                into[nm].append(piece if keep is None or f else piece[keep])  # fields: kept
            elif not f:
                got = shared[nm]
                into[nm].extend(got if keep is None else [got[i] for i in keep.tolist()])
            elif f in _INTS:
                into[nm].extend(per_field[f].astype(np.int64).tolist())
            else:
                into[nm].extend(per_field[f].tolist())


def _read_few_sealed(
    parts: PartitionTables,
    table: str,
    lid: int,
    ps: list[tuple[int, int]],
    lo: int,
    hi: int,
    unit: int,
    names: Sequence[str],
    out: dict[int, Columns],
    arrays: bool = False,
) -> None:
    """A few positions of one layout in sealed units: a header and one chunk row per unit
    (an hour of 1-minute buckets), each position's buckets contiguous in its chunk: the
    stored arrays themselves (``frombuffer``) where ``arrays``."""
    import numpy as np

    fields = sorted({f for n in names if (f := _FIELD_OF.get(n, ""))})
    got = sealing.read_positions(parts, table, lid, [p for p, _ in ps], lo, hi, unit, fields)
    for p, sid in ps:
        cols = got.get(p)
        if cols is None or not len(cols["ends"]):
            continue
        limits.charge(len(cols["ends"]))
        into = _columns(out, sid, names)
        for nm in names:
            col = cols[_FIELD_OF.get(nm, "") or _SHARED_OF[nm]]
            if _FIELD_OF.get(nm, "") in _INTS:
                col = col.astype(np.int64)
            if arrays:
                into[nm].append(col)
            else:
                into[nm].extend(col.tolist())


_SHARED_OF = {
    "timestamps": "last_ts", "first_ts": "first_ts", "counts": "counts", "prev_ts": "prev_ts",
    "sx": "sx", "sxx": "sxx",
}  # fmt: skip
"""SeriesPoints names of the numbers every position of a bucket shares -> header names."""


def _one_of(field: str, v: Any) -> Any:
    """A statistic of one-sample buckets of values ``v`` (array): the value is all of it."""
    import numpy as np

    if field == "prev":
        return np.full_like(v, np.nan)
    if field in ("drops", "resets", "changes"):
        return np.zeros_like(v)
    if field in ("sxy", "m2"):
        with np.errstate(invalid="ignore"):
            return v * 0.0
    return v


def _absent(blob: Any) -> set[int]:
    import numpy as np

    return set(np.frombuffer(bytes(blob), dtype="<i8").tolist())
