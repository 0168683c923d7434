"""Notify/listen: PostgreSQL's own on PostgreSQL, a polled table on SQLite, one behaviour."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from signalbox.storage import Database, open_database
from signalbox.storage.notify import KEEP_MS, Listener, Notice, notify
from tests.storage.helpers import started


def test_a_notification_from_another_process_reaches_the_listener(db: Database) -> None:
    sender = open_database(db.url)
    with Listener(db, ["flags", "tasks"], poll_s=0.01) as listener:
        w = started(lambda: notify(sender, "flags", "checkout"))
        assert listener.wait(10) == [Notice("flags", "checkout")]
        w.outcome()
        notify(sender, "tasks", "photos")
        notify(sender, "tasks", "mail")
        got = listener.wait(10)
        if len(got) == 1:  # the second arrived after the first was read
            got += listener.wait(10)
        assert got == [Notice("tasks", "photos"), Notice("tasks", "mail")]
    sender.close()


def test_a_timeout_returns_nothing(db: Database) -> None:
    with Listener(db, ["quiet"], poll_s=0.01) as listener:
        notify(db, "other", "not for us")
        t0 = time.monotonic()
        assert listener.wait(0.2) == []
        assert 0.15 <= time.monotonic() - t0 < 3


def test_notifications_before_listening_are_not_delivered(db: Database) -> None:
    notify(db, "c", "early")
    with Listener(db, ["c"], poll_s=0.01) as listener:
        assert listener.wait(0.1) == []


def test_a_notification_is_delivered_at_commit_and_not_after_a_rollback(db: Database) -> None:
    with Listener(db, ["c"], poll_s=0.01) as listener:
        with pytest.raises(RuntimeError), db.transaction():
            notify(db, "c", "rolled back")
            raise RuntimeError
        assert listener.wait(0.1) == []
        with db.transaction():
            notify(db, "c", "committed")
            assert started(lambda: listener.wait(0.1)).outcome() == []  # not yet
        assert listener.wait(10) == [Notice("c", "committed")]


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
