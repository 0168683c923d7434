"""The flags page in a real browser: Debian's chromium, headless, driven by Playwright,
against a real ``signalbox serve`` with a flags file and a flag a script changed before.

An operator signs in, switches a flag off with a reason (the page asks to confirm, naming
the flag and the kill switch), then rolls another out to 12.5%; each change shows in its row
and, newest first, in the audit trail, as done by the signed-in user. Refusing the
confirmation changes nothing. A description, reason and actor that would run script stay
text. The page's screenshot lands in ``test-artifacts/flags.png``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.flags.model import FlagChange
from signalbox.flags.store import open_flag_store
from tests.cli.helpers import free_port, run
from tests.server.browser import chromium, new_page, screenshot
from tests.serving import fetch, serve_process

pytestmark = pytest.mark.peer("chromium")

HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
PASSWORD = "alice's long password"
FLAGS = f"""
- name: photo_uploads
  description: Accept new photo uploads; off sheds write load.
  owner: photos
  default: true
- name: new_search
  description: "{HOSTILE}"
  default: "10%"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    (tmp_path / "signalbox.toml").write_text(
        f'[collect]\ninterval = "1s"\n[server]\nport = {port}\n[statsd]\nenabled = false\n'
    )
    (tmp_path / "flags").mkdir()
    (tmp_path / "flags" / "f.yaml").write_text(FLAGS)
    made = run(
        "users", "create", "alice", "--role", "operate", "--password-stdin",
        cwd=tmp_path, input=PASSWORD,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    store = open_flag_store(load_settings(str(tmp_path / "signalbox.toml")).store_url)
    try:
        store.set(
            "new_search", FlagChange(actors=frozenset({HOSTILE[:40].replace(",", "")})),
            by="cli (ops@host)", reason=HOSTILE, now_ms=int(time.time() * 1000),
        )  # fmt: skip
    finally:
        store.close()
    with serve_process(tmp_path, port) as base:
        yield base


def test_an_operator_switches_flags_from_the_page_audited_as_themselves(served: str) -> None:
    base = served
    with chromium() as browser:
        page = new_page(browser, height=1100)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/login?next=/flags")
        page.fill("input[name=name]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(base + "/flags")
        row = page.locator("tr[data-flag='photo_uploads']").first
        assert row.locator(".flag-state").inner_text().startswith("ON")
        assert page.locator("#audit tbody tr").count() == 1

        # a refused confirmation changes nothing
        questions: list[str] = []

        def refuse(dialog: object) -> None:
            questions.append(dialog.message)  # type: ignore[attr-defined]
            dialog.dismiss()  # type: ignore[attr-defined]

        page.once("dialog", refuse)
        row.locator("input[name=reason]").fill("db3 <b>overloaded</b>")
        row.locator("button.act-off").click()
        page.wait_for_function(
            "document.getElementById('act-status').textContent.includes('not changed')"
        )
        assert "Set flag photo_uploads to off?" in questions[0]
        assert "Off is the kill switch" in questions[0] and "Now: ON on" in questions[0]
        assert page.locator("#audit tbody tr").count() == 1

        # confirmed: switched off, audited as alice
        page.once("dialog", lambda d: d.accept())
        row.locator("button.act-off").click()
        page.wait_for_function(
            "document.querySelector(\"tr[data-flag='photo_uploads']\").dataset.switch === 'off'"
        )
        row = page.locator("tr[data-flag='photo_uploads']").first
        assert row.locator(".flag-by").inner_text() == "alice (dashboard)"
        assert row.locator(".flag-reason").inner_text() == "db3 <b>overloaded</b>"
        newest = page.locator("#audit tbody tr").nth(0).locator("td").all_inner_texts()
        assert newest[1:] == [
            "photo_uploads",
            "alice (dashboard)",
            "(declared default)",
            "off",
            "db3 <b>overloaded</b>",
        ]

        # a percentage of actors for the other flag; its allowlist is kept
        other = page.locator("#flags tr[data-flag='new_search']")
        other.locator("input[name=percent]").fill("12.5")
        other.locator("input[name=reason]").fill("wider canary")
        page.once("dialog", lambda d: d.accept())
        other.locator("button.act-percent").click()
        page.wait_for_function(
            "document.querySelector(\"#flags tr[data-flag='new_search'] .flag-actors-pct\")"
            ".textContent === '12.5%'"
        )
        status, body = fetch(f"{base}/api/v1/flags/new_search")
        flag = json.loads(body)["data"]["flag"]
        assert status == 200 and flag["updated_by"] == "alice (dashboard)"
        assert flag["state"]["percentage_of_actors"] == 12.5 and len(flag["state"]["actors"]) == 1
        assert page.locator("#audit tbody tr").count() == 3
        screenshot(page, "flags.png")

        # hostile text is text: the description, the earlier reason, the actor
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img, main script, main b").count() == 0
        assert HOSTILE in page.locator("#flags").inner_text()
        assert HOSTILE in page.locator("#audit").inner_text()
        assert errors == []
