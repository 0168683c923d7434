"""Middleware overhead: signalbox's ASGIMiddleware vs asgi-correlation-id vs OpenTelemetry ASGI.

A minimal Starlette app (one route, ``/items/{item_id}``, whose view calls
``note(user_id=..., api_method=...)``) is driven in-process: each request is a call of the
ASGI app with a fresh scope, its ``receive`` and a ``send`` that keeps nothing, in one event
loop, so the figures are the app's and the middleware's own time, without a network or an
HTTP client. Contenders, in interleaved rounds (each round runs every one, in a rotating
order, so the machine's drift hits all alike):

* ``bare``: the app alone.
* ``signalbox``: ``ASGIMiddleware`` with everything on, default settings: request id
  (incoming header read, fresh id made, echoed), notes, one combined line per request
  appended to a file (buffered: up to 256 lines or 200 ms, written together), request
  metrics through a metrics client (its writer thread publishing its spool file).
* ``signalbox unbuffered``: the same with ``buffer_lines = 1`` (each line formatted and
  written as its response ends).
* ``asgi-correlation-id``: ``CorrelationIdMiddleware`` (the id only: read, make, echo).
* ``opentelemetry``: ``OpenTelemetryMiddleware`` with the SDK's tracer and meter providers
  (spans and duration histograms recorded, nothing exported).

Overhead = contender's time per request minus the bare app's in the same round; the
figures are medians over rounds. Our buffered lines are flushed at the end of each of our
rounds, inside its timing, so all of a round's formatting and writing counts in that round.

``--wrk``: also under real HTTP (uvicorn, one worker, and ``wrk``): bare, signalbox
(buffered and unbuffered) and asgi-correlation-id, interleaved: throughput, the server's
CPU time per request (which the machine's other load moves far less), and its garbage
collections per request (which the load does not move at all: a middleware that holds
its requests' objects makes them run; the bare app's requests free what they make).
``--http httptools``: uvicorn parses HTTP with httptools (C) instead of h11 (pure Python,
the default here: what a plain ``pip install uvicorn`` runs), for ``--wrk`` and
``--callgrind-http``; httptools must be installed (``uvicorn[standard]`` brings it).
``--callgrind N``: instructions per request under valgrind (the same on a quiet or a loaded
machine), N requests per contender. ``--callgrind-http N``: the same for whole uvicorn
servers; valgrind runs them ~50-70x slower (144 requests a second vs 9,600 under wrk), so
our intervals are stretched by ``--callgrind-slow`` (50 by default): at the real 200 ms a
flush came every ~30 requests instead of at 256 lines, and the threads' once-a-second work
fell on 50x fewer requests -- 10k of the 12k instructions a request we seemed to spend over
asgi-correlation-id under uvicorn but not in process (``--callgrind-slow 1``: as run).

``--callgrind`` also counts ``signalbox id only`` (no access log, no metrics): the line's
and the counts' share of ours is its difference from ``signalbox``.

Usage: .venv/bin/python bench/middleware_overhead.py [--requests 20000] [--rounds 10]
       [--wrk] [--wrk-rounds 4] [--wrk-seconds 5] [--callgrind 2000] [--callgrind-http 4000]
       [--callgrind-slow 50] [--keep-dumps] [--http h11|httptools] [--no-timing]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from peers import callgrind_requests
from signalbox.instrument import ASGIMiddleware, note
from signalbox.instrument.core import Instrument
from signalbox.instrument.metrics import RequestMetrics
from signalbox.metrics.client import Client

App = Callable[..., Any]


async def item(request: Request) -> Response:
    note(user_id=5555, api_method="items.get")
    return PlainTextResponse("ok")


async def gc_counts(request: Request) -> Response:
    """The server's garbage collections so far, per generation (``--wrk`` reads them)."""
    return PlainTextResponse(" ".join(str(g["collections"]) for g in gc.get_stats()))


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/items/{item_id}", item), Route("/gc", gc_counts)])


