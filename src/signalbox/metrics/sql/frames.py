"""How each database keeps a frame (one spool file's values of one pass, by layout position)
and the SQL of raw partitions that differs between SQLite and PostgreSQL.

SQLite keeps a frame as a JSON array: its ``json_each`` unpacks it in SQL; NaN is null, as
everywhere in SQLite here, and +-Inf are 1e999/-1e999, which both SQLite and Python's
``float()`` read back as infinities. PostgreSQL keeps a native ``float8[]``.

:func:`raw_sql` is the one place that chooses per dialect; callers hold a :class:`RawSQL`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from signalbox.storage.dialect import Dialect

if TYPE_CHECKING:
    from signalbox.storage.database import Database


class RawSQL(Protocol):
    """Frames and newest-value reads of raw partitions, for one database."""

    @property
    def frame_type(self) -> str:
        """Column type of a frame's values."""
        ...

    def encode_frame(self, values: list[float]) -> Any:
        """A frame's values as the driver takes them for :attr:`frame_type`."""
        ...

    def decode_frame(self, stored: Any) -> list[float]:
        """Inverse of :meth:`encode_frame` (NaN and infinities included)."""
        ...

    def frame_rows(self, frames_table: str, where: str = "") -> str:
        """SELECT (series_id, ts, value) of every value of every frame in ``frames_table``
        (aliased ``f``; ``where`` may filter on it)."""
        ...

    def frame_element(self) -> str:
        """The value at ``ls.pos`` (0-based) of frame ``f``, as SQL."""
        ...

    def decode_frame_array(self, stored: Any) -> Any:
        """A stored frame as a numpy float64 array (NaN and infinities kept)."""
        ...

    def upsert_frames(
        self, db: Database, frames_table: str, frames: Sequence[tuple[int, list[float]]], ts: int
    ) -> None:
        """Write the frames (layout id, values) at ``ts``, replacing any there; a layout
        named twice keeps its last frame. Inside the caller's transaction."""
        ...

    def upsert_rows(
        self,
        db: Database,
        table: str,
        sids: Sequence[int],
        stamps: Sequence[int],
        values: Sequence[float | None],
    ) -> None:
        """Write raw samples (series id, ts, value; None is NULL), replacing any there; a
        (series, ts) given twice keeps its last value. Inside the caller's transaction."""
        ...

    def latest_per_layout(self, frames_table: str, where: str = "") -> str:
        """Newest (layout_id, ts, vals) per layout in a frames table (of the rows ``where``
        holds for, if given)."""
        ...

    def latest_per_series(self, table: str, where: str = "") -> str:
        """Newest (series_id, ts, value) per series in a raw samples table (of the rows
        ``where`` holds for, if given)."""
        ...


class _SQLiteRaw:
    frame_type = "TEXT"

    def encode_frame(self, values: list[float]) -> Any:
        if math.inf in values or -math.inf in values:
            return "[" + ",".join(map(_json_number, values)) + "]"
        import msgspec

        return msgspec.json.encode(values).decode()  # NaN -> null

    def decode_frame(self, stored: Any) -> list[float]:
        import msgspec

        try:
            values = msgspec.json.decode(stored)
        except msgspec.ValidationError:  # 1e999: an infinity, out of msgspec's range
            values = json.loads(stored)
        if None in values:
            return [math.nan if v is None else float(v) for v in values]
        return list(map(float, values))

    def decode_frame_array(self, stored: Any) -> Any:
        import msgspec
        import numpy as np

        try:
            values = msgspec.json.decode(stored)
        except msgspec.ValidationError:
            return np.array(self.decode_frame(stored), dtype=np.float64)
        try:
            return np.array(values, dtype=np.float64)
        except TypeError:  # a null (NaN) among them
            return np.array(self.decode_frame(stored), dtype=np.float64)

    def upsert_frames(
        self, db: Database, frames_table: str, frames: Sequence[tuple[int, list[float]]], ts: int
    ) -> None:
        db.executemany(
            db.dialect.upsert(frames_table, ["layout_id", "ts", "vals"], ["layout_id", "ts"]),
            [(lid, ts, self.encode_frame(values)) for lid, values in frames],
        )

    def upsert_rows(
        self,
        db: Database,
        table: str,
        sids: Sequence[int],
        stamps: Sequence[int],
        values: Sequence[float | None],
    ) -> None:
        db.executemany(
            db.dialect.upsert(table, ["series_id", "ts", "value"], ["series_id", "ts"]),
            zip(sids, stamps, values, strict=True),
        )

    def frame_rows(self, frames_table: str, where: str = "") -> str:
        # CROSS JOIN fixes the order (frame, its values, their series); left to itself the
        # planner may start from the series and unpack every frame once per series
        unnest = (
            "CROSS JOIN json_each(f.vals) AS j CROSS JOIN metric_layout_series AS ls "
            "ON ls.layout_id = f.layout_id AND ls.pos = j.key"
        )
        return _frame_rows(frames_table, unnest, where)

    def frame_element(self) -> str:
        return "json_extract(f.vals, '$[' || ls.pos || ']')"

    def latest_per_layout(self, frames_table: str, where: str = "") -> str:
        # SQLite returns the bare column from the row holding max(): one pass over the index
        return (
            f"SELECT layout_id, max(ts), vals FROM {frames_table}{_where(where)} GROUP BY layout_id"
        )

    def latest_per_series(self, table: str, where: str = "") -> str:
        return f"SELECT series_id, max(ts), value FROM {table}{_where(where)} GROUP BY series_id"


