"""API tokens over HTTP (``/api/v1/tokens``): the app under uvicorn on a loopback socket,
tokens in SQLite and PostgreSQL.

What an admin does (list a page, create a token and use it, revoke one, each audited with
who did it) and what everyone else tries: no token, a read or operate token, a revoked
one, a session without its CSRF token, revoking the calling token by mistake, hostile
names, oversized and malformed bodies, ids that are not ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from markupsafe import escape

from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import TokenStore
from tests.server.test_auth_api import HOSTILE, SILENCE, Api, api, error
from tests.server.test_auth_sessions import dash

NEW = {"role": "read", "name": "grafana"}


@pytest.fixture
def admin_api(sql_backend: str, tmp_path: Path) -> Iterator[Api]:
    """Tokens read-bot #1, operate-bot #2, admin-bot #3 and a revoked operate token #4."""
    with api(sql_backend, tmp_path) as a:
        yield a


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_admin_creates_uses_lists_and_revokes_a_token_audited_by_name(admin_api: Api) -> None:
    a, admin = admin_api, admin_api.secret["admin"]
    who = f"admin-bot (token #{a.ids['admin']})"
    made = a.post("/api/v1/tokens", NEW, admin)
    assert made.status_code == 200, made.text
    data = made.json()["data"]
    secret = data.pop("token")
    assert secret.startswith("sbx_") and len(secret) == 47
    assert data == {
        "id": 5,
        "name": "grafana",
        "role": "read",
        "created_ms": a.site.services.now_ms(),
        "created_by": who,
        "last_used_ms": None,
        "revoked_ms": None,
        "revoked_by": None,
    }
    assert a.tokens.get(5).created_by == who  # the store's row is the audit trail
    # the new token works at once, with its role and no more
    assert a.get("/api/v1/monitors", secret).status_code == 200
    error(a.post("/api/v1/monitors/disk_full/silence", SILENCE, secret), 403, "forbidden")

    listed = a.get("/api/v1/tokens", admin)
    assert listed.status_code == 200, listed.text
    page = listed.json()["data"]
    assert [t["id"] for t in page["tokens"]] == [1, 2, 3, 4, 5]
    assert (page["total"], page["next_offset"]) == (5, None)
    assert page["tokens"][3]["revoked_by"] == "test" and page["tokens"][4]["last_used_ms"]
    for s in (*a.secret.values(), secret):  # never a token, nor its hash
        assert s not in listed.text
        assert hashlib.sha256(s.encode()).hexdigest() not in listed.text

    gone = a.http.delete("/api/v1/tokens/5", headers=_bearer(admin))
    assert gone.status_code == 200, gone.text
    body = gone.json()["data"]
    assert body["already_revoked"] is False and body["token"]["revoked_by"] == who
    assert a.tokens.get(5).revoked_by == who
    assert "token #5 was revoked" in error(a.get("/api/v1/monitors", secret), 401, "unauthorized")
    again = a.http.delete("/api/v1/tokens/5", headers=_bearer(admin))
    assert again.status_code == 200 and again.json()["data"]["already_revoked"] is True
    assert a.tokens.get(5).revoked_ms == body["token"]["revoked_ms"]  # the first one stands


def test_pages_of_tokens_follow_next_offset_to_the_end(admin_api: Api) -> None:
    a, admin = admin_api, admin_api.secret["admin"]
    for i in range(3):
        assert a.post("/api/v1/tokens", {"role": "read", "name": f"t{i}"}, admin).status_code == 200
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        r = a.http.get(
            "/api/v1/tokens", params={"limit": 3, "offset": offset}, headers=_bearer(admin)
        )
        page = r.json()["data"]
        assert page["total"] == 7 and len(page["tokens"]) <= 3
        seen += [t["id"] for t in page["tokens"]]
        offset = page["next_offset"]
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    past = a.http.get("/api/v1/tokens", params={"offset": "9" * 5000}, headers=_bearer(admin))
    assert past.status_code == 200 and past.json()["data"]["tokens"] == []
    for params, fragment in (
        ({"limit": "0"}, "invalid parameter 'limit'"),
        ({"limit": "1001"}, "invalid parameter 'limit'"),
        ({"limit": "9" * 5000}, "invalid parameter 'limit'"),
        ({"offset": "-1"}, "invalid parameter 'offset'"),
        ({"offset": "1.5"}, "invalid parameter 'offset'"),
    ):
        r = a.http.get("/api/v1/tokens", params=params, headers=_bearer(admin))
        message = error(r, 400, "bad_data")
        assert fragment in message and len(message) < 200, params


