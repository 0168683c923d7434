"""`signalbox serve` as a user runs it: real process, real HTTP, real StatsD client, real promtool."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import statsd

from tests.cli.helpers import SIGNALBOX, free_port
from tests.serving import serve_process, wait_for
from tests.stores import PG_BASE, SQL_BACKENDS, pg_schema_url


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
        return body


@dataclass(frozen=True)
class Served:
    base: str  # http://127.0.0.1:PORT
    udp: int  # the StatsD port
    root: Path  # the project folder (cwd of the process)
    pg_app: str | None  # PostgreSQL: the application_name of every connection it opens


MONITOR = """
- name: images_backlog
  description: Too many images wait for processing.
  query: image_processed
  warning: "> 10"
"""


@contextlib.contextmanager
def served(backend: str, tmp_path: Path) -> Iterator[Served]:
    """``signalbox serve`` in ``tmp_path`` on ``backend``, with one monitor, until the end."""
    port, udp = free_port(), free_port(__import__("socket").SOCK_DGRAM)
    with contextlib.ExitStack() as stack:
        store, pg_app = "", None
        if backend == "postgresql":
            pg_app = f"sbtest_serve_{uuid.uuid4().hex[:8]}"
            url = stack.enter_context(pg_schema_url())
            store = f'store = "{url}&application_name={pg_app}"\n'
        (tmp_path / "monitors").mkdir()
        (tmp_path / "monitors" / "images.yaml").write_text(MONITOR)
        (tmp_path / "signalbox.toml").write_text(
            f'{store}host = "e2e"\n[collect]\ninterval = "1s"\n[statsd]\nlisten = "127.0.0.1:{udp}"\n'
            f'[server]\nport = {port}\n[monitors]\ninterval = "1s"\n'
        )
        with serve_process(tmp_path, port) as base:
            yield Served(base, udp, tmp_path, pg_app)


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The module's ``serve`` on PostgreSQL (see :func:`server`)."""
    with served("postgresql", tmp_path_factory.mktemp("serve-pg")) as s:
        yield s


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One ``serve`` per backend for the module's tests: each writes the spool files it
    reads (files of its own where their series would meet another test's) and none stops
    or reconfigures it, and a start costs seconds on a loaded box. Its log is checked
    once, at the end (no traceback over its whole life)."""
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_server")
        return
    with served(request.param, tmp_path_factory.mktemp("serve")) as s:
        yield s


def query(base: str, expr: str) -> list[dict[str, object]]:
    body = json.loads(get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success"
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def test_spool_file_and_statsd_reach_the_api_and_metrics(server: Served) -> None:
    base, udp, root = server.base, server.udp, server.root
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
    metrics = get(base + "/metrics").decode()
    assert 'image_processed{host="e2e"} 30' in metrics
    assert "photos_uploads_total" in metrics


@pytest.mark.peer("promtool")
def test_metrics_endpoint_passes_promtool(server: Served) -> None:
    base, udp, root = server.base, server.udp, server.root
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


def test_serve_is_ready_and_shows_monitor_states_from_its_store(server: Served) -> None:
    base, root = server.base, server.root
    ready = get(base + "/-/ready")
    if server.pg_app is None:  # SQLite: one host, no election to speak of
        assert ready == b"signalbox is ready.\n"
    else:  # PostgreSQL: the only instance has elected itself
        port = base.rsplit(":", 1)[1]
        assert ready == f"signalbox is ready.\nleader: e2e:{port} (this instance)\n".encode()
    spool = root / ".signalbox" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "photos.metrics").write_text("image_processed=30\n")

    def state() -> str | None:
        body = json.loads(get(base + "/api/v1/monitors/images_backlog"))
        got: str = body["data"]["monitor"]["state"]
        return got if got == "WARNING" else None

    assert wait_for(state) == "WARNING"
    page = get(base + "/").decode()
    assert ">images_backlog<" in page and ">WARNING<" in page
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(base + "/api/v1/monitors/no_such_monitor")
    assert missing.value.code == 404
    body = json.loads(missing.value.read())
    assert body["errorType"] == "not_found" and "images_backlog" in body["error"]


@pytest.mark.service("postgresql")
def test_no_connection_of_serve_stays_idle_in_transaction(pg_server: Served) -> None:
    """The real process with its loops (collect, compact, monitors) and API on PostgreSQL:
    after requests to every read endpoint, none of its connections sits in an open
    transaction (a loop's pass may be between two statements; none lasts seconds)."""
    import psycopg

    server = pg_server
    base, root = server.base, server.root
    spool = root / ".signalbox" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    # a file and series of its own: the module's other tests read image_processed here
    (spool / "idle.metrics").write_text('idle_probe{shard="1"}=30\n')
    wait_for(lambda: query(base, "idle_probe"))
    now = time.time()
    for path in [
        "/metrics",
        "/api/v1/query?query=idle_probe",
        f"/api/v1/query_range?query=idle_probe&start={now - 60}&end={now}&step=5",
        "/api/v1/series?match[]=idle_probe",
        "/api/v1/labels",
        "/api/v1/label/shard/values",
        "/",
        "/api/v1/monitors",
        "/-/ready",
    ]:
        assert get(base + path)
    time.sleep(2.5)  # longer than any statement gap of a pass
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT state, query, now() - state_change > interval '2 seconds' "
            "FROM pg_stat_activity WHERE application_name = %s",
            (server.pg_app,),
        ).fetchall()
    assert rows, "serve's connections were not found in pg_stat_activity"
    stuck = [q for state, q, old in rows if str(state).startswith("idle in transaction") and old]
    assert stuck == [], f"left idle in transaction: {stuck}"
