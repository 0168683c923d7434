"""Ended dashboard sessions are deleted, a bounded number at a time: by the purge itself,
by a login on its way, and by a real ``signalbox serve`` while it runs, which keeps the
live sessions working (SQLite and PostgreSQL each time)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from signalbox.server.auth.roles import Role
from signalbox.server.auth.sessions import ABSOLUTE_MS, IDLE_MS, LOGIN_PURGE, SessionStore
from signalbox.server.auth.users import User, UserStore
from signalbox.storage import Database, open_database
from tests.cli.helpers import free_port
from tests.server.conftest import NOW
from tests.server.test_auth_sessions import dash
from tests.serving import serve_process, wait_for

NOW_MS = int(NOW * 1000)


def _user(db: Database) -> User:
    return UserStore(db).create(
        "carol", role=Role.OPERATE, password="carol-secret-3", by="test", now_ms=NOW_MS
    )


def _start(sessions: SessionStore, user: User, n: int, at_ms: int) -> list[str]:
    """``n`` sessions begun at ``at_ms``, in one transaction: their ids."""
    with sessions.db.transaction():
        return [sessions.start(user, client="seed", now_ms=at_ms)[1] for _ in range(n)]


def _count(db: Database) -> int:
    return int(db.query("SELECT COUNT(*) FROM dashboard_sessions")[0][0])


def test_a_purge_deletes_ended_sessions_only_and_at_most_its_limit(db: Database) -> None:
    sessions, user = SessionStore(db), _user(db)
    # newest first: a session's start deletes those ended by its own time
    live = _start(sessions, user, 2, NOW_MS - IDLE_MS + 60_000)  # idle 11:59: live
    idle = _start(sessions, user, 4, NOW_MS - IDLE_MS - 1)  # ended: idle over 12 h
    old = _start(sessions, user, 3, NOW_MS - ABSOLUTE_MS)  # ended: 7 days old
    assert _count(db) == 9
    assert sessions.purge(NOW_MS, limit=2) == 2
    assert _count(db) == 7
    # batches of 2, at most 2 of them: 4 more go, the last ended one waits for the next run
    assert sessions.purge_ended(NOW_MS, batch=2, max_batches=2) == 4
    assert _count(db) == 3
    assert sessions.purge_ended(NOW_MS, batch=2, max_batches=2) == 1
    assert sessions.purge_ended(NOW_MS) == 0
    assert _count(db) == 2
    assert all(sessions.resolve(s, NOW_MS) is not None for s in live)
    assert all(sessions.resolve(s, NOW_MS) is None for s in old + idle)


def test_a_login_deletes_a_bounded_number_of_ended_sessions(
    sql_backend: str, tmp_path: Path
) -> None:
    with dash(sql_backend, tmp_path, reads_need_token=True) as d:
        db = d.site.db
        _start(SessionStore(db), d.users.get("alice"), LOGIN_PURGE + 3, NOW_MS - ABSOLUTE_MS)
        with d.browser() as http:
            assert d.login(http).status_code == 303
            assert _count(db) == 3 + 1  # LOGIN_PURGE went and 3 wait; the new one lives
            assert d.login(http, "bob").status_code == 303
            assert _count(db) == 1  # the 3 went, and alice's, replaced by bob's login
            assert http.get("/api/v1/monitors").status_code == 200


def test_serve_purges_ended_sessions_while_it_runs(store_url: str, tmp_path: Path) -> None:
    db = open_database(store_url)
    try:
        sessions, user = SessionStore(db), _user(db)
        now_ms = int(time.time() * 1000)
        # one live session, and more than two purge transactions' worth (500 each) of
        # ended ones (begun after it: a session's start deletes those ended by its time)
        (live,) = _start(sessions, user, 1, now_ms)
        _start(sessions, user, 1100, now_ms - ABSOLUTE_MS - 1000)
        assert _count(db) == 1101
        port = free_port()
        (tmp_path / "signalbox.toml").write_text(
            f'store = "{store_url}"\n[server]\nport = {port}\nauth = "required"\n'
        )
        with serve_process(tmp_path, port) as base:
            wait_for(lambda: _count(db) == 1, timeout=30)
            r = httpx.get(base + "/api/v1/monitors", cookies={"signalbox_session": live})
            assert r.status_code == 200, r.text  # the live one was kept, and works
            assert httpx.get(base + "/api/v1/monitors").status_code == 401
    finally:
        db.close()
