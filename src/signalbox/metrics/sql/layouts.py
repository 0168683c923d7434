"""Layouts: the series of one spool file in line order, so a pass stores its values as one row.

A collector pass re-reads every spool file, and from one pass to the next a file almost
always keeps its lines and changes only its values. The first pass that sees a file's
*shape* (a ``*.metrics`` file's text left of each ``=``, see
:func:`signalbox.metrics.parse.keyvalue.keyvalue_shape`; a ``*.prom`` file's text without its
values, see :func:`signalbox.metrics.parse.promtext.prometheus_shape`) parses it fully and
registers the shape's series, in order, as a layout (their positions inserted from one array
parameter per layout, or counted out in SQL when the ids are consecutive, as a new file's
are: a first pass of a million series is two thousand statements, not a million). Later
passes with the same shape skip parsing names and labels and looking up series ids: the file's values
go to the raw partition as one *frame* row (layout id, timestamp, values). Readers unpack
frames in SQL (rollups, via :meth:`~signalbox.metrics.sql.frames.RawSQL.frame_rows`) or in
Python (:meth:`Layouts.series_of`).

Tables:

- ``metric_layouts``: id (never reused), digest of the shape, the labels the writer added
  (``host``), the series ids as an int64 array, and the newest raw partition a frame of it
  was written to -- a layout older than every raw partition is unreferenced and deleted.
- ``metric_layout_series``: (layout, position) -> series, for SQL unpacking and for reading a
  few series without unpacking whole frames.
"""

from __future__ import annotations

import operator
from array import array
from collections.abc import Callable, Iterable, Sequence

from signalbox.exceptions import StoreError
from signalbox.storage.database import Database, Migration

MIGRATIONS: list[Migration] = [
    (
        4,
        "layouts of spool files, so a collection pass stores each file's values as one frame",
        [
            "CREATE TABLE metric_layouts (id {serial}, digest {blob} NOT NULL, extra TEXT NOT NULL, size INTEGER NOT NULL, series {blob} NOT NULL, last_start BIGINT NOT NULL)",
            "CREATE UNIQUE INDEX metric_layouts_key ON metric_layouts (digest, extra)",
            "CREATE TABLE metric_layout_series (layout_id BIGINT NOT NULL, pos INTEGER NOT NULL, series_id BIGINT NOT NULL, PRIMARY KEY (layout_id, pos)){without_rowid}",
            "CREATE INDEX metric_layout_series_sid ON metric_layout_series (series_id, layout_id)",
        ],
    ),
]


_POSITIONS_SQLITE = (
    "INSERT INTO metric_layout_series (layout_id, pos, series_id) "
    "SELECT ?, key, value FROM json_each(?)"
)
_POSITIONS_POSTGRES = (
    "INSERT INTO metric_layout_series (layout_id, pos, series_id) "
    "SELECT ?, ord - 1, sid FROM unnest(?::bigint[]) WITH ORDINALITY AS t(sid, ord)"
)
# a layout of consecutive series ids (a new file's, whose series were created together):
# its rows counted out in SQL, with no text of its ids built for them. SQLite has no
# generate_series: the positions are the keys of a JSON array of n zeros made in C
# ("0,0,..." from the hex of n zero bytes), measured cheaper than a recursive CTE (1.09 s a
# million rows) or the ids' text (0.89 s): 0.74 s, most of it the two B-trees' inserts
_RUN_SQLITE = (
    "INSERT INTO metric_layout_series (layout_id, pos, series_id) SELECT ?1, key, ?2 + key "
    "FROM json_each('[' || substr(replace(hex(zeroblob(?3)), '00', '0,'), 1, 2 * ?3 - 1) || ']')"
)
_RUN_POSTGRES = (
    "INSERT INTO metric_layout_series (layout_id, pos, series_id) "
    "SELECT ?, i, ? + i FROM generate_series(0, ? - 1) AS i"
)


def _first_of_run(ids: Sequence[int]) -> int | None:
    """The first id when ``ids`` are consecutive ascending (a ``range`` needs no look)."""
    if isinstance(ids, range):
        return ids.start if ids.step == 1 and len(ids) else None
    if not ids or ids[-1] - ids[0] != len(ids) - 1:
        return None
    first = ids[0]
    return first if all(map(operator.eq, ids, range(first, first + len(ids)))) else None


def _unpack(blob: bytes) -> array[int]:
    ids = array("q")
    ids.frombytes(bytes(blob))
    return ids


