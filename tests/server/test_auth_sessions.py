"""Dashboard login over real HTTP: the app under uvicorn on a loopback socket, users and
sessions in SQLite and PostgreSQL.

What a browser does (a login form, a session cookie, the page's CSRF token on writes) and
what an attacker tries: wrong passwords until the rate limit, a write without the CSRF token
or with a forged or stale one, an open redirect through ``next``, an old session id after
a new login or a logout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from signalbox.metrics.samples import Sample
from signalbox.monitors.status import build_status
from signalbox.server.app import AppOptions, create_app
from signalbox.server.auth.roles import Role
from signalbox.server.auth.sessions import ABSOLUTE_MS, IDLE_MS
from signalbox.server.auth.store import TokenStore
from signalbox.server.auth.users import UserStore
from tests.server.conftest import NOW, Site, open_site
from tests.server.test_auth_api import on_socket

MONITORS = """
- name: disk_full
  description: A disk is nearly full.
  query: disk_used_ratio
  critical: "> 0.9"
"""
NOW_MS = int(NOW * 1000)
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}
SILENCE = {"duration": "2h", "reason": "disk swap tonight"}
META = re.compile(r'<meta name="csrf-token" content="([A-Za-z0-9_-]{43})">')


@dataclass
class Dash:
    site: Site
    users: UserStore
    base: str
    bearer: str  # an operate token

    def browser(self, **kw: object) -> httpx.Client:
        """A client that keeps cookies, as a browser does (no redirects followed)."""
        return httpx.Client(base_url=self.base, timeout=10, **kw)  # type: ignore[arg-type]

    def login(
        self,
        http: httpx.Client,
        name: str = "alice",
        password: str | None = None,
        next_path: str = "/",
        **kw: object,
    ) -> httpx.Response:
        form = http.get("/login", **kw)  # type: ignore[arg-type]
        assert form.status_code in (200, 303), form.text
        token = http.cookies.get("signalbox_login", path="/login") or ""
        return http.post(
            "/login",
            data={
                "csrf_token": token,
                "name": name,
                "password": PASSWORDS.get(name, "") if password is None else password,
                "next": next_path,
            },
            **kw,  # type: ignore[arg-type]
        )

    def csrf(self, http: httpx.Client) -> str:
        page = http.get("/")
        assert page.status_code == 200, page.text
        found = META.search(page.text)
        assert found, page.text[:500]
        return found.group(1)

    def silence(self, http: httpx.Client, **headers: str) -> httpx.Response:
        return http.post("/api/v1/monitors/disk_full/silence", json=SILENCE, headers=headers)


@contextlib.contextmanager
def dash(backend: str, tmp_path: Path, *, reads_need_token: bool = False) -> Iterator[Dash]:
    """The app with users alice (operate) and bob (read) over a critical monitor."""
    with open_site(backend, tmp_path, monitors_yaml=MONITORS) as site:
        site.store.write([Sample("disk_used_ratio", (("mount", "/var"),), 0.99)], NOW_MS)
        site.runner.run_pass(NOW_MS)
        tokens = TokenStore(site.db)
        _, bearer = tokens.create(role=Role.OPERATE, name="ci", by="test", now_ms=NOW_MS)
        users = UserStore(site.db)
        users.create(
            "alice", role=Role.OPERATE, password=PASSWORDS["alice"], by="test", now_ms=NOW_MS
        )
        users.create("bob", role=Role.READ, password=PASSWORDS["bob"], by="test", now_ms=NOW_MS)
        services = dataclasses.replace(
            site.services, tokens=tokens, monitor_writes=site.services.monitors
        )
        app = create_app(services, AppOptions(reads_need_token=reads_need_token))
        with on_socket(app) as base:
            yield Dash(site, users, base, bearer)


@pytest.fixture
def required(sql_backend: str, tmp_path: Path) -> Iterator[Dash]:
    """``auth = "required"``, on SQLite and PostgreSQL: for what the store does."""
    with dash(sql_backend, tmp_path, reads_need_token=True) as d:
        yield d


@pytest.fixture
def on_sqlite(tmp_path: Path) -> Iterator[Dash]:
    """``auth = "required"`` on SQLite: for what HTTP does (the same over either store)."""
    with dash("sqlite", tmp_path, reads_need_token=True) as d:
        yield d


def _silenced_by(d: Dash) -> list[str]:
    """Who made the monitor's silences, as ``monitors status`` shows them."""
    (m,) = build_status(d.site.runner, int(d.site.clock.now() * 1000)).monitors
    return [s.created_by for s in m.silences]


