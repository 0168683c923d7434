"""A process-wide cache of raw partitions' samples, checked against the database at every read.

The last hours of raw samples are what dashboards and monitors read most (a 1-hour panel, a
5-minute rate), and Prometheus answers them from its in-memory head block. Read from the
store, a 1-hour ``increase`` of 100 series stepped SQLite through ~13,000 index seeks on
every refresh, 4-6 times Prometheus' time, though a closed 5-minute partition never changes
after its last write. So the samples read from each raw partition are kept here: per
(database, partition) a *block* of the series asked so far with all their samples in it,
sorted by (series, time), gathered for a window with a few numpy operations; blocks least
recently used are dropped first past ``[server] raw_cache_mb``.

Why a block can be trusted: every transaction that writes samples into a raw partition
(``PartitionTables.write_raw``, ``write_frames``) bumps that partition's *write version*
in the same transaction (:func:`bump`: rows of ``metric_raw_versions``, one per PostgreSQL
backend as ``metric_data_version`` has them, so concurrent writers of the current partition
never wait on one row; the version is their sum, which every write raises). A read takes
the versions of its window's partitions, reads what the cache lacks, then takes those
versions again: what it read is kept only if they did not move (no write into the partition
committed in between, so the rows read are that version's), and a block is used only under
the version it was read at. A version row starts at a random number, so a partition dropped
by retention and written again, or a store deleted and made again at the same URL, never
meets its predecessor's blocks. Partitions with no version (written before this table
existed) are read from the store as before.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from signalbox.metrics.sql.unitcache import Blocks

if TYPE_CHECKING:
    from signalbox.metrics.sql.partitions import PartitionTables
    from signalbox.storage.database import Database, Migration

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

Samples = tuple[Ints, Ints, Floats]
"""(series ids, timestamps, values) of some samples."""

DEFAULT_MB = 32

MIGRATION: Migration = (
    8,
    "raw partitions' write versions, so a process may keep their samples in memory",
    [
        "CREATE TABLE IF NOT EXISTS metric_raw_versions (start_ms BIGINT NOT NULL, "
        "writer BIGINT NOT NULL, version BIGINT NOT NULL, PRIMARY KEY (start_ms, writer))"
    ],
)


@dataclass(frozen=True)
class Block:
    """The samples of series ``asked`` (sorted) in one raw partition, read under version
    ``gen``, sorted by (series, time)."""

    gen: int
    asked: Ints
    sid: Ints
    ts: Ints
    val: Floats

    @property
    def nbytes(self) -> int:
        return int(self.asked.nbytes + self.sid.nbytes + self.ts.nbytes + self.val.nbytes) + 300


class RawCache(Blocks[Block]):
    """Blocks of raw partitions' samples."""


CACHE = RawCache(DEFAULT_MB * 2**20)
"""The process's cache (``serve`` sizes it from ``[server] raw_cache_mb``, 0: off)."""


def configure(mb: int) -> None:
    """Size the process's cache to ``mb`` MiB (0 turns it off and empties it)."""
    CACHE.configure(mb)


def bump(db: Database, starts: Iterable[int]) -> None:
    """Inside the caller's transaction, which writes samples into the raw partitions
    starting at ``starts``: move their write versions."""
    writer = "pg_backend_pid()" if db.dialect.name == "postgresql" else "0"
    db.executemany(
        f"INSERT INTO metric_raw_versions (start_ms, writer, version) VALUES (?, {writer}, ?) "
        "ON CONFLICT (start_ms, writer) DO UPDATE SET version = metric_raw_versions.version + 1",
        [(int(s), random.getrandbits(40)) for s in sorted(set(starts))],
    )


def forget(db: Database, starts: Sequence[int]) -> None:
    """Inside the caller's transaction, which drops these raw partitions."""
    if starts:
        marks = ",".join("?" * len(starts))
        db.execute(f"DELETE FROM metric_raw_versions WHERE start_ms IN ({marks})", tuple(starts))


def versions(parts: PartitionTables, starts: Sequence[int]) -> dict[int, int]:
    """The write version of each of these raw partitions that has one."""
    if not starts:
        return {}
    keys = ",".join(str(int(s)) for s in starts)  # our own integers: no quoting needed
    got = parts._read_or_none(
        f"SELECT start_ms, sum(version) FROM metric_raw_versions WHERE start_ms IN ({keys}) "
        "GROUP BY start_ms",
        (),
    )
    return {int(s): int(v) for s, v in got or ()}


