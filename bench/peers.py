"""Child processes for the benchmarks: Prometheus, ``signalbox serve`` and a static scrape
target, each on a free port of 127.0.0.1, each waited for with a bound and always stopped.

The query and monitor benchmarks run our figures beside Prometheus' in the same run; what
they share lives here so both start, probe and stop their peers the same way: one HTTP
client for both sides (``http.client``, a fresh connection per request, no proxy settings
from the environment), and a SIGTERM that unwinds like Ctrl-C so temp dirs and children
are cleaned up either way.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

HOST = "127.0.0.1"


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``finally`` blocks stop the children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    # and make Ctrl-C interrupt even where SIGINT came in ignored (a shell's background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_main(main: Callable[[], int | None]) -> None:
    """Run a benchmark's main; an interrupt (Ctrl-C, SIGTERM) exits 130 after the clean-up."""
    interrupt_on_sigterm()
    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted: children stopped, temp dirs removed", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(
    port: int, path: str, params: dict[str, str] | None = None, timeout: float = 60
) -> bytes:
    """GET ``path`` from 127.0.0.1:``port``; the body, or an error naming URL and status."""
    target = path + ("?" + urllib.parse.urlencode(params) if params else "")
    return http_request(port, "GET", target, timeout=timeout)


def http_request(
    port: int, method: str, target: str, form: bytes | None = None, timeout: float = 60
) -> bytes:
    """``method`` ``target`` on 127.0.0.1:``port`` over a new connection, ``form`` as a
    urlencoded body; the body, or an error naming the request and status."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {} if form is None else {"Content-Type": "application/x-www-form-urlencoded"}
        conn.request(method, target, body=form, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(
            f"{method} http://{HOST}:{port}{target}: HTTP {resp.status}: {body[:300]!r}"
        )
    return body


def http_ok(port: int, path: str) -> bool:
    """Whether 127.0.0.1:``port`` answers ``path`` with 200 (a 503 while starting is no)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    finally:
        conn.close()


def wait_for(
    what: str,
    probe: Callable[[], bool],
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``probe`` until true; fail after ``timeout_s`` or when ``proc`` has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with code {proc.returncode}")
        try:
            if probe():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s: every child ends before the script does."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def need(exe: str) -> str:
    path = shutil.which(exe)
    if path is None:
        raise SystemExit(f"{exe} not found on PATH (Debian: apt-get install prometheus)")
    return path


def create_blocks(openmetrics: Path, out: Path, timeout_s: float = 900) -> None:
    """Prometheus' own backfill: ``promtool tsdb create-blocks-from openmetrics`` (2h blocks)."""
    subprocess.run(
        [
            need("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(openmetrics),
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=timeout_s,
    )


def parse_metrics(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of ``name`` in a Prometheus text exposition: (labels, value) each."""
    out = []
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
            out.append((labels, float(m.group(2))))
    return out


class Child:
    """A child process with its output in a log file, started and stopped as a context."""

    def __init__(self, argv: Sequence[str], log: Path, cwd: Path | None = None) -> None:
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            list(argv), stdout=self._out, stderr=subprocess.STDOUT, cwd=cwd
        )

    def close(self) -> None:
        stop(self.proc)
        self._out.close()

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:]


class Prometheus(Child):
    """Prometheus on a TSDB dir, with a config that scrapes nothing unless told to."""

    def __init__(
        self,
        workdir: Path,
        tsdb: Path,
        *,
        config: str = "global:\n  scrape_interval: 1m\n",
        retention: str = "400d",
        ready_timeout_s: float = 120,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "prometheus.yml"
        cfg.write_text(config)
        self.port = free_port()
        super().__init__(
            [
                need("prometheus"),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tsdb}",
                f"--storage.tsdb.retention.time={retention}",
                f"--web.listen-address={HOST}:{self.port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
        )
        try:
            wait_for(
                "prometheus /-/ready",
                lambda: http_ok(self.port, "/-/ready"),
                ready_timeout_s,
                self.proc,
            )
        except BaseException:
            self.close()
            raise

    def metric(self, name: str) -> list[tuple[dict[str, str], float]]:
        return parse_metrics(http_get(self.port, "/metrics").decode(), name)

    def value(self, name: str) -> float:
        found = self.metric(name)
        if len(found) != 1:
            raise RuntimeError(f"prometheus /metrics: expected one {name}, found {len(found)}")
        return found[0][1]

    def wait_compacted(self, timeout_s: float = 240) -> int:
        """Wait for Prometheus' own compaction of backfilled 2h blocks (its first run comes
        about a minute after start), so queries read blocks as a long-running server has
        them; the number of blocks loaded afterwards."""
        seen: list[float] = []

        def settled() -> bool:
            if self.value("prometheus_tsdb_compactions_total") < 1:
                return False
            seen.append(self.value("prometheus_tsdb_blocks_loaded"))
            return len(seen) >= 10 and len(set(seen[-10:])) == 1  # 2 s without a change

        wait_for("prometheus compaction of the backfilled blocks", settled, timeout_s, self.proc)
        return int(seen[-1])


def signalbox_exe() -> str:
    return str(Path(sys.executable).parent / "signalbox")


def callgrind_requests(out_dir: Path) -> dict[str, int]:
    """Instructions per named client request in ``out_dir``'s ``cg.out*`` dumps (one dump per
    ``callgrind_control --dump=NAME`` trigger; a name dumped twice is summed)."""
    ir: dict[str, int] = {}
    for dump in out_dir.glob("cg.out*"):
        text = dump.read_text(errors="replace")
        m = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if m and total:
            ir[m.group(1)] = ir.get(m.group(1), 0) + int(total.group(1))
    return ir


def median_ratio(theirs: Sequence[float], ours: Sequence[float]) -> float:
    """Median of per-round ratios: each round's pair saw the same machine state."""
    return statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
