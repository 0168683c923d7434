"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright (its
``executable_path``: nothing is downloaded), against a real ``signalbox serve``.

Screenshots of the pages land in ``test-artifacts/`` (``SIGNALBOX_ARTIFACTS`` elsewhere),
for people to look at; the tests assert on the DOM, not on pixels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import free_port
from tests.server.browser import chromium, new_page, screenshot
from tests.serving import fetch, serve_process, wait_for

pytestmark = pytest.mark.peer("chromium")

# a label value that would run script if it reached the page as HTML, in any of the ways a
# page can take it (element text, attribute, Plotly's legend, which reads a little HTML)
HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A serve collecting every second from a spool holding a counter and a hostile label."""
    root = tmp_path_factory.mktemp("dash")
    port = free_port()
    (root / "signalbox.toml").write_text(
        f'host = "web1"\n[collect]\ninterval = "1s"\n[server]\nport = {port}\n'
        "[statsd]\nenabled = false\n"
    )
    spool = root / ".signalbox" / "spool"
    spool.mkdir(parents=True)
    escaped = HOSTILE.replace("\\", "\\\\").replace('"', '\\"')
    (spool / "app.metrics").write_text(
        f'requests_total{{path="/home"}}=10\nrequests_total{{path="/api"}}=3\n'
        f'xss_probe{{evil="{escaped}"}}=1\n'
    )
    with serve_process(root, port) as base:

        def stored() -> bool:  # a few passes: every series has a line, not a lone point
            got = 0
            for name in ("requests_total", "xss_probe"):
                q = f"count_over_time({name}[1m]) >= 3"
                status, text = fetch(base + "/api/v1/query?query=" + q.replace(" ", "%20"))
                got += len(json.loads(text)["data"]["result"]) if status == 200 else 0
            return got == 3

        wait_for(stored)
        yield base


def _page(browser: Any) -> Any:
    page = new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


def _shot(page: Any, name: str) -> None:
    screenshot(page, name)


def test_the_explorer_draws_the_query_in_the_url_as_a_chart(browser: Any, served: str) -> None:
    page = _page(browser)
    page.goto(served + "/explore?query=requests_total&range=15m")
    page.wait_for_function("Number(document.getElementById('chart').dataset.points) >= 6")
    assert page.locator("#chart").get_attribute("data-series") == "2"
    # Plotly drew two lines with real points, and a legend naming both series
    page.wait_for_selector("#chart .scatterlayer .trace path.js-line", state="attached")
    lines = page.locator("#chart .scatterlayer .trace path.js-line")
    assert lines.count() == 2
    assert all("L" in (lines.nth(i).get_attribute("d") or "") for i in range(2))  # segments
    legend = page.locator("#chart .legendtext").all_text_contents()
    assert sorted(legend) == [
        'requests_total{host="web1", path="/api"}',
        'requests_total{host="web1", path="/home"}',
    ], legend
    assert "2 series" in page.locator("#status").inner_text()
    # the view is shareable: the form's state is in the URL
    page.select_option("#range", "1h")
    page.wait_for_function("location.search.includes('range=1h')")
    assert "query=requests_total" in page.url
    _shot(page, "explore.png")
    assert page.errors == []


def test_a_query_error_is_shown_not_thrown(browser: Any, served: str) -> None:
    page = _page(browser)
    page.goto(served + "/explore?query=" + "rate(requests_total)")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Error')")
    assert "rate" in page.locator("#status").inner_text()
    assert page.errors == []


def test_a_script_in_a_label_value_does_not_run(browser: Any, served: str) -> None:
    page = _page(browser)
    page.goto(served + "/explore?query=xss_probe&range=15m")
    page.wait_for_function("Number(document.getElementById('chart').dataset.points) >= 1")
    page.wait_for_selector("#chart .legendtext")
    page.locator("details.labels summary").click()
    page.wait_for_selector("#label-browser .chip")
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert page.evaluate("window.__pwned") is None
    # shown as text, everywhere it is shown
    assert HOSTILE in (page.locator("#chart .legendtext").text_content() or "")
    assert HOSTILE in page.locator("#label-browser").inner_text()
    assert page.locator("#chart img, #label-browser img, #chart script").count() == 0
    assert page.errors == []


def test_the_overview_lists_metrics_linking_to_the_explorer(browser: Any, served: str) -> None:
    page = _page(browser)
    page.goto(served + "/")
    link = page.locator("ul.names a", has_text="requests_total")
    assert link.get_attribute("href") == "/explore?query=requests_total"
    assert page.locator(".card .big").first.inner_text() == "0"  # nothing firing
    _shot(page, "overview.png")
    page.emulate_media(color_scheme="dark")
    _shot(page, "overview-dark.png")
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_static_files_are_a_fixed_set(served: str) -> None:
    status, body = fetch(served + "/static/plotly.min.js")
    assert status == 200 and "plotly" in body[:2000].lower()
    for name in ("..%2f..%2fpyproject.toml", "..%2Fapp.py", "missing.js", "%2e%2e"):
        status, body = fetch(served + "/static/" + name)
        assert status == 404, (name, status)
        assert json.loads(body)["errorType"] == "not_found"


DISK_MONITOR = """\
# the disk monitor, as reviewed
- name: disk_full
  description: "Disk <img src=x onerror=window.__pwned=3> fills up"
  owner: ops
  runbook: https://wiki.example/disk
  query: max by (mount) (disk_used_ratio)
  warning: "> 0.8"
  critical: "> 0.9"