Fill = Callable[[list[tuple[int, str]], npt.NDArray[np.int64], int, int], Samples]
"""Reads the samples of these series in these partitions over ``[lo, hi]`` from the store."""


def read(
    parts: PartitionTables,
    tables: list[tuple[int, str]],
    span_ms: int,
    wanted: Ints,
    lo: int,
    hi: int,
    fill: Fill,
    cache: RawCache | None = None,
) -> tuple[list[tuple[int, str]], list[Samples]]:
    """The samples of ``wanted`` (sorted, unique) in ``[lo, hi]`` of the raw partitions
    ``tables`` (start, table) that have a write version, from the cache where it holds them
    under that version, else read by ``fill`` over the whole partition and kept; returns the
    partitions left for the caller to read (no version, or the cache is off) and the
    samples found, unsorted."""
    cache = CACHE if cache is None else cache
    if not cache.max_bytes or not len(wanted):
        return tables, []
    first = versions(parts, [s for s, _ in tables])
    if not first:
        return tables, []
    db = parts.db
    rest: list[tuple[int, str]] = []
    found: list[Samples] = []
    missing: list[tuple[int, str]] = []
    kept: dict[int, Block | None] = {}
    for start, table in tables:
        v = first.get(start)
        if v is None:
            rest.append((start, table))
            continue
        block = cache.get((f"{db.dialect.name}:{db.url}", table), v)
        if block is not None and _covers(block.asked, wanted):
            cache.hits += 1
            found.append(_window(block, wanted, lo, hi, start, start + span_ms - 1))
        else:
            cache.misses += 1
            missing.append((start, table))
            kept[start] = block
    if not missing:
        return rest, found
    sid, ts, val = fill(
        missing, wanted, missing[0][0], missing[-1][0] + span_ms - 1
    )  # whole partitions: what is kept serves any later window
    part = ts - ts % span_ms
    again = versions(parts, [s for s, _ in missing])
    for start, table in missing:
        at = part == start
        got = (sid[at], ts[at], val[at])
        found.append(_clip(got, lo, hi))
        if again.get(start) != first[start]:
            continue  # written meanwhile: these rows may be newer than the version read
        block = _merged(kept[start], first[start], wanted, got)
        cache.put((f"{db.dialect.name}:{db.url}", table), block)
    return rest, found


def _covers(asked: Ints, wanted: Ints) -> bool:
    if len(asked) == len(wanted) and (asked == wanted).all():
        return True
    at = np.searchsorted(asked, wanted)
    return bool((at < len(asked)).all() and (asked[np.minimum(at, len(asked) - 1)] == wanted).all())


def _window(block: Block, wanted: Ints, lo: int, hi: int, first: int, last: int) -> Samples:
    """The samples of ``wanted`` in ``[lo, hi]`` of a block of partition ``[first, last]``."""
    sid, ts, val = block.sid, block.ts, block.val
    keep: npt.NDArray[np.bool_] | None = None
    if len(block.asked) != len(wanted) or not (block.asked == wanted).all():
        keep = np.isin(sid, wanted)
    if lo > first or hi < last:
        inside = (ts >= lo) & (ts <= hi)
        keep = inside if keep is None else keep & inside
    if keep is None:
        return sid, ts, val
    return sid[keep], ts[keep], val[keep]


def _clip(got: Samples, lo: int, hi: int) -> Samples:
    sid, ts, val = got
    keep = (ts >= lo) & (ts <= hi)
    if keep.all():
        return got
    return sid[keep], ts[keep], val[keep]


def _merged(old: Block | None, gen: int, wanted: Ints, got: Samples) -> Block:
    """A block of version ``gen``: the series of ``old`` (if read under the same version)
    not read again, and ``got``, the samples of ``wanted`` just read."""
    sid, ts, val = got
    asked = wanted
    if old is not None and old.gen == gen:
        others = ~np.isin(old.sid, wanted)
        sid = np.concatenate([old.sid[others], sid])
        ts = np.concatenate([old.ts[others], ts])
        val = np.concatenate([old.val[others], val])
        asked = np.union1d(old.asked, wanted)
    order = np.lexsort((ts, sid))
    return Block(
        gen,
        np.ascontiguousarray(asked, dtype=np.int64),
        np.ascontiguousarray(sid[order]),
        np.ascontiguousarray(ts[order]),
        np.ascontiguousarray(val[order]),
    )
