"""``/openapi.json`` describes every API route, and the app keeps to it under schemathesis.

The fuzz test loads the document the app serves and sends what schemathesis generates from
it (valid and invalid parameters, bodies and form bodies) to the real app: a SQLite store
with series and metadata, monitors evaluated into real states, and the token store. Each
request goes as a loopback caller with no token, with a read, operate or admin token made
for that request alone (the token routes revoke what they are sent to, so a token shared
between requests would be gone for the rest), or with a revoked one, so the access policy
is exercised too. Every answer must be below 500, have a documented status and content type,
and a body that validates against the document's schema for that status.

Bounded and deterministic for CI: a fixed number of examples per operation, derandomized,
no example database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from signalbox.exceptions import (
    AccessError,
    NotFoundError,
    QueryError,
    QueryLimitError,
    StoreError,
    UsageError,
)
from signalbox.flags.admin import FlagAdmin
from signalbox.flags.model import FlagChange
from signalbox.flags.store import SQLFlagStore
from signalbox.instrument.logsources import ConfiguredLogs
from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.server.api.openapi import ERROR_TYPES, OPERATIONS, api_operations, undescribed
from signalbox.server.app import create_app
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import TokenStore
from signalbox.server.errors import classify
from signalbox.tasks.jobs import Dead, Deferred, NewJob
from signalbox.tasks.sqlstore import SQLQueueStore
from tests.server.conftest import NOW, open_site

EXAMPLES = 50  # per operation, strategies unchanged (was 100: the file took 33 s of -n 0, now 20)
WRITES_ASSERTED = {  # operations whose writes are asserted after: the examples they had
    ("/api/v1/tokens", "post"): 100,
    ("/api/v1/tokens/{id}", "delete"): 100,
    ("/api/v1/tasks/jobs/{id}/retry", "post"): 100,
    ("/api/v1/tasks/queues/{queue}/pause", "post"): 100,
    ("/api/v1/flags/{name}/set", "post"): 100,
}
MONITORS = """
- name: disk_full
  description: A disk is nearly full.
  query: disk_used_ratio
  warning: "> 0.8"
  critical: "> 0.9"
  notify: [pager]
- name: queue_slow
  description: Jobs wait too long.
  query: queue_wait_seconds
  critical: "> 60"
"""
NOW_MS = int(NOW * 1000)
KNOWN_NAMES = {  # path parameters worth hitting besides what schemathesis makes up
    "/api/v1/label/{name}/values": ["job", "__name__", "mount"],
    **{
        f"/api/v1/monitors/{{name}}{action}": ["disk_full", "queue_slow"]
        for action in ("", "/silence", "/unsilence", "/ack", "/drill")
    },
}
KNOWN_IDS = {  # tokens and jobs that exist (made-up ids mostly do not)
    "/api/v1/tokens/{id}": [1, 2],
    "/api/v1/tasks/jobs/{id}": [1, 2, 3],
    "/api/v1/tasks/jobs/{id}/retry": [1, 2, 3],
}
KNOWN_FLAGS = {
    f"/api/v1/flags/{{name}}{action}": ["photo_uploads", "reprocessing"]
    for action in ("", "/history", "/set")
}
FLAGS_YAML = """
- name: photo_uploads
  description: Accept new photo uploads; <b>off</b> sheds write load.
  default: true
- name: reprocessing
  description: Reprocess old photos.
  default: "30%"