- name: other
  description: another monitor, after it in the file
  query: disk_used_ratio
  warning: "> 2"
"""


@pytest.fixture(scope="module")
def firing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A serve whose disk monitor is CRITICAL."""
    root = tmp_path_factory.mktemp("mon")
    port = free_port()
    (root / "signalbox.toml").write_text(
        f'host = "web1"\n[collect]\ninterval = "1s"\n[monitors]\ninterval = "1s"\n'
        f"[server]\nport = {port}\n[statsd]\nenabled = false\n"
    )
    spool = root / ".signalbox" / "spool"
    spool.mkdir(parents=True)
    (spool / "disk.metrics").write_text('disk_used_ratio{mount="/var"}=0.97\n')
    (root / "monitors").mkdir()
    (root / "monitors" / "disk.yaml").write_text(DISK_MONITOR)
    with serve_process(root, port) as base:

        def critical() -> bool:
            status, text = fetch(base + "/api/v1/monitors")
            if status != 200:
                return False
            states = {m["name"]: m["state"] for m in json.loads(text)["data"]["monitors"]}
            return states.get("disk_full") == "CRITICAL"

        wait_for(critical)
        yield base


def test_a_firing_monitor_shows_its_thresholds_history_and_source(
    browser: Any, firing: str
) -> None:
    page = _page(browser)
    page.goto(firing + "/")
    page.locator("table.grid a", has_text="disk_full").first.click()
    page.wait_for_url("**/monitors/disk_full")
    assert page.locator("h1.title .state").inner_text() == "CRITICAL"
    # the query's chart, with the warning and critical lines on it
    page.wait_for_function("Number(document.getElementById('chart').dataset.thresholds) === 2")
    notes = page.locator("#chart .annotation-text").all_text_contents()
    assert sorted(notes) == ["critical > 0.9", "warning > 0.8"], notes
    assert "OK → CRITICAL" in page.locator("#history").inner_text()
    source = page.locator("pre.source").inner_text()
    assert source.startswith("- name: disk_full") and 'critical: "> 0.9"' in source
    assert "name: other" not in source  # only its own lines
    # hostile text in the definition is text
    assert "<img src=x" in page.locator("main > p").nth(1).inner_text()
    assert page.locator("main img").count() == 0
    assert (
        page.locator("a", has_text="runbook").get_attribute("href") == "https://wiki.example/disk"
    )
    _shot(page, "monitor.png")
    # a replay over the last day, from the page
    page.select_option("select[name=backtest]", "1d")
    page.locator("form[action='/monitors/disk_full'] button").click()
    page.wait_for_url("**backtest=1d")
    assert "1 incident" in page.locator("main").inner_text()
    assert page.locator("#backtest td .state").first.inner_text() == "CRITICAL"
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_a_write_without_credentials_is_refused_on_the_page(browser: Any, firing: str) -> None:
    """Writes need an operate token or a signed-in user even on loopback: the button says so
    and nothing changes."""
    page = _page(browser)
    page.goto(firing + "/monitors/disk_full")
    page.fill("#act-silence input[name=reason]", "disk swap tonight")
    page.locator("#act-silence button").click()
    page.wait_for_function("document.getElementById('act-status').textContent.includes('refused')")
    assert "(401)" in page.locator("#act-status").inner_text()
    status, text = fetch(firing + "/api/v1/monitors")
    assert status == 200
    [disk] = [m for m in json.loads(text)["data"]["monitors"] if m["name"] == "disk_full"]
    assert disk["silences"] == []
    assert page.errors == []


def test_an_unknown_monitor_page_is_a_404_naming_the_known_ones(firing: str) -> None:
    status, body = fetch(firing + "/monitors/nope")
    assert status == 404 and "disk_full" in body


