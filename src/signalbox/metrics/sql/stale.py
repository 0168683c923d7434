"""Stale markers: the times at which series stopped being reported.

Prometheus writes a special NaN sample when a target drops a series. SQLite stores NaN as
NULL, so a marker cannot be a value among the samples here: markers live in their own table,
``metric_stale (series_id, ts)``, written in the collection pass's transaction. They are
few (one per series per disappearance), so they are read with one extra query per select or
``latest``, skipped when the window holds none. They are kept as long as the longest tier
keeps samples, since a marker only means something next to the samples it ends.

``metric_spool_files`` keeps what each spool file stored at a collector's last pass (see
:data:`~signalbox.metrics.store.SpoolFileState`), changed in the pass's transaction, so a
new process (``collect --once`` from cron) ends what went away since the last one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from signalbox.metrics.store import SpoolFileState
from signalbox.storage.database import Database, Migration

MIGRATION: Migration = (
    6,
    "stale markers: when a series stopped being reported (a removed or stale spool file)",
    [
        "CREATE TABLE IF NOT EXISTS metric_stale (series_id BIGINT NOT NULL, ts BIGINT NOT NULL, PRIMARY KEY (series_id, ts)){without_rowid}",
        "CREATE INDEX IF NOT EXISTS metric_stale_ts ON metric_stale (ts)",
        "CREATE TABLE IF NOT EXISTS metric_spool_files (extra TEXT NOT NULL, file TEXT NOT NULL, layout {blob}, text TEXT, PRIMARY KEY (extra, file))",
    ],
)
# IF NOT EXISTS: tests (and a downgrade) rewind the schema version over existing tables

_CHUNK = 500  # ids per IN list


def _chunks(ids: Sequence[int], size: int = _CHUNK) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def series_ids(db: Database, pairs: Sequence[tuple[str, str]]) -> list[int]:
    """Ids of the existing series among ``(name, label text)`` pairs (never creates one:
    a series never stored has nothing to end). By name, then ``labels IN (...)``: both
    databases seek the unique index that way (a row-value ``IN (VALUES ...)`` scans)."""
    by_name: dict[str, list[str]] = {}
    for name, text in pairs:
        by_name.setdefault(name, []).append(text)
    out: list[int] = []
    for name, texts in sorted(by_name.items()):
        for i in range(0, len(texts), _CHUNK):
            chunk = texts[i : i + _CHUNK]
            out.extend(
                sid
                for (sid,) in db.query(
                    f"SELECT id FROM series WHERE name = ? AND labels IN ({','.join('?' * len(chunk))})",
                    [name, *chunk],
                )
            )
    return out


def record(db: Database, sids: Iterable[int], ts: int) -> None:
    """A marker at ``ts`` for each series; inside the caller's write transaction."""
    rows = [(sid, ts) for sid in sorted(set(sids))]
    if rows:
        db.executemany(
            "INSERT INTO metric_stale (series_id, ts) VALUES (?, ?) ON CONFLICT DO NOTHING", rows
        )


_BY_WINDOW_MIN = 5_000  # series above which the window's markers are read by time alone


def in_window(
    db: Database, start_ms: int, end_ms: int, *, ordered: bool = True
) -> list[tuple[Any, ...]]:
    """Every marker in ``[start_ms, end_ms]`` as (series id, time), by series then time
    (unless not ``ordered``): one read of the time index, however many series (a million
    series asked by id are 1,000 queries)."""
    order = " ORDER BY series_id, ts" if ordered else ""
    return db.query(
        f"SELECT series_id, ts FROM metric_stale WHERE ts >= ? AND ts <= ?{order}",
        (start_ms, end_ms),
    )


def between(db: Database, sids: Sequence[int], start_ms: int, end_ms: int) -> dict[int, list[int]]:
    """Marker times in ``[start_ms, end_ms]`` per series (ascending), of these series only."""
    if not sids or not db.query(
        "SELECT 1 FROM metric_stale WHERE ts >= ? AND ts <= ? LIMIT 1", (start_ms, end_ms)
    ):
        return {}  # the usual read: no marker anywhere in the window, one index probe
    out: dict[int, list[int]] = {}
    if len(sids) > _BY_WINDOW_MIN:  # many series: every marker of the window, filtered here
        wanted = set(sids)
        for sid, ts in in_window(db, start_ms, end_ms):
            if sid in wanted:
                out.setdefault(sid, []).append(ts)
        return out
    for chunk in _chunks(sorted(sids)):
        for sid, ts in db.query(
            f"SELECT series_id, ts FROM metric_stale WHERE series_id IN ({','.join('?' * len(chunk))}) "
            "AND ts >= ? AND ts <= ? ORDER BY series_id, ts",
            [*chunk, start_ms, end_ms],
        ):
            out.setdefault(sid, []).append(ts)
    return out


def newest(
    db: Database, sids: Collection[int] | None = None, *, since_ms: int = -(2**63)
) -> dict[int, int]:
    """The newest marker time, at or after ``since_ms``, of each series that has one (of
    ``sids``, if given). ``latest`` passes its oldest sample's time: the markers kept for
    months of rollups are not read for every ``/metrics`` scrape."""
    if sids is None:
        return dict(
            db.query(
                "SELECT series_id, MAX(ts) FROM metric_stale WHERE ts >= ? GROUP BY series_id",
                (since_ms,),
            )
        )
    out: dict[int, int] = {}
    for chunk in _chunks(sorted(sids)):
        out.update(
            db.query(
                "SELECT series_id, MAX(ts) FROM metric_stale "
                f"WHERE series_id IN ({','.join('?' * len(chunk))}) AND ts >= ? GROUP BY series_id",
                [*chunk, since_ms],
            )
        )
    return out


def drop_before(db: Database, cutoff_ms: int) -> None:
    """Forget markers older than ``cutoff_ms`` (no sample they could end is left)."""
    if db.query("SELECT 1 FROM metric_stale WHERE ts < ? LIMIT 1", (cutoff_ms,)):
        with db.transaction():
            db.execute("DELETE FROM metric_stale WHERE ts < ?", (cutoff_ms,))


def spool_files(db: Database, extra: str) -> dict[str, SpoolFileState]:
    """The spool file states writers adding labels ``extra`` left."""
    return {
        file: bytes(layout) if layout is not None else text
        for file, layout, text in db.query(
            "SELECT file, layout, text FROM metric_spool_files WHERE extra = ?", (extra,)
        )
    }


def save_spool_files(
    db: Database, extra: str, changes: Mapping[str, SpoolFileState | None]
) -> None:
    """Apply state changes (None: forget the file); inside the caller's write transaction."""
    gone = [(extra, f) for f, state in changes.items() if state is None]
    if gone:
        db.executemany("DELETE FROM metric_spool_files WHERE extra = ? AND file = ?", gone)
    rows = [
        (
            extra,
            f,
            state if isinstance(state, bytes) else None,
            state if isinstance(state, str) else None,
        )
        for f, state in sorted(changes.items())
        if state is not None
    ]
    if rows:
        cols = ["extra", "file", "layout", "text"]
        db.executemany(db.dialect.upsert("metric_spool_files", cols, ["extra", "file"]), rows)
