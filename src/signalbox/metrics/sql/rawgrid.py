"""Raw rows of a few series read from SQLite as a grid: one row per timestamp written into
the partition, one column per series.

Python's ``sqlite3`` costs about as much per row fetched as SQLite spends finding it (a
trip through the GIL, a tuple, then a structured ``fromiter``): a 1-hour ``increase[1h]``
of 20 series read as ``(key, value)`` rows was 2,400 of them, two thirds of the query's
instructions. Here the partition's list of written timestamps (``metric_stamps``) drives
one index seek per (timestamp, series) as before, but as ``LEFT JOIN``s of one row per
timestamp: 120 rows of 20 cells, made arrays by one ``np.array``.

A cell is the sample's value, ``'n'`` for a NaN sample (SQLite stores NaN as NULL), NULL
where the series has no sample at that time. Present values are never NaN, so the common
grid without NaN samples converts in one step (NULL reads as NaN: absent); a grid holding
a NaN sample (``'n'`` refuses to convert) is read cell by cell. A NaN sample reads as
numpy's NaN, as the rows' ``fromiter`` read it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from signalbox.metrics.sql.partitions import PartitionTables

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

JOINS_MAX = 60
"""Series per grid: SQLite joins at most 64 tables in one SELECT (the stamps and these)."""

CELLS_MAX = 1200
"""Joins in one statement (partitions x series): preparing one costs about as much as
running it once, and a new window of partitions prepares again."""

SELECTS_MAX = 400
"""Partitions in one statement: SQLite allows 500 terms in a compound SELECT."""

_NAN = "n"


def read(
    parts: PartitionTables,
    tables: Sequence[tuple[int, str]],
    wanted: Ints,
    lo: int,
    hi: int,
    sids: list[Ints],
    stamps: list[Ints],
    values: list[Floats],
) -> None:
    """Append the samples of ``wanted`` in ``[lo, hi]`` of the partitions ``tables``
    (start, table) that are read by seeks (a window under 2**53 ms: the grid's times are
    offsets from ``lo`` held as floats)."""
    for i in range(0, len(wanted), JOINS_MAX):
        chunk = wanted[i : i + JOINS_MAX]
        ids = tuple(chunk.tolist())
        per = max(1, min(SELECTS_MAX, CELLS_MAX // len(chunk)))
        for j in range(0, len(tables), per):
            group = tables[j : j + per]
            params = [p for start, _ in group for p in (lo, start, lo, hi)]
            rows = parts._read_or_none(_union(tuple(t for _, t in group), ids), params)
            if rows is None:  # a partition went away meanwhile: each alone, a missing one empty
                rows = [
                    row
                    for start, table in group
                    for row in parts.read(_select(table, ids), (lo, start, lo, hi))
                ]
            _append(rows, chunk, lo, sids, stamps, values)


@functools.lru_cache(maxsize=64)  # texts of up to ~200 KB
def _union(tables: tuple[str, ...], ids: tuple[int, ...]) -> str:
    """The grids of ``tables``, one statement: its text kept, as writing it (20 joins a
    partition) cost a 1-hour query more than running it."""
    return " UNION ALL ".join(_select(table, ids) for table in tables)


def _select(table: str, ids: tuple[int, ...]) -> str:
    cells = ", ".join(
        f"CASE WHEN c{k}.ts IS NOT NULL THEN coalesce(c{k}.value, '{_NAN}') END"
        for k in range(len(ids))
    )
    joins = " ".join(
        f"LEFT JOIN {table} AS c{k} ON c{k}.ts = s.ts AND c{k}.series_id = {int(sid)}"
        for k, sid in enumerate(ids)
    )
    return (
        f"SELECT s.ts - ?, {cells} FROM metric_stamps AS s {joins} "
        "WHERE s.start_ms = ? AND s.ts >= ? AND s.ts <= ?"
    )


def _append(
    rows: list[tuple[Any, ...]],
    ids: Ints,
    lo: int,
    sids: list[Ints],
    stamps: list[Ints],
    values: list[Floats],
) -> None:
    if not rows:
        return
    try:  # no NaN sample: a missing cell (NULL) is the grid's only NaN
        grid = np.array(rows, dtype=np.float64)
        cells = grid[:, 1:]
        present = ~np.isnan(cells)
        offsets = grid[:, 0].astype(np.int64)
    except ValueError:  # a NaN sample's 'n': cell by cell
        present = np.array([[v is not None for v in row[1:]] for row in rows], dtype=bool)
        cells = np.array(
            [[np.nan if v is None or isinstance(v, str) else v for v in row[1:]] for row in rows],
            dtype=np.float64,
        )
        offsets = np.array([row[0] for row in rows], dtype=np.int64)
    keep = present.ravel()
    sids.append(np.ascontiguousarray(np.tile(ids, len(rows))[keep]))
    stamps.append(np.repeat(offsets + lo, len(ids))[keep])
    values.append(cells.ravel()[keep])
