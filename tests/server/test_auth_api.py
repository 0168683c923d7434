"""Access control and the monitor write API over real HTTP: the app under uvicorn on a
loopback socket, tokens in SQLite and PostgreSQL.

The obvious attacks: no token, a garbage one, a revoked one, a token of too low a role, an
oversized or malformed body, hostile strings; and what must keep working: loopback reads
without a token, every write audited with the token that made it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from signalbox.metrics.samples import Sample
from signalbox.monitors.status import build_status
from signalbox.server.app import AppOptions, create_app
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import TOUCH_EVERY_MS, TokenStore
from tests.server.conftest import NOW, Site, open_site
from tests.server.quick_stop_uvicorn import on_socket as on_socket  # re-exported

MONITORS = """
- name: disk_full
  description: A disk is nearly full.
  query: disk_used_ratio
  critical: "> 0.9"
  notify: [pager]
"""
NOW_MS = int(NOW * 1000)


@dataclass
class Api:
    site: Site
    app: Any
    tokens: TokenStore
    http: httpx.Client
    secret: dict[str, str]  # role label (or "revoked") -> token
    ids: dict[str, int]

    def post(self, path: str, body: Any = None, token: str | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post(path, json=body, headers=headers, **kw)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.http.get(path, headers=headers)


@contextlib.contextmanager
def api(backend: str, tmp_path: Path, *, reads_need_token: bool = False) -> Iterator[Api]:
    """The app with tokens (one per role, and a revoked one) over a critical monitor."""
    with open_site(backend, tmp_path, monitors_yaml=MONITORS) as site:
        site.store.write([Sample("disk_used_ratio", (("mount", "/var"),), 0.99)], NOW_MS)
        site.runner.run_pass(NOW_MS)
        tokens = TokenStore(site.db)
        secret, ids = {}, {}
        for label in ("read", "operate", "admin", "revoked"):
            role = Role.OPERATE if label == "revoked" else Role.parse(label)
            record, secret[label] = tokens.create(
                role=role, name=f"{label}-bot", by="test", now_ms=NOW_MS
            )
            ids[label] = record.id
        tokens.revoke(ids["revoked"], by="test", now_ms=NOW_MS)
        services = dataclasses.replace(
            site.services, tokens=tokens, monitor_writes=site.services.monitors
        )
        app = create_app(services, AppOptions(reads_need_token=reads_need_token))
        with on_socket(app) as base, httpx.Client(base_url=base, timeout=10) as http:
            yield Api(site, app, tokens, http, secret, ids)


@pytest.fixture
def sql_api(sql_backend: str, tmp_path: Path) -> Iterator[Api]:
    with api(sql_backend, tmp_path) as a:
        yield a


SILENCE = {"duration": "2h", "reason": "disk swap tonight"}


def error(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == kind, body
    message: str = body["error"]
    return message


def test_loopback_reads_need_no_token(sql_api: Api) -> None:
    r = sql_api.get("/api/v1/monitors")
    assert r.status_code == 200
    assert r.json()["data"]["monitors"][0]["state"] == "CRITICAL"
    assert sql_api.get("/api/v1/query?query=disk_used_ratio").status_code == 200
    assert sql_api.get("/metrics").status_code == 200


def test_a_write_without_a_token_is_401_even_on_loopback(sql_api: Api) -> None:
    r = sql_api.post("/api/v1/monitors/disk_full/silence", SILENCE)
    message = error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="signalbox"'
    assert "operate or admin" in message and "signalbox tokens create" in message
    assert sql_api.site.runner.state.silences() == []


GARBAGE = [
    ("Bearer sbx_notatokenatallnotatokenatallnotatokenatal", "invalid token"),
    ("Bearer not-even-our-prefix", "invalid token"),
    ("Bearer " + "sbx_" + "A" * 5000, "invalid token"),
    ("Bearer sbx_\u00e9t\u00e9", "invalid token"),
    ("Basic dXNlcjpwYXNz", "expected 'Bearer <token>'"),
    ("Bearer", "expected 'Bearer <token>'"),
]


def test_a_garbage_credential_is_401_on_reads_and_writes(sql_api: Api) -> None:
    for header, fragment in GARBAGE:
        headers = {b"Authorization": header.encode("utf-8")}  # non-ASCII bytes too
        for r in (
            sql_api.http.get("/api/v1/monitors", headers=headers),
            sql_api.http.post("/api/v1/monitors/disk_full/silence", json=SILENCE, headers=headers),
        ):
            assert fragment in error(r, 401, "unauthorized"), header
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert sql_api.site.runner.state.silences() == []


def test_a_revoked_token_is_refused_from_the_next_request_on(
    sql_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    r = sql_api.post("/api/v1/monitors/disk_full/silence", SILENCE, sql_api.secret["revoked"])
    assert f"token #{sql_api.ids['revoked']} was revoked" in error(r, 401, "unauthorized")
    assert sql_api.get("/api/v1/monitors", sql_api.secret["revoked"]).status_code == 401
    # a token in use, revoked between two requests
    ok = sql_api.post(
        "/api/v1/monitors/disk_full/ack", {"reason": "on it"}, sql_api.secret["admin"]
    )
    assert ok.status_code == 200
    sql_api.tokens.revoke(sql_api.ids["admin"], by="test", now_ms=NOW_MS)
    again = sql_api.post("/api/v1/monitors/disk_full/ack", {"reason": "x"}, sql_api.secret["admin"])
    error(again, 401, "unauthorized")
    logged = caplog.text
    assert "refused revoked token #" in logged and "'admin-bot'" in logged
    assert all(s not in logged for s in sql_api.secret.values())  # never the token itself


def test_a_read_token_on_a_write_is_403(sql_api: Api) -> None:
    for action, body in [
        ("silence", SILENCE),
        ("unsilence", None),
        ("ack", {"reason": "x"}),
        ("drill", None),
    ]:
        r = sql_api.post(f"/api/v1/monitors/disk_full/{action}", body, sql_api.secret["read"])
        message = error(r, 403, "forbidden")
        assert message == (
            f"read-bot (token #{sql_api.ids['read']}) has role read; this needs operate or admin"
        )
    assert sql_api.site.runner.state.silences() == []
    assert sql_api.site.runner.state.acks() == {}


def test_every_write_route_refuses_readers(tmp_path: Path) -> None:
    """Whatever the routes are: every one that is not a GET needs more than a read token,
    so a write route that forgets require() fails here. (Prometheus' API takes POST for
    its queries, which are reads: form-encoded long expressions, as Grafana sends them. The
    dashboard's login and logout are how a person gets credentials: open to everyone, with
    checks of their own in tests/server/test_auth_sessions.py.)"""
    with api("sqlite", tmp_path) as a:
        writes = []
        for route in a.app.routes:
            inner = route.routes if isinstance(route, Mount) else [route]
            prefix = route.path if isinstance(route, Mount) else ""
            for r in inner:
                assert isinstance(r, Route)
                if r.endpoint.__module__ in (
                    "signalbox.server.api.prom",
                    "signalbox.server.auth.pages",
                ):
                    continue
                for method in (r.methods or set()) - {"GET", "HEAD"}:
                    writes.append((method, prefix + r.path.replace("{name}", "disk_full")))
        assert len(writes) >= 4, writes
        for method, path in writes:
            anon = a.http.request(method, path, json={})
            error(anon, 401, "unauthorized")
            read = a.http.request(
                method, path, json={}, headers={"Authorization": f"Bearer {a.secret['read']}"}
            )
            error(read, 403, "forbidden")


def test_silence_over_http_is_audited_with_the_token(sql_api: Api) -> None:
    body = {**SILENCE, "series": {"mount": "/var"}}
    r = sql_api.post("/api/v1/monitors/disk_full/silence", body, sql_api.secret["operate"])
    assert r.status_code == 200, r.text
    who = f"operate-bot (token #{sql_api.ids['operate']})"
    s = r.json()["data"]["silence"]
    assert (s["by"], s["reason"], s["series"]) == (who, "disk swap tonight", {"mount": "/var"})
    assert s["until_ms"] - s["since_ms"] == 2 * 3600 * 1000
    status = build_status(sql_api.site.runner, NOW_MS + 1).to_dict()
    assert status["monitors"][0]["silences"][0]["by"] == who
    history = sql_api.get("/api/v1/monitors/disk_full").json()["data"]["history"]
    assert history[-1]["event"] == "silenced" and who in history[-1]["reason"]

    # unsilence, ack and drill are audited the same way
    ended = sql_api.post("/api/v1/monitors/disk_full/unsilence", None, sql_api.secret["operate"])
    assert [e["id"] for e in ended.json()["data"]["ended"]] == [s["id"]]
    acked = sql_api.post(
        "/api/v1/monitors/disk_full/ack", {"reason": "swapping"}, sql_api.secret["operate"]
    )
    assert acked.json()["data"]["acknowledged"][0]["by"] == who
    drill = sql_api.post("/api/v1/monitors/disk_full/drill", {}, sql_api.secret["admin"])
    assert drill.status_code == 200
    assert [d["notifier"] for d in drill.json()["data"]["deliveries"]] == ["pager"]
    events = {
        e["event"]: e["reason"]
        for e in sql_api.get("/api/v1/monitors/disk_full").json()["data"]["history"]
    }
    assert f"ended by {who}" in events["unsilenced"]
    assert events["acknowledged"] == f"acknowledged by {who}: swapping"
    assert events["drill"] == f"drill queued by admin-bot (token #{sql_api.ids['admin']}) for pager"


def test_last_use_is_recorded_at_most_once_a_minute(sql_api: Api) -> None:
    tid, token = sql_api.ids["read"], sql_api.secret["read"]
    assert sql_api.tokens.get(tid).last_used_ms is None
    clock = sql_api.site.clock
    assert sql_api.get("/api/v1/monitors", token).status_code == 200
    assert sql_api.tokens.get(tid).last_used_ms == NOW_MS
    clock.advance(TOUCH_EVERY_MS / 1000 / 2)
    assert sql_api.get("/api/v1/monitors", token).status_code == 200
    assert sql_api.tokens.get(tid).last_used_ms == NOW_MS  # not rewritten within the minute
    clock.advance(TOUCH_EVERY_MS / 1000)
    assert sql_api.get("/api/v1/monitors", token).status_code == 200
    assert sql_api.tokens.get(tid).last_used_ms == int(clock.now() * 1000)
    assert sql_api.tokens.get(sql_api.ids["admin"]).last_used_ms is None  # unused


def test_reads_need_a_token_when_auth_is_required(tmp_path: Path) -> None:
    with api("sqlite", tmp_path, reads_need_token=True) as a:
        r = a.get("/api/v1/monitors")
        assert 'auth = "required"' in error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="signalbox"'
        for path in ("/metrics", "/api/v1/query?query=up"):
            assert a.get(path).status_code == 401, path
        page = a.get("/")  # a person's browser: to the login form
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2F")
        assert a.get("/api/v1/monitors", a.secret["read"]).status_code == 200
        assert a.get("/metrics", a.secret["read"]).status_code == 200
        assert a.get("/-/healthy").status_code == 200  # probes carry no token
        assert a.get("/-/ready").status_code == 200


def test_reads_off_loopback_need_a_token(tmp_path: Path) -> None:
    """A peer that is not loopback (a LAN client, in-process here) gets nothing without one."""
    with api("sqlite", tmp_path) as a:
        transport = httpx.ASGITransport(app=a.app, client=("192.0.2.7", 40000))

        async def calls() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
                anonymous = await c.get("/api/v1/monitors")
                with_token = await c.get(
                    "/api/v1/monitors", headers={"Authorization": f"Bearer {a.secret['read']}"}
                )
                return anonymous, with_token

        import anyio

        anonymous, with_token = anyio.run(calls)
    assert "open to loopback connections only" in error(anonymous, 401, "unauthorized")
    assert with_token.status_code == 200


def test_bodies_are_capped_and_checked_field_by_field(sql_api: Api) -> None:
    op = sql_api.secret["operate"]
    url = "/api/v1/monitors/disk_full/silence"
    big = {"duration": "1h", "reason": "x" * (65 * 1024)}
    assert "over 65536 bytes" in error(sql_api.post(url, big, op), 413, "bad_data")
    chunked = sql_api.http.post(  # no Content-Length: cut off while it streams in
        url,
        content=iter([b'{"reason": "', b"y" * 40_000, b"z" * 40_000, b'"}']),
        headers={"Authorization": f"Bearer {op}", "Content-Type": "application/json"},
    )
    error(chunked, 413, "bad_data")
    for body, fragment in [
        ({"duration": "1h"}, "missing required field `reason`"),
        ({"duration": "1h", "reason": "   "}, "reason: say why"),
        ({"reason": "x"}, "missing required field `duration`"),
        ({"duration": "soon", "reason": "x"}, "duration: bad duration 'soon'"),
        ({"duration": -5, "reason": "x"}, "duration: expected a positive duration"),
        ({"duration": "1h", "reason": 7}, "at `$.reason`"),
        ({"duration": "1h", "reason": "x", "sreies": {}}, "unknown field `sreies`"),
        ({"duration": "1h", "reason": "x", "series": "shard"}, "series: bad part 'shard'"),
        ({"duration": "1h", "reason": "x", "series": {"a-b": "1"}}, "series: 'a-b'"),
        ({"duration": "1h", "reason": "a\nforged line"}, "reason: character U+000A at position 1"),
        (
            {"duration": "1h", "reason": "x", "series": {"a": "\x1b[2J"}},
            "series: a: character U+001B",
        ),
        ({"duration": "1h", "reason": "x" * 1001}, "reason: at most 1000 characters"),
        ([1, 2], "Expected `object`, got `array`"),
    ]:
        message = error(sql_api.post(url, body, op), 400, "bad_data")
        assert fragment in message, (body, message)
    bad_json = sql_api.http.post(
        url,
        content=b'{"duration": "1h", "reason": ',
        headers={"Authorization": f"Bearer {op}", "Content-Type": "application/json"},
    )
    assert "invalid JSON" in error(bad_json, 400, "bad_data")
    form = sql_api.http.post(
        url, data={"duration": "1h", "reason": "x"}, headers={"Authorization": f"Bearer {op}"}
    )
    assert "application/json" in error(form, 415, "bad_data")
    ack = sql_api.post("/api/v1/monitors/disk_full/ack", {}, op)
    assert "missing required field `reason`" in error(ack, 400, "bad_data")
    unknown = sql_api.post("/api/v1/monitors/disk_ful/silence", SILENCE, op)
    assert "no monitor named 'disk_ful'" in error(unknown, 404, "not_found")
    assert sql_api.site.runner.state.silences() == []


HOSTILE = "</script><img src=x onerror=alert(1)>\"'\\ &amp; \u00a0 \U0001f525 ${{7*7}} {{x}}"


def test_hostile_strings_are_kept_exactly_and_returned_as_json(sql_api: Api) -> None:
    record, token = sql_api.tokens.create(role=Role.OPERATE, name=HOSTILE, by="test", now_ms=NOW_MS)
    r = sql_api.post(
        "/api/v1/monitors/disk_full/silence", {"duration": "1h", "reason": HOSTILE}, token
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert b"\\\"'\\\\ " in r.content  # quote and backslash escaped by JSON
    silence = json.loads(r.content)["data"]["silence"]
    assert silence["reason"] == HOSTILE
    assert silence["by"] == f"{HOSTILE} (token #{record.id})"
    listed = sql_api.get("/api/v1/monitors").json()["data"]["monitors"][0]["silences"][0]
    assert (listed["reason"], listed["by"]) == (HOSTILE, silence["by"])


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def test_tokens_are_stored_as_hashes_only(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path) as a:
        rows = a.site.db.query("SELECT * FROM api_tokens ORDER BY id")
        stored = " ".join(str(v) for row in rows for v in row)
        for secret in a.secret.values():
            assert secret not in stored and secret.startswith("sbx_")
            assert hashlib.sha256(secret.encode()).hexdigest() in stored
        assert len({s for s in a.secret.values()}) == 4
