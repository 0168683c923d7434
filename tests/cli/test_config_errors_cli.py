"""A bad ``[notifiers.NAME]`` stops every command that loads the config: exit 2, the error
naming file and key, no secret in it. Through the real ``signalbox`` executable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import free_port, run
from tests.monitors.notify.notify_helpers import Receiver, receiver

__all__ = ["receiver"]

MONITOR = """
- name: resize_slow
  description: Resizes slower than users tolerate.
  query: latency
  critical: "> 8"
  notify: [pager]
"""

BAD_NOTIFIERS = {
    "unknown type": ('type = "slack"\nurl = "https://hooks.example/x"\n', "notifiers.pager.type"),
    "webhook without url": ('type = "webhook"\n', "notifiers.pager.url"),
    "wrong-typed key": (
        'type = "webhook"\nurl = "https://hooks.example/T0/hunter2"\ntimeout = true\n',
        "notifiers.pager.timeout",
    ),
    "unknown key": (
        'type = "webhook"\nurl = "https://hooks.example/T0/hunter2"\ntoken = "hunter2"\n',
        "notifiers.pager.token",
    ),
}

COMMANDS = {
    "monitors lint": ["monitors", "lint"],
    "monitors run": ["monitors", "run", "--once"],
    "monitors status": ["monitors", "status"],
    "query": ["query", "latency"],
    "collect": ["collect", "--once"],
    "serve": ["serve", "--port", "0"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(BAD_NOTIFIERS))
def test_a_bad_notifier_is_a_config_error_for_every_command(
    tmp_path: Path, case: str, command: str
) -> None:
    table, key = BAD_NOTIFIERS[case]
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "m.yaml").write_text(MONITOR)
    cfg = tmp_path / "signalbox.toml"
    cfg.write_text("[notifiers.pager]\n" + table)
    args = [a if a != "0" else str(free_port()) for a in COMMANDS[command]]
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith(f"signalbox: {cfg}: {key}: expected "), r.stderr
    assert "hunter2" not in r.stderr + r.stdout


def test_a_secret_missing_from_the_environment_holds_its_rows_until_a_run_that_has_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A secret named by the config but absent from this shell is not a load error: lint
    (as in CI) passes; `monitors run` logs the notifier as unusable and keeps its rows
    untried; the next run with the secret delivers them."""
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "m.yaml").write_text(MONITOR)
    (tmp_path / "signalbox.toml").write_text(
        f'[notifiers.pager]\ntype = "webhook"\nurl = "{receiver.url}/hook"\n'
        'headers_from_env = {Authorization = "PAGER_AUTH"}\n'
    )
    lint = run("monitors", "lint", cwd=tmp_path)
    assert lint.returncode == 0, lint.stderr
    assert run("send", "latency=9", cwd=tmp_path).returncode == 0
    assert run("collect", "--once", cwd=tmp_path).returncode == 0
    r = run("monitors", "run", "--once", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "notifiers.pager.headers_from_env.Authorization" in r.stderr
    assert "1 notifications queued, 0 sent, 1 failed" in r.stdout
    status = run("monitors", "status", cwd=tmp_path)
    assert "-> pager: attempt 0" in status.stdout, status.stdout
    assert receiver.requests == []
    r = run("monitors", "run", "--once", cwd=tmp_path, env={"PAGER_AUTH": "Bearer t0ken"})
    assert r.returncode == 0 and "0 notifications queued, 1 sent, 0 failed" in r.stdout, r
    (request,) = receiver.requests
    assert request.headers["Authorization"] == "Bearer t0ken"
