"""Series identities of the SQL metric store: which id a (name, labels) pair has.

The ``series`` table holds id, metric name and canonical label text
(:mod:`signalbox.metrics.labelcodec`); samples refer to series by id only. Ids only grow and
series are never deleted, so both caches here are only ever topped up, never invalidated:

- the read side maps id -> (name, label text), with labels decoded on first use and an
  index by metric name, so a query for one metric loads only that metric's series;
- the write side maps ``name{labels`` (the text the write path builds without decoding
  anything) -> id, loaded from a snapshot kept in the database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, cast

from signalbox.clock import Clock
from signalbox.metrics.labelcodec import decode_labels
from signalbox.metrics.samples import Labels, Matcher, series_matches
from signalbox.storage.database import Database


class SeriesIndex:
    """The series of one database, cached in memory for the store that owns it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rows: dict[int, tuple[str, str]] = {}  # id -> (name, label text)
        self._by_name: dict[str, list[int]] = defaultdict(list)
        self._decoded: dict[int, Labels] = {}
        self._max_id = 0
        self._ids: dict[str, int] | None = None  # write path: "name{labels" -> id
        self._ids_max = 0
        self._snapshot_max = -1

    # -- reads ----------------------------------------------------------------------------
    def _add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for sid, name, text in rows:
            if sid in self.rows:
                continue
            self.rows[sid] = (name, text)
            self._by_name[name].append(sid)

    def refresh(self) -> None:
        """Load series created since the last refresh (ids only grow)."""
        rows = self.db.query(
            "SELECT id, name, labels FROM series WHERE id > ? ORDER BY id", (self._max_id,)
        )
        if rows:
            self._add_rows(rows)
            self._max_id = rows[-1][0]

    def labels(self, sid: int) -> Labels:
        got = self._decoded.get(sid)
        if got is None:
            got = self._decoded[sid] = decode_labels(self.rows[sid][1])
        return got

    def matching_ids(self, matchers: Sequence[Matcher]) -> list[int]:
        names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
        if names:
            # one metric name: ask the index instead of loading every series
            self._add_rows(
                self.db.query("SELECT id, name, labels FROM series WHERE name = ?", (names[0],))
            )
            candidates: Iterable[int] = list(self._by_name.get(names[0], ()))
        else:
            self.refresh()
            candidates = list(self.rows.keys())
        ms = list(matchers)
        return [
            sid for sid in candidates if series_matches(self.rows[sid][0], self.labels(sid), ms)
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

    def _ids_by_name(self, names: set[str]) -> dict[str, int] | None:
        """The write map for a few metric names, without loading the whole map: a pass of
        spool frames writes only a few hundred self-metrics as rows."""
        if len(names) > 50:
            return None
        if not names:
            return {}
        return dict(
            self.db.query(
                f"SELECT name || '{{' || labels, id FROM series WHERE name IN ({','.join('?' * len(names))})",
                sorted(names),
            )
        )

    def ids_for(self, names: list[str], keys: list[str], clock: Clock) -> tuple[list[int], int]:
        """Ids of the series ``keys`` (``name{labels``, ``names`` their metric names), creating
        the missing ones stamped by ``clock``; and how many were created.

        Must run inside the caller's write transaction, so new series and their samples
        commit together.
        """
        if self._ids is None and len(keys) <= 5000:
            known = self._ids_by_name(set(names))
            if known is not None:
                found = list(map(known.get, keys))
                if None not in found:
                    return cast("list[int]", found), 0
        ids = self._series_ids()
        sids = list(map(ids.get, keys))
        missing: dict[str, tuple[str, str]] = {}
        if None in sids:
            for i, sid in enumerate(sids):
                if sid is None:
                    missing[keys[i]] = (names[i], keys[i][len(names[i]) + 1 :])
            self.db.executemany(
                "INSERT INTO series (name, labels, created_ms) VALUES (?, ?, ?) ON CONFLICT (name, labels) DO NOTHING",
                [(n, t, int(clock.now() * 1000)) for n, t in missing.values()],
            )
            self._learn_new_series()
            self._save_ids_snapshot()
            sids = list(map(ids.__getitem__, keys))
        elif self._ids_max - self._snapshot_max > 1000:  # others added many: refresh it
            self._save_ids_snapshot()
        return cast("list[int]", sids), len(missing)
