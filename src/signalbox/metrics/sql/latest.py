"""The newest raw sample of many series at one instant, as arrays.

``sum by (shard) (x)`` over a million series needs one number per series: the newest sample
in the lookback window, unless a stale marker ended the series after it. Read through
``select`` that is a list per series, a ``SeriesPoints`` per series and a bisect per series:
seconds of Python. Here the newest frame of each layout in the window is read whole (a spool
file's 500 series are one row), plain rows by one ``GROUP BY``, and the newest sample of
each series is picked with numpy. Same answer as the general path (a property test holds it
there), a few operations per layout instead of per series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from signalbox import limits
from signalbox.exceptions import StoreError
from signalbox.metrics.sql import stale as sqlstale
from signalbox.metrics.sql.partitions import frames_table

if TYPE_CHECKING:
    from signalbox.metrics.partitions import Level
    from signalbox.metrics.sql.partitions import PartitionTables
    from signalbox.storage.database import Database

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def newest(
    db: Database,
    parts: PartitionTables,
    raw: Level,
    ids: Sequence[int],
    at_ms: int,
    lookback_ms: int,
) -> tuple[Ints, Floats]:
    """(series ids ascending, values) of the newest sample in ``(at - lookback, at]`` of each
    of ``ids`` that has one there and was not ended by a stale marker at or after it."""
    lo, hi = at_ms - lookback_ms + 1, at_ms
    wanted = np.asarray(ids, dtype=np.int64)
    sids: list[Ints] = []
    stamps: list[Ints] = []
    values: list[Floats] = []
    seen: set[int] = set()  # layouts with a frame in a newer partition: theirs is newer
    for _, table in reversed(parts.between(raw, lo, hi)):
        _frames(parts, table, lo, hi, seen, sids, stamps, values)
        rows = parts.read(parts.sql.latest_per_series(table, "ts >= ? AND ts <= ?"), (lo, hi))
        if rows:
            s, t, v = zip(*rows, strict=True)
            sids.append(np.array(s, dtype=np.int64))
            stamps.append(np.array(t, dtype=np.int64))
            values.append(np.array([np.nan if x is None else x for x in v], dtype=np.float64))
    if not sids:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    sid, ts, val = np.concatenate(sids), np.concatenate(stamps), np.concatenate(values)
    limits.charge(len(sid))
    if len(wanted):  # a lookup table by id: one pass, no sort
        mask = np.zeros(max(int(wanted.max()), int(sid.max(initial=0))) + 1, dtype=bool)
        mask[wanted] = True
        keep = mask[sid]
        sid, ts, val = sid[keep], ts[keep], val[keep]
    order = np.lexsort((ts, sid))  # by series, then time: the last of each run is the newest
    sid, ts, val = sid[order], ts[order], val[order]
    last = np.ones(len(sid), dtype=bool)
    last[:-1] = sid[1:] != sid[:-1]
    sid, ts, val = sid[last], ts[last], val[last]
    # a marker before every newest sample ends none of them: only the later ones are read
    marks = sqlstale.in_window(db, max(lo, int(ts.min(initial=hi))), hi, ordered=False)
    if marks:  # ended: a marker at or after the newest sample, at or before ``at``
        pairs = np.array(marks, dtype=np.int64).reshape(-1, 2)
        m_sid, m_ts = pairs[:, 0], pairs[:, 1]
        at = np.searchsorted(sid, m_sid)
        found = at < len(sid)
        found[found] = sid[at[found]] == m_sid[found]
        hit = at[found][ts[at[found]] <= m_ts[found]]
        ended = np.zeros(len(sid), dtype=bool)
        ended[hit] = True
        sid, val = sid[~ended], val[~ended]
    return sid, val


def _frames(
    parts: PartitionTables,
    table: str,
    lo: int,
    hi: int,
    seen: set[int],
    sids: list[Ints],
    stamps: list[Ints],
    values: list[Floats],
) -> None:
    """The newest frame of each layout in the window not ``seen`` in a newer partition,
    unpacked into ``sids``/``stamps``/``values`` (one array each per frame)."""
    ftable = frames_table(table)
    frames = parts.read(parts.sql.latest_per_layout(ftable, "ts >= ? AND ts <= ?"), (lo, hi))
    frames = [f for f in frames if f[0] not in seen]
    if not frames:
        return
    seen.update(f[0] for f in frames)
    series = parts.layouts.series_of({f[0] for f in frames})
    decode = parts.sql.decode_frame_array
    for lid, ts, vals in frames:
        ids = series.get(lid)
        if ids is None:  # deleted with its partition in between: nothing to read
            continue
        got = decode(vals)
        if len(got) != len(ids):
            raise StoreError(
                f"{ftable}: a frame of layout {lid} has {len(got)} values for {len(ids)} series"
            )
        sids.append(np.frombuffer(ids, dtype=np.int64))
        stamps.append(np.full(len(got), ts, dtype=np.int64))
        values.append(got)
