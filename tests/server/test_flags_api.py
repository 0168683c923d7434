"""Feature flags over HTTP (``/api/v1/flags``): the app under uvicorn on a loopback socket,
flags, tokens and users in SQLite and PostgreSQL, declarations in a ``flags/`` directory.

What an operator reads (every flag with its debt, one flag, the audit trail a page at a time)
and does (switch on, off, roll out with allowlists, with a reason), each change audited with
who did it and logged; and what everyone else tries: no token, a read token, a revoked one, a
session without its CSRF token, a read-only user, names that are not flags, bodies that are
not changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from signalbox.flags.admin import FlagAdmin
from signalbox.flags.model import FlagChange
from signalbox.flags.store import SQLFlagStore
from signalbox.server.app import AppOptions, create_app
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import TokenStore
from signalbox.server.auth.users import UserStore
from tests.server.cheap_user_hashes import cheap_user_hashes
from tests.server.conftest import NOW, Site, open_site
from tests.server.quick_stop_uvicorn import on_socket
from tests.server.test_auth_api import error
from tests.server.test_auth_sessions import META, PASSWORDS

NOW_MS = int(NOW * 1000)
HOSTILE = "<script>window.__pwned=1</script> & <img src=x onerror=alert(1)>"
FLAGS_YAML = f"""
- name: photo_uploads
  description: Accept new photo uploads; off sheds write load.
  owner: photos
  default: true
- name: new_search
  description: "{HOSTILE}"
  default: "10%"
- name: reprocessing
  description: Reprocess old photos in the background.
  default: false
