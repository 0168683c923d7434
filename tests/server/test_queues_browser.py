"""The queues page in a real browser: Debian's chromium, headless, driven by Playwright,
against a real ``signalbox serve`` whose queue another process filled.

An operator signs in, sees the depth chart drawn from stored points (the jobs a gate holds
back beside the ready ones), one row per gate holding work back with its latest reading,
and the dead jobs with their errors, retries one with its button and sees it gone, pauses a
queue with a reason and sees the reason shown, and both actions in "Recent actions"; a
queue name and an error that would run script stay text. The page's screenshot lands in
``test-artifacts/queues.png``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.tasks.jobs import Dead, Deferred, NewJob
from signalbox.tasks.registry import open_queue_store
from tests.cli.helpers import free_port, run
from tests.server.browser import chromium, new_page, screenshot
from tests.serving import fetch, serve_process, wait_for

pytestmark = pytest.mark.peer("chromium")

HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
PASSWORD = "alice's long password"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A serve over a queue holding ready, deferred and dead jobs (one under a hostile name)."""
    port = free_port()
    (tmp_path / "signalbox.toml").write_text(
        f'[collect]\ninterval = "1s"\n[server]\nport = {port}\n[statsd]\nenabled = false\n'
        '[tasks]\nmetrics_interval = "1s"\n'
    )
    made = run(
        "users", "create", "alice", "--role", "operate", "--password-stdin",
        cwd=tmp_path, input=PASSWORD,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    queue = open_queue_store(load_settings(str(tmp_path / "signalbox.toml")))
    try:
        import time

        now = int(time.time() * 1000)
        ids: dict[str, int] = {}
        for name, q in (("dead1", "photos"), ("dead2", "photos"), ("evil", HOSTILE),
                        ("held", "photos"), ("held2", "photos"), ("ready1", "photos"),
                        ("ready2", "reports")):  # fmt: skip
            ids[name] = queue.enqueue(NewJob(q, "app.resize", f'[["{name}"]]', now, now)).id
        queue.claim(worker="w", now_ms=now, lease_ms=30_000, limit=5)
        # an earlier reading of the same gate: the page shows the gate once, latest reading
        queue.finish(
            [Deferred(ids["held2"], "photos", now + 3_600_000, "mysql_load",
                      "Threads_running 95 >= 50")],
            worker="w", now_ms=now - 1000,
        )  # fmt: skip
        queue.finish(
            [Dead(ids["dead1"], "photos", "Traceback ...\nOSError: disk full on /photos"),
             Dead(ids["dead2"], "photos", f"ValueError: {HOSTILE}"),
             Dead(ids["evil"], HOSTILE, f"KeyError: {HOSTILE}"),
             Deferred(ids["held"], "photos", now + 3_600_000, "mysql_load",
                      f"Threads_running 80 >= 50 {HOSTILE}")],
            worker="w", now_ms=now,
        )  # fmt: skip
    finally:
        queue.close()
    with serve_process(tmp_path, port) as base:
        # serve writes the queue metrics every second (no worker holds the lease): a line
        q = urllib.parse.quote('count_over_time(signalbox_queue_depth{queue="photos"}[1m]) >= 3')
        wait_for(lambda: json.loads(fetch(f"{base}/api/v1/query?query={q}")[1])["data"]["result"])
        yield base, ids


def test_an_operator_retries_a_dead_job_and_pauses_a_queue_from_the_page(
    served: tuple[str, dict[str, int]],
) -> None:
    base, ids = served
    with chromium() as browser:
        page = new_page(browser, height=1200)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/login?next=/queues")
        page.fill("input[name=name]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(base + "/queues")
        # the depth chart: real points from the store, a line per queue
        page.wait_for_function("Number(document.getElementById('depth-chart').dataset.points) >= 3")
        page.wait_for_selector("#depth-chart .scatterlayer .trace path.js-line", state="attached")
        legend = page.locator("#depth-chart .legendtext").all_text_contents()
        assert "photos" in legend and HOSTILE in legend, legend
        page.wait_for_function("Number(document.getElementById('age-chart').dataset.points) >= 3")
        # the jobs a gate holds back are drawn beside the ready ones (dotted, same queue)
        page.wait_for_function(
            "Number(document.getElementById('depth-chart').dataset.alsoSeries) >= 1"
        )
        legend = page.locator("#depth-chart .legendtext").all_text_contents()
        assert "photos · scheduled" in legend, legend
        # what holds work back: one row per gate, its latest reading, and the dead jobs
        held = page.locator("#holding tbody tr")
        assert held.count() == 1
        assert held.locator("td").all_inner_texts() == [
            "photos", "mysql_load", f"Threads_running 80 >= 50 {HOSTILE}", "2",
        ]  # fmt: skip
        row = page.locator(f"#dead tr[data-job='{ids['dead1']}']")
        assert "OSError: disk full on /photos" in row.inner_text()
        assert page.locator("#dead tbody tr").count() == 3
        screenshot(page, "queues.png")

        # Cancel at the reason prompt retries nothing
        page.once("dialog", lambda d: d.dismiss())
        page.locator("button.act-retry-dead[data-queue='photos']").click()
        page.once("dialog", lambda d: d.accept("  replica <i>caught</i> up "))
        row.locator("button.act-retry").click()
        page.wait_for_function(
            f"!document.querySelector(\"#dead tr[data-job='{ids['dead1']}']\")"
            " && document.readyState === 'complete'"
        )
        assert page.locator("#dead tbody tr").count() == 2
        status, body = fetch(f"{base}/api/v1/tasks/jobs/{ids['dead1']}")
        assert status == 200, body
        assert json.loads(body)["data"]["job"]["state"] == "ready", body

        form = page.locator("form.act-pause[data-queue='photos']")
        form.locator("input[name=reason]").fill("db3 <b>rebuild</b>")
        form.locator("button").click()
        page.wait_for_selector("tr[data-queue='photos'] .state.WARNING")
        state = page.locator("tr[data-queue='photos'] .paused-state").inner_text()
        assert "PAUSED" in state and "alice (dashboard): db3 <b>rebuild</b>" in state
        assert page.locator("form.act-pause[data-queue='photos'] button").inner_text() == "Resume"
        # both actions are in the recent actions, newest first, as text
        actions = page.locator("#audit tbody tr")
        assert actions.count() == 2
        assert actions.nth(0).locator("td").all_inner_texts()[1:] == [
            "alice (dashboard)", "pause", "photos", "", "1", "db3 <b>rebuild</b>",
        ]  # fmt: skip
        assert actions.nth(1).locator("td").all_inner_texts()[1:] == [
            "alice (dashboard)", "retry", "photos", str(ids["dead1"]), "1",
            "replica <i>caught</i> up",
        ]  # fmt: skip

        # hostile text is text: the queue name, errors, gate reasons, chart legends
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img, main script, main b, main i").count() == 0
        assert HOSTILE in page.locator("#queues").inner_text()
        page.goto(base + "/")
        assert page.locator("#queue-notes a", has_text="photos").get_attribute("href") == "/queues"
        assert page.evaluate("window.__pwned") is None
        assert errors == []
