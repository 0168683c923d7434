"""The request logs over HTTP (``/api/v1/logs``) and the request-log page (``/logs``).

The app reads a config's log files (an access log in both formats, a rotated gzip one, an
application log) under the real auth middleware and token store: loopback reads are open,
elsewhere a token is needed; bad filters are 400s naming the parameter; nothing in a request
picks a file; hostile values come back as data and the page shows them as text.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json
from signalbox.instrument.logsources import ConfiguredLogs
from signalbox.server.app import create_app
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import TokenStore
from tests.server.conftest import NOW, open_site
from tests.server.test_auth_api import error

T0 = datetime.fromtimestamp(NOW, UTC) - timedelta(minutes=30)
FP = "fp:0123456789abcdef"
Api = tuple[TestClient, TestClient, dict[str, str]]
HOSTILE = "<img src=x onerror=alert(1)>\"'\n"
FORGED = (
    '\n6.6.6.6 - 9999 [01/May/2024:12:00:09 +0000] "DELETE /admin HTTP/1.1" 500 - "-" "-" '
    'ts=1714564809.000000 request_id="forged" route="" duration_us=1'
)


def rec(i: int, **kw: object) -> AccessRecord:
    fields: dict[str, object] = {
        "time": T0 + timedelta(seconds=i),
        "host": "www1",
        "client": "10.0.0.1",
        "method": "GET",
        "path": f"/photos/{i}",
        "protocol": "HTTP/1.1",
        "status": 200,
        "request_id": f"r{i}",
        "notes": {"user_id": "5555", "api_key": FP},
    }
    fields.update(kw)
    return AccessRecord(**fields)  # type: ignore[arg-type]


def write_logs(tmp: Path) -> ConfiguredLogs:
    old = [format_combined(rec(i)) for i in range(3)]
    (tmp / "access.log.1.gz").write_bytes(gzip.compress(("\n".join(old) + "\n").encode()))
    hostile = rec(4, path="/<script>x</script>", status=502, notes={"user_id": "7", "msg": HOSTILE + FORGED})  # fmt: skip
    new = [format_json(rec(3, method="POST", status=503)), "garbage", format_combined(hostile)]
    (tmp / "access.log").write_text("\n".join(new) + "\n")
    stamp = (T0 + timedelta(seconds=3, milliseconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (tmp / "app.log").write_text(f"{stamp} ERROR photos [r3]: db timeout <b>x</b>\n  at line 3\n")
    return ConfiguredLogs(tmp / "access.log", (tmp / "app.log",))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, dict[str, str]]]:
    """(a loopback client, a remote one, tokens by role) over the memory site."""
    with open_site("memory", tmp_path) as site:
        tokens = TokenStore(site.db)
        secret = {}
        for label in ("read", "revoked"):
            rec_, secret[label] = tokens.create(
                role=Role.READ, name=label, by="t", now_ms=int(NOW * 1000)
            )
            if label == "revoked":
                tokens.revoke(rec_.id, by="t", now_ms=int(NOW * 1000))
        services = dataclasses.replace(site.services, tokens=tokens, logs=write_logs(tmp_path))
        app = create_app(services)
        yield TestClient(app, client=("127.0.0.1", 5000)), TestClient(app), secret


def ids(body: dict[str, object]) -> list[str]:
    rows = body["data"]["requests"]  # type: ignore[index]
    return [r["request_id"] for r in rows]  # type: ignore[union-attr]


def test_requests_filter_page_newest_first_and_count_malformed_lines(api: Api) -> None:
    local, _, _ = api
    every = local.get("/api/v1/logs/requests").json()
    assert ids(every) == ["r4", "r3", "r2", "r1", "r0"]
    assert every["data"]["malformed"] == {
        "count": 1,
        "first": [{"file": "access.log", "line": 2, "why": every["data"]["malformed"]["first"][0]["why"]}],
    }  # fmt: skip
    assert every["data"]["files"] == ["access.log.1.gz", "access.log"]
    first = local.get("/api/v1/logs/requests", params={"user": "5555", "limit": "2"}).json()
    assert ids(first) == ["r3", "r2"] and first["data"]["next_after"]
    rest = local.get(
        "/api/v1/logs/requests",
        params={"user": "5555", "limit": "2", "after": first["data"]["next_after"]},
    ).json()
    assert ids(rest) == ["r1", "r0"] and rest["data"]["next_after"] is None
    assert ids(local.get("/api/v1/logs/requests?status=5xx&method=post").json()) == ["r3"]
    assert ids(local.get(f"/api/v1/logs/requests?api_key_fp={FP}&since=1799s").json()) == [
        "r3",
        "r2",
        "r1",
    ]
    # the forged line inside r4's note is no request; the note comes back whole, as data
    assert ids(local.get("/api/v1/logs/requests?request_id=forged").json()) == []
    assert ids(local.get("/api/v1/logs/requests?user=9999").json()) == []
    r4 = local.get("/api/v1/logs/requests?user=7").json()["data"]["requests"][0]
    assert r4["notes"]["msg"] == HOSTILE + FORGED and r4["path"] == "/<script>x</script>"
    # no parameter names a file: the config's are read whatever is asked
    assert local.get("/api/v1/logs/requests?file=/etc/passwd&path=..").json() == every


def test_trace_answers_a_requests_lines_in_every_log_in_time_order(api: Api) -> None:
    local, _, _ = api
    body = local.get("/api/v1/logs/trace/r3").json()["data"]
    assert [(x["file"], x["line"]) for x in body["lines"]] == [
        ("access.log", 1),
        ("app.log", 1),
        ("app.log", 2),
    ]
    assert body["lines"][0]["record"]["status"] == 503 and body["lines"][1]["record"] is None
    assert body["truncated"] is False
    assert local.get("/api/v1/logs/trace/nothing").json()["data"]["lines"] == []


def test_reads_need_a_token_off_loopback(api: Api) -> None:
    local, remote, secret = api
    for path in ("/api/v1/logs/requests", "/api/v1/logs/trace/r3", "/logs"):
        assert local.get(path).status_code == 200
        assert remote.get(path, follow_redirects=False).status_code in (401, 303)
        bad = remote.get(path, headers={"Authorization": f"Bearer {secret['revoked']}"})
        assert bad.status_code == 401
        ok = remote.get(path, headers={"Authorization": f"Bearer {secret['read']}"})
        assert ok.status_code == 200, ok.text
    error(remote.get("/api/v1/logs/requests"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("status=6xx", "status '6xx'"),
        ("api_key_fp=sk_live_123", "api_key_fp 'sk_live_123'"),
        ("since=soon", "since 'soon'"),
        ("since=1h&until=2h", "until must be after since"),
        ("limit=0", "'limit'"),
        ("after=12;DROP", "'after'"),
        ("method=GET%20/", "method 'GET /'"),
    ],
)
def test_bad_filters_are_400s_naming_the_parameter(api: Api, query: str, names: str) -> None:
    local, _, _ = api
    assert names in error(local.get(f"/api/v1/logs/requests?{query}"), 400, "bad_data")


def test_a_bad_trace_id_is_a_400(api: Api) -> None:
    local, _, _ = api
    assert "invalid request id" in error(local.get("/api/v1/logs/trace/a%20b"), 400, "bad_data")


def test_the_page_shows_hostile_values_as_text_and_says_what_a_bad_filter_is(api: Api) -> None:
    local, _, _ = api
    page = local.get("/logs", params={"user": "7"}).text
    assert "<img src=x" not in page and "<script>x" not in page
    assert (
        "&lt;img src=x onerror=alert(1)&gt;" in page and "/&lt;script&gt;x&lt;/script&gt;" in page
    )
    assert 'href="/logs?trace=r4"' in page
    traced = local.get("/logs", params={"trace": "r3"}).text
    assert "db timeout &lt;b&gt;x&lt;/b&gt;" in traced and "at line 3" in traced
    bad = local.get("/logs", params={"status": "6xx"})
    assert (
        bad.status_code == 200 and "--status" not in bad.text and "status &#39;6xx&#39;" in bad.text
    )
    older = local.get("/logs", params={"search": "1"}).text
    assert "1 malformed line skipped; access.log:2:" in older
    assert 'href="/logs"' in older  # the nav entry