def ours(
    tmp: Path, buffer_lines: int = 256, background: bool = True, slow: float = 1.0
) -> tuple[App, Instrument, Client]:
    """Our middleware with the default settings ([instrument] of signalbox.toml): lines and
    metrics buffered up to 256 requests or 200 ms (``buffer_lines=1``: each written at once).
    ``background=False``: the metrics are handed over and written only when asked (see
    ``--callgrind``), not by threads waking every second. ``slow``: every interval (the
    flush's 200 ms, the metrics' and the client's second) that many times longer, for a
    server running that many times slower under valgrind (see ``--callgrind-http``)."""
    spool = tmp / "spool"
    spool.mkdir(exist_ok=True)
    client = Client(spool, prog=f"bench{buffer_lines}", background=background, flush_interval=slow)
    core = Instrument(
        access_log=tmp / f"access-{buffer_lines}.log",
        format="combined",
        host="bench",
        secret_notes=("api_key",),
        secret=b"bench",
        metrics=RequestMetrics(client, interval=slow, background=background),
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=1000,
        buffer_lines=buffer_lines,
        flush_interval=0.2 * slow,
    )
    return ASGIMiddleware(bare_app(), core=core), core, client


def id_only() -> App:
    """Our middleware doing only what asgi-correlation-id does (the id read, made and
    echoed; notes kept): no access log, no metrics (``--callgrind``: the line's and the
    counts' share of ours is the difference)."""
    core = Instrument(
        access_log=None,
        format="combined",
        host="bench",
        secret_notes=("api_key",),
        secret=b"bench",
        metrics=False,
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=1000,
        buffer_lines=256,
        flush_interval=0.2,
    )
    return ASGIMiddleware(bare_app(), core=core)


def correlation_id() -> App:
    from asgi_correlation_id import CorrelationIdMiddleware

    return CorrelationIdMiddleware(bare_app())


def opentelemetry() -> App:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    return OpenTelemetryMiddleware(
        bare_app(), tracer_provider=TracerProvider(), meter_provider=MeterProvider()
    )