def test_a_login_sets_a_strict_httponly_cookie_holding_an_id_stored_only_hashed(
    required: Dash,
) -> None:
    with required.browser() as http:
        wrong = required.login(http, password="alice-secret-2")
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        assert "signalbox_session" not in wrong.headers.get("set-cookie", "")
        r = required.login(http, next_path="/explore?query=up")
        assert r.status_code == 303 and r.headers["location"] == "/explore?query=up"
        (cookie,) = [c for c in r.headers.get_list("set-cookie") if "signalbox_session=" in c]
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert attrs == {"httponly", "max-age", "path", "samesite"}  # no Secure over http
        assert "SameSite=strict" in cookie and "Path=/;" in cookie
        assert f"Max-Age={ABSOLUTE_MS // 1000}" in cookie
        secret = http.cookies["signalbox_session"]
        page = http.get("/")
        assert page.status_code == 200
        assert '<span class="small" id="signed-in" title="role: operate">alice</span>' in page.text
        assert META.search(page.text)
    rows = required.site.db.query("SELECT * FROM dashboard_sessions")
    stored = " ".join(str(v) for row in rows for v in row)
    assert len(rows) == 1 and secret not in stored and "127.0.0.1" in stored
    (user,) = [u for u in required.users.users() if u.name == "alice"]
    assert user.last_login_ms == NOW_MS
    # behind a TLS-terminating proxy on loopback (uvicorn trusts its X-Forwarded-Proto)
    tls = {"X-Forwarded-Proto": "https"}
    form = httpx.get(required.base + "/login", headers=tls)
    assert "; Secure" in form.headers["set-cookie"]
    token = form.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    https = httpx.post(
        required.base + "/login",
        data={"csrf_token": token, "name": "alice", "password": PASSWORDS["alice"]},
        headers={**tls, "Cookie": f"signalbox_login={token}"},
    )
    assert https.status_code == 303, https.text
    (cookie,) = [c for c in https.headers.get_list("set-cookie") if "signalbox_session=" in c]
    assert "; Secure" in cookie


