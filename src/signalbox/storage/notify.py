"""Notify / listen: wake other processes when something changed, on either backend.

PostgreSQL has it natively (``pg_notify`` + ``LISTEN`` on a connection of the listener's
own). SQLite has no such thing, so a notification there is a row of ``storage_events`` that
listeners poll for; the API is the same. Either way a notification sent inside a
transaction is delivered when it commits, and not at all if it rolls back.

Notifications are wake-up calls, not a durable queue: a listener re-reads the state they
are about. On SQLite events older than :data:`KEEP_MS` are pruned, so a listener away for
longer misses them (on PostgreSQL it gets them, up to the server's notification queue).

PostgreSQL's channels belong to the whole database, not to a schema, so two stores in two
schemas of one database would wake each other: :func:`store_channel` names a channel of
one store. A listener's connection shows as ``signalbox-listen`` in ``pg_stat_activity``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from signalbox.exceptions import StoreError
from signalbox.storage.database import Database, Migration

__all__ = ["KEEP_MS", "MIGRATIONS", "Listener", "Notice", "notify", "store_channel"]

MIGRATIONS: list[Migration] = [
    (
        1,
        "events, the polling fallback of LISTEN/NOTIFY",
        [
            "CREATE TABLE storage_events (id {serial}, channel TEXT NOT NULL, "
            "payload TEXT NOT NULL, created_ms BIGINT NOT NULL)",
            "CREATE INDEX storage_events_by_channel ON storage_events (channel, id)",
        ],
    ),
]

KEEP_MS = 10 * 60_000
_PRUNE_EVERY = 64  # events; pruning is a scan of a table holding KEEP_MS of them
_CHANNEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_PLAIN_SCHEMA = re.compile(r"[a-z0-9_]+\Z")
APPLICATION_NAME = "signalbox-listen"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification: on which channel, and what the sender said."""

    channel: str
    payload: str


def _check_channel(channel: str) -> str:
    if not _CHANNEL.match(channel):
        raise ValueError(
            f"notification channel {channel!r}: expected letters, digits and '_' "
            "(not starting with a digit), at most 63 characters"
        )
    return channel


def store_channel(db: Database, name: str) -> str:
    """``name`` as a channel of ``db``'s store only. On PostgreSQL the current schema is
    appended (``flags`` in schema ``public``: ``flags__public``; a schema name that is not
    plain lower-case, or too long to fit, by a digest of it); SQLite's events live in the
    store's file, so there it is ``name`` itself. One query: call it once per store."""
    _check_channel(name)
    if not db.dialect.native_notify:
        return name
    (schema,) = db.query("SELECT current_schema()")[0]
    if schema is None:  # an empty search_path: no table could be made either
        raise StoreError(f"{db.url}: no current schema (check the search_path)")
    channel = f"{name}__{schema}"
    if not _PLAIN_SCHEMA.match(schema) or len(channel) > 63:
        channel = f"{name}__{hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()}"
    return _check_channel(channel)


def _polling(db: Database) -> bool:
    if db.dialect.native_notify:
        return False
    db.migrate("storage_events", MIGRATIONS)
    return True


def notify(db: Database, channel: str, payload: str = "", *, now_ms: int | None = None) -> None:
    """Tell listeners of ``channel``; joins the caller's transaction (delivered at commit)."""
    _check_channel(channel)
    if not _polling(db):
        db.execute("SELECT pg_notify(?, ?)", (channel, payload))
        return
    now = round(time.time() * 1000) if now_ms is None else now_ms
    with db.transaction():
        (new_id,) = db.query(
            "INSERT INTO storage_events (channel, payload, created_ms) VALUES (?, ?, ?) RETURNING id",
            (channel, payload, now),
        )[0]
        if new_id % _PRUNE_EVERY == 0:
            db.execute("DELETE FROM storage_events WHERE created_ms < ?", (now - KEEP_MS,))


class Listener:
    """Receives the notifications of ``channels`` sent after it was made.

    Use from one thread; :meth:`close` it (or use it as a context manager). ``poll_s`` is
    how often SQLite's event table is read while waiting. On PostgreSQL a lost connection
    (the server restarted, the backend was terminated) raises :class:`StoreError` from
    :meth:`wait` and closes the listener: what was sent meanwhile is lost, so make a new
    one and re-read the state it is about.
    """

    def __init__(self, db: Database, channels: Sequence[str], *, poll_s: float = 0.05) -> None:
        if not channels:
            raise ValueError("a Listener needs at least one channel")
        self.db, self.channels = db, [_check_channel(c) for c in channels]
        self.poll_s = poll_s
        self._closed = threading.Event()
        self._raw: Any = None
        self._last_id = 0
        self._due = 0.0  # when SQLite's event table is read next (monotonic)
        if _polling(db):
            self._last_id = int(db.query("SELECT coalesce(max(id), 0) FROM storage_events")[0][0])
        else:
            self._raw = db.dedicated_connection()  # autocommit: LISTEN takes effect at once
            try:
                self._raw.execute(
                    "SELECT set_config('application_name', %s, false)", (APPLICATION_NAME,)
                )
                for c in self.channels:
                    self._raw.execute(f'LISTEN "{c}"')
            except Exception as e:
                self.close()
                raise StoreError(
                    f"{db.url}: could not listen on {', '.join(self.channels)}: {_first_line(e)}"
                ) from e

    def wait(self, timeout_s: float) -> list[Notice]:
        """The notifications that arrived, waiting up to ``timeout_s`` for the first; [] if
        none came in time (or the listener was closed)."""
        if self._raw is not None:
            try:
                got = list(self._raw.notifies(timeout=max(0.0, timeout_s), stop_after=1))
                if got:
                    got += self._raw.notifies(timeout=0)  # and whatever came with them
            except Exception as e:
                if self._closed.is_set():
                    return []
                self.close()
                on = ", ".join(self.channels)
                raise StoreError(
                    f"{self.db.url}: lost the connection listening on {on}: {_first_line(e)}"
                ) from e
            return [Notice(n.channel, n.payload) for n in got]
        if self._closed.is_set():
            return []
        deadline = time.monotonic() + timeout_s
        marks = ", ".join("?" for _ in self.channels)
        sql = (
            f"SELECT id, channel, payload FROM storage_events WHERE channel IN ({marks}) "
            "AND id > ? ORDER BY id"
        )
        while not self._closed.is_set():
            now = time.monotonic()
            if now >= self._due:  # one read per poll_s, however the waits are cut up
                self._due = now + self.poll_s
                rows = self.db.query(sql, (*self.channels, self._last_id))
                if rows:
                    self._last_id = int(rows[-1][0])
                    return [Notice(ch, payload) for _, ch, payload in rows]
            left = deadline - now
            if left <= 0:
                break
            self._closed.wait(min(self._due - now, left))
        return []

    def close(self) -> None:
        self._closed.set()
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):  # a lost connection: nothing to release
                raw.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
