"""Monitor states over HTTP and on the index, read from the monitor store after real passes."""

from __future__ import annotations

from pathlib import Path

from signalbox.metrics.samples import Sample
from signalbox.monitors.status import build_status
from tests.server.conftest import NOW, Site, open_site

MONITORS = """
- name: disk_full
  description: A disk is nearly full.
  owner: ops
  query: disk_used_ratio
  warning: "> 0.8"
  critical: "> 0.95"
- name: queue_slow
  description: Jobs wait too long.
  query: queue_wait_seconds
  critical: "> 60"
- name: never_run
  description: Added after the last pass.
  query: nothing_yet
  critical: "> 1"
"""

EVALUATED = MONITORS.split("- name: never_run")[0]  # the files at the time of the passes
T0 = int(NOW * 1000) - 120_000


def evaluate(site: Site) -> None:
    """Two passes a minute apart: /var goes critical, a label carrying markup stays OK."""
    for i, (var, weird, wait) in enumerate([(0.5, 0.1, 5.0), (0.99, 0.2, 90.0)]):
        at = T0 + i * 60_000
        site.store.write(
            [
                Sample("disk_used_ratio", (("mount", "/var"),), var, at),
                Sample("disk_used_ratio", (("mount", "<script>x</script>"),), weird, at),
                Sample("queue_wait_seconds", (), wait, at),
            ],
            at,
        )
        site.runner.run_pass(at)
    # the third monitor is new in the files: loaded, never evaluated
    (site.monitors_dir / "m.yaml").write_text(MONITORS)


def test_monitors_list_is_the_status_report_of_the_store(backend: str, tmp_path: Path) -> None:
    with open_site(backend, tmp_path, monitors_yaml=EVALUATED) as site:
        evaluate(site)
        with site.client() as c:
            r = c.get("/api/v1/monitors")
        expected = build_status(site.runner, site.services.now_ms()).to_dict()
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success" and body["data"] == expected
    by_name = {m["name"]: m for m in body["data"]["monitors"]}
    assert by_name["disk_full"]["state"] == "CRITICAL"
    assert {s["labels"]["mount"]: s["state"] for s in by_name["disk_full"]["series"]} == {
        "/var": "CRITICAL",
        "<script>x</script>": "OK",
    }
    assert by_name["queue_slow"]["state"] == "CRITICAL"
    assert by_name["never_run"]["series"] == [] and by_name["never_run"]["loaded"] is True


def test_one_monitor_with_its_history(backend: str, tmp_path: Path) -> None:
    with open_site(backend, tmp_path, monitors_yaml=EVALUATED) as site:
        evaluate(site)
        with site.client() as c:
            r = c.get("/api/v1/monitors/disk_full")
            limited = c.get("/api/v1/monitors/disk_full", params={"limit": "1"})
            recent = c.get("/api/v1/monitors/disk_full", params={"since": "30s"})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["monitor"]["name"] == "disk_full" and data["monitor"]["owner"] == "ops"
    transitions = [(e["labels"], e["from"], e["to"]) for e in data["history"]]
    assert ({"mount": "/var"}, "OK", "CRITICAL") in transitions
    assert data["history"] == sorted(data["history"], key=lambda e: e["at_ms"])
    assert len(limited.json()["data"]["history"]) == 1
    assert limited.json()["data"]["history"][0] == data["history"][-1]  # the newest kept
    assert recent.json()["data"]["history"] == []  # the passes were 1 and 2 minutes ago


def test_unknown_monitor_is_404_naming_the_known_ones(backend: str, tmp_path: Path) -> None:
    with open_site(backend, tmp_path, monitors_yaml=MONITORS) as site, site.client() as c:
        r = c.get("/api/v1/monitors/disk_ful")
    assert r.status_code == 404
    body = r.json()
    assert body["errorType"] == "not_found"
    assert body["error"] == (
        "no monitor named 'disk_ful' (known: disk_full, never_run, queue_slow)"
    )


def test_bad_history_parameters_are_400_naming_the_parameter(tmp_path: Path) -> None:
    with open_site("memory", tmp_path, monitors_yaml=MONITORS) as site, site.client() as c:
        for params, fragment in [
            ({"since": "soon"}, "invalid parameter 'since'"),
            ({"limit": "0"}, "invalid parameter 'limit'"),
            ({"limit": "many"}, "got 'many'"),
            ({"limit": "1001"}, "from 1 to 1000"),
        ]:
            r = c.get("/api/v1/monitors/disk_full", params=params)
            assert r.status_code == 400, params
            assert r.json()["errorType"] == "bad_data"
            assert fragment in r.json()["error"]


def test_index_shows_monitor_states_from_the_store_worst_first_escaped(
    backend: str, tmp_path: Path
) -> None:
    with open_site(backend, tmp_path, monitors_yaml=EVALUATED) as site:
        evaluate(site)
        with site.client() as c:
            page = c.get("/").text
    assert "<script>x" not in page
    assert "mount=&#34;&lt;script&gt;x&lt;/script&gt;&#34;" in page
    var_row = page.index("mount=&#34;/var&#34;")
    script_row = page.index("&lt;script&gt;")
    assert var_row < script_row  # CRITICAL before OK within a monitor
    assert page.index(">disk_full<") < page.index(">never_run<")  # evaluated before not yet
    assert "not evaluated yet" in page
    assert 'href="/monitors/disk_full"' in page
    assert "disk_used_ratio" in page and "queue_wait_seconds" in page  # the metric list


def test_index_reads_states_not_the_state_gauge(tmp_path: Path) -> None:
    """A stray ``signalbox_monitor_state`` series (another host, an old name) shows as a
    metric, not as a monitor: the table comes from the monitor store only."""
    with open_site("sqlite", tmp_path, monitors_yaml=MONITORS) as site:
        t = int(NOW * 1000)
        site.store.write(
            [Sample("signalbox_monitor_state", (("monitor", "ghost_monitor"),), 2.0, t)], t
        )
        with site.client() as c:
            page = c.get("/").text
    assert "ghost_monitor" not in page
    assert "signalbox_monitor_state" in page
    assert page.count("not evaluated yet") == 3