def test_a_new_login_rotates_the_id_and_a_logout_ends_the_session(required: Dash) -> None:
    with required.browser() as http:
        assert required.login(http).status_code == 303
        first = http.cookies["signalbox_session"]
        assert required.login(http).status_code == 303  # the old cookie goes along
        second = http.cookies["signalbox_session"]
        assert second != first
        old = httpx.get(required.base + "/api/v1/monitors", cookies={"signalbox_session": first})
        assert old.status_code == 401  # ended by the login that replaced it
        assert http.get("/api/v1/monitors").status_code == 200
        csrf = required.csrf(http)
        refused = http.post("/logout")  # a logout is a write: CSRF too
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        out = http.post("/logout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert 'signalbox_session=""' in out.headers["set-cookie"]
        after = httpx.get(required.base + "/", cookies={"signalbox_session": second})
        assert after.status_code == 303 and after.headers["location"] == "/login?next=%2F"
    assert required.site.db.query("SELECT COUNT(*) FROM dashboard_sessions")[0][0] == 0


def test_writes_with_a_session_need_its_csrf_token(on_sqlite: Dash) -> None:
    with on_sqlite.browser() as http:
        assert on_sqlite.login(http).status_code == 303
        stale = on_sqlite.csrf(http)
        assert on_sqlite.login(http).status_code == 303  # a new session, a new token
        csrf = on_sqlite.csrf(http)
        assert csrf != stale
        for headers in ({}, {"X-CSRF-Token": "A" * 43}, {"X-CSRF-Token": stale}):
            r = on_sqlite.silence(http, **headers)
            assert r.status_code == 403, (headers, r.text)
            assert r.json()["errorType"] == "forbidden" and "CSRF token" in r.json()["error"]
        # a form body's csrf_token field is read too (and the body still reaches the route)
        form = http.post(
            "/api/v1/monitors/disk_full/silence", content=f"csrf_token={stale}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert form.status_code == 403 and "stale" in form.json()["error"]
        form = http.post(
            "/api/v1/monitors/disk_full/silence", content=f"csrf_token={csrf}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert form.status_code == 415, form.text  # past the check: the route wants JSON
        assert _silenced_by(on_sqlite) == []
        ok = on_sqlite.silence(http, **{"X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text
        assert ok.json()["data"]["silence"]["by"] == "alice (dashboard)"
    assert _silenced_by(on_sqlite) == ["alice (dashboard)"]


def test_a_bearer_token_needs_no_csrf_and_a_read_user_may_not_write(on_sqlite: Dash) -> None:
    with on_sqlite.browser() as http:
        assert on_sqlite.login(http).status_code == 303
        # a token wins over the cookie that came along: no CSRF needed, audited as the token
        r = on_sqlite.silence(http, Authorization=f"Bearer {on_sqlite.bearer}")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["silence"]["by"] == "ci (token #1)"
    with on_sqlite.browser() as http:
        assert on_sqlite.login(http, "bob").status_code == 303
        csrf = on_sqlite.csrf(http)
        denied = on_sqlite.silence(http, **{"X-CSRF-Token": csrf})
        assert denied.status_code == 403 and denied.json()["error"] == (
            "bob (dashboard) has role read; this needs operate or admin"
        )
    assert _silenced_by(on_sqlite) == ["ci (token #1)"]


def test_auth_required_sends_pages_to_the_login_and_machines_a_401(on_sqlite: Dash) -> None:
    with on_sqlite.browser() as http:
        for path, expected in (
            ("/", "/login?next=%2F"),
            ("/explore?query=rate(x[5m])&range=1h",
             "/login?next=%2Fexplore%3Fquery%3Drate%28x%5B5m%5D%29%26range%3D1h"),
            ("/monitors/disk_full", "/login?next=%2Fmonitors%2Fdisk_full"),
        ):  # fmt: skip
            r = http.get(path)
            assert (r.status_code, r.headers.get("location")) == (303, expected), path
        for path in ("/api/v1/monitors", "/api/v1/query?query=up", "/metrics"):
            r = http.get(path)
            assert r.status_code == 401 and r.json()["errorType"] == "unauthorized", path
        assert http.post("/api/v1/monitors/disk_full/silence", json=SILENCE).status_code == 401
        for path in ("/login", "/static/signalbox.css", "/-/healthy", "/-/ready"):
            assert http.get(path).status_code == 200, path
        form = http.get("/login?next=%2Fexplore%3Fquery%3Dup")
        assert '<input type="hidden" name="next" value="/explore?query=up">' in form.text
        r = on_sqlite.login(http, next_path="/explore?query=up")
        assert r.headers["location"] == "/explore?query=up"
        assert http.get("/explore?query=up").status_code == 200
        assert http.get("/api/v1/monitors").status_code == 200


def test_next_never_leaves_the_server(on_sqlite: Dash) -> None:
    with on_sqlite.browser() as http:
        for target in ("//evil.com", "https://evil.com", "/\\evil.com", "/\t/evil.com",
                       "javascript:alert(1)", "/%0a/evil.com\n"):  # fmt: skip
            form = http.get("/login", params={"next": target})
            assert '<input type="hidden" name="next" value="/">' in form.text, target
            r = on_sqlite.login(http, next_path=target)
            assert r.status_code == 303 and r.headers["location"] == "/", target


def test_failed_logins_are_limited_per_address_and_per_user(
    on_sqlite: Dash, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "signalbox.server.auth")
    other = httpx.HTTPTransport(local_address="127.0.0.2")  # another client address
    with on_sqlite.browser() as http:
        for _ in range(5):
            assert on_sqlite.login(http, password="guess-guess").status_code == 401
        r = on_sqlite.login(http)  # the right password, refused unchecked
        assert r.status_code == 429 and "Too many failed logins" in r.text
        assert 0 < int(r.headers["Retry-After"]) <= 300
        assert on_sqlite.login(http, "bob").status_code == 429  # this address is limited
        with on_sqlite.browser(transport=other) as http2:
            assert on_sqlite.login(http2).status_code == 429  # so is the name alice
            assert on_sqlite.login(http2, "bob").status_code == 303  # not bob from there
        on_sqlite.site.clock.advance(301)  # the window passes
        assert on_sqlite.login(http).status_code == 303
    text = caplog.text
    assert text.count("failed login for user 'alice' from 127.0.0.1") == 5
    assert "login refused for user 'alice' from 127.0.0.2: too many failures" in text
    assert "guess-guess" not in text and PASSWORDS["alice"] not in text


def test_the_login_form_has_its_own_csrf_check(on_sqlite: Dash) -> None:
    with on_sqlite.browser() as http:
        bare = http.post("/login", data={"name": "alice", "password": PASSWORDS["alice"]})
        assert bare.status_code == 403 and "CSRF" in bare.text
        http.get("/login")
        forged = http.post(
            "/login",
            data={"name": "alice", "password": PASSWORDS["alice"], "csrf_token": "B" * 43},
        )
        assert forged.status_code == 403 and "signalbox_session" not in http.cookies


def test_sessions_end_when_idle_too_long_or_old_enough(required: Dash) -> None:
    clock = required.site.clock
    with required.browser() as http:
        assert required.login(http).status_code == 303
        clock.advance(IDLE_MS / 1000 - 60)
        assert http.get("/api/v1/monitors").status_code == 200  # used in time: lives on
        clock.advance(IDLE_MS / 1000 - 60)
        assert http.get("/api/v1/monitors").status_code == 200
        clock.advance(IDLE_MS / 1000)
        assert http.get("/api/v1/monitors").status_code == 401  # idle 12 h
    with required.browser() as http:
        assert required.login(http).status_code == 303
        used = 0.0
        while used + 11 * 3600 < ABSOLUTE_MS / 1000:
            clock.advance(11 * 3600)
            used += 11 * 3600
            assert http.get("/api/v1/monitors").status_code == 200
        clock.advance(ABSOLUTE_MS / 1000 - used)
        assert http.get("/api/v1/monitors").status_code == 401  # 7 days, however used


def test_deleting_a_user_or_changing_their_password_ends_their_sessions(
    required: Dash,
) -> None:
    with required.browser() as a, required.browser() as b:
        assert required.login(a).status_code == 303
        assert required.login(b, "bob").status_code == 303
        _, ended = required.users.set_password("alice", "a-new-password", now_ms=NOW_MS)
        assert ended == 1 and a.get("/api/v1/monitors").status_code == 401
        assert required.login(a, password="a-new-password").status_code == 303
        _, ended = required.users.delete("bob")
        assert ended == 1 and b.get("/api/v1/monitors").status_code == 401
        assert a.get("/api/v1/monitors").status_code == 200


def test_loopback_pages_offer_a_login_and_no_token_store_means_no_login(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with dash("sqlite", tmp_path / "a") as d, d.browser() as http:
        page = http.get("/")  # reads are open on loopback: the page, and a way in
        assert page.status_code == 200 and 'href="/login" id="login-link"' in page.text
        assert not META.search(page.text)
    (tmp_path / "b").mkdir()
    with open_site("sqlite", tmp_path / "b") as site, on_socket(create_app(site.services)) as base:
        r = httpx.get(base + "/login")
        assert r.status_code == 404 and "dashboard login needs access control" in r.text
        assert "login-link" not in httpx.get(base + "/").text
