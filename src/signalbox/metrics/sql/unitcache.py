"""A process-wide cache of decoded packed units, checked against the database at every read.

A packed unit (:mod:`signalbox.metrics.rowsealed`) never changes once written: it is only
ever deleted (unpacked by an import's rebuild, dropped by retention) and maybe packed again.
A dashboard asking the same week every refresh reads and decodes the same blobs each time
(a 7-day ``sum(rate)``: ~5 of its ~11 ms), while the results cache is invalidated by every
write at the recent end. So the decoded columns of each unit are kept here: per (database, partition table) a
*block* of the units decoded so far, (series, unit start) sorted, every column one array, so
a read finds and gathers hundreds of units with a few numpy operations, not a Python step
each; blocks least recently used are dropped first past ``[server] packed_cache_mb``.

A block holds only the columns its reads asked for (a ``rate`` 7 of the 18, a ``max`` 3),
keyed by that set: decoding all 18 made a miss cost four times the uncached read, and at
200 series a 7-day query's units (~145 MB decoded whole) did not fit the default bound, so
every query evicted the blocks the next one needed and paid that miss on every partition.

Why a cached unit can be trusted: every transaction that deletes or overwrites packed rows
(``rowsealing.unseal_range``, a merging ``_seal_chunk``, retention's ``DROP TABLE``) bumps
a *pack generation* (:func:`bump`, a row of ``metric_sealed``) in the same transaction.
A read takes, in one statement (one snapshot), the row buckets, the keys of the packed
units (index only, no blob) and the generation; entries stamped with another generation
are not used. The blobs missing from the cache are fetched by a second statement that reads
the generation again: if it moved, a packed row may have gone in between and the whole read
starts over (after a few tries, the one-statement read of everything). Packed rows added
meanwhile are new keys, listed or not by the first statement, never half seen. The
generation starts at a random number, so a store deleted and created again (same file, same
URL) never meets its predecessor's entries; other processes (``import``, a second ``serve``,
compaction) bump it through the database, so nothing relies on this process seeing them.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from signalbox.metrics.partitions import SEALED_UNIT_BUCKETS
from signalbox.metrics.rowsealed import PACKED

if TYPE_CHECKING:
    from signalbox.metrics.sql.partitions import PartitionTables
    from signalbox.storage.database import Database

Ints = npt.NDArray[np.int64]

GEN_KEY = -(2**31) + 1
"""The ``metric_sealed`` row holding the pack generation (tiers are positive, row buckets'
progress their negation: this key is neither)."""

DEFAULT_MB = 64
TRIES = 3
_UNIT_BITS = 22  # a unit's number within its partition's key: span / unit < 2**22


Key = tuple[str, ...]  # (database, partition table, the columns held)


@dataclass(frozen=True)
class Block:
    """The decoded units of one partition table, read under generation ``gen``: ``codes``
    (series, unit) sorted, each unit's first bucket in ``grid`` (a row of int64 bits per
    column of ``names``, see :func:`signalbox.metrics.rowsealed.columns_of`) and its bucket
    count."""

    gen: int
    codes: Ints
    sids: Ints
    first: Ints
    sizes: Ints
    grid: Ints
    names: tuple[str, ...] = PACKED
    """The columns of ``grid``, in its row order."""

    @property
    def nbytes(self) -> int:
        return int(self.grid.nbytes + 4 * self.codes.nbytes) + 600


def _codes(sids: Ints, units: Ints, unit: int) -> Ints:
    """One sortable int64 per (series, unit start) of a partition."""
    code: Ints = (sids << _UNIT_BITS) | ((units // unit) & ((1 << _UNIT_BITS) - 1))
    return code


class Stamped(Protocol):
    """What :class:`Blocks` keeps: a block read under one generation (or version)."""

    @property
    def gen(self) -> int: ...

    @property
    def nbytes(self) -> int: ...


B = TypeVar("B", bound=Stamped)


class Blocks(Generic[B]):
    """Blocks, each used only under the generation it was read at, bounded by their bytes,
    least recently used dropped first (also the raw partitions' cache,
    :mod:`signalbox.metrics.sql.rawcache`)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._d: OrderedDict[Key, B] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max_bytes
            self._shrink()

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.bytes = 0

    def get(self, key: Key, gen: int) -> B | None:
        """The block of ``key`` if read under generation ``gen``."""
        with self._lock:
            b = self._d.get(key)
            if b is None or b.gen != gen:
                return None
            self._d.move_to_end(key)
            return b

    def put(self, key: Key, block: B) -> None:
        size = block.nbytes
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            if size > self.max_bytes:
                return
            self._d[key] = block
            self.bytes += size
            self._shrink()

    def configure(self, mb: int) -> None:
        """Size the cache to ``mb`` MiB (0 turns it off and empties it)."""
        self.resize(mb * 2**20)
        if not mb:
            self.clear()

    def _shrink(self) -> None:
        while self.bytes > self.max_bytes and self._d:
            _, b = self._d.popitem(last=False)
            self.bytes -= b.nbytes