class _PostgresRaw:
    frame_type = "DOUBLE PRECISION[]"

    def encode_frame(self, values: list[float]) -> Any:
        return list(map(float, values))  # one element type for psycopg's float8[]

    def decode_frame(self, stored: Any) -> list[float]:
        return list(stored)  # float8[] comes back as floats, NaN and infinities included

    def decode_frame_array(self, stored: Any) -> Any:
        import numpy as np

        return np.array(stored, dtype=np.float64)

    def upsert_frames(
        self, db: Database, frames_table: str, frames: Sequence[tuple[int, list[float]]], ts: int
    ) -> None:
        """One statement: the values of every frame in one binary ``float8[]``, cut into
        frames in SQL by each one's offset and length."""
        if not frames:
            return
        from signalbox.storage import pgarrays

        last = dict(frames)  # ON CONFLICT cannot update one row twice in a statement
        flat: list[float] = []
        offsets, sizes = [], []
        for values in last.values():
            offsets.append(len(flat))
            sizes.append(len(values))
            flat.extend(values)
        pgarrays.bind(db.conn)
        db.execute(
            f"INSERT INTO {frames_table} (layout_id, ts, vals) "
            "SELECT u.l, ?, v.a[u.o + 1 : u.o + u.n] "
            "FROM unnest(?::bigint[], ?::bigint[], ?::bigint[]) AS u(l, o, n), "
            "(SELECT ?::float8[] AS a) AS v "
            "ON CONFLICT (layout_id, ts) DO UPDATE SET vals = excluded.vals",
            (
                ts,
                pgarrays.int8_array(list(last)),
                pgarrays.int8_array(offsets),
                pgarrays.int8_array(sizes),
                pgarrays.float8_array(flat),
            ),
        )

    def upsert_rows(
        self,
        db: Database,
        table: str,
        sids: Sequence[int],
        stamps: Sequence[int],
        values: Sequence[float | None],
    ) -> None:
        """One statement of three array parameters (``executemany`` sent a statement per
        row: ~60 ms for a pass's 600 self-metrics rows)."""
        if not sids:
            return
        from signalbox.storage import pgarrays

        last = dict(zip(zip(sids, stamps, strict=True), values, strict=True))
        keys = list(last)
        pgarrays.bind(db.conn)
        db.execute(
            f"INSERT INTO {table} (series_id, ts, value) "
            "SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::float8[]) "
            "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value",
            (
                pgarrays.int8_array([k[0] for k in keys]),
                pgarrays.int8_array([k[1] for k in keys]),
                pgarrays.float8_array(list(last.values()), nulls=True),
            ),
        )

    def frame_rows(self, frames_table: str, where: str = "") -> str:
        unnest = (
            "CROSS JOIN LATERAL unnest(f.vals) WITH ORDINALITY AS j(value, ord) "
            "JOIN metric_layout_series AS ls ON ls.layout_id = f.layout_id AND ls.pos = j.ord - 1"
        )
        return _frame_rows(frames_table, unnest, where)

    def frame_element(self) -> str:
        return "f.vals[ls.pos + 1]"

    def latest_per_layout(self, frames_table: str, where: str = "") -> str:
        return (
            f"SELECT DISTINCT ON (layout_id) layout_id, ts, vals FROM {frames_table}"
            f"{_where(where)} ORDER BY layout_id, ts DESC"
        )

    def latest_per_series(self, table: str, where: str = "") -> str:
        return (
            f"SELECT DISTINCT ON (series_id) series_id, ts, value FROM {table}"
            f"{_where(where)} ORDER BY series_id, ts DESC"
        )


def _where(condition: str) -> str:
    return f" WHERE {condition}" if condition else ""


def _frame_rows(frames_table: str, unnest: str, where: str) -> str:
    return (
        "SELECT ls.series_id AS series_id, f.ts AS ts, j.value AS value "
        f"FROM {frames_table} AS f {unnest}{where}"
    )


def _json_number(v: float) -> str:
    if v != v:
        return "null"
    if v in (math.inf, -math.inf):
        return "1e999" if v > 0 else "-1e999"
    return repr(v)


_SQLITE, _POSTGRES = _SQLiteRaw(), _PostgresRaw()


def raw_sql(dialect: Dialect) -> RawSQL:
    """The frames and raw-partition SQL of ``dialect``'s database."""
    return _SQLITE if dialect.name == "sqlite" else _POSTGRES
