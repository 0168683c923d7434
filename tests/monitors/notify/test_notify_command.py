"""Command notifier: a real program gets the payload on stdin and in its environment."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from signalbox.monitors.notify import (
    CommandNotifier,
    NotifyError,
    build_notifier,
    notification_env,
    to_payload,
)
from tests.monitors.notify.notify_helpers import MakeNotification


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "notify.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_the_program_gets_json_on_stdin_and_facts_in_its_environment(
    tmp_path: Path, notification: MakeNotification
) -> None:
    out = tmp_path / "out"
    argv = [
        script(tmp_path, f"cat > {out}.json\nenv | grep ^SIGNALBOX_ | sort > {out}.env\n"),
        "--team",
        "photos",
    ]
    n = notification()
    CommandNotifier("page", argv, environ={"PATH": os.defpath}).send(n)
    assert json.loads((tmp_path / "out.json").read_text()) == to_payload(n)
    env = dict(line.split("=", 1) for line in (tmp_path / "out.env").read_text().splitlines())
    assert env == notification_env(n)
    assert env["SIGNALBOX_MONITOR"] == "image_processing_slow"
    assert env["SIGNALBOX_STATE"] == "CRITICAL"
    assert env["SIGNALBOX_DRILL"] == "false"
    assert json.loads(env["SIGNALBOX_LABELS"]) == {"shard": "7"}


def test_a_drill_is_marked_in_the_environment(notification: MakeNotification) -> None:
    env = notification_env(notification(kind="drill"))
    assert env["SIGNALBOX_DRILL"] == "true" and env["SIGNALBOX_TITLE"].startswith("[TEST]")


def test_the_base_environment_is_kept_so_the_program_finds_its_tools(
    tmp_path: Path, notification: MakeNotification
) -> None:
    out = tmp_path / "out"
    argv = [script(tmp_path, f'echo "$TEAM_TOKEN" > {out}\n')]
    CommandNotifier("page", argv, environ={"TEAM_TOKEN": "t1", "PATH": os.defpath}).send(
        notification()
    )
    assert out.read_text() == "t1\n"


@pytest.mark.parametrize(
    ("code", "retryable"),
    [(1, True), (7, True), (75, True), (64, False), (78, False), (127, False)],
)
def test_non_zero_exit_is_an_error_with_stderr_and_a_retry_verdict(
    tmp_path: Path, notification: MakeNotification, code: int, retryable: bool
) -> None:
    argv = [script(tmp_path, f"echo 'pager API said no' >&2\nexit {code}\n")]
    with pytest.raises(NotifyError) as info:
        CommandNotifier("page", argv).send(notification())
    assert info.value.retryable is retryable
    assert info.value.reason == f"{argv[0]!r} exited with {code}; stderr: pager API said no"


def test_a_hanging_program_is_killed_after_the_timeout(
    tmp_path: Path, notification: MakeNotification
) -> None:
    with pytest.raises(NotifyError, match=r"timed out after 0\.3s") as info:
        CommandNotifier("page", [script(tmp_path, "sleep 60\n")], timeout_s=0.3).send(
            notification()
        )
    assert info.value.retryable is True


def test_a_missing_program_is_not_retryable(tmp_path: Path, notification: MakeNotification) -> None:
    with pytest.raises(NotifyError, match="cannot run") as info:
        CommandNotifier("page", [str(tmp_path / "nope")]).send(notification())
    assert info.value.retryable is False


def test_a_command_string_is_split_like_a_shell_would(
    tmp_path: Path, notification: MakeNotification
) -> None:
    out = tmp_path / "out file"
    prog = script(tmp_path, 'printf "%s|" "$@" > "$1"\n')
    notifier = build_notifier("page", {"type": "command", "command": f"{prog} '{out}' 'two words'"})
    notifier.send(notification())
    assert out.read_text() == f"{out}|two words|"
