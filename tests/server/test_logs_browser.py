"""The request-log page in a real browser (Debian's chromium, headless, through Playwright):
a note and a path that would run script if pasted into the page as HTML are shown as the
text they are, and nothing in them runs, in the search results and in a request's trace.
The page's screenshot lands in ``test-artifacts/logs.png``.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json
from signalbox.instrument.logsources import ConfiguredLogs
from signalbox.server.app import create_app
from tests.server.browser import chromium, new_page, screenshot
from tests.server.conftest import NOW, open_site
from tests.server.test_auth_api import on_socket

pytestmark = pytest.mark.peer("chromium")

NOTE = "<img src=x onerror=window.__pwned=1>\"'><script>window.__pwned=2</script>"
PATH = '/photos/"><script>window.__pwned=3</script>'


def test_hostile_notes_and_paths_are_shown_as_text_and_never_run(tmp_path: Path) -> None:
    at = datetime.fromtimestamp(NOW, UTC) - timedelta(minutes=5)
    hostile = AccessRecord(
        at,
        host="www1",
        client="10.0.0.1",
        method="GET",
        path=PATH,
        protocol="HTTP/1.1",
        status=500,
        request_id="evil-1",
        notes={"user_id": "5555", "comment": NOTE, "api_key": "fp:0123456789abcdef"},
    )
    plain = dataclasses.replace(hostile, time=at - timedelta(seconds=1), path="/ok", status=200,
                                request_id="good-1", notes={"user_id": "5555"})  # fmt: skip
    (tmp_path / "access.log").write_text(
        format_json(plain) + "\n" + format_combined(hostile) + "\n"
    )
    stamp = (at + timedelta(milliseconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (tmp_path / "app.log").write_text(f"{stamp} ERROR photos [evil-1]: failed on {NOTE}\n")
    logs = ConfiguredLogs(tmp_path / "access.log", (tmp_path / "app.log",))
    with open_site("memory", tmp_path) as site:
        app = create_app(dataclasses.replace(site.services, logs=logs))
        with on_socket(app) as base, chromium() as browser:
            page = new_page(browser, csp=True)  # the pages' own policy in force, as served
            page.goto(base + "/logs?" + urllib.parse.urlencode({"user": "5555"}))
            rows = page.locator("#requests tbody tr")
            assert rows.count() == 2
            evil = page.locator("tr[data-request='evil-1']")
            cells = evil.locator("td").all_inner_texts()
            assert cells[3] == PATH and NOTE in cells[5] and cells[1] == "500"
            assert page.evaluate("window.__pwned") is None
            assert page.locator("main script, main img").count() == 0
            screenshot(page, "logs.png")
            evil.locator("td a").click()  # the request id links to its trace
            page.wait_for_url("**/logs?trace=evil-1")
            lines = page.locator("#trace tbody tr")
            assert lines.count() == 2
            assert lines.nth(1).locator("code").inner_text().endswith(f"failed on {NOTE}")
            assert 'request_id="evil-1"' in lines.nth(0).locator("code").inner_text()
            assert page.evaluate("window.__pwned") is None
            assert page.locator("main script, main img").count() == 0


def test_a_search_that_stopped_early_reads_on_from_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log bigger than one answer reads: the page says the search stopped early, and its
    link reads on from there until every match has been shown."""
    from signalbox.instrument import logblocks
    from signalbox.server.api import logs as logs_api

    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 4096)
    monkeypatch.setattr(logs_api, "SCAN_BYTES", 16_384)
    at = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    lines = [
        format_combined(
            AccessRecord(
                at + timedelta(seconds=i),
                host="www1",
                client="10.0.0.1",
                method="GET",
                path=f"/p/{i}",
                protocol="HTTP/1.1",
                status=503 if i % 50 == 0 else 200,
                request_id=f"r{i}",
            )
        )
        for i in range(600)
    ]
    (tmp_path / "access.log").write_text("\n".join(lines) + "\n")
    logs = ConfiguredLogs(tmp_path / "access.log", ())
    with open_site("memory", tmp_path) as site:
        app = create_app(dataclasses.replace(site.services, logs=logs))
        with on_socket(app) as base, chromium() as browser:
            page = new_page(browser, csp=True)
            page.goto(base + "/logs?" + urllib.parse.urlencode({"status": "5xx"}))
            seen: list[str] = []
            stops = 0
            for _ in range(20):
                ids = page.locator("#requests tbody tr").evaluate_all(
                    "rows => rows.map(r => r.dataset.request)"
                )
                seen += ids
                if page.locator("#read-on").count() == 0:
                    break
                assert "stopped early" in page.locator("#stopped").inner_text()
                stops += 1
                if stops == 1:
                    screenshot(page, "logs-stopped-early.png")
                page.locator("#read-on").click()
                page.wait_for_load_state()
            assert sorted(seen, key=lambda r: int(r[1:])) == [f"r{i}" for i in range(0, 600, 50)]
            assert len(seen) == len(set(seen))  # each match shown once
            assert stops >= 2  # 600 lines at most 16 kB an answer: several stretches


def test_a_trace_that_stopped_early_reads_on_from_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's lines spread over logs bigger than one answer reads: the trace says it
    stopped early, and its link reads on until every line has been shown once."""
    from signalbox.instrument import logblocks
    from signalbox.server.api import logs as logs_api

    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 1024)
    monkeypatch.setattr(logs_api, "SCAN_BYTES", 4096)
    at = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    lines = [
        format_combined(AccessRecord(at + timedelta(seconds=i), host="www1", client="10.0.0.1",
                                     method="GET", path=f"/p/{i}", protocol="HTTP/1.1",
                                     status=200, request_id="rid-7" if i == 150 else f"r{i}"))
        for i in range(300)
    ]  # fmt: skip
    (tmp_path / "access.log").write_text("\n".join(lines) + "\n")
    app = []
    for i in range(300):
        stamp = (at + timedelta(seconds=i, milliseconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rid = "rid-7" if i % 60 == 0 else f"r{i}"
        app.append(f"{stamp} INFO app [{rid}]: step {i}")
    (tmp_path / "app.log").write_text("\n".join(app) + "\n")
    logs = ConfiguredLogs(tmp_path / "access.log", (tmp_path / "app.log",))
    with open_site("memory", tmp_path) as site:
        app_ = create_app(dataclasses.replace(site.services, logs=logs))
        with on_socket(app_) as base, chromium() as browser:
            page = new_page(browser, csp=True)
            page.goto(base + "/logs?" + urllib.parse.urlencode({"trace": "rid-7"}))
            seen: list[str] = []
            stops = 0
            for _ in range(40):
                seen += page.locator("#trace tbody tr code").all_inner_texts()
                if page.locator("#trace-read-on").count() == 0:
                    break
                assert "stopped early" in page.locator("#trace-stopped").inner_text()
                stops += 1
                page.locator("#trace-read-on").click()
                page.wait_for_load_state()
            assert stops >= 3
            assert len(seen) == len(set(seen)) == 6  # the access line and 5 app lines
            assert sum('request_id="rid-7"' in x for x in seen) == 1
