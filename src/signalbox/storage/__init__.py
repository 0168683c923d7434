"""Connections and schema for every store signalbox keeps (metrics, monitor state, ...).

SQLite and PostgreSQL speak almost the same SQL; the few differences (placeholders, upsert,
"latest row per group", locking) live in :mod:`signalbox.storage.dialect` and nowhere else.
"""

from signalbox.storage.database import Database, open_database

__all__ = ["Database", "open_database"]
