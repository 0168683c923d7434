"""Running Nagios plugins: the real Monitoring Plugins, plus scripts that misbehave."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from signalbox.monitors.definitions.model import State
from signalbox.monitors.nagios.perfdata_metrics import perfdata_to_samples
from signalbox.monitors.nagios.plugin import run_captured, run_plugin

PLUGINS = Path("/usr/lib/nagios/plugins")
plugins = pytest.mark.peer("monitoring-plugins")


def script(tmp_path: Path, body: str, name: str = "plugin.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@plugins
@pytest.mark.parametrize(
    ("code", "state", "text"),
    [
        ("0", State.OK, "OK: all fine"),
        ("1", State.WARNING, "WARNING: all fine"),
        ("2", State.CRITICAL, "CRITICAL: all fine"),
        ("3", State.UNKNOWN, "UNKNOWN: all fine"),
    ],
)
def test_check_dummy_exit_codes_map_to_states_and_text(code: str, state: State, text: str) -> None:
    r = run_plugin([str(PLUGINS / "check_dummy"), code, "all fine"], timeout_s=10)
    assert (r.state, r.exit_code, r.output.status_text, r.reason, r.timed_out) == (
        state,
        int(code),
        text,
        "",
        False,
    )
    assert r.summary == text


@plugins
def test_check_load_perfdata_is_parsed_into_three_load_series() -> None:
    r = run_plugin(
        [str(PLUGINS / "check_load"), "-w", "1000,1000,1000", "-c", "2000,2000,2000"], timeout_s=10
    )
    assert r.state is State.OK
    assert r.output.status_text.startswith("LOAD OK")
    assert r.output.errors == ()
    assert [d.label for d in r.output.perfdata] == ["load1", "load5", "load15"]
    assert all(d.warn is not None and d.warn.end == 1000 for d in r.output.perfdata)
    names = {s.name for s in perfdata_to_samples("load", r.output.perfdata)}
    assert {"nagios_load_load1", "nagios_load_load1_warn", "nagios_load_load1_crit"} <= names


@plugins
def test_check_disk_perfdata_reports_root_in_bytes() -> None:
    r = run_plugin([str(PLUGINS / "check_disk"), "-w", "1%", "-c", "1%", "-p", "/"], timeout_s=10)
    assert r.state in (State.OK, State.WARNING, State.CRITICAL)
    assert r.output.errors == ()
    (root,) = r.output.perfdata
    assert root.label == "/" and root.value is not None and root.max is not None
    assert 0 < root.value <= root.max
    by_name = {s.name: s for s in perfdata_to_samples("disk", r.output.perfdata)}
    used = by_name[f"nagios_disk{'_bytes' if root.uom else ''}"]
    assert dict(used.labels) == {"nagios_label": "/"}
    assert used.value >= root.value  # MiB/KiB scale up, B stays


@plugins
def test_check_procs_counts_processes_in_perfdata() -> None:
    r = run_plugin([str(PLUGINS / "check_procs")], timeout_s=10)
    assert r.state is State.OK
    (procs,) = r.output.perfdata
    assert procs.label == "procs" and procs.value is not None and procs.value >= 1


@plugins
def test_a_plugin_refusing_its_arguments_is_unknown_with_its_usage_text() -> None:
    r = run_plugin([str(PLUGINS / "check_load")], timeout_s=10)
    assert (r.state, r.exit_code) == (State.UNKNOWN, 3)
    assert "Could not parse arguments" in r.output.status_text


def test_exit_code_outside_0_to_3_is_unknown_with_the_code_in_the_reason(tmp_path: Path) -> None:
    r = run_plugin([script(tmp_path, "echo 'SOMETHING odd | x=1'\nexit 7\n")], timeout_s=10)
    assert (r.state, r.exit_code) == (State.UNKNOWN, 7)
    assert "exit code 7 is not a plugin state" in r.reason
    assert r.output.status_text == "SOMETHING odd" and len(r.output.perfdata) == 1
    assert r.summary == f"SOMETHING odd ({r.reason})"


def test_timeout_kills_the_whole_process_group_and_is_unknown(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    argv = [script(tmp_path, f"sleep 60 &\necho $! > {pid_file}\necho 'still working'\nsleep 60\n")]
    r = run_plugin(argv, timeout_s=0.5)
    assert (r.state, r.timed_out) == (State.UNKNOWN, True)
    assert "timed out after 0.5s" in r.reason
    assert r.output.status_text == "still working"  # what it printed before it hung is kept
    assert 0.5 <= r.duration_s < 5
    child = int(pid_file.read_text())
    assert _gone_or_zombie(child), "the plugin's background child outlived the timeout"


def _gone_or_zombie(pid: int) -> bool:
    """SIGKILL is delivered asynchronously: wait (bounded) for the kernel to finish the kill."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            stat_line = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat_line.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


