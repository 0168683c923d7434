"""``serve --demo`` gives ``signalbox logs`` real lines: its photo site runs behind the
middleware on a loopback port and simulated users and partner apps call it over HTTP."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from signalbox.demo.webapp import API_KEYS
from tests.cli.helpers import run
from tests.cli.test_demo import Demo


def test_the_demo_writes_access_and_app_lines_that_logs_finds(tmp_path: Path) -> None:
    folder = tmp_path / "try"
    folder.mkdir()
    access = folder / ".signalbox" / "access.log"
    demo = Demo(folder)
    try:
        deadline = time.monotonic() + 30
        while not access.exists() or access.read_text().count("- 5555 [") < 3:
            assert time.monotonic() < deadline, demo.err.read_text()
            time.sleep(0.2)
        found = run("logs", "grep", "--user", "5555", "--json", cwd=folder)
        assert found.returncode == 0, found.stderr
        rows = [json.loads(x) for x in found.stdout.splitlines()]
        assert rows and all(r["notes"]["user_id"] == "5555" for r in rows)
        api = run("logs", "grep", "--json", "--since", "5m", cwd=folder)
        notes = [json.loads(x)["notes"] for x in api.stdout.splitlines()]
        keyed = [n for n in notes if "api_key" in n]
        assert keyed and all(n["api_key"].startswith("fp:") for n in keyed)
        assert not any(k in api.stdout for k in API_KEYS), "no API key in clear"
        fp = run("logs", "fp", "demo-key-partner", cwd=folder).stdout.strip()
        assert fp in {n["api_key"] for n in keyed} or not any(n.get("api_method") for n in keyed)
        # a request's id leads to its access line and the app's line, the app's in its file
        every = [json.loads(x) for x in api.stdout.splitlines()]
        rid = [r for r in every if r["route"] == "/photos/{user}"][-1]["request_id"]
        trace = run("logs", "trace", rid, cwd=folder)
        assert trace.returncode == 0, trace.stderr
        lines = trace.stdout.splitlines()
        assert "access.log" in lines[0] and f'request_id="{rid}"' in lines[0]
        assert any("demo-photos.log" in x and f"[{rid}] INFO demo.photos" in x for x in lines)
        # its request metrics reach the store through the collector
        deadline = time.monotonic() + 30
        while True:
            q = run(
                "query", "sum(http_requests_total{route='/photos/{user}'})", "--json", cwd=folder
            )
            if q.returncode == 0 and json.loads(q.stdout)["result"]:
                break
            assert time.monotonic() < deadline, q.stdout + q.stderr
            time.sleep(1)
    finally:
        code = demo.stop(signal.SIGTERM)
    assert code == 0, demo.err.read_text()
    assert list((folder / ".signalbox" / "spool").glob("*.metrics")) == []