"""


@dataclass
class Flags:
    site: Site
    store: SQLFlagStore
    admin: FlagAdmin
    http: httpx.Client
    base: str
    secret: dict[str, str]
    ids: dict[str, int]
    flags_dir: Path

    def post(self, path: str, body: Any = None, token: str | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post(path, json=body, headers=headers, **kw)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    @property
    def who(self) -> str:
        return f"operate-bot (token #{self.ids['operate']})"


@contextlib.contextmanager
def flags_api(backend: str, tmp_path: Path) -> Iterator[Flags]:
    with open_site(backend, tmp_path) as site:
        flags_dir = tmp_path / "flags"
        flags_dir.mkdir()
        (flags_dir / "photos.yaml").write_text(FLAGS_YAML)
        store = SQLFlagStore(site.db)  # the store's own database, as serve keeps it
        admin = FlagAdmin(store, [flags_dir], stale_after_s=30 * 86400.0, refresh_s=2.0)
        tokens = TokenStore(site.db)
        secret, ids = {}, {}
        for label in ("read", "operate", "admin", "revoked"):
            role = Role.OPERATE if label == "revoked" else Role.parse(label)
            record, secret[label] = tokens.create(
                role=role, name=f"{label}-bot", by="test", now_ms=NOW_MS
            )
            ids[label] = record.id
        tokens.revoke(ids["revoked"], by="test", now_ms=NOW_MS)
        users = UserStore(site.db)
        users.create("alice", role=Role.OPERATE, password=PASSWORDS["alice"], by="t", now_ms=NOW_MS)
        users.create("bob", role=Role.READ, password=PASSWORDS["bob"], by="t", now_ms=NOW_MS)
        services = dataclasses.replace(site.services, tokens=tokens, flags=admin)
        app = create_app(services, AppOptions())
        with (
            on_socket(app) as base,
            httpx.Client(base_url=base, timeout=10) as http,
        ):
            yield Flags(site, store, admin, http, base, secret, ids, flags_dir)


@pytest.fixture
def f(sql_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flags]:
    cheap_user_hashes(monkeypatch)  # the users' hashes: a millisecond, not 0.1 s
    with flags_api(sql_backend, tmp_path) as found:
        yield found


def test_the_list_shows_every_flag_with_its_state_declaration_and_debt(f: Flags) -> None:
    f.store.record_evaluations({"photo_uploads": 7}, NOW_MS - 1000)
    r = f.get("/api/v1/flags")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["at_ms"], data["stale_after_s"], data["refresh_s"]) == (NOW_MS, 2592000.0, 2.0)
    assert data["declaration_errors"] == []
    by = {x["name"]: x for x in data["flags"]}
    assert list(by) == ["new_search", "photo_uploads", "reprocessing"]
    up = by["photo_uploads"]
    assert (up["declared"], up["owner"], up["describe"], up["version"]) == (True, "photos", "on", 0)
    assert up["where"].endswith("photos.yaml:2") and up["state"]["switch"] == "on"
    assert (up["evaluations"], up["last_evaluated_ms"], up["updated_by"]) == (
        7,
        NOW_MS - 1000,
        None,
    )
    assert up["stale"] is None  # evaluated, and its file is minutes old, not 30 days
    assert by["new_search"]["description"] == HOSTILE
    assert by["new_search"]["state"]["percentage_of_actors"] == 10.0
    assert by["reprocessing"]["stale"] == "never evaluated"
    stale = f.get("/api/v1/flags", stale="true").json()["data"]["flags"]
    assert [x["name"] for x in stale] == ["new_search", "reprocessing"]
    assert "invalid parameter 'stale'" in error(f.get("/api/v1/flags", stale="x"), 400, "bad_data")


def test_a_declaration_error_is_reported_with_its_file_and_line(f: Flags) -> None:
    (f.flags_dir / "broken.yaml").write_text("- name: Bad Name\n  description: x\n  default: 1\n")
    data = f.get("/api/v1/flags").json()["data"]
    assert [e.split(": ", 1)[0] for e in data["declaration_errors"]] == [
        f"{f.flags_dir / 'broken.yaml'}:1",
        f"{f.flags_dir / 'broken.yaml'}:3",
    ]
    assert len(data["flags"]) == 3  # the good flags are all there


def test_one_flag_and_names_that_are_not_flags(f: Flags) -> None:
    one = f.get("/api/v1/flags/photo_uploads").json()["data"]
    assert one["at_ms"] == NOW_MS and one["flag"]["name"] == "photo_uploads"
    assert one["flag"]["default"]["switch"] == "on"
    message = error(f.get("/api/v1/flags/photo_upload"), 404, "not_found")
    assert "no flag named 'photo_upload'" in message and "photo_uploads" in message
    for bad in ("Photo", "a%20b", "_x", "x" * 101, "%3Cscript%3E"):
        assert "invalid flag name" in error(f.get(f"/api/v1/flags/{bad}"), 400, "bad_data"), bad
    assert "no flag named" in error(f.get("/api/v1/flags/nope/history"), 404, "not_found")


def test_each_change_with_an_operate_token_is_done_audited_and_logged(
    f: Flags, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="signalbox.flags.audit")
    op = f.secret["operate"]
    r = f.post("/api/v1/flags/photo_uploads/set", {"value": "off", "reason": "db3 overloaded"}, op)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["by"] == f.who and data["refresh_s"] == 2.0
    assert data["flag"]["describe"] == "off" and data["flag"]["updated_by"] == f.who
    assert data["flag"]["reason"] == "db3 overloaded" and data["flag"]["version"] == 1
    change = data["change"]
    assert (change["old"], change["new"]["switch"], change["by"]) == (None, "off", f.who)
    stored = f.store.get("photo_uploads")
    assert stored is not None and stored.state.switch == "off" and stored.updated_by == f.who

    body = {
        "value": "30%",
        "actors": ["u1", "u2"],
        "groups": ["staff"],
        "time": "5%",
        "reason": "canary",
    }
    r = f.post("/api/v1/flags/new_search/set", body, op)
    assert r.status_code == 200, r.text
    state = r.json()["data"]["flag"]["state"]
    assert state == {
        "switch": "rollout",
        "percentage_of_actors": 30.0,
        "percentage_of_time": 5.0,
        "actors": ["u1", "u2"],
        "groups": ["staff"],
    }
    # lists not given are kept; an empty list empties them
    r = f.post("/api/v1/flags/new_search/set", {"value": "50%", "actors": [], "reason": "more"}, op)
    state = r.json()["data"]["flag"]["state"]
    assert (state["percentage_of_actors"], state["actors"], state["groups"]) == (
        50.0,
        [],
        ["staff"],
    )

    audit = [x.getMessage() for x in caplog.records if x.name == "signalbox.flags.audit"]
    assert audit == [
        f"flag photo_uploads: (declared default) -> off by {f.who}: db3 overloaded",
        f"flag new_search: (declared default) -> 30% of actors, 5% of the time, actors u1, u2, "
        f"groups staff by {f.who}: canary",
        f"flag new_search: 30% of actors, 5% of the time, actors u1, u2, groups staff -> 50% of "
        f"actors, 5% of the time, groups staff by {f.who}: more",
    ]
    assert all(s not in caplog.text for s in f.secret.values())  # never a token


def _unchanged(f: Flags) -> None:
    assert f.store.states() == {} and f.store.history() == []  # refusals leave no audit


def test_writes_are_refused_without_an_operate_token(f: Flags) -> None:
    path, body = "/api/v1/flags/photo_uploads/set", {"value": "off", "reason": "x"}
    assert "operate or admin" in error(f.post(path, body), 401, "unauthorized")
    assert "was revoked" in error(f.post(path, body, f.secret["revoked"]), 401, "unauthorized")
    message = error(f.post(path, body, f.secret["read"]), 403, "forbidden")
    assert (
        message == f"read-bot (token #{f.ids['read']}) has role read; this needs operate or admin"
    )
    _unchanged(f)


def test_a_change_needs_a_reason_and_a_value_and_bodies_are_checked(f: Flags) -> None:
    op = f.secret["operate"]
    path = "/api/v1/flags/photo_uploads/set"
    for body, fragment in (
        ({"value": "off"}, "reason"),
        ({"reason": "x"}, "value"),
        ({"value": "off", "reason": "   "}, "say why"),
        ({"value": "off", "reason": "a\nb"}, "reason"),
        ({"value": "off", "reason": "x" * 1001}, "reason"),
        ({"value": "off", "reason": "x", "by": "someone else"}, "by"),
        ({"value": "maybe", "reason": "x"}, "expected on, off or a percentage"),
        ({"value": "101%", "reason": "x"}, "0% to 100%"),
        ({"value": "on", "time": "5%", "reason": "x"}, "time"),
        ({"value": "30%", "actors": ["a,b"], "reason": "x"}, "actors"),
        ({"value": "30%", "groups": ["Not A Group"], "reason": "x"}, "groups"),
        ({"value": "30%", "actors": ["u"] * 1001, "reason": "x"}, "at most 1000"),
        ({"value": 30, "reason": "x"}, "value"),
    ):
        r = f.post(path, body, op)
        message = error(r, 400, "bad_data")
        assert fragment in message and "--" not in message, (body, message)
    r = f.http.post(
        path, content="value=off",
        headers={"Authorization": f"Bearer {op}", "Content-Type": "text/plain"},
    )  # fmt: skip
    error(r, 415, "bad_data")
    message = error(
        f.post("/api/v1/flags/photo_upload/set", {"value": "off", "reason": "x"}, op),
        404,
        "not_found",
    )
    assert "photo_uploads" in message  # the nearest declared name
    error(f.post("/api/v1/flags/Bad/set", {"value": "off", "reason": "x"}, op), 400, "bad_data")
    _unchanged(f)


def test_a_flag_known_only_to_the_store_can_still_be_switched_off(f: Flags) -> None:
    f.store.set("legacy", FlagChange(switch="on"), by="cli (x@y)", reason="forced", now_ms=NOW_MS)
    shown = f.get("/api/v1/flags/legacy").json()["data"]["flag"]
    assert (shown["declared"], shown["describe"]) == (False, "on")
    assert "not declared" in shown["stale"]
    r = f.post(
        "/api/v1/flags/legacy/set", {"value": "off", "reason": "cleanup"}, f.secret["operate"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["flag"]["describe"] == "off"


def _session(f: Flags, name: str) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=f.base, timeout=10)
    http.get("/login")
    token = http.cookies.get("signalbox_login", path="/login") or ""
    r = http.post(
        "/login",
        data={"csrf_token": token, "name": name, "password": PASSWORDS[name], "next": "/flags"},
    )
    assert r.status_code == 303, r.text
    page = http.get("/flags")
    found = META.search(page.text)
    assert found, page.text[:300]
    return http, found.group(1)


def test_a_signed_in_operator_needs_the_csrf_token_and_a_reader_may_not_write(f: Flags) -> None:
    path, body = "/api/v1/flags/photo_uploads/set", {"value": "off", "reason": "from the page"}
    http, csrf = _session(f, "alice")
    try:
        for headers in ({}, {"X-CSRF-Token": "A" * 43}):
            assert "CSRF token" in error(
                http.post(path, json=body, headers=headers), 403, "forbidden"
            )
        _unchanged(f)
        r = http.post(path, json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["flag"]["updated_by"] == "alice (dashboard)"
    finally:
        http.close()
    http, csrf = _session(f, "bob")
    try:
        r = http.post(path, json={"value": "on", "reason": "x"}, headers={"X-CSRF-Token": csrf})
        assert (
            error(r, 403, "forbidden")
            == "bob (dashboard) has role read; this needs operate or admin"
        )
    finally:
        http.close()
    assert [e.by for e in f.store.history()] == ["alice (dashboard)"]


def test_the_audit_trail_reads_newest_first_a_page_at_a_time(f: Flags) -> None:
    op = f.secret["operate"]
    assert f.get("/api/v1/flags/-/history").json()["data"] == {"entries": [], "next_after": None}
    steps = [
        ("photo_uploads", "off", "overload"),
        ("new_search", "20%", HOSTILE),
        ("photo_uploads", "on", "recovered"),
        ("reprocessing", "on", "backlog"),
    ]
    for name, value, reason in steps:
        r = f.post(f"/api/v1/flags/{name}/set", {"value": value, "reason": reason}, op)
        assert r.status_code == 200, r.text
    every = f.get("/api/v1/flags/-/history").json()["data"]
    assert every["next_after"] is None
    got = [
        (e["name"], e["new"]["switch"], e["reason"], e["by"], e["at_ms"]) for e in every["entries"]
    ]
    assert got == [
        ("reprocessing", "on", "backlog", f.who, NOW_MS),
        ("photo_uploads", "on", "recovered", f.who, NOW_MS),
        ("new_search", "rollout", HOSTILE, f.who, NOW_MS),
        ("photo_uploads", "off", "overload", f.who, NOW_MS),
    ]
    assert every["entries"][1]["old"]["switch"] == "off"
    first = f.get("/api/v1/flags/-/history", limit=3).json()["data"]
    assert first["entries"] == every["entries"][:3]
    assert first["next_after"] == every["entries"][2]["id"]
    # a change made meanwhile does not shift the next page
    f.post("/api/v1/flags/reprocessing/set", {"value": "off", "reason": "done"}, op)
    rest = f.get("/api/v1/flags/-/history", limit=3, after=first["next_after"]).json()["data"]
    assert rest == {"entries": every["entries"][3:], "next_after": None}
    one = f.get("/api/v1/flags/photo_uploads/history").json()["data"]["entries"]
    assert [e["reason"] for e in one] == ["recovered", "overload"]
    for params, fragment in (
        ({"limit": "0"}, "invalid parameter 'limit'"),
        ({"after": "-1"}, "invalid parameter 'after'"),
        ({"after": "9" * 5000}, "invalid parameter 'after'"),
    ):
        message = error(f.get("/api/v1/flags/-/history", **params), 400, "bad_data")
        assert fragment in message and len(message) < 300, params


def test_the_flags_page_shows_state_changes_and_debt_and_escapes_what_people_wrote(
    f: Flags,
) -> None:
    op = f.secret["operate"]
    f.store.record_evaluations({"photo_uploads": 3}, NOW_MS)
    body = {"value": "25%", "actors": ["u<b>1</b>"], "reason": HOSTILE}
    assert f.post("/api/v1/flags/new_search/set", body, op).status_code == 200
    page = f.http.get("/flags").text
    assert "<script>window" not in page and "<img src=x" not in page and "<b>1" not in page
    escaped = (
        "&lt;script&gt;window.__pwned=1&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;"
    )
    assert page.count(escaped) == 3  # the description, the last change's reason, the audit row
    assert 'href="/flags" aria-current="page"' in page and 'src="/static/flags.js"' in page
    assert page.count('<tr data-flag="') == 3 + 2  # every flag; the debt: two never evaluated
    assert f'by <span class="flag-by">{f.who}</span>' in page and "u&lt;b&gt;1&lt;/b&gt;" in page
    assert page.count('<tr data-audit="') == 1 and 'value="25"' in page
    js = f.http.get("/static/flags.js")
    assert js.status_code == 200 and "X-CSRF-Token" in js.text
