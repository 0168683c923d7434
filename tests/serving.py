"""A real ``signalbox serve`` process for end-to-end tests, and polling its HTTP answers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from tests.cli.helpers import SIGNALBOX

T = TypeVar("T")


def fetch(url: str, timeout: float = 30.0) -> tuple[int, str]:
    """(status, body) of a GET, error statuses included. ``timeout``: generous, for a loaded
    box (a day's backtest once outlasted 5 s with both xdist workers busy)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_for(fn: Callable[[], T | None], timeout: float = 30.0) -> T:
    """``fn()``'s first truthy answer, polled; connection errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
            last = got
        except OSError as e:
            last = e
        time.sleep(0.1)  # a condition met waits half this, on average, to be seen
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


@contextlib.contextmanager
def serve_process(
    cwd: Path, port: int, output: list[str] | None = None, args: Sequence[str] = ()
) -> Iterator[str]:
    """``signalbox serve`` in ``cwd`` (its signalbox.toml names ``port``), healthy, until the
    end; then stopped with SIGTERM, which must end it cleanly and without a traceback. Its
    output (stdout and stderr: the log) is appended to ``output`` once it has stopped;
    ``args``: more command-line options (``--workers 1``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    argv = [SIGNALBOX, "serve", *args]
    config = cwd / "signalbox.toml"
    if not config.is_file() or "[statsd]" not in config.read_text():
        argv += ["--statsd", "127.0.0.1:0"]  # not 8125: another serve may hold it
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: fetch(base + "/-/healthy")[0] == 200)
        yield base
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        text = out.decode(errors="replace")
        if output is not None:
            output.append(text)
        assert proc.returncode in (0, -15), text
        assert "Traceback" not in text, text