def scope(i: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/items/{i % 100}",
        "raw_path": f"/items/{i % 100}".encode(),
        "query_string": b"page=2",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def drive(app: App, n: int, after: Callable[[], None] | None = None) -> float:
    """Seconds per request over ``n`` requests; ``after`` (inside the timing) finishes the
    round's work, so none of it lands in another contender's round."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    scopes = [scope(i) for i in range(n)]
    gc.collect()
    t0 = time.perf_counter()
    for s in scopes:
        await app(s, receive, send)
    if after is not None:
        after()
    return (time.perf_counter() - t0) / n


def in_process(requests: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mwbench-"))
    try:
        ours_app, core, client = ours(tmp)
        each_app, each_core, each_client = ours(tmp, buffer_lines=1)
        apps: dict[str, App] = {
            "bare": bare_app(),
            "signalbox": ours_app,
            "signalbox unbuffered": each_app,
            "asgi-correlation-id": correlation_id(),
            "opentelemetry": opentelemetry(),
        }
        per_round = max(1, requests // rounds)
        loop = asyncio.new_event_loop()
        for app in apps.values():  # warm up: imports, caches, the log file opened
            loop.run_until_complete(drive(app, 200))
        times: dict[str, list[float]] = {name: [] for name in apps}
        names = list(apps)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                after = core.flush if name == "signalbox" else None
                times[name].append(loop.run_until_complete(drive(apps[name], per_round, after)))
        loop.close()
        for c in (core, each_core):
            c.close()
        client.close()
        each_client.close()
        lines = (tmp / "access-256.log").read_bytes().count(b"\n")
        bare = times["bare"]
        print(
            f"in-process, {per_round * rounds} requests per contender in {rounds} rounds, "
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        print(f"  {'contender':<22}{'us/request':>12}{'overhead us':>13}{'vs correlation-id':>19}")
        overhead = {
            name: [t - b for t, b in zip(ts, bare, strict=True)] for name, ts in times.items()
        }
        cid = overhead["asgi-correlation-id"]
        for name, ts in times.items():
            ov = statistics.median(overhead[name]) * 1e6
            ratio = (
                statistics.median(o / c for o, c in zip(overhead[name], cid, strict=True) if c > 0)
                if name not in ("bare",)
                else float("nan")
            )
            print(
                f"  {name:<22}{statistics.median(ts) * 1e6:>12.1f}{ov:>13.1f}"
                f"{'' if name == 'bare' else f'{ratio:>18.2f}x'}"
            )
        print(f"  access-log lines written by signalbox: {lines}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- real HTTP: uvicorn + wrk --------------------------------------------------------------------
SERVER = """
import sys
from pathlib import Path
sys.path.insert(0, {bench!r})
import middleware_overhead as m
tmp = Path({tmp!r})
app = {app}
"""


def uvicorn_argv(port: int, http: str) -> list[str]:
    """The bench app's uvicorn, one worker, no access log of its own, the given parser."""
    return [sys.executable, "-m", "uvicorn", "benchapp:app", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--http", http]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk_rps(url: str, seconds: int, pid: int) -> tuple[float, float, int]:
    """wrk's requests per second, the server's CPU seconds per request in that run (user +
    system of all its threads, from /proc: it holds still when other processes take the
    machine's CPUs, the throughput does not), and the requests made."""
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    cpu = cpu_seconds(pid) - cpu0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if m is None or total is None:
        raise RuntimeError(f"wrk said: {out}")
    return float(m.group(1)), cpu / int(total.group(1)), int(total.group(1))


def gc_collections(port: int) -> list[int]:
    """The server's collections so far, per generation (its ``/gc`` route)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /gc HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [int(x) for x in data.split(b"\r\n\r\n", 1)[1].split()]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def over_http(rounds: int, seconds: int, http: str = "h11") -> None:
    if shutil.which("wrk") is None:
        print("wrk: not installed, skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="mwbench-http-"))
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name, app in (
            ("bare", "m.bare_app()"),
            ("signalbox", "m.ours(tmp, 256)[0]"),
            ("signalbox unbuffered", "m.ours(tmp, 1)[0]"),
            ("asgi-correlation-id", "m.correlation_id()"),
        ):
            d = tmp / name
            d.mkdir()
            (d / "benchapp.py").write_text(
                SERVER.format(bench=str(Path(__file__).parent), tmp=str(d), app=app)
            )
            port = free_port()
            p = subprocess.Popen(
                uvicorn_argv(port, http),
                cwd=d,
            )
            procs[name] = (p, port)
        for _, port in procs.values():
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
        rps: dict[str, list[float]] = {name: [] for name in procs}
        cpu: dict[str, list[float]] = {name: [] for name in procs}
        served = dict.fromkeys(procs, 0)
        gc_before = {name: gc_collections(port) for name, (_, port) in procs.items()}
        loads = []
        for r in range(rounds):
            names = list(procs)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                proc, port = procs[name]
                got, per, n = wrk_rps(f"http://127.0.0.1:{port}/items/7", seconds, proc.pid)
                rps[name].append(got)
                cpu[name].append(per)
                served[name] += n
            loads.append(os.getloadavg()[0])
        collections = {
            name: [a - b for a, b in zip(gc_collections(port), gc_before[name], strict=True)]
            for name, (_, port) in procs.items()
        }
        ratios = {
            name: [s / b for s, b in zip(rps[name], rps["bare"], strict=True)]
            for name in procs
            if name != "bare"
        }
        print(
            f"uvicorn (1 worker, --http {http}) + wrk -t1 -c16, {rounds} rounds of {seconds}s, load "
            "average "
            f"{statistics.median(loads):.2f} (median of the rounds; {min(loads):.2f} to "
            f"{max(loads):.2f})"
        )
        for name, xs in rps.items():
            print(f"  {name:<22} {statistics.median(xs):>10.0f} requests/s (median)")
        for name, rs in ratios.items():
            print(
                f"  {name} / bare throughput, median of per-round ratios: {statistics.median(rs):.3f}"
            )
        print("  server CPU per request (user + system, all threads), median:")
        for name, xs in cpu.items():
            cr = statistics.median(b / x for x, b in zip(xs, cpu["bare"], strict=True))
            extra = "" if name == "bare" else f"  bare / this, median of per-round ratios: {cr:.3f}"
            print(f"    {name:<22} {statistics.median(xs) * 1e6:>8.1f} us{extra}")
        print("  garbage collections per 10,000 requests (generations 0/1/2; the same on a loaded")
        print("  machine: a middleware that keeps its requests' objects alive makes them run):")
        for name, counts in collections.items():
            rates = "/".join(f"{c * 10_000 / max(1, served[name]):.1f}" for c in counts)
            print(f"    {name:<22} {rates}")
        lines = (tmp / "signalbox" / "access-256.log").read_bytes().count(b"\n")
        print(f"  access-log lines written by signalbox: {lines}")
    finally:
        for p, _ in procs.values():
            p.terminate()
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


# -- instructions: callgrind --------------------------------------------------------------------
SHIM = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void cg_stop(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""
CALLGRIND_CONTENDERS = (
    "bare",
    "signalbox",
    "signalbox unbuffered",
    "signalbox id only",
    "asgi-correlation-id",
)


def callgrind_child(requests: int, shim: str, tmp: Path) -> None:
    """Under callgrind: each contender's ``requests`` requests, counted alone (instrumented
    from ``cg_start`` to ``cg_stop``, which dumps the counts under the contender's name)."""
    import ctypes

    lib = ctypes.CDLL(shim)
    ours_app, core, client = ours(tmp, background=False)
    each_app, each_core, each_client = ours(tmp, buffer_lines=1, background=False)

    def ours_after(c: Instrument, cl: Client) -> Callable[[], None]:
        def after() -> None:  # what the threads do once a second, done once a round here
            c.flush()
            assert c.metrics is not None
            c.metrics.push()
            cl.flush()

        return after

    apps: dict[str, tuple[App, Callable[[], None] | None]] = {
        "bare": (bare_app(), None),
        "signalbox": (ours_app, ours_after(core, client)),
        "signalbox unbuffered": (each_app, ours_after(each_core, each_client)),
        "signalbox id only": (id_only(), None),
        "asgi-correlation-id": (correlation_id(), None),
    }
    loop = asyncio.new_event_loop()
    for app, after in apps.values():
        loop.run_until_complete(drive(app, 300, after))  # warm up
    for name, (app, after) in apps.items():
        lib.cg_start()
        loop.run_until_complete(drive(app, requests, after))
        lib.cg_stop(name.encode())
    loop.close()


def instructions(requests: int) -> None:
    """Instructions per request (callgrind's Ir) for each contender: the same count on a
    quiet or a loaded machine, so ours and the peer's compare without the load's noise.
    The harness's own work (building the scopes, driving the loop) is counted for every
    contender alike, the bare app's included: overheads are differences from the bare app.
    Ours hands its metrics over and writes its spool file once per contender's run (its
    threads do that once a second)."""
    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        print("callgrind: valgrind or a C compiler is not installed, skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="mwbench-cg-"))
    try:
        (tmp / "shim.c").write_text(SHIM)
        shim = tmp / "shim.so"
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(tmp / "shim.c")], check=True
        )
        out = tmp / "cg.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--callgrind-child",
                str(shim),
                "--requests",
                str(requests),
                "--tmp",
                str(tmp),
            ],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ir = {k: v for k, v in callgrind_requests(tmp).items() if k in CALLGRIND_CONTENDERS}
        missing = [n for n in CALLGRIND_CONTENDERS if n not in ir]
        if missing:
            raise RuntimeError(f"callgrind: no counts for {missing} in {tmp}")
        bare = ir["bare"] / requests
        cid = ir["asgi-correlation-id"] / requests - bare
        print(f"callgrind, {requests} requests per contender (instructions, not time)")
        print(f"  {'contender':<22}{'Ir/request':>12}{'overhead Ir':>13}{'vs correlation-id':>19}")
        for name in CALLGRIND_CONTENDERS:
            per = ir[name] / requests
            extra = "" if name == "bare" else f"{per - bare:>13,.0f}{(per - bare) / cid:>18.2f}x"
            print(f"  {name:<22}{per:>12,.0f}{extra}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- instructions under uvicorn: callgrind of the server, a fixed number of requests --------------
async def _keep_alive(port: int, requests: int, connections: int) -> None:
    """Exactly ``requests`` GETs over ``connections`` keep-alive connections, one in flight
    on each (what wrk does, but a fixed count, so the server's counts divide by it)."""

    async def one(n: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            w.write(b"GET /items/7 HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            await r.readexactly(int(length.group(1)) if length else 0)
        w.close()

    await asyncio.gather(*(one(requests // connections) for _ in range(connections)))


def _thread_share(dump: Path) -> int:
    """Instructions spent in threads other than the main one: the inclusive cost of the
    calls to ``thread_run`` (the line after each ``calls=`` line under its ``cfn=``)."""
    text = dump.read_text(errors="replace")
    m = re.search(r"^c?fn=\((\d+)\) thread_run$", text, re.M)
    if m is None:
        return 0
    target = f"cfn=({m.group(1)})"
    total, callee, after_calls = 0, "", False
    for line in text.splitlines():
        if line.startswith("cfn="):
            callee = line.split()[0]
        elif line.startswith("calls="):
            after_calls = True
        elif after_calls:
            after_calls = False
            if callee == target:
                total += int(line.split()[1])
    return total


def http_instructions(
    requests: int, http: str = "h11", keep: bool = False, slow: float = 1.0
) -> None:
    """Instructions per request of the whole uvicorn server (all threads, h11 included),
    each contender's server under callgrind: warmed up, its counts zeroed, ``requests``
    requests sent over 16 connections, its counts dumped. The same on a quiet or a loaded
    machine. Under valgrind the server runs ~50x slower, so the background threads' wakeups
    (a fixed number a second) weigh ~50x more per request than at full speed: shown apart.
    ``slow``: our intervals that many times longer (see :func:`ours`).
    ``keep``: the dumps are left in their folder (printed) for ``callgrind_annotate``."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("callgrind: valgrind is not installed, skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="mwbench-cghttp-"))
    ir: dict[str, tuple[int, int]] = {}
    try:
        for name, app in (
            ("bare", "m.bare_app()"),
            ("signalbox", f"m.ours(tmp, 256, slow={slow})[0]"),
            ("asgi-correlation-id", "m.correlation_id()"),
        ):
            d = tmp / name.replace(" ", "-")
            d.mkdir()
            (d / "benchapp.py").write_text(
                SERVER.format(bench=str(Path(__file__).parent), tmp=str(d), app=app)
            )
            port = free_port()
            out = d / "cg.out"
            p = subprocess.Popen(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    *uvicorn_argv(port, http),
                ],
                cwd=d,
                env={**os.environ, "PYTHONHASHSEED": "0"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                for _ in range(1200):
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                        break
                    except OSError:
                        time.sleep(0.25)
                asyncio.run(_keep_alive(port, 1600, 16))  # warm up
                ctl = ["callgrind_control"]
                subprocess.run([*ctl, "-z", str(p.pid)], check=True, capture_output=True)
                asyncio.run(_keep_alive(port, requests, 16))
                subprocess.run([*ctl, "-d", "counted", str(p.pid)], check=True, capture_output=True)
            finally:
                p.terminate()
                p.wait(120)
            dump = next(f for f in d.glob("cg.out.*") if "Trigger: dump counted" in f.read_text())
            total = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.M)
            assert total is not None
            ir[name] = (int(total.group(1)), _thread_share(dump))
        n = requests // 16 * 16
        bare = ir["bare"][0] / n
        print(
            f"callgrind under uvicorn (--http {http}, all threads), {n} requests over 16 "
            f"connections; our intervals x{slow:g} (the server's slowdown under valgrind)"
        )
        print(f"  {'contender':<22}{'Ir/request':>12}{'overhead Ir':>13}{'other threads':>15}")
        for name, (total_ir, threads) in ir.items():
            extra = "" if name == "bare" else f"{total_ir / n - bare:>13,.0f}"
            print(f"  {name:<22}{total_ir / n:>12,.0f}{extra:>13}{threads / n:>15,.0f}")
    finally:
        if keep:
            print(f"  dumps kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--wrk", action="store_true")
    ap.add_argument("--wrk-rounds", type=int, default=4)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument(
        "--callgrind",
        type=int,
        metavar="N",
        default=0,
        help="also count instructions per request under valgrind's callgrind, N requests each",
    )
    ap.add_argument(
        "--callgrind-http",
        type=int,
        metavar="N",
        default=0,
        help="also count instructions per request of uvicorn servers under callgrind",
    )
    ap.add_argument(
        "--http",
        choices=("h11", "httptools"),
        default="h11",
        help="uvicorn's HTTP parser for --wrk and --callgrind-http (httptools: installed apart)",
    )
    ap.add_argument(
        "--keep-dumps",
        action="store_true",
        help="--callgrind-http: keep the servers' callgrind dumps (for callgrind_annotate)",
    )
    ap.add_argument(
        "--callgrind-slow",
        type=float,
        default=50.0,
        metavar="X",
        help="--callgrind-http: our flush and push intervals X times longer, as the server "
        "runs X times slower under valgrind (batches and wakeups per request as at full speed)",
    )
    ap.add_argument("--no-timing", action="store_true", help="skip the in-process timing")
    ap.add_argument("--callgrind-child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.callgrind_child:
        callgrind_child(a.requests, a.callgrind_child, Path(a.tmp))
        return
    if not a.no_timing:
        in_process(a.requests, a.rounds)
    if a.callgrind:
        instructions(a.callgrind)
    if a.callgrind_http:
        http_instructions(a.callgrind_http, a.http, a.keep_dumps, a.callgrind_slow)
    if a.wrk:
        over_http(a.wrk_rounds, a.wrk_seconds, a.http)


if __name__ == "__main__":
    main()
