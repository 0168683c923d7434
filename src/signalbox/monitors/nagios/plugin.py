"""Run a Nagios/Monitoring Plugins check the way Nagios does, and say clearly what happened.

A plugin reports through its exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and its
first line of stdout. Everything else (a missing executable, an exit code outside 0-3, a
signal, a hang) is UNKNOWN with a ``reason`` naming the cause, because a check that cannot
run must never read as OK. A hung plugin is killed with its whole process group (it was
started in a session of its own), so forked helpers do not outlive it. Output is read with
a size cap so a runaway plugin cannot exhaust memory.

:func:`run_captured` is the process primitive under :func:`run_plugin`; the ``command``
notifier uses it too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from signalbox.monitors.definitions.model import State
from signalbox.monitors.nagios.perfdata_parse import PluginOutput, parse_plugin_output

MAX_OUTPUT_BYTES = 64 * 1024
"""Per stream; Nagios itself keeps 8 KiB, so this loses nothing a plugin means to say."""


EXIT_STATES: Mapping[int, State] = {
    0: State.OK,
    1: State.WARNING,
    2: State.CRITICAL,
    3: State.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class ProcessRun:
    """What one bounded subprocess run produced.

    ``exit_code`` is the return code (negative: killed by that signal), None when the
    process never started (``start_error`` says why).
    """

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration_s: float
    timed_out: bool = False
    truncated: bool = False
    start_error: OSError | None = None


def run_captured(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> ProcessRun:
    """Run ``argv`` (no shell) with ``stdin``; kill its process group after ``timeout_s``.

    Never raises for anything the child does; an empty ``argv`` or a bad timeout is a
    programming error (ValueError).
    """
    if not argv:
        raise ValueError("empty command")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            start_new_session=True,
            close_fds=True,
        )
    except OSError as e:
        return ProcessRun(None, b"", b"", time.monotonic() - started, start_error=e)
    except ValueError as e:  # a NUL byte in argv or env: no process can be started with it
        err = OSError(errno.EINVAL, str(e))
        return ProcessRun(None, b"", b"", time.monotonic() - started, start_error=err)
    deadline = started + timeout_s
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    try:
        truncated, timed_out = _communicate(proc, stdin, bufs, deadline, max_output_bytes)
    except BaseException:  # interrupted: never leave the plugin running behind us
        _kill_group(proc)
        raise
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return ProcessRun(
        proc.returncode,
        bytes(bufs[out_fd]),
        bytes(bufs[err_fd]),
        time.monotonic() - started,
        timed_out=timed_out,
        truncated=truncated,
    )


def _communicate(
    proc: subprocess.Popen[bytes],
    stdin: bytes,
    bufs: dict[int, bytearray],
    deadline: float,
    limit: int,
) -> tuple[bool, bool]:
    """Feed stdin and collect output until exit or ``deadline``; (truncated, timed_out)."""
    stdin_fd = proc.stdin.fileno() if proc.stdin is not None else -1
    truncated = timed_out = False
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        pending = memoryview(stdin)
        if stdin_fd >= 0:
            os.set_blocking(stdin_fd, False)
            sel.register(stdin_fd, selectors.EVENT_WRITE)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _events in sel.select(remaining):
                if key.fd == stdin_fd:
                    try:
                        pending = pending[os.write(stdin_fd, pending[:65536]) :]
                    except BlockingIOError:
                        continue
                    except OSError:  # the child closed stdin or exited: it has all it wants
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(stdin_fd)
                        assert proc.stdin is not None
                        proc.stdin.close()
                    continue
                data = _read_once(key.fd)
                if data:
                    truncated |= _keep(bufs[key.fd], data, limit)
                elif data is not None:
                    sel.unregister(key.fd)
        if not timed_out:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            _kill_group(proc)
            for fd in bufs:  # what the group wrote before it died; stop where nobody is writing
                for _ in range(64):  # bounded: a writer outside the group may still be alive
                    data = _read_once(fd)
                    if not data:
                        break
                    truncated |= _keep(bufs[fd], data, limit)
    return truncated, timed_out


def _read_once(fd: int) -> bytes | None:
    """One non-blocking read: data, ``b""`` at end of stream, None when nothing is ready yet."""
    try:
        return os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _keep(buf: bytearray, data: bytes, limit: int) -> bool:
    """Append up to ``limit`` bytes in total; True if some of ``data`` was dropped."""
    room = max(0, limit - len(buf))
    buf += data[:room]
    return len(data) > room


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@dataclass(frozen=True, slots=True)
class PluginResult:
    """The outcome of one plugin run.

    ``reason`` explains the state whenever the plugin's own exit code and text do not
    (cannot start, bad exit code, signal, timeout, nothing on stdout); it is empty for an
    ordinary run. ``stderr`` is kept as printed.
    """

    state: State
    exit_code: int | None
    output: PluginOutput
    duration_s: float
    timed_out: bool
    reason: str = ""
    stderr: str = ""

    @property
    def summary(self) -> str:
        """One line for people: the plugin's status text, with our reason when there is one."""
        text = self.output.status_text
        if self.reason:
            return f"{text} ({self.reason})" if text else self.reason
        return text


def run_plugin(
    argv: list[str],
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    *,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> PluginResult:
    """Run a plugin and map its exit code and output onto a :class:`PluginResult`; never raises.

    ``env`` None inherits this process's environment.
    """
    if not argv:
        return PluginResult(
            State.UNKNOWN, None, PluginOutput(""), 0.0, False, "empty plugin command"
        )
    name = os.path.basename(argv[0]) or argv[0]
    try:
        run = run_captured(argv, timeout_s=timeout_s, env=env, max_output_bytes=max_output_bytes)
    except ValueError as e:
        return PluginResult(State.UNKNOWN, None, PluginOutput(""), 0.0, False, str(e))
    stdout = run.stdout.decode("utf-8", "replace")
    stderr = run.stderr.decode("utf-8", "replace")
    output = parse_plugin_output(stdout, source=name)
    reasons: list[str] = []
    state = State.UNKNOWN
    if run.start_error is not None:
        reasons.append(_start_error_reason(argv[0], run.start_error))
    elif run.timed_out:
        reasons.append(f"timed out after {timeout_s:g}s; killed the plugin's process group")
    elif run.exit_code is not None and run.exit_code < 0:
        reasons.append(f"killed by signal {_signal_name(-run.exit_code)}")
    elif run.exit_code is not None and run.exit_code in EXIT_STATES:
        state = EXIT_STATES[run.exit_code]
    else:
        reasons.append(
            f"exit code {run.exit_code} is not a plugin state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)"
        )
    if run.start_error is None and not stdout.strip():
        reasons.append("no output on stdout")
    if stderr.strip() and (reasons or not stdout.strip()):
        reasons.append(f"stderr: {_tail(stderr)}")
    if run.truncated:
        reasons.append(f"output cut at {max_output_bytes} bytes")
    return PluginResult(
        state, run.exit_code, output, run.duration_s, run.timed_out, "; ".join(reasons), stderr
    )


def _start_error_reason(program: str, e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return f"cannot run {program!r}: no such file"
    if isinstance(e, PermissionError):
        return f"cannot run {program!r}: permission denied (is it executable?)"
    return f"cannot run {program!r}: {e.strerror or e}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _tail(text: str, limit: int = 500) -> str:
    """The last meaningful part of stderr on one line (tracebacks end with the cause)."""
    one_line = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return one_line if len(one_line) <= limit else "..." + one_line[-limit:]
