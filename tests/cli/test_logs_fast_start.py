"""``logs grep|trace`` started without click answer exactly as through click: the same
output, the same errors and exit codes, for every plain form and the forms click keeps; and
the fast start imports neither click, logging, the server stack nor a database driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from signalbox.cli.logs_run import _parse
from signalbox.instrument.accesslog import format_combined
from tests.cli.helpers import run
from tests.cli.test_logs_cli import FP, SECRET, project, rec

CLICK = "import sys; from signalbox.cli.base import cli; cli(prog_name='signalbox')"

FORMS: list[tuple[str, ...]] = [
    ("logs", "grep", "--status", "5xx"),
    ("logs", "grep", "--status=503", "--json"),
    ("logs", "grep", "--json", "--status", "5xx", "--status", "2xx"),  # the last one
    ("logs", "grep", "--user", "5555", "--since", "2024-05-01T12:00:02Z"),
    ("logs", "grep", "--user=7"),
    ("logs", "grep", "--user", ""),
    ("logs", "grep", "--api-key-fp", FP, "--method", "post", "--json"),
    ("logs", "grep", "--request-id", "req3", "logs/access.log", "logs/access.log.1.gz"),
    ("logs", "grep", "logs/access.log", "--method", "GET", "--until", "2024-05-01T13:00Z"),
    ("logs", "grep", "--", "logs/access.log"),
    ("logs", "grep"),
    ("--config", "signalbox.toml", "logs", "grep", "--status", "5xx"),
    ("--config=signalbox.toml", "logs", "trace", "req3"),
    ("logs", "trace", "req3"),
    ("logs", "trace", "--json", "req3"),
    ("logs", "trace", "req3", "logs/app.log"),
    ("logs", "trace", "nope"),
    # errors: the same line, exit 2
    ("logs", "grep", "--status", "2x"),
    ("logs", "grep", "--api-key-fp", "sk_live_abc"),
    ("logs", "grep", "--since", "2024-05-01T13:00Z", "--until", "1h"),
    ("logs", "trace", "a b"),
    ("logs", "trace", "x", "missing.log"),
    ("logs", "grep", "--user", "1", "logs/app.log"),
    ("--config", "nothere.toml", "logs", "grep", "--status", "5xx"),
    # forms the fast start leaves to click
    ("logs", "grep", "--help"),
    ("logs", "grep", "--user"),
    ("logs", "grep", "--user", "-x"),
    ("logs", "grep", "--nope", "1"),
    ("logs", "grep", "logs"),
    ("logs", "trace"),
    ("-v", "logs", "trace", "req3"),
    ("logs", "fp", "abc"),
]


@pytest.mark.parametrize("args", FORMS, ids=[" ".join(f) for f in FORMS])
def test_the_fast_start_answers_as_click_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    root = project(tmp_path)
    monkeypatch.chdir(root)  # _parse looks at the files named, as the command does
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    env["PHOTOS_LOG_KEY"] = SECRET
    fast = run(*args, cwd=root, env={"PHOTOS_LOG_KEY": SECRET})
    slow = subprocess.run(
        [sys.executable, "-c", CLICK, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--json" in args and fast.returncode == 0 and "trace" in args:
        assert json.loads(fast.stdout) == json.loads(slow.stdout)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        slow.returncode,
        slow.stdout,
        slow.stderr,
    )
    plain = _parse(list(args)) is not None
    assert plain == (args[-1] not in ("--help", "--user", "-x", "1", "logs", "trace", "abc")
                     and args[0] != "-v")  # fmt: skip
    if "--status" in args and "5xx" in args and "--config" not in args:
        assert fast.stdout.count("\n") >= 2  # the comparison compared something


def test_the_fast_start_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    root = project(tmp_path)
    plain = [format_combined(rec(i, status=503 if i % 3 else 200)) for i in range(50)]
    (root / "plain.log").write_text("\n".join(plain) + "\n")
    code = (
        "import sys\n"
        "from signalbox.cli.main import main\n"
        "sys.argv = ['signalbox', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = ('click', 'starlette', 'uvicorn', 'numpy', 'sqlite3', 'psycopg', 'pymysql',\n"
        "         'msgspec', 'signalbox.server', 'signalbox.storage', 'signalbox.config')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)), file=sys.stderr)\n"
        "light = ('logging', 'typing', 'hashlib', 'json', 'signalbox.instrument.accesslog')\n"
        "print([m for m in light if m in sys.modules], file=sys.stderr)\n"
    )
    # a grep of plain combined lines needs no escaping, fingerprints, JSON nor typing; a
    # trace of these logs parses JSON and malformed lines in full (accesslog), reads the
    # application log's times with signalbox.instrument.logline (which imports logging)
    anything = ["logging", "typing", "hashlib", "json", "signalbox.instrument.accesslog"]
    for args, light in (
        (("logs", "grep", "--user", "5555", "plain.log"), []),
        (("logs", "grep", "--status", "5xx", "plain.log"), []),
        (("logs", "trace", "req3", "logs/access.log", "logs/app.log"), anything),
    ):
        r = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("\n") >= 1, r.stderr
        assert r.stderr.splitlines()[-2] == "[]", (args, r.stderr)
        if not light:
            assert r.stderr.splitlines()[-1] == "[]", (args, r.stderr)