class UnitCache(Blocks[Block]):
    """Blocks of decoded packed units."""


CACHE = UnitCache(DEFAULT_MB * 2**20)
"""The process's cache (``serve`` sizes it from ``[server] packed_cache_mb``, 0: off)."""


def configure(mb: int) -> None:
    """Size the process's cache to ``mb`` MiB (0 turns it off and empties it)."""
    CACHE.configure(mb)


def bump(db: Database) -> None:
    """Inside the caller's transaction, which deletes or overwrites packed rows: move the
    pack generation, so no process uses a unit it decoded before."""
    db.execute("UPDATE metric_sealed SET sealed_ms = sealed_ms + 1 WHERE tier = ?", (GEN_KEY,))
    ensure(db)


def generation(db: Database) -> int | None:
    """The pack generation, None if the store has none yet."""
    got = db.query("SELECT sealed_ms FROM metric_sealed WHERE tier = ?", (GEN_KEY,))
    return int(got[0][0]) if got else None


def ensure(db: Database) -> None:
    """Inside the caller's transaction, which writes packed rows: the generation exists
    (random at first; a reader finding none does not use the cache)."""
    db.execute(
        "INSERT INTO metric_sealed (tier, sealed_ms) VALUES (?, ?) ON CONFLICT (tier) DO NOTHING",
        (GEN_KEY, random.getrandbits(52)),
    )


def read(
    parts: PartitionTables,
    table: str,
    cols: str,
    ids: Sequence[int],
    lo: int,
    hi: int,
    unit: int,
    names: Sequence[str],
    cache: UnitCache | None = None,
) -> tuple[list[tuple[Any, ...]], tuple[Ints, dict[str, Ints]]] | None:
    """What ``parts.bucket_rows`` then ``rowsealed.columns_of(..., names, lo, hi)`` give
    for rollup partition ``table`` (the row buckets' ``cols``, then the packed units'
    buckets ending in ``[lo, hi]``: series ids and int64 bits of ``names``), the packed
    units taken from ``cache`` where it holds them under the snapshot's generation. None:
    read as before (the cache is off, the store has no generation yet, the partition is
    gone or its read kept racing a repack)."""
    cache = CACHE if cache is None else cache
    if not cache.max_bytes or not unit:
        return None
    from signalbox.metrics.sql.partitions import IN_LIST_MAX, packed_table

    db = parts.db
    pb = packed_table(table)
    few = len(ids) <= IN_LIST_MAX
    where = f"series_id IN ({','.join('?' * len(ids))}) AND " if few else ""
    keys: list[Any] = list(ids) if few else []
    width = len(cols.split(", "))
    nulls = ", NULL" * (width - 2)
    first = (
        f"SELECT {cols}, 0 FROM {table} WHERE {where}ts >= ? AND ts <= ? "
        f"UNION ALL SELECT series_id, ts{nulls}, 1 FROM {pb} WHERE {where}ts > ? AND ts <= ? "
        f"UNION ALL SELECT sealed_ms, NULL{nulls}, 2 FROM metric_sealed WHERE tier = ?"
    )
    params = (*keys, lo, hi, *keys, lo - unit, hi, GEN_KEY)
    wanted = None if few else set(ids)
    held = ("ts", *sorted(set(names) - {"ts"}))  # ts: the window's bounds need it
    key = (f"{db.dialect.name}:{db.url}", table, ",".join(held))
    unit_bytes = SEALED_UNIT_BUCKETS * len(held) * 8
    for _ in range(TRIES):
        got = parts._read_or_none(first, params)
        if got is None:
            return None
        gens = [r[0] for r in got if r[-1] == 2]
        if not gens:
            return None
        gen = int(gens[0])
        rows = [r[:-1] for r in got if r[-1] == 0 and (wanted is None or r[0] in wanted)]
        pk = [(r[0], r[1]) for r in got if r[-1] == 1 and (wanted is None or r[0] in wanted)]
        a = np.array(pk, dtype=np.int64).reshape(-1, 2)
        codes = np.sort(_codes(a[:, 0], a[:, 1], unit))
        if not len(codes):
            return rows, _empty(names)
        block = cache.get(key, gen)
        have = _find(block, codes)
        if block is None or have is None or not have[1].all():
            cache.misses += 1
            if len(codes) * unit_bytes > cache.max_bytes:
                return None  # more than the cache holds: decoding every column would be waste
            if block is not None and (len(block.codes) + len(codes)) * unit_bytes > cache.max_bytes:
                block, have = None, None  # start this partition's block afresh
            block = _fetch(parts, pb, a, codes, have, block, gen, unit, held)
            if block is None:
                continue
            cache.put(key, block)
            have = _find(block, codes)
            assert have is not None and have[1].all()
        else:
            cache.hits += 1
        return rows, _columns(block, have[0], names, lo, hi)
    return None


