"""Dashboard login in a real browser: Debian's chromium, headless, driven by Playwright (its
``executable_path``), against a real ``signalbox serve`` with ``auth = "required"`` and a
user made by ``signalbox users create``.

The page is sent to the login form, comes back signed in with the user in the header, and a
write through ``fetch`` is refused with a stale CSRF token and done with the page's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import free_port, run
from tests.server.browser import chromium, new_page, screenshot
from tests.serving import serve_process

pytestmark = pytest.mark.peer("chromium")

MONITOR = """
- name: images_backlog
  description: Too many images wait for processing.
  query: image_backlog
  warning: "> 10"
"""
PASSWORD = "alice's long password"
WRITE = """async ([token]) => {
  const r = await fetch("/api/v1/monitors/images_backlog/silence", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": token},
    body: JSON.stringify({duration: "1h", reason: "from the browser"}),
  });
  return [r.status, await r.json()];
}"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    port = free_port()
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "m.yaml").write_text(MONITOR)
    (tmp_path / "signalbox.toml").write_text(
        f'[server]\nport = {port}\nauth = "required"\n[statsd]\nenabled = false\n'
    )
    made = run(
        "users", "create", "alice", "--role", "operate", "--password-stdin",
        cwd=tmp_path, input=PASSWORD,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with serve_process(tmp_path, port) as base:
        yield tmp_path, base


def _log_in(page: Any) -> None:
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")


def test_log_in_then_a_stale_csrf_token_is_refused_and_the_pages_own_works(
    served: tuple[Path, str],
) -> None:
    root, base = served
    with chromium() as browser:
        page = new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/explore?query=up")
        assert page.url == base + "/login?next=%2Fexplore%3Fquery%3Dup"
        screenshot(page, "login.png")
        page.fill("input[name=name]", "alice")
        page.fill("input[name=password]", "not the password")
        page.click("form[action='/login'] button[type=submit]")
        assert page.locator("#login-error").inner_text() == "Wrong user name or password."
        _log_in(page)
        page.wait_for_url(base + "/explore?query=up")
        assert page.locator("#signed-in").inner_text() == "alice"
        stale = page.get_attribute("meta[name=csrf-token]", "content")

        page.click("#logout")  # the header's form, with its csrf field
        page.wait_for_url(base + "/login")
        assert page.locator("#signed-in").count() == 0
        _log_in(page)
        page.wait_for_url(base + "/")
        token = page.get_attribute("meta[name=csrf-token]", "content")
        assert token and stale and token != stale

        status, body = page.evaluate(WRITE, [stale])
        assert status == 403 and "CSRF token wrong or stale" in body["error"], body
        status, body = page.evaluate(WRITE, [token])
        assert status == 200, body
        assert body["data"]["silence"]["by"] == "alice (dashboard)"
        assert errors == []
    status = run("monitors", "status", "--json", cwd=root)
    (monitor,) = json.loads(status.stdout)["monitors"]
    assert [(s["by"], s["reason"]) for s in monitor["silences"]] == [
        ("alice (dashboard)", "from the browser")
    ]


def test_silence_from_the_monitor_page_with_a_reason_shows_the_audit_entry(
    served: tuple[Path, str],
) -> None:
    """The issue's walk: signed in, open the monitor, silence it with a reason through the
    page's button, and read who did it in the page's history and series."""
    _, base = served
    with chromium() as browser:
        page = new_page(browser, height=900)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/monitors/images_backlog")
        _log_in(page)
        page.wait_for_url(base + "/monitors/images_backlog")
        page.click("#act-silence button")  # no reason: the browser asks for one, nothing sent
        assert page.locator("#act-status").inner_text() == ""
        page.fill("#act-silence input[name=reason]", "reindexing <b>tonight</b>")
        page.select_option("#act-silence select[name=duration]", "4h")
        page.click("#act-silence button")
        page.wait_for_function("document.getElementById('act-status').textContent.includes('done')")
        page.wait_for_function(  # the page reloads to show the silence
            "(document.getElementById('history') || {innerText: ''}).innerText.includes('silenced')"
        )
        history = page.locator("#history").inner_text()
        assert "silenced" in history and "reindexing <b>tonight</b>" in history, history
        assert "alice (dashboard)" in page.locator("main").inner_text()
        screenshot(page, "monitor-silenced.png")
        assert errors == []
