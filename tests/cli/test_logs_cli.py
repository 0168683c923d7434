"""``signalbox logs trace|grep|fp`` through the real command line."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from signalbox.instrument.accesslog import AccessRecord, fingerprint, format_combined, format_json
from tests.cli.helpers import run

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
KEY = "sk_live_abc"
SECRET = "log-key-for-tests"
FP = fingerprint(KEY, SECRET.encode())


def rec(i: int, **kw: object) -> AccessRecord:
    fields: dict[str, object] = {
        "time": T0 + timedelta(seconds=i),
        "host": "www1",
        "client": "10.0.0.1",
        "method": "GET",
        "path": f"/api/{i}",
        "protocol": "HTTP/1.1",
        "status": 200,
        "request_id": f"req{i}",
        "notes": {"user_id": "5555", "api_key": FP, "api_method": "photos.search"},
    }
    fields.update(kw)
    return AccessRecord(**fields)  # type: ignore[arg-type]


def project(tmp_path: Path) -> Path:
    """A project whose config names an access log (rotated once, gzip) and an app log."""
    root = tmp_path / "p"
    (root / "logs").mkdir(parents=True)
    (root / "signalbox.toml").write_text(
        '[instrument]\naccess_log = "logs/access.log"\nkey_env = "PHOTOS_LOG_KEY"\n'
        '[logs]\nfiles = ["logs/app*.log"]\n'
    )
    old = [format_combined(rec(1)), format_json(rec(2, status=502, method="POST"))]
    (root / "logs/access.log.1.gz").write_bytes(gzip.compress(("\n".join(old) + "\n").encode()))
    hostile = rec(4, notes={"user_id": "7", "msg": "\x1b[2J<script>\n" + format_combined(rec(9))})
    new = [format_json(rec(3, status=503)), "garbage here", format_combined(hostile)]
    (root / "logs/access.log").write_text("\n".join(new) + "\n")
    (root / "logs/app.log").write_text(
        "2024-05-01T12:00:03.500000Z ERROR photos [req3]: upstream timed out \x1b[31m\n"
        "Traceback (most recent call last):\n"
        "2024-05-01T12:00:03.600000Z INFO photos [req30]: not this one\n"
    )
    return root


def test_grep_reads_both_formats_and_rotated_files_and_reports_bad_lines(tmp_path: Path) -> None:
    root = project(tmp_path)
    r = run("logs", "grep", "--status", "5xx", cwd=root)
    assert r.returncode == 0, r.stderr
    got = r.stdout.splitlines()
    assert len(got) == 2 and '"request_id":"req2"' in got[0] and '"request_id":"req3"' in got[1]
    assert "logs/access.log:2: not an access-log line" in r.stderr and "(skipped)" in r.stderr
    j = run("logs", "grep", "--api-key-fp", FP, "--method", "post", "--json", cwd=root)
    assert j.returncode == 0, j.stderr
    rows = [json.loads(x) for x in j.stdout.splitlines()]
    assert [(x["request_id"], x["line"], Path(x["file"]).name) for x in rows] == [
        ("req2", 2, "access.log.1.gz")
    ]
    u = run("logs", "grep", "--user", "5555", "--since", "2024-05-01T12:00:02Z", cwd=root)
    assert [("req2" in x, "req3" in x) for x in u.stdout.splitlines()] == [(1, 0), (0, 1)]
    # the forged line inside user 7's note is no request of its own, and prints escaped
    f = run("logs", "grep", "--request-id", "req9", cwd=root)
    assert f.returncode == 0 and f.stdout == ""
    h = run("logs", "grep", "--user", "7", cwd=root)
    assert len(h.stdout.splitlines()) == 1 and "\x1b" not in h.stdout and "\\x1b[2J" in h.stdout


def test_trace_follows_one_id_through_access_and_application_logs(tmp_path: Path) -> None:
    root = project(tmp_path)
    r = run("logs", "trace", "req3", cwd=root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert "access.log:1:" in lines[0] and '"request_id":"req3"' in lines[0]
    assert "app.log:1:" in lines[1] and "upstream timed out \\x1b[31m" in lines[1]
    assert "app.log:2: Traceback" in lines[2]
    j = run("logs", "trace", "req3", "--json", cwd=root)
    doc = json.loads(j.stdout)
    assert [x["line"] for x in doc["lines"]] == [1, 1, 2]
    assert doc["lines"][0]["record"]["status"] == 503 and doc["lines"][1]["record"] is None
    # files named on the command line instead of the config's
    named = run("logs", "trace", "req3", "logs/app.log", cwd=root)
    assert named.stdout.count("\n") == 2 and "access.log" not in named.stdout
    none = run("logs", "trace", "nope", cwd=root)
    assert none.returncode == 0 and none.stdout == "" and "no line for request nope" in none.stderr


def test_bad_input_is_a_usage_error_naming_what_was_wrong(tmp_path: Path) -> None:
    root = project(tmp_path)
    cases = [
        (("logs", "grep", "--status", "2x"), "--status '2x'"),
        (("logs", "grep", "--api-key-fp", KEY), "--api-key-fp 'sk_live_abc'"),
        (("logs", "trace", "a b"), "request id 'a b'"),
        (("logs", "trace", "x", "missing.log"), "missing.log: no such file"),
        (("logs", "grep", "--user", "1", "logs/app.log"), "no access log among the files"),
    ]
    for args, message in cases:
        r = run(*args, cwd=root)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("logs", "grep", cwd=empty)
    assert r.returncode == 2 and "no log file to read" in r.stderr


def test_fp_prints_the_fingerprint_the_middleware_logs(tmp_path: Path) -> None:
    root = project(tmp_path)
    env = {"PHOTOS_LOG_KEY": SECRET}
    r = run("logs", "fp", KEY, cwd=root, env=env)
    assert r.returncode == 0 and r.stdout.strip() == FP and "$PHOTOS_LOG_KEY" in r.stderr
    s = run("logs", "fp", "-", cwd=root, env=env, input=KEY + "\n")
    assert s.stdout.strip() == FP and KEY not in s.stderr
    g = run("logs", "grep", "--api-key-fp", r.stdout.strip(), cwd=root)
    assert len(g.stdout.splitlines()) == 3  # req1, req2, req3: req4's notes hold no key
    # without the env the key file is used (made once, then the same every time)
    a = run("logs", "fp", KEY, cwd=root)
    b = run("logs", "fp", KEY, cwd=root)
    assert a.stdout == b.stdout != r.stdout and "log.key" in a.stderr and a.returncode == 0
