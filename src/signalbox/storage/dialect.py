"""The SQL that differs between SQLite and PostgreSQL, in one place.

Everything else in signalbox writes portable SQL with ``?`` placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" | "postgresql"
    placeholder: str  # "?" | "%s"
    blob_type: str
    without_rowid: str  # table suffix for clustered primary keys
    autoincrement_pk: str

    def sql(self, text: str) -> str:
        """Translate portable ``?`` placeholders to this dialect's."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT that replaces the non-key columns when the key already exists."""
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return self.sql(
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) {action}"
        )

    def latest_per_series(self, table: str) -> str:
        """Newest (series_id, ts, value) per series in a samples table."""
        if self.name == "sqlite":
            # SQLite returns the bare column from the row holding max(): one pass over the index.
            return f"SELECT series_id, max(ts), value FROM {table} GROUP BY series_id"
        return f"SELECT DISTINCT ON (series_id) series_id, ts, value FROM {table} ORDER BY series_id, ts DESC"


SQLITE = Dialect("sqlite", "?", "BLOB", " WITHOUT ROWID", "INTEGER PRIMARY KEY")
POSTGRESQL = Dialect("postgresql", "%s", "BYTEA", "", "BIGSERIAL PRIMARY KEY")