def test_the_backtest_api_replays_a_monitor(firing: str) -> None:
    status, body = fetch(firing + "/api/v1/monitors/disk_full/backtest?since=1d")
    assert status == 200, body
    [m] = json.loads(body)["data"]["monitors"]
    assert m["name"] == "disk_full" and m["incidents"][0]["severity"] == "CRITICAL"
    for bad, code in (("since=500d", 400), ("since=soon", 400)):
        status, body = fetch(firing + "/api/v1/monitors/disk_full/backtest?" + bad)
        assert status == code and "since" in json.loads(body)["error"], body
    status, body = fetch(firing + "/api/v1/monitors/nope/backtest")
    assert status == 404 and "disk_full" in body


def test_pages_forbid_foreign_scripts_and_framing_and_json_is_never_sniffed(served: str) -> None:
    import urllib.request

    with urllib.request.urlopen(served + "/explore") as r:
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    with urllib.request.urlopen(served + "/api/v1/query?query=up") as r:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "same-origin"
        assert r.headers["Content-Security-Policy"] is None  # JSON: not a document to police


def test_the_explorer_runs_under_its_content_security_policy(browser: Any, served: str) -> None:
    """Plotly draws without eval or inline script: nothing the policy refuses."""
    page = new_page(browser, csp=True)
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(served + "/explore?query=requests_total&range=15m")
    lines = page.locator("#chart .scatterlayer .trace path.js-line")
    lines.first.wait_for(state="attached")
    assert lines.count() == 2
    assert page.locator("#chart .legendtext").count() == 2
    assert refused == []


def test_every_page_runs_under_its_content_security_policy(
    browser: Any, served: str, firing: str
) -> None:
    page = new_page(browser, csp=True)
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    for url, drawn in (
        (served + "/", "ul.names a"),
        (served + "/login", "form[action='/login']"),
        (firing + "/monitors/disk_full", "#chart .shapelayer path"),  # its threshold lines
        (firing + "/monitors/disk_full", "#timeline .scatterlayer .trace"),
    ):
        page.goto(url)
        page.locator(drawn).first.wait_for(state="attached")
    assert refused == []


def test_a_staleness_monitor_page_draws_no_query_it_does_not_have(tmp_path: Path) -> None:
    """A staleness check's subject is a description ("age of spool file ..."), not PromQL:
    its page shows the monitor without a chart that would query it."""
    from signalbox.server.dashboard import monitor_page_data
    from tests.server.conftest import open_site

    yaml = (
        "- name: app_alive\n  description: the app rewrites its file\n"
        '  stale: {spool_file: "app-*.metrics", after: 1m}\n'
    )
    with open_site("sqlite", tmp_path, monitors_yaml=yaml) as site:
        page = site.client().get("/monitors/app_alive")
        data = monitor_page_data(site.services, "app_alive", None)
    assert page.status_code == 200 and 'id="chart"' not in page.text
    assert data["query"] == "" and str(data["source"]).startswith("- name: app_alive")


def test_a_monitor_chart_of_many_points_is_decimated_svg_and_keeps_its_spike(
    browser: Any, firing: str
) -> None:
    """The monitor page draws 30 series x 1,000 points as SVG lines decimated per pixel
    column (no WebGL, which took seconds a frame without a GPU); the one sample far above the
    rest, crossing the critical line, is still the top of the drawn chart. The page under test
    is real; its query answer is made here (Playwright's route) so the points are known."""
    series, points, spike_at = 30, 1000, 617
    end = time.time()
    answer = []
    for k in range(series):
        values = [
            [end - (points - i) * 6, str(0.5 + 0.01 * ((i * 7 + k) % 13))] for i in range(points)
        ]
        if k == 11:
            values[spike_at][1] = "7.5"
        answer.append({"metric": {"__name__": "disk_used", "dev": f"sd{k}"}, "values": values})
    body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": answer}})
    page = _page(browser)
    page.set_viewport_size({"width": 900, "height": 800})
    page.route(
        "**/api/v1/query_range?**",
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    page.goto(firing + "/monitors/disk_full")
    page.wait_for_function("Number(document.getElementById('chart').dataset.points) > 0")
    assert page.locator("#chart").get_attribute("data-points") == str(series * points)
    drawn = int(page.locator("#chart").get_attribute("data-drawn") or 0)
    assert 0 < drawn < series * points  # fewer columns than points: decimated
    assert page.locator("#chart .gl-container canvas").count() == 0
    assert page.locator("#chart .scatterlayer .trace").count() == series
    top = page.evaluate(
        "Math.max(...document.getElementById('chart').data.map(t => Math.max(...t.y)))"
    )
    low = page.evaluate(
        "Math.min(...document.getElementById('chart').data.map(t => Math.min(...t.y)))"
    )
    assert (top, low) == (7.5, 0.5)  # the spike and the lowest point both drawn
    _shot(page, "monitor-many-points.png")
    assert page.errors == []
