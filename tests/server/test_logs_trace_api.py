"""``/api/v1/logs/trace/{id}`` and the ``/logs`` page's trace over logs bigger than one answer
reads, through real HTTP (uvicorn on a socket): each answer reads a bounded stretch and says
``stopped_early`` with a ``resume``; reading on until the end gives every line of the whole
trace once (a traceback cut by a stop included), and a token whose file rotated is a 400."""

from __future__ import annotations

import dataclasses
import gzip
import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from signalbox.instrument import logblocks
from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json
from signalbox.instrument.logscan import trace
from signalbox.instrument.logsources import ConfiguredLogs
from signalbox.server.api import logs as logs_api
from signalbox.server.app import create_app
from tests.server.conftest import NOW, open_site
from tests.server.test_auth_api import error, on_socket

T0 = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=2)
RID = "tenant/7:abc"


def rec(i: int, **kw: object) -> AccessRecord:
    fields: dict[str, object] = {
        "time": T0 + timedelta(seconds=i),
        "host": "www1",
        "client": "10.0.0.1",
        "method": "GET",
        "path": f"/p/{i}",
        "protocol": "HTTP/1.1",
        "status": 200,
        "request_id": f"r{i}",
    }
    fields.update(kw)
    return AccessRecord(**fields)  # type: ignore[arg-type]


def stamp(i: int) -> str:
    return (T0 + timedelta(seconds=i, milliseconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfiguredLogs:
    """Access log (rotated gzip and live) and app log (rotated and live) with RID in each;
    blocks of 1 kB, at most 6 kB an answer."""
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 1024)
    monkeypatch.setattr(logs_api, "SCAN_BYTES", 6000)
    old = [format_combined(rec(i)) for i in range(150)]
    old[70] = format_combined(rec(70, request_id=RID, status=500))
    new = [format_json(rec(i)) for i in range(150, 300)]
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(("\n".join(old) + "\n").encode()))
    (tmp_path / "access.log").write_text("\n".join(new) + "\n")
    app_old = [f"{stamp(i)} INFO app [r{i}]: filler" for i in range(100)]
    app_old[40] = f"{stamp(70)} ERROR app [{RID}]: failed"
    app_old[41:41] = [f'  File "app.py", line {i}, in handler' for i in range(300)]
    app_new = [f"{stamp(i)} INFO app [r{i}]: filler" for i in range(150, 250)]
    app_new[50] = f"{stamp(71)} INFO worker [{RID}]: retried"
    (tmp_path / "app.log.1").write_text("\n".join(app_old) + "\n")
    (tmp_path / "app.log").write_text("\n".join(app_new) + "\n")
    return ConfiguredLogs(tmp_path / "access.log", (tmp_path / "app.log",))


@pytest.fixture
def base(tmp_path: Path, logs: ConfiguredLogs) -> Iterator[str]:
    with open_site("memory", tmp_path) as site:
        app = create_app(dataclasses.replace(site.services, logs=logs))
        with on_socket(app) as url:
            yield url


def test_a_trace_out_of_budget_stops_early_and_reads_on_to_every_line(
    base: str, logs: ConfiguredLogs
) -> None:
    whole = trace(logs.files(), RID)
    assert len(whole) == 303
    want = sorted((t.file.name, t.line, t.text) for t in whole)
    seen: list[tuple[str, int, str]] = []
    stops = 0
    params: dict[str, str] = {}
    with httpx.Client(base_url=base) as http:
        while True:
            r = http.get(f"/api/v1/logs/trace/{RID}", params=params)
            assert r.status_code == 200, r.text
            body = r.json()["data"]
            assert body["request_id"] == RID and not body["truncated"]
            times = [x["time"] for x in body["lines"]]
            assert times == sorted(times)
            seen += [(x["file"], x["line"], x["text"]) for x in body["lines"]]
            traceback = [x for x in body["lines"] if x["text"].startswith("  File")]
            assert all(x["time"] == whole[1].time.isoformat() for x in traceback)  # type: ignore[union-attr]
            if not body["stopped_early"]:
                assert body["resume"] is None
                break
            stops += 1
            params = {"resume": body["resume"]}
    assert stops >= 5
    assert sorted(seen) == want and len(seen) == len(set(seen))


def test_the_trace_page_links_to_read_on_until_the_trace_is_whole(
    base: str, logs: ConfiguredLogs
) -> None:
    rows = 0
    pages = 0
    url = "/logs?" + httpx.QueryParams({"trace": RID}).__str__()
    with httpx.Client(base_url=base) as http:
        while True:
            text = http.get(url).text
            pages += 1
            assert 'id="trace"' in text
            rows += text.count('<tr class="trace-line')
            link = re.search(r'<a href="([^"]+)" id="trace-read-on">', text)
            if link is None:
                assert 'id="trace-stopped"' not in text
                break
            assert "The trace stopped early" in text
            url = html.unescape(link.group(1))
            assert "trace_resume=" in url
    assert pages >= 5 and rows == 303


def test_a_stale_or_bad_trace_resume_is_a_400_saying_what_to_do(base: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=base) as http:
        tokens = []
        params: dict[str, str] = {}
        while True:
            body = http.get(f"/api/v1/logs/trace/{RID}", params=params).json()["data"]
            if not body["stopped_early"]:
                break
            tokens.append(body["resume"])
            params = {"resume": body["resume"]}
        for bad in (
            "12;DROP",
            "9" * 19 + ".0.4.0123456789abcdef.access.log",
            "\u00b2.0.0.-.app.log",
        ):
            msg = error(
                http.get(f"/api/v1/logs/trace/{RID}", params={"resume": bad}), 400, "bad_data"
            )
            assert "'resume'" in msg
        in_gz = next(t for t in tokens if t.endswith(".access.log.1.gz"))
        in_app = next(t for t in tokens if t.startswith("t1"))  # inside the traceback
        (tmp_path / "app.log.1").write_text(f"{stamp(1)} INFO app [x]: rotated\n" * 40)
        stale = http.get(f"/api/v1/logs/trace/{RID}", params={"resume": in_app})
        assert "rotated" in error(stale, 400, "bad_data")
        (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(b"other\n" * 9000))
        stale = http.get(f"/api/v1/logs/trace/{RID}", params={"resume": in_gz})
        assert "rotated" in error(stale, 400, "bad_data")
        page = http.get("/logs", params={"trace": RID, "trace_resume": in_gz}).text
        assert 'id="log-error"' in page and "rotated" in page
