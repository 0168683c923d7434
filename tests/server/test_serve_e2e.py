"""`signalbox serve` as a user runs it: real process, real HTTP, real StatsD client, real promtool."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import statsd

from tests.cli.helpers import SIGNALBOX, free_port


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
        return body


def wait_for(fn, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    port, udp = free_port(), free_port(__import__("socket").SOCK_DGRAM)
    (tmp_path / "signalbox.toml").write_text(
        f'host = "e2e"\n[collect]\ninterval = "1s"\n[statsd]\nlisten = "127.0.0.1:{udp}"\n[server]\nport = {port}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    proc = subprocess.Popen(
        [SIGNALBOX, "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(base + "/-/healthy"))
        yield base, udp, tmp_path
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode in (0, -15), out.decode(errors="replace")


def query(base: str, expr: str) -> list[dict[str, object]]:
    body = json.loads(get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success"
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def test_spool_file_and_statsd_reach_the_api_and_metrics(server: tuple[str, int, Path]) -> None:
    base, udp, root = server
    spool = root / ".signalbox" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / ".photos.tmp").write_text("image_processed=30\nimage_processing_time=5\n")
    os.replace(spool / ".photos.tmp", spool / "photos.metrics")
    client = statsd.StatsClient("127.0.0.1", udp, prefix="photos")
    client.incr("uploads", 3)
    client.gauge("active_users", 42)
    client.timing("resize", 120)
    client.close()

    got = wait_for(lambda: query(base, "image_processed"))
    assert got[0]["metric"] == {"__name__": "image_processed", "host": "e2e"}
    assert got[0]["value"][1] == "30"  # type: ignore[index]
    up = wait_for(lambda: query(base, "photos_uploads_total"))
    assert up[0]["value"][1] == "3"  # type: ignore[index]
    assert wait_for(lambda: query(base, "photos_active_users"))[0]["value"][1] == "42"  # type: ignore[index]


@pytest.mark.peer("promtool")
def test_metrics_endpoint_passes_promtool(server: tuple[str, int, Path]) -> None:
    base, udp, root = server
    spool = root / ".signalbox" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "app.prom").write_text(
        '# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{queue="a\\"b"} 7\n'
        "# TYPE queue_depth gauge\nqueue_depth 3\n"
    )
    (spool / "kv.metrics").write_text('weird_label{v="line\\nbreak and \\\\ slash"}=1.5\n')
    sc = statsd.StatsClient("127.0.0.1", udp)
    sc.timing("latency", 12)
    sc.close()
    wait_for(
        lambda: (
            query(base, "jobs_total")
            and query(base, "weird_label")
            and query(base, "latency_seconds_count")
        )
    )
    text = get(base + "/metrics")
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert r.returncode == 0, (r.stdout + r.stderr).decode() + "\n---\n" + text.decode()
    assert b'jobs_total{host="e2e",queue="a\\"b"} 7' in text


def test_a_taken_port_is_a_clear_error_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "signalbox.toml").write_text(
            f"[statsd]\nenabled = false\n[server]\nport = {port}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
        r = subprocess.run(
            [SIGNALBOX, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert r.returncode == 2
    assert f"cannot listen on http://127.0.0.1:{port}/" in r.stderr and "--port" in r.stderr
    assert not (tmp_path / ".signalbox").exists()  # nothing was started or created