def test_missing_executable_is_unknown_naming_it(tmp_path: Path) -> None:
    r = run_plugin([str(tmp_path / "check_nothing")], timeout_s=1)
    assert (r.state, r.exit_code) == (State.UNKNOWN, None)
    assert r.reason == f"cannot run {str(tmp_path / 'check_nothing')!r}: no such file"


def test_file_without_execute_permission_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "check_plain"
    path.write_text("#!/bin/sh\necho OK\n")
    r = run_plugin([str(path)], timeout_s=1)
    assert r.state is State.UNKNOWN and "permission denied" in r.reason


def test_death_by_signal_is_unknown_naming_the_signal(tmp_path: Path) -> None:
    r = run_plugin([script(tmp_path, "kill -SEGV $$\n")], timeout_s=5)
    assert (r.state, r.exit_code) == (State.UNKNOWN, -11)
    assert "killed by signal SIGSEGV" in r.reason


def test_stderr_explains_a_plugin_that_prints_nothing_on_stdout(tmp_path: Path) -> None:
    r = run_plugin([script(tmp_path, "echo 'cannot reach db' >&2\nexit 2\n")], timeout_s=5)
    assert r.state is State.CRITICAL  # the exit code still says what the plugin meant
    assert r.reason == "no output on stdout; stderr: cannot reach db"
    assert r.stderr == "cannot reach db\n"
    assert r.summary == r.reason


def test_stderr_is_kept_but_not_the_reason_when_stdout_speaks(tmp_path: Path) -> None:
    r = run_plugin([script(tmp_path, "echo 'OK fine'\necho 'deprecated flag' >&2\n")], timeout_s=5)
    assert (r.state, r.reason, r.stderr) == (State.OK, "", "deprecated flag\n")


def test_runaway_output_is_cut_and_said_so(tmp_path: Path) -> None:
    r = run_plugin(
        [script(tmp_path, "echo 'OK lots'\nhead -c 200000 /dev/zero | tr '\\0' x\n")],
        5,
        max_output_bytes=1000,
    )
    assert r.state is State.OK
    assert r.output.status_text == "OK lots"
    assert "output cut at 1000 bytes" in r.reason


def test_env_is_what_the_plugin_sees(tmp_path: Path) -> None:
    r = run_plugin(
        [script(tmp_path, 'echo "OK $GREETING"\n')],
        5,
        env={"GREETING": "hello", "PATH": os.defpath},
    )
    assert r.output.status_text == "OK hello"


def test_empty_command_is_unknown_not_an_exception() -> None:
    r = run_plugin([], timeout_s=1)
    assert (r.state, r.reason) == (State.UNKNOWN, "empty plugin command")


def test_run_captured_feeds_large_stdin_without_deadlock() -> None:
    data = os.urandom(300_000)
    run = run_captured(["cat"], timeout_s=10, stdin=data, max_output_bytes=len(data))
    assert (run.exit_code, run.stdout, run.truncated) == (0, data, False)


def test_run_captured_tolerates_a_child_that_ignores_stdin() -> None:
    run = run_captured(["true"], timeout_s=10, stdin=b"x" * 1_000_000)
    assert (run.exit_code, run.timed_out) == (0, False)


def test_a_nul_byte_in_the_command_is_unknown_not_an_exception() -> None:
    r = run_plugin(["/bin/echo", "a\0b"], timeout_s=1)
    assert r.state is State.UNKNOWN and "embedded null byte" in r.reason
