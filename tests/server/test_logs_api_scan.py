"""``/api/v1/logs`` over a log bigger than one answer reads, and request ids holding ``/``.

A search whose scan runs out of its budget answers what it found, ``stopped_early`` and a
``resume`` token; following ``next_after`` and then ``resume`` over HTTP finds every match
once. A trace of an id with a slash works through the path, raw or percent-encoded.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from signalbox.instrument import logblocks
from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json
from signalbox.instrument.logsources import ConfiguredLogs
from signalbox.server.api import logs as logs_api
from signalbox.server.app import create_app
from tests.server.conftest import NOW, open_site
from tests.server.test_auth_api import error

T0 = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=2)


def rec(i: int, **kw: object) -> AccessRecord:
    fields: dict[str, object] = {
        "time": T0 + timedelta(seconds=i),
        "host": "www1",
        "client": "10.0.0.1",
        "method": "GET",
        "path": f"/p/{i}",
        "protocol": "HTTP/1.1",
        "status": 503 if i % 5 == 0 else 200,
        "request_id": f"r{i}",
        "notes": {"user_id": f"u{i % 3}"},
    }
    fields.update(kw)
    return AccessRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app over an access log of 600 lines (a rotated gzip file and the live one), read
    in blocks of 4 kB, at most 16 kB an answer."""
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 4096)
    monkeypatch.setattr(logs_api, "SCAN_BYTES", 16_384)
    old = [format_combined(rec(i)) for i in range(300)]
    new = [format_json(rec(i)) for i in range(300, 599)]
    new.append(format_combined(rec(599, request_id="tenant/7:abc")))
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(("\n".join(old) + "\n").encode()))
    (tmp_path / "access.log").write_text("\n".join(new) + "\n")
    stamp = (T0 + timedelta(seconds=599, milliseconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (tmp_path / "app.log").write_text(f"{stamp} ERROR app [tenant/7:abc]: failed\n")
    logs = ConfiguredLogs(tmp_path / "access.log", (tmp_path / "app.log",))
    with open_site("memory", tmp_path) as site:
        app = create_app(dataclasses.replace(site.services, logs=logs))
        yield TestClient(app, client=("127.0.0.1", 5000))


def test_a_scan_out_of_budget_says_so_and_resumes_until_every_match_is_found(
    client: TestClient,
) -> None:
    seen: list[str] = []
    params: dict[str, str] = {"status": "5xx", "limit": "9"}
    stops = 0
    while True:
        body = client.get("/api/v1/logs/requests", params=params).json()["data"]
        rows = [r["request_id"] for r in body["requests"]]
        assert all(r["status"] == 503 for r in body["requests"])
        assert rows == [r["request_id"] for r in sorted(body["requests"], key=lambda r: r["time"], reverse=True)]  # fmt: skip
        seen += rows
        if body["next_after"]:
            params = {**params, "after": body["next_after"]}
        elif body["stopped_early"]:
            assert body["resume"]
            stops += 1
            params = {"status": "5xx", "limit": "9", "resume": body["resume"]}
        else:
            assert body["resume"] is None
            break
    assert stops >= 5
    assert sorted(seen) == sorted(f"r{i}" for i in range(0, 600, 5))
    # the page says the search stopped early and links to read on
    page = client.get("/logs", params={"status": "5xx"}).text
    assert 'id="read-on"' in page and "resume=" in page


def test_a_bad_or_stale_resume_is_a_400_saying_what_to_do(
    client: TestClient, tmp_path: Path
) -> None:
    body = client.get("/api/v1/logs/requests", params={"user": "u1"}).json()["data"]
    assert body["stopped_early"] and body["resume"]
    msg = error(client.get("/api/v1/logs/requests?resume=12;DROP"), 400, "bad_data")
    assert "'resume'" in msg
    (tmp_path / "access.log").write_text(format_json(rec(1000)) + "\n")  # rotated meanwhile
    stale = client.get("/api/v1/logs/requests", params={"user": "u1", "resume": body["resume"]})
    assert "rotated" in error(stale, 400, "bad_data")


@pytest.mark.parametrize("path", ["tenant/7:abc", "tenant%2F7:abc"])
def test_a_request_id_holding_a_slash_is_traced_through_the_path(
    client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[tuple[str, int]] = []
    params: dict[str, str] = {}
    while True:  # 16 kB an answer: the trace reads on
        body = client.get(f"/api/v1/logs/trace/{path}", params=params).json()["data"]
        assert body["request_id"] == "tenant/7:abc"
        lines += [(x["file"], x["line"]) for x in body["lines"]]
        if not body["stopped_early"]:
            break
        params = {"resume": body["resume"]}
    # the smaller live log (app.log) is read first: its line comes in an earlier stretch
    assert sorted(lines) == [("access.log", 300), ("app.log", 1)]
    assert "invalid request id" in error(client.get("/api/v1/logs/trace/a/b%20c"), 400, "bad_data")
    monkeypatch.setattr(logs_api, "SCAN_BYTES", 1 << 20)
    traced = client.get("/logs", params={"trace": "tenant/7:abc"}).text
    assert "ERROR app [tenant/7:abc]: failed" in traced
