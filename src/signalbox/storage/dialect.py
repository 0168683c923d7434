"""The SQL that differs between SQLite and PostgreSQL, in one place.

Everything else in signalbox writes portable SQL with ``?`` placeholders and asks the
dialect by name for what differs (an upsert, a serial key, ``SKIP LOCKED``, which error
means "no such table"), so no caller ever tests ``dialect.name``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from signalbox.storage.placeholders import qmark_to_format

# SQLSTATEs (PostgreSQL appendix A) the storage layer tells apart
_UNDEFINED_TABLE = "42P01"
_LOCK_NOT_AVAILABLE = "55P03"
_UNIQUE_VIOLATION = "23505"  # CREATE TABLE IF NOT EXISTS racing another: pg_type's index
_DUPLICATE_TABLE = "42P07"


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" | "postgresql"
    placeholder: str  # "?" | "%s"
    blob_type: str
    without_rowid: str  # table suffix for clustered primary keys
    autoincrement_pk: str
    serial_pk: str = ""  # a key never reused, even after the newest row is deleted
    skip_locked: str = ""  # suffix of a SELECT that claims rows other workers have not locked
    native_notify: bool = False  # LISTEN/NOTIFY (else storage.notify polls a table)

    def sql(self, text: str) -> str:
        """Translate portable ``?`` placeholders to this dialect's (literals left alone)."""
        return text if self.placeholder == "?" else qmark_to_format(text)

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT that replaces the non-key columns when the key already exists (portable
        ``?`` SQL: pass it to :class:`~signalbox.storage.database.Database`, which translates)."""
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return (
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) {action}"
        )

    # -- errors by meaning (the one place that reads SQLite's messages) ------------------
    def is_undefined_table(self, exc: BaseException) -> bool:
        """``exc`` says a table does not exist (e.g. a partition retention just dropped)."""
        if self.name == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(
                "no such table"
            )
        return getattr(exc, "sqlstate", None) == _UNDEFINED_TABLE

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """``exc`` says a lock was not granted in time (``lock_timeout`` / busy timeout)."""
        if self.name == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        return getattr(exc, "sqlstate", None) == _LOCK_NOT_AVAILABLE

    def is_duplicate_create(self, exc: BaseException) -> bool:
        """``exc`` is PostgreSQL's answer to two concurrent ``CREATE TABLE IF NOT EXISTS``
        of one table (the loser violates a catalog index instead of seeing the table)."""
        return self.name != "sqlite" and getattr(exc, "sqlstate", None) in (
            _UNIQUE_VIOLATION,
            _DUPLICATE_TABLE,
        )

    @property
    def table_names_sql(self) -> str:
        """SELECT of the names of the tables in the current schema."""
        if self.name == "sqlite":
            return "SELECT name FROM sqlite_master WHERE type = 'table'"
        return "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"

    def latest_per_series(self, table: str) -> str:
        """Newest (series_id, ts, value) per series in a samples table."""
        if self.name == "sqlite":
            # SQLite returns the bare column from the row holding max(): one pass over the index.
            return f"SELECT series_id, max(ts), value FROM {table} GROUP BY series_id"
        return f"SELECT DISTINCT ON (series_id) series_id, ts, value FROM {table} ORDER BY series_id, ts DESC"

    def latest_per_layout(self, frames_table: str) -> str:
        """Newest (layout_id, ts, vals) per layout in a frames table."""
        if self.name == "sqlite":
            return f"SELECT layout_id, max(ts), vals FROM {frames_table} GROUP BY layout_id"
        return f"SELECT DISTINCT ON (layout_id) layout_id, ts, vals FROM {frames_table} ORDER BY layout_id, ts DESC"

    @property
    def ordered_join(self) -> str:
        """A join whose left side drives (SQLite's planner takes CROSS JOIN as that order)."""
        return "CROSS JOIN" if self.name == "sqlite" else "JOIN"

    # -- frames: one spool file's values of one pass, in the order of a known layout --------
    # SQLite keeps them as a JSON array (its json_each unpacks it in SQL; NaN is null, as
    # everywhere in SQLite here, and +-Inf are 1e999/-1e999, which both SQLite and Python's
    # float() read back as infinities); PostgreSQL as a native float8[].
    @property
    def frame_type(self) -> str:
        return "TEXT" if self.name == "sqlite" else "DOUBLE PRECISION[]"

    def encode_frame(self, values: list[float]) -> Any:
        if self.name != "sqlite":
            return list(map(float, values))  # one element type for psycopg's float8[]
        if math.inf in values or -math.inf in values:
            return "[" + ",".join(map(_json_number, values)) + "]"
        import msgspec

        return msgspec.json.encode(values).decode()  # NaN -> null

    def decode_frame(self, stored: Any) -> list[float]:
        if self.name != "sqlite":
            return list(stored)  # float8[] comes back as floats, NaN and infinities included
        import msgspec

        try:
            values = msgspec.json.decode(stored)
        except msgspec.ValidationError:  # 1e999: an infinity, out of msgspec's range
            values = json.loads(stored)
        if None in values:
            return [math.nan if v is None else float(v) for v in values]
        return list(map(float, values))

    def frame_rows(self, frames_table: str, where: str = "") -> str:
        """SELECT (series_id, ts, value) of every value of every frame in ``frames_table``."""
        if self.name == "sqlite":
            # CROSS JOIN fixes the order (frame, its values, their series); left to itself the
            # planner may start from the series and unpack every frame once per series
            unnest = "CROSS JOIN json_each(f.vals) AS j CROSS JOIN metric_layout_series AS ls ON ls.layout_id = f.layout_id AND ls.pos = j.key"
        else:
            unnest = (
                "CROSS JOIN LATERAL unnest(f.vals) WITH ORDINALITY AS j(value, ord) "
                "JOIN metric_layout_series AS ls ON ls.layout_id = f.layout_id AND ls.pos = j.ord - 1"
            )
        return f"SELECT ls.series_id AS series_id, f.ts AS ts, j.value AS value FROM {frames_table} AS f {unnest}{where}"

    def frame_element(self) -> str:
        """The value at ``ls.pos`` of frame ``f`` (0-based), as SQL."""
        if self.name == "sqlite":
            return "json_extract(f.vals, '$[' || ls.pos || ']')"
        return "f.vals[ls.pos + 1]"


def _json_number(v: float) -> str:
    if v != v:
        return "null"
    if v in (math.inf, -math.inf):
        return "1e999" if v > 0 else "-1e999"
    return repr(v)


SQLITE = Dialect(
    "sqlite",
    "?",
    "BLOB",
    " WITHOUT ROWID",
    "INTEGER PRIMARY KEY",
    serial_pk="INTEGER PRIMARY KEY AUTOINCREMENT",
    skip_locked="",  # BEGIN IMMEDIATE: one writer at a time, nothing to skip
)
POSTGRESQL = Dialect(
    "postgresql",
    "%s",
    "BYTEA",
    "",
    "BIGSERIAL PRIMARY KEY",
    serial_pk="BIGSERIAL PRIMARY KEY",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    native_notify=True,
)