def test_token_routes_refuse_everyone_but_admins(admin_api: Api) -> None:
    a = admin_api
    calls = [("GET", "/api/v1/tokens", None), ("POST", "/api/v1/tokens", NEW),
             ("DELETE", "/api/v1/tokens/1", None)]  # fmt: skip
    for method, path, body in calls:
        anon = a.http.request(method, path, json=body)
        assert "role admin" in error(anon, 401, "unauthorized"), (method, path)
        for label in ("read", "operate"):
            r = a.http.request(method, path, json=body, headers=_bearer(a.secret[label]))
            assert error(r, 403, "forbidden") == (
                f"{label}-bot (token #{a.ids[label]}) has role {label}; this needs admin"
            )
        revoked = a.http.request(method, path, json=body, headers=_bearer(a.secret["revoked"]))
        assert "was revoked" in error(revoked, 401, "unauthorized")
    assert len(a.tokens.tokens()) == 4 and not a.tokens.get(1).revoked


def test_an_admin_revokes_the_token_it_calls_with_only_when_it_says_so(admin_api: Api) -> None:
    a, admin, mine = admin_api, admin_api.secret["admin"], admin_api.ids["admin"]
    for query in ("", "?own=false"):
        r = a.http.delete(f"/api/v1/tokens/{mine}{query}", headers=_bearer(admin))
        message = error(r, 409, "bad_data")
        assert f"token #{mine} is the token this request is made with" in message
        assert "?own=true" in message
    bad = a.http.delete(f"/api/v1/tokens/{mine}?own=yes", headers=_bearer(admin))
    assert "expected true or false" in error(bad, 400, "bad_data")
    assert not a.tokens.get(mine).revoked
    # ?own=true on another token is no different from without it
    other = a.http.delete("/api/v1/tokens/1?own=true", headers=_bearer(admin))
    assert other.status_code == 200 and a.tokens.get(1).revoked
    done = a.http.delete(f"/api/v1/tokens/{mine}?own=true", headers=_bearer(admin))
    assert done.status_code == 200, done.text
    assert done.json()["data"]["token"]["revoked_by"] == f"admin-bot (token #{mine})"
    error(a.get("/api/v1/tokens", admin), 401, "unauthorized")


NOT_IDS = ["-1", "0", "abc", "1.5", "1e3", "+1", " 1", "\u0663", "0x10", "9223372036854775808",
           "99999999999999999999", "1" * 5000]  # fmt: skip


def test_an_id_that_is_not_an_id_is_a_400(admin_api: Api) -> None:
    for raw in NOT_IDS:
        path = "/api/v1/tokens/" + httpx.URL("/" + raw).raw_path.decode()[1:]
        r = admin_api.http.delete(path, headers=_bearer(admin_api.secret["admin"]))
        message = error(r, 400, "bad_data")
        assert message.startswith("invalid token id") and len(message) < 200, (raw, message)
    assert [t.id for t in admin_api.tokens.tokens() if t.revoked] == [admin_api.ids["revoked"]]


def test_an_unknown_id_is_a_404(admin_api: Api) -> None:
    for raw in ("77", "9223372036854775807", "007"):
        r = admin_api.http.delete(
            f"/api/v1/tokens/{raw}", headers=_bearer(admin_api.secret["admin"])
        )
        assert "no token named" in error(r, 404, "not_found"), raw
    # 007 is id 7, and 0003 is token #3: ids are numbers, not strings
    r = admin_api.http.delete("/api/v1/tokens/0001", headers=_bearer(admin_api.secret["admin"]))
    assert r.status_code == 200 and r.json()["data"]["token"]["id"] == 1


