"""Notify/listen: PostgreSQL's own on PostgreSQL, a polled table on SQLite, one behaviour."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from signalbox.exceptions import StoreError
from signalbox.storage import Database, open_database
from signalbox.storage.notify import (
    APPLICATION_NAME,
    KEEP_MS,
    Listener,
    Notice,
    notify,
    store_channel,
)
from tests.storage.helpers import is_pg, pg_admin, started
from tests.stores import PG_BASE, pg_schema_url

# PostgreSQL's channels belong to the whole database, not to a test's schema: this process's
# own names, so another test process (an xdist worker) notifying on the same server is not heard
_PID = os.getpid()
FLAGS, TASKS, QUIET, OTHER, C = (
    f"{name}_{_PID}" for name in ("flags", "tasks", "quiet", "other", "c")
)


def test_a_notification_from_another_process_reaches_the_listener(db: Database) -> None:
    sender = open_database(db.url)
    with Listener(db, [FLAGS, TASKS], poll_s=0.01) as listener:
        w = started(lambda: notify(sender, FLAGS, "checkout"))
        assert listener.wait(10) == [Notice(FLAGS, "checkout")]
        w.outcome()
        notify(sender, TASKS, "photos")
        notify(sender, TASKS, "mail")
        got = listener.wait(10)
        if len(got) == 1:  # the second arrived after the first was read
            got += listener.wait(10)
        assert got == [Notice(TASKS, "photos"), Notice(TASKS, "mail")]
    sender.close()


def test_a_timeout_returns_nothing(db: Database) -> None:
    with Listener(db, [QUIET], poll_s=0.01) as listener:
        notify(db, OTHER, "not for us")
        t0 = time.monotonic()
        assert listener.wait(0.2) == []
        assert 0.15 <= time.monotonic() - t0 < 3


def test_notifications_before_listening_are_not_delivered(db: Database) -> None:
    notify(db, C, "early")
    with Listener(db, [C], poll_s=0.01) as listener:
        assert listener.wait(0.1) == []


def test_a_notification_is_delivered_at_commit_and_not_after_a_rollback(db: Database) -> None:
    with Listener(db, [C], poll_s=0.01) as listener:
        with pytest.raises(RuntimeError), db.transaction():
            notify(db, C, "rolled back")
            raise RuntimeError
        assert listener.wait(0.1) == []
        with db.transaction():
            notify(db, C, "committed")
            assert started(lambda: listener.wait(0.1)).outcome() == []  # not yet
        assert listener.wait(10) == [Notice(C, "committed")]


def test_a_bad_channel_name_is_refused_with_the_name(db: Database) -> None:
    with pytest.raises(ValueError, match=r"'bad channel'.*letters, digits"):
        notify(db, "bad channel")
    with pytest.raises(ValueError, match="'1x'"):
        Listener(db, ["1x"])
    with pytest.raises(ValueError, match="at least one channel"):
        Listener(db, [])


def test_old_events_are_pruned_on_sqlite(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'n.db'}")
    now = 1_700_000_000_000
    for i in range(130):
        notify(db, "c", str(i), now_ms=now if i < 64 else now + KEEP_MS + 1)
    (left,) = db.query("SELECT count(*) FROM storage_events")[0]
    assert left == 130 - 64  # pruned at the 128th: the 64 older than KEEP_MS
    db.close()


def test_a_store_channel_is_the_store_s_own(db: Database) -> None:
    """PostgreSQL's channels are the database's: the store's schema is in the name."""
    channel = store_channel(db, "flags")
    if is_pg(db):
        (schema,) = db.query("SELECT current_schema()")[0]
        assert channel == f"flags__{schema}"
    else:  # the events are the file's
        assert channel == "flags"
    with pytest.raises(ValueError, match="'no way'"):
        store_channel(db, "no way")


@pytest.mark.service("postgresql")
def test_a_schema_name_too_long_for_a_channel_is_digested() -> None:
    import psycopg

    schema = f"sbtest_{'long' * 12}_{_PID}"[:63]
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        db = open_database(f"{PG_BASE}?options=-csearch_path%3D{schema}")
        channel = store_channel(db, "signalbox_flags")
        db.close()
        assert len(channel) == len("signalbox_flags__") + 16 and schema not in channel
        assert channel.startswith("signalbox_flags__")
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.service("postgresql")
def test_a_lost_listening_connection_is_a_store_error_naming_the_channels() -> None:
    with pg_schema_url() as url:
        db = open_database(url)
        with Listener(db, [QUIET, OTHER]) as listener:
            (pid,) = [
                r[0]
                for r in pg_admin(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query = %s",
                    (APPLICATION_NAME, f'LISTEN "{OTHER}"'),
                )
            ]
            pg_admin("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(
                StoreError, match=f"lost the connection listening on {QUIET}, {OTHER}"
            ):
                listener.wait(10)
            assert listener.wait(0.01) == []  # closed: make a new one
        db.close()


def test_sqlite_events_are_read_once_per_poll_however_the_waits_are_cut(tmp_path: Path) -> None:
    """A caller waiting in short slices (to notice its own stop) reads no more often."""
    db = open_database(f"sqlite:///{tmp_path / 'n.db'}")
    reads: list[str] = []
    with Listener(db, [C], poll_s=0.2) as listener:
        db.conn.set_trace_callback(
            lambda sql: reads.append(sql) if "storage_events" in sql else None
        )
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            assert listener.wait(0.05) == []
        db.conn.set_trace_callback(None)
        assert 1 <= len(reads) <= 6, reads  # every 0.2 s (20 slices of 0.05 s)
        notify(db, C, "late")
        assert listener.wait(1) == [Notice(C, "late")]
    db.close()
