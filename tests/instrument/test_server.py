"""Through real servers over HTTP: uvicorn (ASGI, settings from signalbox.toml) and gunicorn
with two worker processes appending to one access log (WSGI)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.ports import free_port

from signalbox.instrument.accesslog import fingerprint, parse_line

ASGI_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from signalbox.instrument import ASGIMiddleware, note

async def item(request):
    note(user_id=int(request.path_params["n"]), api_key="sk_live_1")
    return PlainTextResponse("x" * 1000)

app = ASGIMiddleware(Starlette(routes=[Route("/items/{n:int}", item)]))
"""

WSGI_APP = """
import os
from flask import Flask
from signalbox.instrument import WSGIMiddleware, flask_routes, note

app = Flask("g")

@app.get("/pid/<int:n>")
def pid(n):
    note(user_id=n, worker=os.getpid())
    return "ok"

app.wsgi_app = WSGIMiddleware(app.wsgi_app)
flask_routes(app)
"""

CONFIG = """
host = "web9"
[instrument]
access_log = "logs/access.log"
format = "{fmt}"
metrics = false
"""


def serve(cmd: list[str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SIGNALBOX_LOG_KEY": "server-key", "PYTHONPATH": str(cwd)}
    env.pop("SIGNALBOX_CONFIG", None)
    out = (cwd / "server.out").open("wb")
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            if p.poll() is not None:
                raise AssertionError((cwd / "server.out").read_text()) from None
            time.sleep(0.1)
    p.kill()
    p.wait()
    raise AssertionError("server did not start: " + (cwd / "server.out").read_text())


def stop(p: subprocess.Popen[bytes]) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r


def wait_lines(path: Path, n: int) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} lines")


def test_uvicorn_serves_through_the_middleware_configured_by_signalbox_toml(
    tmp_path: Path,
) -> None:
    (tmp_path / "signalbox.toml").write_text(CONFIG.format(fmt="json"))
    (tmp_path / "asgiapp.py").write_text(ASGI_APP)
    port = free_port()
    p = serve(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "asgiapp:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        tmp_path,
        port,
    )
    try:
        r = get(port, "/items/5?q=1", {"X-Request-ID": "uv-1", "User-Agent": "ua\x1b[31m"})
        assert r.status == 200 and r.headers["x-request-id"] == "uv-1"
        r2 = get(port, "/nowhere", {})
        assert r2.status == 404
        lines = wait_lines(tmp_path / "logs" / "access.log", 2)
    finally:
        stop(p)
    first = json.loads(lines[0])
    assert first["host"] == "web9" and first["request_id"] == "uv-1"
    rec = parse_line(lines[0])
    assert (rec.path, rec.query, rec.route, rec.status, rec.bytes) == (
        "/items/5",
        "q=1",
        "/items/{n:int}",
        200,
        1000,
    )
    assert rec.user_agent == "ua\x1b[31m" and "\x1b" not in lines[0]
    assert rec.notes == {"user_id": "5", "api_key": fingerprint("sk_live_1", b"server-key")}
    assert parse_line(lines[1]).status == 404


@pytest.mark.parametrize("fmt", ["combined"])
def test_gunicorn_workers_append_whole_lines_to_one_file(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "signalbox.toml").write_text(CONFIG.format(fmt=fmt))
    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    port = free_port()
    p = serve(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "wsgiapp:app",
        ],
        tmp_path,
        port,
    )
    n = 30
    try:
        for i in range(n):
            r = get(port, f"/pid/{i}", {"X-Request-ID": f"g-{i}"})
            assert r.status == 200 and r.headers["X-Request-ID"] == f"g-{i}"
        lines = wait_lines(tmp_path / "logs" / "access.log", n)
    finally:
        stop(p)
    recs = [parse_line(line) for line in lines]
    assert sorted(int(r.notes["user_id"]) for r in recs) == list(range(n))
    assert {r.request_id for r in recs} == {f"g-{i}" for i in range(n)}
    assert all(r.route == "/pid/<int:n>" and r.host == "web9" for r in recs)