"""
KNOWN_QUEUES = {
    f"/api/v1/tasks/queues/{{queue}}{action}": ["photos", "reports"]
    for action in ("", "/pause", "/resume", "/retry_dead")
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclasses.dataclass
class Fuzzed:
    app: Starlette
    store: TokenStore
    revoked: str  # a revoked token
    queue: SQLQueueStore
    flags: FlagAdmin

    def token(self, who: str) -> str | None:
        """A token for one request as ``who`` ("loopback": none)."""
        if who == "loopback":
            return None
        if who == "revoked":
            return self.revoked
        _, secret = self.store.create(role=Role.parse(who), name=who, by="fuzz", now_ms=NOW_MS)
        return secret


def on_loopback(app: Starlette) -> Any:
    """``app`` as a loopback connection reaches it (``serve``'s default bind): schemathesis'
    ASGI client calls itself ``testclient``, which no policy counts as local."""

    async def loopback(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": ("127.0.0.1", 50000)}
        await app(scope, receive, send)

    return loopback


def access_logs(tmp: Path) -> ConfiguredLogs:
    """The logs area's files: an access log in both formats (a hostile note, a malformed
    line), a rotated gzip one, and an application log."""
    import gzip

    from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json

    at = datetime.fromtimestamp(NOW, UTC)
    notes = {"user_id": "5555", "api_key": "fp:0123456789abcdef", "x": '<script>"\n'}
    lines = [
        format_combined(AccessRecord(at, method="GET", path="/a", status=200, request_id="r1")),
        "not an access-log line",
        format_json(AccessRecord(at, method="POST", status=503, request_id="r2", notes=notes)),
    ]
    (tmp / "access.log").write_text("\n".join(lines) + "\n")
    (tmp / "access.log.1.gz").write_bytes(gzip.compress((lines[0] + "\n").encode()))
    (tmp / "app.log").write_text("2024-05-01T12:00:00Z INFO app [r2]: <b>hi</b>\n")
    return ConfiguredLogs(tmp / "access.log", (tmp / "app.log",))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    with open_site("sqlite", tmp, monitors_yaml=MONITORS) as site:
        samples = []
        for i in range(20):
            ts = NOW_MS - (19 - i) * 15_000
            samples += [
                Sample("req_total", (("code", "200"), ("job", "api")), i * 10.0, ts),
                Sample("temp", (("room", "a\nb"), ("job", "é")), 20.0 + i, ts),
                Sample("disk_used_ratio", (("mount", "/var"),), 0.5 + i / 40, ts),
                Sample("disk_used_ratio", (("mount", "<script>x</script>"),), 0.1, ts),
                Sample("queue_wait_seconds", (), 5.0, ts),
            ]
        site.store.write(samples, NOW_MS)
        site.store.write_metadata([MetricMeta("req_total", "counter", "Requests.")])
        site.runner.run_pass(NOW_MS - 60_000)
        site.runner.run_pass(NOW_MS)
        tokens = TokenStore(site.db)
        for label in ("read", "operate"):  # ids 1 and 2, for KNOWN_IDS
            tokens.create(role=Role.parse(label), name=label, by="test", now_ms=NOW_MS)
        record, revoked = tokens.create(role=Role.ADMIN, name="revoked", by="test", now_ms=NOW_MS)
        tokens.revoke(record.id, by="test", now_ms=NOW_MS)
        queue = SQLQueueStore(site.db)
        ids = [queue.enqueue(NewJob(q, "app.resize", "[[1]]", NOW_MS, NOW_MS)).id
               for q in ("photos", "photos", "reports", "photos")]  # fmt: skip
        queue.claim(worker="w", now_ms=NOW_MS, lease_ms=30_000, limit=4)
        queues = ("photos", "photos", "reports")
        dead = [Dead(i, q, "Traceback: <b>boom</b>") for i, q in zip(ids, queues, strict=False)]
        held = Deferred(ids[3], "photos", NOW_MS + 60_000, "mysql_load", "Threads_running 80")
        queue.finish([*dead, held], worker="w", now_ms=NOW_MS)
        queue.pause("reports", by="test", reason="db3 rebuild", now_ms=NOW_MS)
        (tmp / "flags").mkdir()
        (tmp / "flags" / "flags.yaml").write_text(FLAGS_YAML)
        flags = FlagAdmin(SQLFlagStore(site.db), [tmp / "flags"])
        flags.set("reprocessing", FlagChange(switch="off"), by="test", reason="x", now_ms=NOW_MS)
        services = dataclasses.replace(
            site.services,
            tokens=tokens,
            monitor_writes=site.services.monitors,
            queue=queue,
            flags=flags,
        )
        services = dataclasses.replace(services, logs=access_logs(tmp))
        yield Fuzzed(create_app(services), tokens, revoked, queue, flags)


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> Any:
    """The document as the app serves it, loaded by schemathesis over ASGI."""
    return schemathesis.openapi.from_asgi("/openapi.json", on_loopback(fuzzed.app))


OPERATION_IDS = sorted((path, method) for path, ops in OPERATIONS.items() for method in ops)


def cases(operation: Any) -> st.SearchStrategy[schemathesis.Case]:
    """Valid and invalid requests for ``operation``; where it names a monitor or a label,
    real names too (made-up ones mostly find nothing)."""
    out = list(operation.get_strategies_from_examples())
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        out.append(operation.as_strategy(generation_mode=mode))
        for name in KNOWN_NAMES.get(operation.path, []):
            out.append(operation.as_strategy(generation_mode=mode, path_parameters={"name": name}))
        for token_id in KNOWN_IDS.get(operation.path, []):
            out.append(
                operation.as_strategy(generation_mode=mode, path_parameters={"id": token_id})
            )
        for name in KNOWN_FLAGS.get(operation.path, []):
            out.append(operation.as_strategy(generation_mode=mode, path_parameters={"name": name}))
        for queue in KNOWN_QUEUES.get(operation.path, []):
            out.append(
                operation.as_strategy(generation_mode=mode, path_parameters={"queue": queue})
            )
    return st.one_of(out)


@pytest.mark.parametrize(
    ("path", "method"), OPERATION_IDS, ids=[f"{m.upper()} {p}" for p, m in OPERATION_IDS]
)
def test_the_app_keeps_to_its_openapi_document(
    api_schema: Any, fuzzed: Fuzzed, path: str, method: str
) -> None:
    operation = api_schema[path][method.upper()]

    @settings(
        max_examples=WRITES_ASSERTED.get((path, method), EXAMPLES),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=cases(operation),
        who=st.sampled_from(["operate", "loopback", "read", "admin", "revoked"]),
    )
    def fuzz(case: schemathesis.Case, who: str) -> None:
        token = fuzzed.token(who)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        case.call_and_validate(headers=headers, checks=CHECKS)

    fuzz()
    # the token writes got past their checks too, not only refused at every door
    by_admin = [t for t in fuzzed.store.tokens() if t.created_by.startswith("admin (token #")]
    if (path, method) == ("/api/v1/tokens", "post"):
        assert by_admin
    if path == "/api/v1/tokens/{id}":
        assert any(t.revoked_by.startswith("admin (token #") for t in fuzzed.store.tokens())
    # and the task writes did something: a known job retried, a known queue paused
    if path == "/api/v1/tasks/jobs/{id}/retry":
        assert any(j.status == "ready" for j in map(fuzzed.queue.get, (1, 2, 3)) if j)
    if path == "/api/v1/tasks/queues/{queue}/pause":
        assert "photos" in fuzzed.queue.paused()
    # and the flag writes changed a known flag, as an operate or admin token
    if path == "/api/v1/flags/{name}/set":
        assert any("(token #" in e.by for e in fuzzed.flags.history(None, limit=1000))


# -- the document and the routes ----------------------------------------------------------


def test_every_api_route_is_described_and_every_description_is_a_route(fuzzed: Fuzzed) -> None:
    mounted = set(api_operations(fuzzed.app.routes))
    assert undescribed(fuzzed.app.routes) == []
    described = {(p, m) for p, ops in OPERATIONS.items() for m in ops}
    assert described == mounted
    assert WRITES_ASSERTED.keys() <= described
    served = TestClient(fuzzed.app, client=("127.0.0.1", 50000)).get("/openapi.json").json()
    assert {(p, m) for p, ops in served["paths"].items() for m in ops} == mounted
    assert served["openapi"].startswith("3.1")


def test_a_route_without_a_description_is_reported() -> None:
    from starlette.routing import Mount, Route

    async def nothing(request: Any) -> Any:
        raise AssertionError

    routes = [
        Mount("/api/v1", routes=[Route("/query", nothing), Route("/brand_new", nothing)]),
        Route("/-/ready", nothing),
        Route("/explore", nothing),  # a page, not the API
    ]
    assert undescribed(routes) == [("/api/v1/brand_new", "get")]


def test_a_server_without_monitors_does_not_advertise_them(tmp_path: Path) -> None:
    with open_site("memory", tmp_path) as site:
        services = dataclasses.replace(site.services, monitors=None)
        with TestClient(create_app(services), client=("127.0.0.1", 50000)) as c:
            paths = c.get("/openapi.json").json()["paths"]
    assert "/api/v1/query" in paths
    assert not [p for p in paths if "monitors" in p]


def test_error_types_in_the_document_are_those_classify_gives() -> None:
    samples = [
        UsageError("x"),
        QueryError("x"),
        NotFoundError("monitor", "x", ""),
        AccessError("x", needed="operate", known=False),
        AccessError("x", needed="operate", known=True),
        QueryLimitError("timeout", "x"),
        QueryLimitError("concurrency", "x"),
        QueryLimitError("samples", "x"),
        StoreError("x"),
    ]
    for exc in samples:
        status, kind, _ = classify(exc)
        assert kind in ERROR_TYPES[status], (exc, status, kind)


# -- pagination ---------------------------------------------------------------------------


@pytest.fixture
def local(fuzzed: Fuzzed) -> TestClient:
    return TestClient(fuzzed.app, client=("127.0.0.1", 50000))


def test_series_labels_and_values_cut_at_limit_with_prometheus_warning(local: TestClient) -> None:
    whole = local.get("/api/v1/series", params={"match[]": "disk_used_ratio"}).json()
    assert len(whole["data"]) == 2 and "warnings" not in whole
    cut = local.get("/api/v1/series", params={"match[]": "disk_used_ratio", "limit": "1"}).json()
    assert cut["data"] == whole["data"][:1]
    assert cut["warnings"] == ["results truncated due to limit"]
    exact = local.get("/api/v1/series", params={"match[]": "disk_used_ratio", "limit": "2"})
    assert "warnings" not in exact.json()
    labels = local.post("/api/v1/labels", data={"limit": "2"}).json()
    assert labels["data"] == ["__name__", "code"]
    assert labels["warnings"] == ["results truncated due to limit"]
    values = local.get("/api/v1/label/__name__/values", params={"limit": "0"}).json()
    assert "disk_used_ratio" in values["data"] and "warnings" not in values
    for path in ("/api/v1/labels", "/api/v1/label/job/values"):
        r = local.get(path, params={"limit": "-1"})
        assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
        assert "limit" in r.json()["error"]


def test_monitors_list_pages_keep_the_report_shape(local: TestClient) -> None:
    whole = local.get("/api/v1/monitors").json()["data"]
    assert "total" not in whole and len(whole["monitors"]) == 2
    first = local.get("/api/v1/monitors", params={"limit": "1"}).json()["data"]
    assert [m["name"] for m in first["monitors"]] == [whole["monitors"][0]["name"]]
    assert (first["total"], first["next_offset"]) == (2, 1)
    assert first["lint_errors"] == whole["lint_errors"] and "outbox" in first
    last = local.get("/api/v1/monitors", params={"limit": "1", "offset": "1"}).json()["data"]
    assert [m["name"] for m in last["monitors"]] == [whole["monitors"][1]["name"]]
    assert last["next_offset"] is None
    for bad in ({"limit": "0"}, {"offset": "-1"}, {"offset": "x"}):
        r = local.get("/api/v1/monitors", params=bad)
        assert r.status_code == 400, bad
