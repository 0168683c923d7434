"""The task queue over HTTP (``/api/v1/tasks``): the app under uvicorn on a loopback socket,
the queue, tokens and users in SQLite and PostgreSQL.

What an operator reads (queues, dead jobs a page at a time, one job) and does (retry a job or
a queue's dead jobs, pause and resume with a reason), each audited with who did it; and what
everyone else tries: no token, a read token, a revoked one, a session without its CSRF token,
a read-only user, ids and queue names that are not ids and names, a missing reason.
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

from signalbox.monitors.notify.notification import rfc3339
from signalbox.server.app import AppOptions, create_app
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import TokenStore
from signalbox.server.auth.users import UserStore
from signalbox.storage import open_database
from signalbox.tasks.jobs import Dead, Deferred, NewJob
from signalbox.tasks.sqlstore import SQLQueueStore
from tests.server.cheap_user_hashes import cheap_user_hashes
from tests.server.conftest import NOW, Site, open_site
from tests.server.quick_stop_uvicorn import on_socket
from tests.server.test_auth_api import error
from tests.server.test_auth_sessions import META, PASSWORDS

NOW_MS = int(NOW * 1000)
HOSTILE_ERROR = "ValueError: <img src=x onerror=alert(1)> in photo 3"


@dataclass
class Tasks:
    site: Site
    queue: SQLQueueStore
    http: httpx.Client
    base: str
    secret: dict[str, str]  # role label (or "revoked") -> token
    ids: dict[str, int]
    jobs: dict[str, int]  # dead1, dead2, dead3 (photos), report_dead, deferred, ready

    def post(self, path: str, body: Any = None, token: str | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post(path, json=body, headers=headers, **kw)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)


def _fill(queue: SQLQueueStore) -> dict[str, int]:
    """Three dead jobs in photos, one in reports, one deferred by a gate, one ready."""
    names = ["dead1", "dead2", "dead3", "report_dead", "deferred", "ready"]
    queues = ["photos", "photos", "photos", "reports", "photos", "photos"]
    ids = {
        n: queue.enqueue(NewJob(q, "app.resize", f"[[{i}]]", NOW_MS - 60_000, NOW_MS - 60_000)).id
        for i, (n, q) in enumerate(zip(names, queues, strict=True))
    }
    queue.claim(worker="w", now_ms=NOW_MS - 30_000, lease_ms=30_000, limit=5)
    queue.finish(
        [Dead(ids[n], q, HOSTILE_ERROR) for n, q in zip(names[:4], queues, strict=False)]
        + [Deferred(ids["deferred"], "photos", NOW_MS + 60_000, "mysql_load", "Threads_running 80 >= 50")],
        worker="w",
        now_ms=NOW_MS - 30_000,
    )  # fmt: skip
    return ids


@contextlib.contextmanager
def tasks_api(backend: str, tmp_path: Path) -> Iterator[Tasks]:
    with open_site(backend, tmp_path) as site, contextlib.ExitStack() as stack:
        if backend == "sqlite":  # its own file beside the store, as serve keeps it
            db = open_database(f"sqlite:///{tmp_path / 'tasks.db'}", page_size=4096)
            queue = SQLQueueStore(db)
            stack.callback(queue.close)
        else:  # the store's own database, as serve shares it
            queue = SQLQueueStore(site.db)
        jobs = _fill(queue)
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
        services = dataclasses.replace(site.services, tokens=tokens, queue=queue)
        app = create_app(services, AppOptions())
        with (
            on_socket(app) as base,
            httpx.Client(base_url=base, timeout=10) as http,
        ):
            yield Tasks(site, queue, http, base, secret, ids, jobs)


@pytest.fixture
def t(sql_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tasks]:
    cheap_user_hashes(monkeypatch)  # the users' hashes: a millisecond, not 0.1 s
    with tasks_api(sql_backend, tmp_path) as found:
        yield found


def test_queues_read_as_tasks_status_with_gates_holding_work_back(t: Tasks) -> None:
    r = t.get("/api/v1/tasks/queues")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["at_ms"] == NOW_MS
    by = {q["queue"]: q for q in data["queues"]}
    photos = by["photos"]
    assert (photos["depth"], photos["scheduled"], photos["dead"], photos["running"]) == (1, 1, 3, 0)
    assert photos["oldest_age_seconds"] == 60.0
    assert photos["counts"] == {"done": 0, "failed": 3, "dead": 3, "deferred": 1}
    assert photos["holding"] == [
        {"gate": "mysql_load", "reason": "Threads_running 80 >= 50", "jobs": 1}
    ]
    assert by["reports"]["dead"] == 1
    assert data["gate_closures"] == {"mysql_load": 1}
    one = t.get("/api/v1/tasks/queues/photos").json()["data"]
    assert one == {"at_ms": NOW_MS, "queue": photos}
    assert "known: photos, reports" in error(t.get("/api/v1/tasks/queues/nope"), 404, "not_found")
    assert "invalid queue name" in error(t.get("/api/v1/tasks/queues/a%20b"), 400, "bad_data")


def test_dead_jobs_come_a_page_at_a_time_with_their_errors(t: Tasks) -> None:
    first = t.get("/api/v1/tasks/dead", limit=2).json()["data"]
    assert [j["id"] for j in first["jobs"]] == [t.jobs["dead1"], t.jobs["dead2"]]
    assert first["total"] == 4 and first["next_after"] == t.jobs["dead2"]
    assert first["jobs"][0]["last_error"] == HOSTILE_ERROR
    assert first["jobs"][0]["state"] == "dead" and first["jobs"][0]["args"] == [[0]]
    rest = t.get("/api/v1/tasks/dead", limit=2, after=first["next_after"]).json()["data"]
    assert [j["id"] for j in rest["jobs"]] == [t.jobs["dead3"], t.jobs["report_dead"]]
    assert rest["next_after"] is None
    reports = t.get("/api/v1/tasks/dead", queue="reports").json()["data"]
    assert [j["queue"] for j in reports["jobs"]] == ["reports"] and reports["total"] == 1
    for params, fragment in (
        ({"limit": "0"}, "invalid parameter 'limit'"),
        ({"after": "-1"}, "invalid parameter 'after'"),
        ({"after": "9" * 5000}, "invalid parameter 'after'"),
        ({"queue": "<script>"}, "invalid parameter 'queue'"),
    ):
        message = error(t.get("/api/v1/tasks/dead", **params), 400, "bad_data")
        assert fragment in message and len(message) < 300, params


def test_one_job_and_ids_that_are_not_jobs(t: Tasks) -> None:
    r = t.get(f"/api/v1/tasks/jobs/{t.jobs['deferred']}")
    job = r.json()["data"]["job"]
    assert (job["state"], job["gate"], job["defers"]) == ("scheduled", "mysql_load", 1)
    assert "no job named '999999'" in error(t.get("/api/v1/tasks/jobs/999999"), 404, "not_found")
    for bad in ("0", "-3", "x", "9" * 30, "1.5"):
        assert "invalid job id" in error(t.get(f"/api/v1/tasks/jobs/{bad}"), 400, "bad_data"), bad


def test_each_write_with_an_operate_token_is_done_and_audited_with_who(
    t: Tasks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="signalbox.tasks.audit")
    op, who = t.secret["operate"], f"operate-bot (token #{t.ids['operate']})"
    r = t.post(f"/api/v1/tasks/jobs/{t.jobs['dead1']}/retry", {}, op)
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert body["by"] == who and body["job"]["state"] == "ready" and body["job"]["failures"] == 0
    assert t.queue.get(t.jobs["dead1"]).status == "ready"  # type: ignore[union-attr]
    again = t.post(f"/api/v1/tasks/jobs/{t.jobs['dead1']}/retry", None, op)
    assert "is not dead (it is ready)" in error(again, 400, "bad_data")
    missing = t.post("/api/v1/tasks/jobs/999999/retry", {}, op)
    assert "no job named" in error(missing, 404, "not_found")

    r = t.post("/api/v1/tasks/queues/photos/retry_dead", {}, op)
    assert r.json()["data"] == {"queue": "photos", "retried": 2, "by": who}
    assert [j.queue for j in t.queue.jobs(status="dead")] == ["reports"]

    r = t.post("/api/v1/tasks/queues/photos/pause", {"reason": "db3 rebuild"}, op)
    assert r.status_code == 200, r.text
    q = r.json()["data"]["queue"]
    assert (q["paused"], q["paused_by"], q["paused_reason"]) == (True, who, "db3 rebuild")
    assert t.queue.paused() == {"photos"}
    r = t.post("/api/v1/tasks/queues/photos/resume", {"reason": "rebuild done"}, op)
    assert r.json()["data"]["was_paused"] is True and r.json()["data"]["queue"]["paused"] is False
    assert t.queue.paused() == set()
    r = t.post("/api/v1/tasks/queues/photos/resume", {"reason": "again"}, op)
    assert r.json()["data"]["was_paused"] is False
    r = t.post("/api/v1/tasks/queues/nope/resume", {"reason": "x"}, op)
    assert "no queue named 'nope'" in error(r, 404, "not_found")

    audit = [r.getMessage() for r in caplog.records if r.name == "signalbox.tasks.audit"]
    assert audit == [
        f"job {t.jobs['dead1']} (task app.resize, queue photos) retried by {who}",
        f"2 dead job(s) of queue photos retried by {who}",
        f"queue photos paused by {who}: db3 rebuild",
        f"queue photos resumed by {who}: rebuild done",
    ]
    assert all(s not in caplog.text for s in t.secret.values())  # never a token


WRITES = [
    ("/api/v1/tasks/jobs/{dead1}/retry", {}),
    ("/api/v1/tasks/queues/photos/retry_dead", {}),
    ("/api/v1/tasks/queues/photos/pause", {"reason": "x"}),
    ("/api/v1/tasks/queues/photos/resume", {"reason": "x"}),
]


def _unchanged(t: Tasks) -> None:
    assert len(t.queue.jobs(status="dead")) == 4 and t.queue.paused() == set()
    assert t.queue.audit() == []  # a refused write is not in the audit trail


def test_writes_are_refused_without_an_operate_token(t: Tasks) -> None:
    for path, body in WRITES:
        path = path.format(**t.jobs)
        assert "operate or admin" in error(t.post(path, body), 401, "unauthorized"), path
        assert "was revoked" in error(t.post(path, body, t.secret["revoked"]), 401, "unauthorized")
        message = error(t.post(path, body, t.secret["read"]), 403, "forbidden")
        assert (
            message
            == f"read-bot (token #{t.ids['read']}) has role read; this needs operate or admin"
        )
    _unchanged(t)


def test_a_pause_needs_a_reason_and_bodies_are_checked(t: Tasks) -> None:
    op = t.secret["operate"]
    for body, fragment in (
        ({}, "reason"),
        ({"reason": "   "}, "say why"),
        ({"reason": "a\nb"}, "reason"),
        ({"reason": "x", "by": "someone else"}, "by"),
        ({"reason": "x" * 1001}, "reason"),
    ):
        r = t.post("/api/v1/tasks/queues/photos/pause", body, op)
        assert fragment in error(r, 400, "bad_data"), body
    r = t.post("/api/v1/tasks/queues/photos/retry_dead", {"all": True}, op)
    error(r, 400, "bad_data")
    r = t.http.post(
        "/api/v1/tasks/queues/photos/pause", content="reason=x",
        headers={"Authorization": f"Bearer {op}", "Content-Type": "text/plain"},
    )  # fmt: skip
    error(r, 415, "bad_data")
    r = t.post("/api/v1/tasks/queues/a%20b/pause", {"reason": "x"}, op)
    assert "invalid queue name" in error(r, 400, "bad_data")
    _unchanged(t)


def _session(t: Tasks, name: str) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=t.base, timeout=10)
    http.get("/login")
    token = http.cookies.get("signalbox_login", path="/login") or ""
    r = http.post(
        "/login",
        data={"csrf_token": token, "name": name, "password": PASSWORDS[name], "next": "/queues"},
    )
    assert r.status_code == 303, r.text
    page = http.get("/queues")
    found = META.search(page.text)
    assert found, page.text[:300]
    return http, found.group(1)


def test_a_signed_in_operator_needs_the_csrf_token_and_a_reader_may_not_write(t: Tasks) -> None:
    http, csrf = _session(t, "alice")
    try:
        path = "/api/v1/tasks/queues/photos/pause"
        for headers in ({}, {"X-CSRF-Token": "A" * 43}):
            r = http.post(path, json={"reason": "x"}, headers=headers)
            assert "CSRF token" in error(r, 403, "forbidden"), headers
        _unchanged(t)
        r = http.post(path, json={"reason": "from the page"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["queue"]["paused_by"] == "alice (dashboard)"
    finally:
        http.close()
    http, csrf = _session(t, "bob")
    try:
        r = http.post(
            f"/api/v1/tasks/jobs/{t.jobs['dead1']}/retry", json={}, headers={"X-CSRF-Token": csrf}
        )
        assert (
            error(r, 403, "forbidden")
            == "bob (dashboard) has role read; this needs operate or admin"
        )
    finally:
        http.close()
    assert t.queue.get(t.jobs["dead1"]).status == "dead"  # type: ignore[union-attr]


def test_every_write_is_in_the_audit_trail_read_newest_first_a_page_at_a_time(t: Tasks) -> None:
    op, who = t.secret["operate"], f"operate-bot (token #{t.ids['operate']})"
    hostile = "<script>window.__pwned=1</script> rebuild"
    assert t.get("/api/v1/tasks/audit").json()["data"] == {"entries": [], "next_after": None}
    assert t.post(f"/api/v1/tasks/jobs/{t.jobs['dead1']}/retry", {}, op).status_code == 200
    assert t.post("/api/v1/tasks/queues/photos/retry_dead", {}, op).status_code == 200
    assert t.post("/api/v1/tasks/queues/reports/pause", {"reason": hostile}, op).status_code == 200
    http, csrf = _session(t, "alice")
    try:
        r = http.post(
            "/api/v1/tasks/queues/reports/resume",
            json={"reason": "rebuild done"},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status_code == 200, r.text
    finally:
        http.close()
    error(t.post(f"/api/v1/tasks/jobs/{t.jobs['dead1']}/retry", {}, op), 400, "bad_data")

    data = t.get("/api/v1/tasks/audit").json()["data"]
    assert data["next_after"] is None
    got = [
        (e["by"], e["action"], e["queue"], e["job_id"], e["reason"], e["count"], e["at_ms"])
        for e in data["entries"]
    ]
    assert got == [
        ("alice (dashboard)", "resume", "reports", None, "rebuild done", 1, NOW_MS),
        (who, "pause", "reports", None, hostile, 1, NOW_MS),
        (who, "retry_dead", "photos", None, "", 2, NOW_MS),
        (who, "retry", "photos", t.jobs["dead1"], "", 1, NOW_MS),
    ]  # the refused retry is not there
    assert data["entries"][0]["at"] == rfc3339(NOW)

    first = t.get("/api/v1/tasks/audit", limit=3).json()["data"]
    assert first["entries"] == data["entries"][:3]
    assert first["next_after"] == data["entries"][2]["id"]
    # an action recorded meanwhile does not shift the next page
    assert t.post("/api/v1/tasks/queues/photos/pause", {"reason": "x"}, op).status_code == 200
    rest = t.get("/api/v1/tasks/audit", limit=3, after=first["next_after"]).json()["data"]
    assert rest == {"entries": data["entries"][3:], "next_after": None}
    reports = t.get("/api/v1/tasks/audit", queue="reports").json()["data"]["entries"]
    assert [e["action"] for e in reports] == ["resume", "pause"]
    for params, fragment in (
        ({"limit": "0"}, "invalid parameter 'limit'"),
        ({"after": "-1"}, "invalid parameter 'after'"),
        ({"after": "9" * 5000}, "invalid parameter 'after'"),
        ({"queue": "<script>"}, "invalid parameter 'queue'"),
    ):
        message = error(t.get("/api/v1/tasks/audit", **params), 400, "bad_data")
        assert fragment in message and len(message) < 300, params

    # the queues page lists them, escaped
    page = t.http.get("/queues").text
    assert 'id="audit"' in page and "<script>window" not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt; rebuild" in page
    assert page.count('<tr data-action="') == 5 and "alice (dashboard)" in page


def test_the_queues_page_escapes_what_comes_from_outside(t: Tasks) -> None:
    hostile = "<script>window.__pwned=1</script>"
    t.queue.enqueue(NewJob(hostile, hostile, "[[1]]", NOW_MS, NOW_MS))
    page = t.http.get("/queues").text
    assert "<script>window" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "not a valid queue name" in page  # no buttons for a name the API refuses
    overview = t.http.get("/").text
    assert 'href="/queues"' in overview and "3 dead jobs" in overview


def test_a_retry_may_say_why_and_the_reason_is_in_the_audit_trail_and_log(
    t: Tasks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="signalbox.tasks.audit")
    op, who = t.secret["operate"], f"operate-bot (token #{t.ids['operate']})"
    dead1 = t.jobs["dead1"]
    assert "reason" in error(
        t.post(f"/api/v1/tasks/jobs/{dead1}/retry", {"reason": "  "}, op), 400, "bad_data"
    )
    assert "reason" in error(
        t.post(f"/api/v1/tasks/jobs/{dead1}/retry", {"reason": "a\nb"}, op), 400, "bad_data"
    )
    error(t.post(f"/api/v1/tasks/jobs/{dead1}/retry", {"why": "x"}, op), 400, "bad_data")
    assert t.queue.get(dead1).status == "dead"  # type: ignore[union-attr]  # refusals changed nothing

    r = t.post(f"/api/v1/tasks/jobs/{dead1}/retry", {"reason": "db3 is back"}, op)
    assert r.status_code == 200, r.text
    r = t.post("/api/v1/tasks/queues/photos/retry_dead", {"reason": "fixed the bug"}, op)
    assert r.json()["data"]["retried"] == 2

    entries = t.get("/api/v1/tasks/audit").json()["data"]["entries"]
    assert [(e["action"], e["reason"], e["by"]) for e in entries] == [
        ("retry_dead", "fixed the bug", who),
        ("retry", "db3 is back", who),
    ]
    audit = [r.getMessage() for r in caplog.records if r.name == "signalbox.tasks.audit"]
    assert audit == [
        f"job {dead1} (task app.resize, queue photos) retried by {who}: db3 is back",
        f"2 dead job(s) of queue photos retried by {who}: fixed the bug",
    ]
