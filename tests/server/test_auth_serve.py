"""Access control in a real ``signalbox serve``: tokens made by the CLI, used over HTTP, the
writes seen by ``monitors status``; and ``serve`` refusing to listen beyond loopback while
reads are open."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.helpers import free_port, run
from tests.serving import serve_process
from tests.stores import pg_schema_url, sqlite_url

MONITOR = """
- name: images_backlog
  description: Too many images wait for processing.
  query: image_backlog
  warning: "> 10"
"""


def test_serve_beyond_loopback_refuses_to_start_with_reads_open(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "signalbox.toml").write_text(f"[server]\nport = {port}\n")
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        r = run("serve", "--host", host, "--statsd", "127.0.0.1:0", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        shown = f"[{host}]" if ":" in host else host
        assert r.stderr.startswith(f"signalbox: refusing to serve on http://{shown}:{port}/")
        assert 'auth = "required"' in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / ".signalbox").exists()  # refused before the store was opened
    (tmp_path / "bad.toml").write_text('[server]\nauth = "yes"\n')
    bad = run("--config", str(tmp_path / "bad.toml"), "serve", cwd=tmp_path)
    assert bad.returncode == 2 and 'server.auth: expected "writes"' in bad.stderr


@contextlib.contextmanager
def project(backend: str, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(pg_schema_url())
            if backend == "postgresql"
            else sqlite_url(tmp_path)
        )
        port = free_port()
        (tmp_path / "monitors").mkdir()
        (tmp_path / "monitors" / "m.yaml").write_text(MONITOR)
        (tmp_path / "signalbox.toml").write_text(
            f'store = "{url}"\n[server]\nhost = "0.0.0.0"\nport = {port}\nauth = "required"\n'
        )
        yield tmp_path, port


def token(root: Path, role: str, name: str) -> str:
    r = run("tokens", "create", "--role", role, "--name", name, cwd=root)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def test_tokens_from_the_cli_guard_a_real_serve(backend: str, tmp_path: Path) -> None:
    output: list[str] = []
    with project(backend, tmp_path) as (root, port):
        oncall, grafana = token(root, "operate", "oncall"), token(root, "read", "grafana")
        with serve_process(root, port, output) as base, httpx.Client(base_url=base) as http:
            bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
            assert http.get("/api/v1/monitors").status_code == 401  # loopback, auth required
            assert http.get("/-/ready").status_code == 200
            assert http.get("/api/v1/monitors", headers=bearer(grafana)).status_code == 200
            denied = http.post(
                "/api/v1/monitors/images_backlog/silence",
                json={"duration": "30m", "reason": "reindexing"},
                headers=bearer(grafana),
            )
            assert denied.status_code == 403
            r = http.post(
                "/api/v1/monitors/images_backlog/silence",
                json={"duration": "30m", "reason": "reindexing"},
                headers=bearer(oncall),
            )
            assert r.status_code == 200, r.text

            status = run("monitors", "status", "--json", cwd=root)
            assert status.returncode == 0, status.stderr
            (monitor,) = json.loads(status.stdout)["monitors"]
            (silence,) = monitor["silences"]
            assert (silence["by"], silence["reason"]) == ("oncall (token #1)", "reindexing")
            used = json.loads(run("tokens", "list", "--json", cwd=root).stdout)
            assert all(t["last_used_ms"] is not None for t in used)

            assert run("tokens", "revoke", "2", cwd=root).returncode == 0
            gone = http.get("/api/v1/monitors", headers=bearer(grafana))
            assert gone.status_code == 401 and "token #2 was revoked" in gone.text
    log = output[0]
    assert "refused revoked token #2 'grafana' (read)" in log
    assert oncall not in log and grafana not in log