def _find(block: Block | None, codes: Ints) -> tuple[Ints, npt.NDArray[np.bool_]] | None:
    """Where each of ``codes`` is in ``block`` and whether it is there."""
    if block is None:
        return None
    at = np.searchsorted(block.codes, codes)
    inside = at < len(block.codes)
    found = np.zeros(len(codes), dtype=bool)
    found[inside] = block.codes[at[inside]] == codes[inside]
    return at, found


def _fetch(
    parts: PartitionTables,
    pb: str,
    a: Ints,
    codes: Ints,
    have: tuple[Ints, npt.NDArray[np.bool_]] | None,
    block: Block | None,
    gen: int,
    unit: int,
    held: tuple[str, ...],
) -> Block | None:
    """``block`` with the units of ``codes`` it lacks read and their columns ``held``
    decoded; None if the generation moved since the first statement (a packed row may have
    gone)."""
    from signalbox.metrics import rowsealed

    missing = codes if have is None else codes[~have[1]]
    need = set(missing.tolist())
    from signalbox.metrics.sql.partitions import IN_LIST_MAX

    sids = sorted({int(c) >> _UNIT_BITS for c in need})
    us = a[:, 1]
    if len(sids) > IN_LIST_MAX:  # the partition's range, the others dropped after
        where, sids = "", []
    else:
        where = f"series_id IN ({','.join('?' * len(sids))}) AND "
    got = parts._read_or_none(
        f"SELECT series_id, ts, data FROM {pb} WHERE {where}ts >= ? AND ts <= ? "
        "UNION ALL SELECT sealed_ms, NULL, NULL FROM metric_sealed WHERE tier = ?",
        (*sids, int(us.min()), int(us.max()), GEN_KEY),
    )
    if got is None:
        return None
    gens = [r[0] for r in got if r[1] is None]
    if len(gens) != 1 or int(gens[0]) != gen:
        return None
    fetched = [r for r in got if r[1] is not None]
    fa = np.array([(r[0], r[1]) for r in fetched], dtype=np.int64).reshape(-1, 2)
    fcodes = _codes(fa[:, 0], fa[:, 1], unit)
    take = np.flatnonzero(np.isin(fcodes, missing))
    if len(take) != len(need):
        return None  # not expected with the generation unchanged: read again anyway
    blobs = [bytes(fetched[i][2]) for i in take.tolist()]
    _, cols = rowsealed.columns_of([0] * len(blobs), blobs, held)
    grid = np.stack([cols[n] for n in held]) if blobs else np.empty((len(held), 0), np.int64)
    sizes = np.frombuffer(b"".join(b[:8] for b in blobs), dtype="<i8").astype(np.int64)
    new_codes, new_sids = fcodes[take], fa[take, 0]
    if block is not None:  # the units decoded before, then these
        grid = np.concatenate([block.grid, grid], axis=1)
        sizes = np.concatenate([block.sizes, sizes])
        new_codes = np.concatenate([block.codes, new_codes])
        new_sids = np.concatenate([block.sids, new_sids])
    firsts = np.cumsum(sizes) - sizes
    if len(new_codes) > 1 and (new_codes[1:] <= new_codes[:-1]).any():  # else: in order already
        order = np.argsort(new_codes, kind="stable")
        sizes, new_codes, new_sids = sizes[order], new_codes[order], new_sids[order]
        starts = firsts[order]
        firsts = np.cumsum(sizes) - sizes
        grid = np.ascontiguousarray(
            grid[:, np.repeat(starts - firsts, sizes) + np.arange(len(grid[0]))]
        )
    return Block(gen, new_codes, new_sids, firsts, sizes, grid, held)


def _empty(names: Sequence[str]) -> tuple[Ints, dict[str, Ints]]:
    return np.empty(0, dtype=np.int64), {n: np.empty(0, dtype=np.int64) for n in names}


def _columns(
    block: Block, at: Ints, names: Sequence[str], lo: int, hi: int
) -> tuple[Ints, dict[str, Ints]]:
    """``columns_of``'s answer from the units at ``at`` of ``block``, in that order."""
    if not len(at):
        return _empty(names)
    sizes = block.sizes[at]
    ends = np.cumsum(sizes)
    idx = np.repeat(block.first[at] - (ends - sizes), sizes) + np.arange(int(ends[-1]))
    row = {n: i for i, n in enumerate(block.names)}
    ts = block.grid[row["ts"]][idx]
    mask = (ts >= lo) & (ts <= hi)
    if not mask.all():
        idx, ts = idx[mask], ts[mask]
    ids = np.repeat(block.sids[at], sizes)
    if not mask.all():
        ids = ids[mask]
    out: dict[str, Ints] = {}
    for name in names:
        out[name] = ts if name == "ts" else block.grid[row[name]][idx]
    return ids, out
