"""``signalbox users set-role|logout|passwd|delete`` against people signed in right now: the
CLI run as a user runs it, the dashboard served over a real socket from the same store
(SQLite and PostgreSQL), each command's effect seen on the browsers' next request."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

from signalbox.metrics.samples import Sample
from signalbox.server.app import AppOptions, create_app
from signalbox.server.auth.store import TokenStore
from signalbox.server.auth.users import UserStore
from tests.cli.helpers import StoreProject, run, store_project
from tests.server.conftest import open_site
from tests.server.test_auth_api import on_socket
from tests.server.test_auth_sessions import MONITORS, Dash

__all__ = ["store_project"]

PASSWORD = {"alice": "alice-secret-1", "bob": "bob-secret-22"}


@contextlib.contextmanager
def signed_in_site(project: StoreProject, tmp_path: Path) -> Iterator[Dash]:
    """alice (operate) and bob (read), made by the CLI; the dashboard over the project's
    store with auth required, its clock at the wall clock's time (the CLI's "now")."""
    root = project.root
    for name, role in (("alice", "operate"), ("bob", "read")):
        made = run("users", "create", name, "--role", role, "--password-stdin",
                   cwd=root, input=PASSWORD[name])  # fmt: skip
        assert made.returncode == 0, made.stderr
    with open_site(
        project.backend, tmp_path, monitors_yaml=MONITORS, url=project.store_url
    ) as site:
        site.clock.set(time.time())
        now_ms = site.services.now_ms()
        site.store.write([Sample("disk_used_ratio", (("mount", "/var"),), 0.99)], now_ms)
        site.runner.run_pass(now_ms)
        services = dataclasses.replace(
            site.services, tokens=TokenStore(site.db), monitor_writes=site.services.monitors
        )
        app = create_app(services, AppOptions(reads_need_token=True))
        with on_socket(app) as base:
            yield Dash(site, UserStore(site.db), base, bearer="")


def _cli(project: StoreProject, *args: str, stdin: str | None = None) -> str:
    r = run("users", *args, cwd=project.root, input=stdin)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.strip()


def test_set_role_applies_to_open_sessions_at_once(
    store_project: StoreProject, tmp_path: Path
) -> None:
    with signed_in_site(store_project, tmp_path) as d, d.browser() as http:
        assert d.login(http, "alice", PASSWORD["alice"]).status_code == 303
        csrf = d.csrf(http)
        assert d.silence(http, **{"X-CSRF-Token": csrf}).status_code == 200
        assert _cli(store_project, "set-role", "alice", "read") == (
            "changed the role of user 'alice' from operate to read; it applies to their 1 "
            "session(s) from the next request on"
        )
        denied = d.silence(http, **{"X-CSRF-Token": csrf})  # same session, same page
        assert denied.status_code == 403, denied.text
        assert (
            denied.json()["error"] == "alice (dashboard) has role read; this needs operate or admin"
        )
        assert 'title="role: read">alice</span>' in http.get("/").text
        assert http.get("/api/v1/tokens").status_code == 403
        _cli(store_project, "set-role", "alice", "admin")
        assert http.get("/api/v1/tokens").status_code == 200  # no new login needed
        assert _cli(store_project, "set-role", "alice", "admin") == (
            "user 'alice' (admin) already had role admin"
        )
        assert [(u["name"], u["role"]) for u in _users_json(store_project)] == [
            ("alice", "admin"),
            ("bob", "read"),
        ]
    for argv, message in (
        (("set-role", "nobody", "read"), "no user named 'nobody'"),
        (("set-role", "alice", "root"), "'root' is not one of 'read', 'operate', 'admin'"),
        (("logout", "nobody"), "no user named 'nobody'"),
    ):
        bad = run("users", *argv, cwd=store_project.root)
        assert bad.returncode == 2 and message in bad.stderr, (argv, bad.stderr)


def test_logout_passwd_and_delete_end_sessions_and_say_how_many(
    store_project: StoreProject, tmp_path: Path
) -> None:
    with signed_in_site(store_project, tmp_path) as d:
        with d.browser() as a1, d.browser() as a2, d.browser() as b:
            for http, name in ((a1, "alice"), (a2, "alice"), (b, "bob")):
                assert d.login(http, name, PASSWORD[name]).status_code == 303
                assert http.get("/api/v1/monitors").status_code == 200
            assert _cli(store_project, "logout", "alice") == (
                "logged out user 'alice' (operate): 2 session(s) ended"
            )
            for http in (a1, a2):
                assert http.get("/api/v1/monitors").status_code == 401
            assert b.get("/api/v1/monitors").status_code == 200  # bob's session is his own
            assert _cli(store_project, "logout", "alice") == (
                "logged out user 'alice' (operate): 0 session(s) ended"
            )
            # a session that has ended on its own is not counted as one ended now
            assert d.login(a1, "alice", PASSWORD["alice"]).status_code == 303
            d.site.clock.advance(-8 * 86400)  # logged in 8 days ago: past its 7 days
            assert d.login(a2, "alice", PASSWORD["alice"]).status_code == 303
            d.site.clock.advance(8 * 86400)
            assert _cli(store_project, "logout", "alice").endswith(": 1 session(s) ended")

            assert _cli(store_project, "passwd", "bob", "--password-stdin", stdin="new-bob-pw") == (
                "changed the password of user 'bob' (read); 1 session(s) ended"
            )
            assert b.get("/api/v1/monitors").status_code == 401
            assert d.login(b, "bob", PASSWORD["bob"]).status_code == 401  # the old password
            assert d.login(b, "bob", "new-bob-pw").status_code == 303
            assert (
                _cli(store_project, "delete", "bob")
                == "deleted user 'bob' (read); 1 session(s) ended"
            )
            assert b.get("/api/v1/monitors").status_code == 401
            assert d.login(b, "bob", "new-bob-pw").status_code == 401
        db = store_project.database()
        try:
            assert db.query("SELECT COUNT(*) FROM dashboard_sessions")[0][0] == 0
        finally:
            db.close()


def _users_json(project: StoreProject) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(_cli(project, "list", "--json"))
    return listed