class Layouts:
    """The layouts of one database, cached (a layout never changes once written)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._keys: dict[tuple[bytes, str], tuple[int, int]] = {}  # -> (id, last_start)
        self._series: dict[int, array[int]] = {}

    def load(self) -> None:
        """Know every layout (a few hundred rows: one per spool file shape)."""
        self._keys = {
            (bytes(digest), extra): (lid, last)
            for lid, digest, extra, last in self.db.query(
                "SELECT id, digest, extra, last_start FROM metric_layouts"
            )
        }

    def known(self, extra: str) -> frozenset[bytes]:
        """Digests of the layouts registered for writers adding ``extra`` labels."""
        self.load()
        return frozenset(d for d, e in self._keys if e == extra)

    def has(self, digest: bytes, extra: str) -> bool:
        return (digest, extra) in self._keys

    def resolve(self, digest: bytes, extra: str) -> int:
        got = self._keys.get((digest, extra))
        if got is None:
            raise StoreError("a frame names a layout this store does not have")
        return got[0]

    def series_of(self, layout_ids: Iterable[int]) -> dict[int, array[int]]:
        """Series ids, in position order, of each layout."""
        wanted = set(layout_ids)
        missing = sorted(wanted.difference(self._series))
        for i in range(0, len(missing), 500):
            chunk = missing[i : i + 500]
            for lid, blob in self.db.query(
                f"SELECT id, series FROM metric_layouts WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                self._series[lid] = _unpack(blob)
        return {lid: self._series[lid] for lid in wanted if lid in self._series}

    def positions(self, ids: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
        """``layout id -> [(position, series id)]`` of every layout holding one of ``ids``."""
        out: dict[int, list[tuple[int, int]]] = {}
        if len(ids) <= 500:
            if not ids:
                return out
            rows = self.db.query(
                "SELECT layout_id, pos, series_id FROM metric_layout_series "
                f"WHERE series_id IN ({','.join('?' * len(ids))})",
                list(ids),
            )
            for lid, pos, sid in rows:
                out.setdefault(lid, []).append((pos, sid))
            return out
        import numpy as np  # a big query: every layout's series, matched in bulk

        self.load()
        wanted = np.fromiter(ids, dtype=np.int64, count=len(ids))
        for lid, sids in self.series_of([lid for lid, _ in self._keys.values()]).items():
            arr = np.frombuffer(sids, dtype=np.int64)
            hit = np.flatnonzero(np.isin(arr, wanted))
            if len(hit):
                out[lid] = list(zip(hit.tolist(), arr[hit].tolist(), strict=True))
        return out

    def series_set(self, layout_ids: Sequence[int]) -> set[int] | None:
        """Every series of these layouts; None if two of them (or one named twice) share a
        series, or one is unknown."""
        if len(set(layout_ids)) != len(layout_ids):
            return None
        series = self.series_of(layout_ids)
        if len(series) != len(layout_ids):
            return None
        out: set[int] = set()
        for ids in series.values():
            out.update(ids)
        return out if len(out) == sum(map(len, series.values())) else None

    def register(self, digest: bytes, extra: str, sids: Sequence[int], start: int) -> int:
        """A new layout of series ``sids``; inside the caller's write transaction. If another
        writer registered the same shape meanwhile, its layout (the same series) is used."""
        ids = array("q", sids)
        row = self.db.execute(
            "INSERT INTO metric_layouts (digest, extra, size, series, last_start) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (digest, extra) DO NOTHING RETURNING id",
            (digest, extra, len(ids), ids.tobytes(), start),
        ).fetchone()
        if row is None:
            lid, blob = self.db.query(
                "SELECT id, series FROM metric_layouts WHERE digest = ? AND extra = ?",
                (digest, extra),
            )[0]
            self._keys[(digest, extra)] = (lid, start)
            self._series[lid] = _unpack(blob)
            self.touch([digest], extra, start)
            return int(lid)
        lid = int(row[0])
        sqlite = self.db.dialect.name == "sqlite"
        first = _first_of_run(sids)
        if first is not None:
            if sqlite:
                self.db.execute(_RUN_SQLITE, (lid, first, len(ids)))
            else:
                self.db.execute(_RUN_POSTGRES, (lid, first, len(ids)))
        elif sqlite:  # the rows built in SQL from one parameter
            self.db.execute(_POSITIONS_SQLITE, (lid, "[" + ",".join(map(str, ids)) + "]"))
        else:
            self.db.execute(_POSITIONS_POSTGRES, (lid, list(ids)))
        self._keys[(digest, extra)] = (lid, start)
        self._series[lid] = ids
        return lid

    def register_many(
        self, items: Sequence[tuple[bytes, Sequence[int]]], extra: str, start: int
    ) -> list[int]:
        """New layouts (digest, series ids), as :meth:`register` each, in that order; on
        PostgreSQL in three statements whatever their number (a first pass of 2,000 spool
        files made 4,000 round trips, each a wait on a busy server)."""
        if self.db.dialect.name == "sqlite" or len(items) < 2:
            return [self.register(d, extra, sids, start) for d, sids in items]
        from signalbox.storage import pgarrays

        db = self.db
        firsts: dict[bytes, Sequence[int]] = {}
        for d, sids in items:
            firsts.setdefault(d, sids)  # a shape twice: the first registers it, as register()
        digests = sorted(firsts)  # two writers registering the same shapes lock them in one order
        blobs = {d: array("q", firsts[d]) for d in digests}
        pgarrays.bind(db.conn)
        made = dict(
            (bytes(d), int(lid))
            for lid, d in db.query(
                "INSERT INTO metric_layouts (digest, extra, size, series, last_start) "
                "SELECT d, ?, n, s, ? FROM unnest(?::bytea[], ?::bigint[], ?::bytea[]) AS t(d, n, s) "
                "ON CONFLICT (digest, extra) DO NOTHING RETURNING id, digest",
                (
                    extra,
                    start,
                    pgarrays.bytea_array(digests),
                    pgarrays.int8_array([len(blobs[d]) for d in digests]),
                    pgarrays.bytea_array([blobs[d].tobytes() for d in digests]),
                ),
            )
        )
        runs: list[tuple[int, int, int]] = []  # (layout, first id, size)
        spread: list[tuple[int, array[int]]] = []
        for d in digests:
            lid = made.get(d)
            if lid is None:
                continue
            ids = blobs[d]
            first = _first_of_run(firsts[d])
            if first is not None:
                runs.append((lid, first, len(ids)))
            else:
                spread.append((lid, ids))
            self._keys[(d, extra)] = (lid, start)
            self._series[lid] = ids
        if runs:
            db.execute(
                "INSERT INTO metric_layout_series (layout_id, pos, series_id) "
                "SELECT u.l, g.i, u.f + g.i FROM unnest(?::bigint[], ?::bigint[], ?::bigint[]) "
                "AS u(l, f, n) CROSS JOIN LATERAL generate_series(0, u.n - 1) AS g(i)",
                tuple(pgarrays.int8_array([r[k] for r in runs]) for k in range(3)),
            )
        if spread:
            flat: array[int] = array("q")
            offsets = []
            for _, ids in spread:
                offsets.append(len(flat))
                flat.extend(ids)
            db.execute(
                "INSERT INTO metric_layout_series (layout_id, pos, series_id) "
                "SELECT u.l, g.i, v.a[u.o + g.i + 1] "
                "FROM unnest(?::bigint[], ?::bigint[], ?::bigint[]) AS u(l, o, n) "
                "CROSS JOIN LATERAL generate_series(0, u.n - 1) AS g(i), "
                "(SELECT ?::bigint[] AS a) AS v",
                (
                    pgarrays.int8_array([lid for lid, _ in spread]),
                    pgarrays.int8_array(offsets),
                    pgarrays.int8_array([len(ids) for _, ids in spread]),
                    pgarrays.int8_array(flat),
                ),
            )
        # shapes another writer registered meanwhile: theirs (the same series), as register()
        taken = [d for d in digests if d not in made]
        for i in range(0, len(taken), 500):
            chunk = taken[i : i + 500]
            for lid, d, blob in db.query(
                "SELECT id, digest, series FROM metric_layouts WHERE extra = ? "
                f"AND digest IN ({','.join('?' * len(chunk))})",
                (extra, *chunk),
            ):
                made[bytes(d)] = int(lid)
                self._keys[(bytes(d), extra)] = (int(lid), start)
                self._series[int(lid)] = _unpack(blob)
        if taken:
            self.touch(taken, extra, start)
        return [made[d] for d, _ in items]

    def forget(self) -> None:
        """After a rolled-back write: what it registered or touched is gone (and on SQLite
        its layout ids may be given out again), so read everything afresh."""
        self._keys = {}
        self._series = {}

    def touch(self, digests: Iterable[bytes], extra: str, start: int) -> None:
        """Note that frames of these layouts went into the raw partition at ``start``."""
        stale = []
        for d in digests:
            lid, last = self._keys[(d, extra)]
            if last < start:
                stale.append((start, lid))
                self._keys[(d, extra)] = (lid, start)
        if stale:
            self.db.executemany("UPDATE metric_layouts SET last_start = ? WHERE id = ?", stale)

    def drop_older_than(
        self, oldest_raw_start: int, still_used: Callable[[], set[int]] = set
    ) -> None:
        """Delete layouts no remaining raw partition can reference and ``still_used`` (asked
        only when there is something to delete) does not name."""
        self.load()
        old = {lid for lid, last in self._keys.values() if last < oldest_raw_start}
        if not old:
            return  # the usual compaction: nothing to delete, so no write transaction
        old -= still_used()
        if not old:
            return
        ids = sorted(old)
        with self.db.transaction():
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                self.db.execute(
                    f"DELETE FROM metric_layout_series WHERE layout_id IN ({marks})", chunk
                )
                self.db.execute(f"DELETE FROM metric_layouts WHERE id IN ({marks})", chunk)
        self._keys = {k: v for k, v in self._keys.items() if v[0] not in old}
        live = {lid for lid, _ in self._keys.values()}
        self._series = {lid: ids for lid, ids in self._series.items() if lid in live}