def test_bodies_are_capped_and_checked_field_by_field(admin_api: Api) -> None:
    a, admin = admin_api, admin_api.secret["admin"]
    big = {"role": "read", "name": "x" * (65 * 1024)}
    assert "over 65536 bytes" in error(a.post("/api/v1/tokens", big, admin), 413, "bad_data")
    chunked = a.http.post(  # no Content-Length: cut off while it streams in
        "/api/v1/tokens",
        content=iter([b'{"role": "read", "name": "', b"y" * 70_000, b'"}']),
        headers={**_bearer(admin), "Content-Type": "application/json"},
    )
    error(chunked, 413, "bad_data")
    for body, fragment in [
        ({}, "missing required field `role`"),
        ({"role": "read"}, "missing required field `name`"),
        ({"name": "x"}, "missing required field `role`"),
        ({"role": "root", "name": "x"}, "role: unknown role 'root'"),
        ({"role": 3, "name": "x"}, "at `$.role`"),
        ({"role": "read", "name": "   "}, "name: must not be empty"),
        ({"role": "read", "name": "a\nforged line"}, "name: character U+000A at position 1"),
        ({"role": "read", "name": "\u202eevil"}, "name: character U+202E"),
        ({"role": "read", "name": "x" * 101}, "name: at most 100 characters"),
        ({"role": "read", "name": "x", "rol": "admin"}, "unknown field `rol`"),
        ([NEW], "Expected `object`, got `array`"),
    ]:
        message = error(a.post("/api/v1/tokens", body, admin), 400, "bad_data")
        assert fragment in message, (body, message)
    bad_json = a.http.post(
        "/api/v1/tokens",
        content=b'{"role": "read", "name": ',
        headers={**_bearer(admin), "Content-Type": "application/json"},
    )
    assert "invalid JSON" in error(bad_json, 400, "bad_data")
    form = a.http.post("/api/v1/tokens", data=NEW, headers=_bearer(admin))
    assert "application/json" in error(form, 415, "bad_data")
    assert len(a.tokens.tokens()) == 4  # none of the above made a token


def test_a_hostile_token_name_is_kept_exactly_and_escaped_where_pages_show_it(
    admin_api: Api,
) -> None:
    a = admin_api
    made = a.post("/api/v1/tokens", {"role": "operate", "name": HOSTILE}, a.secret["admin"])
    assert made.status_code == 200, made.text
    record = made.json()["data"]
    assert record["name"] == HOSTILE
    listed = a.get("/api/v1/tokens", a.secret["admin"]).json()["data"]["tokens"]
    assert listed[-1]["name"] == HOSTILE
    silenced = a.post("/api/v1/monitors/disk_full/silence", SILENCE, record["token"])
    assert silenced.status_code == 200, silenced.text
    who = f"{HOSTILE} (token #{record['id']})"
    for path in ("/", "/monitors/disk_full"):  # the audit trail on the pages
        page = a.get(path)
        assert page.status_code == 200, path
        assert f"silence #1 by {escape(who)}: disk swap" in page.text, path  # Jinja's escaping
        assert "<img src=x onerror=alert(1)>" not in page.text, path


def test_an_admin_user_manages_tokens_from_a_session_with_its_csrf_token(
    sql_backend: str, tmp_path: Path
) -> None:
    with dash(sql_backend, tmp_path, reads_need_token=True) as d:
        d.users.create("carol", role=Role.ADMIN, password="carol-secret-3", by="test",
                       now_ms=d.site.services.now_ms())  # fmt: skip
        with d.browser() as http:
            assert d.login(http, "carol", "carol-secret-3").status_code == 303
            csrf = d.csrf(http)
            assert http.get("/api/v1/tokens").status_code == 200  # a read: no CSRF token
            for headers in ({}, {"X-CSRF-Token": "A" * 43}):
                r = http.post("/api/v1/tokens", json=NEW, headers=headers)
                assert "CSRF token" in error(r, 403, "forbidden")
            made = http.post("/api/v1/tokens", json=NEW, headers={"X-CSRF-Token": csrf})
            assert made.status_code == 200, made.text
            new_id = made.json()["data"]["id"]
            assert made.json()["data"]["created_by"] == "carol (dashboard)"
            r = http.delete(f"/api/v1/tokens/{new_id}")
            assert "CSRF token" in error(r, 403, "forbidden")
            assert not TokenStore(d.site.db).get(new_id).revoked
            gone = http.delete(f"/api/v1/tokens/{new_id}", headers={"X-CSRF-Token": csrf})
            assert gone.status_code == 200, gone.text
            assert gone.json()["data"]["token"]["revoked_by"] == "carol (dashboard)"
        with d.browser() as http:  # alice operates: no tokens for her
            assert d.login(http).status_code == 303
            r = http.post("/api/v1/tokens", json=NEW, headers={"X-CSRF-Token": d.csrf(http)})
            assert error(r, 403, "forbidden") == (
                "alice (dashboard) has role operate; this needs admin"
            )
