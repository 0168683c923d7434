"""A named lease with a time-to-live: a leader lock that survives its holder's death.

Several ``serve`` processes share one PostgreSQL store, and one of them at a time should
evaluate monitors. The holder renews its lease well within the TTL; if it dies, the lease
expires and another process acquires it. Each step is one atomic statement (an upsert that
only takes over a row that is free, expired, or already ours), so two processes racing for
it can never both win, on SQLite or PostgreSQL.

Time is the caller's clock (injected, so tests never sleep); hosts sharing a store must keep
their clocks within a small fraction of the TTL of each other (NTP does).
"""

from __future__ import annotations

import os
import socket
import uuid

from signalbox.clock import Clock, SystemClock
from signalbox.storage.database import Database, Migration

__all__ = ["MIGRATIONS", "Lease", "lease"]

MIGRATIONS: list[Migration] = [
    (
        1,
        "leases with a TTL",
        [
            "CREATE TABLE storage_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
            "expires_ms BIGINT NOT NULL)"
        ],
    ),
]


def default_holder() -> str:
    """Names this process (host, pid) uniquely, for ``storage_leases.holder``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease ``name``, as seen by ``holder``.

    Args:
        ttl_s: how long an acquisition or renewal lasts.
        holder: who we are (default: host, pid and a random suffix, unique per object).
    """

    def __init__(
        self,
        db: Database,
        name: str,
        ttl_s: float,
        *,
        holder: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lease {name!r}: ttl_s must be positive, not {ttl_s}")
        self.db, self.name, self.ttl_ms = db, name, round(ttl_s * 1000)
        self.holder = holder or default_holder()
        self.clock = clock or SystemClock()
        db.migrate("storage_leases", MIGRATIONS)

    def _now_ms(self, now_ms: int | None) -> int:
        return round(self.clock.now() * 1000) if now_ms is None else now_ms

    def acquire(self, now_ms: int | None = None) -> bool:
        """Take the lease if it is free or expired, or renew it if it is ours; True if we
        hold it (until now + TTL) afterwards."""
        now = self._now_ms(now_ms)
        with self.db.transaction():
            rows = self.db.query(
                "INSERT INTO storage_leases (name, holder, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_ms = excluded.expires_ms "
                "WHERE storage_leases.holder = excluded.holder OR storage_leases.expires_ms <= ? "
                "RETURNING holder",
                (self.name, self.holder, now + self.ttl_ms, now),
            )
        return bool(rows)

    def renew(self, now_ms: int | None = None) -> bool:
        """Push our lease to now + TTL; False if it is not ours any more (it expired and
        someone else took it, or it was released) — stop acting as its holder then."""
        now = self._now_ms(now_ms)
        with self.db.transaction():
            cur = self.db.execute(
                "UPDATE storage_leases SET expires_ms = ? WHERE name = ? AND holder = ? "
                "AND expires_ms > ?",
                (now + self.ttl_ms, self.name, self.holder, now),
            )
            return bool(cur.rowcount == 1)

    def release(self) -> None:
        """Give the lease up now (if it is ours), so another process need not wait the TTL."""
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM storage_leases WHERE name = ? AND holder = ?",
                (self.name, self.holder),
            )

    def holder_now(self, now_ms: int | None = None) -> str | None:
        """Who holds the lease at ``now_ms`` (None: nobody)."""
        rows = self.db.query(
            "SELECT holder FROM storage_leases WHERE name = ? AND expires_ms > ?",
            (self.name, self._now_ms(now_ms)),
        )
        return str(rows[0][0]) if rows else None


def lease(
    db: Database,
    name: str,
    ttl_s: float,
    *,
    holder: str | None = None,
    clock: Clock | None = None,
) -> Lease:
    """The lease ``name`` with a TTL of ``ttl_s`` on ``db`` (see :class:`Lease`)."""
    return Lease(db, name, ttl_s, holder=holder, clock=clock)
