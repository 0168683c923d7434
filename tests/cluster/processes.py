"""The cluster test's processes: each ``signalbox`` command in a process group of its own,
its output in a log file, and every group killed at the end, whatever became of the test.

A process group (a session of its own) rather than the process alone: a group kill also
reaches anything the command started, so a failing test leaves nothing running behind it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.cli.helpers import SIGNALBOX


class Processes:
    """Named processes started in parallel (``start`` returns at once); ``close`` kills every
    group still alive and reaps it."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``signalbox ARGV...`` (or any program, if ``argv`` starts with a path) in ``cwd``,
        stdout and stderr in ``logs/NAME.log``. SIGNALBOX_* variables of the test's own
        environment are not passed on: each process reads its own ``signalbox.toml``."""
        assert name not in self.procs, f"a process named {name} was already started"
        e = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
        e.update(env or {})
        cmd = list(argv) if argv[0].startswith("/") else [SIGNALBOX, *argv]
        with self.log_path(name).open("ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=e, stdout=out, stderr=out, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL ``name``'s whole group (the process dies without any cleanup of its own)
        and reap it."""
        proc = self.procs[name]
        _signal_group(proc, signal.SIGKILL)
        proc.wait(30)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def close(self) -> None:
        """Kill every group (a SIGKILL: the test's verdict is in already) and reap them all."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(30)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # only while the leader is not reaped yet (returncode None: alive, or a zombie): its
    # pid, the group's id, cannot have been given to another process meanwhile
    if proc.returncode is None:
        os.killpg(proc.pid, sig)
