"""Claiming rows of a queue-like table for a while: one tested path for every worker pool.

A row is *claimable* when it is ready (``status = 'pending'``, say) and its due time has
come. Claiming it sets the due time one lease ahead (and counts the attempt, and records
the worker): other workers leave it alone until then, and if its worker dies the row simply
becomes due again when the lease runs out — at-least-once, nothing lost, no reaper. The
worker then finishes the row with its own UPDATE (sent, done, failed: area-specific SQL), or
schedules the next attempt (see :func:`~signalbox.storage.backoff.backoff_s`).

Two ways in, both safe with many workers on many hosts:

* :func:`claim_due` takes up to N due rows: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (workers
  skip each other's rows instead of queueing on them); on SQLite ``BEGIN IMMEDIATE`` makes
  the pick-and-mark atomic (one writer at a time, so there is nothing to skip).
* :func:`claim_one` takes one row the caller already read, compare-and-swap style: only if
  it is still claimable and unchanged (``expect``), e.g. when rows must go in an order the
  caller decides (the notification outbox: a "resolved" never overtakes its "firing").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signalbox.storage.database import Database

__all__ = ["ClaimTable", "claim_due", "claim_one", "release_claim", "renew_claim"]


@dataclass(frozen=True, slots=True)
class ClaimTable:
    """Where a queue-like table keeps what claiming needs (column names, trusted SQL).

    Attributes:
        table: the table.
        key: its unique key column.
        due: epoch-ms column; a row is claimable once ``due <= now``. Claiming moves it to
            the end of the lease (so the lease needs no column of its own).
        ready: SQL condition of rows waiting for a worker, e.g. ``status = 'pending'``.
        order: ORDER BY of :func:`claim_due` (default: oldest due first, then key).
        attempts: column counting claims (None: not counted).
        claimed_by: column naming the worker holding the row (None: not recorded; then
            :func:`renew_claim` and :func:`release_claim` are unavailable).
    """

    table: str
    key: str = "id"
    due: str = "due_ms"
    ready: str = "TRUE"
    order: str = ""
    attempts: str | None = "attempts"
    claimed_by: str | None = "claimed_by"

    def _claim_sets(self, worker: str) -> tuple[str, list[Any]]:
        sets, params = [f"{self.due} = ?"], []
        if self.attempts is not None:
            sets.append(f"{self.attempts} = {self.attempts} + 1")
        if self.claimed_by is not None:
            sets.append(f"{self.claimed_by} = ?")
            params.append(worker)
        return ", ".join(sets), params

    def _worker_column(self, what: str) -> str:
        if self.claimed_by is None:
            raise ValueError(f"{what} needs the claimed_by column, which {self.table} has not")
        return self.claimed_by


def claim_due(
    db: Database,
    t: ClaimTable,
    *,
    worker: str,
    now_ms: int,
    lease_ms: int,
    limit: int,
    columns: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Claim up to ``limit`` due rows for ``worker`` until ``now_ms + lease_ms``; return their
    ``columns`` (default: the key) as they are after the claim, in ``t.order``.

    Joins the caller's transaction if there is one (the rows stay locked until it ends).
    """
    if limit <= 0:
        return []
    cols = list(columns) or [t.key]
    order = t.order or f"{t.due}, {t.key}"
    sets, set_params = t._claim_sets(worker)
    with db.transaction():
        keys = [
            r[0]
            for r in db.query(
                f"SELECT {t.key} FROM {t.table} WHERE ({t.ready}) AND {t.due} <= ? "
                f"ORDER BY {order} LIMIT ?{db.dialect.skip_locked}",
                (now_ms, limit),
            )
        ]
        if not keys:
            return []
        marks = ", ".join("?" for _ in keys)
        rows = db.query(
            f"UPDATE {t.table} SET {sets} WHERE {t.key} IN ({marks}) "
            f"RETURNING {t.key}, {', '.join(cols)}",
            (now_ms + lease_ms, *set_params, *keys),
        )
    position = {k: i for i, k in enumerate(keys)}
    rows.sort(key=lambda r: position[r[0]])
    return [tuple(r[1:]) for r in rows]


def claim_one(
    db: Database,
    t: ClaimTable,
    key: Any,
    *,
    worker: str = "",
    now_ms: int,
    lease_ms: int,
    expect: Mapping[str, Any] | None = None,
) -> bool:
    """Claim the row ``key`` if it is still claimable and its ``expect`` columns still hold
    the values the caller read; False if another worker (or anything else) got there first."""
    sets, set_params = t._claim_sets(worker)
    where = f"{t.key} = ? AND ({t.ready}) AND {t.due} <= ?"
    params: list[Any] = [now_ms + lease_ms, *set_params, key, now_ms]
    for col, value in (expect or {}).items():
        where += f" AND {col} = ?"
        params.append(value)
    with db.transaction():
        cur = db.execute(f"UPDATE {t.table} SET {sets} WHERE {where}", params)
        return bool(cur.rowcount == 1)


def renew_claim(
    db: Database, t: ClaimTable, key: Any, *, worker: str, now_ms: int, lease_ms: int
) -> bool:
    """Extend ``worker``'s lease on ``key`` to ``now_ms + lease_ms`` (a long job's heartbeat);
    False if the row is no longer ``worker``'s (its lease ran out and another claimed it)."""
    col = t._worker_column("renew_claim")
    with db.transaction():
        cur = db.execute(
            f"UPDATE {t.table} SET {t.due} = ? WHERE {t.key} = ? AND {col} = ? AND ({t.ready})",
            (now_ms + lease_ms, key, worker),
        )
        return bool(cur.rowcount == 1)


def release_claim(db: Database, t: ClaimTable, key: Any, *, worker: str, due_ms: int) -> bool:
    """Give ``key`` back, due again at ``due_ms`` (a retry after a backoff, or now); False if
    it was no longer ``worker``'s."""
    col = t._worker_column("release_claim")
    with db.transaction():
        cur = db.execute(
            f"UPDATE {t.table} SET {t.due} = ?, {col} = NULL WHERE {t.key} = ? AND {col} = ? "
            f"AND ({t.ready})",
            (due_ms, key, worker),
        )
        return bool(cur.rowcount == 1)
