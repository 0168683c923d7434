"""What one query API request costs ``serve`` in process: the ASGI app ``serve`` runs, driven
directly (no socket, no HTTP parser), so the figures are the app's own per-request work.

Issues 9 and 10: over HTTP the query ``1`` took 2.3 ms against Prometheus' 0.8 ms, and a
1-hour range query about 4x Prometheus' time; this says how much of that is the app's
routing, middleware, query gate (a turn in the queue and a thread), results cache and
encoding, apart from the evaluation.

The store is the one ``bench/api_load.py`` serves (1,000 series, 2 h at 15 s) written to a
temp dir once and reused while its data ends less than an hour ago (``--fresh``: rewrite),
or the store of ``--config``. The app is built as ``serve`` builds it (``build_services``,
``create_app``), its background loops not started. Cases:

* ``floor``: ``/api/v1/query?query=1`` (instant at "now": never cached, reads nothing);
* ``max by 1h``: ``max by (instance) (bench_g0)`` over the last hour at a 60 s step, every
  request 1 ms further back (never a cache hit: the evaluation every time);
* ``rate 1h hit``: ``rate(bench_c0_total[5m])`` over the last hour at 15 s, the same URL
  each time (after the first, a results cache hit: about 800 kB of JSON).

Timing (default): ``--rounds`` rounds of ``--requests`` requests per case, the cases
interleaved; reported per case: the median over rounds of the mean time per request (wall
clock, so a loaded machine inflates it; compare runs made under the same load).
``--profile CASE``: cProfile of that case's requests, the top functions by cumulative time.
``--callgrind N``: instructions per request (valgrind's callgrind, the same on a quiet or a
loaded machine) for each case, N requests each after a warm-up: the A/B figure for changes
to the per-request path.

    .venv/bin/python bench/serve_request.py
    .venv/bin/python bench/serve_request.py --callgrind 300
    .venv/bin/python bench/serve_request.py --profile floor --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import api_load

from peers import callgrind_requests, signalbox_exe

Case = tuple[str, Callable[[int], str]]  # name, request number -> path with query string


def last_hour(query: str, end_s: int) -> Callable[[int], str]:
    """The ``i``-th request of ``query`` over the hour before ``end_s`` at 60 s steps, the
    window moved back ``i + 1`` ms each time, so no answer is served twice."""
    grid = end_s // 60 * 60

    def target(i: int) -> str:
        return "/api/v1/query_range?" + urllib.parse.urlencode(
            {
                "query": query,
                "start": f"{(grid - 3600) - (i + 1) / 1000:.3f}",
                "end": f"{grid - (i + 1) / 1000:.3f}",
                "step": "60",
            }
        )

    return target


def cases(end_s: int) -> list[Case]:
    """The requests each case sends (the ``i``-th request's target)."""
    max_by = last_hour("max by (instance) (bench_g0)", end_s)

    hit = "/api/v1/query_range?" + urllib.parse.urlencode(
        {
            "query": "rate(bench_c0_total[5m])",
            "start": str(end_s // 15 * 15 - 3600),
            "end": str(end_s // 15 * 15),
            "step": "15",
        }
    )
    return [
        ("floor", lambda i: "/api/v1/query?query=1"),
        ("max by 1h", max_by),
        ("rate 1h hit", lambda i: hit),
    ]


# -- the store ---------------------------------------------------------------------------
def site(fresh: bool) -> tuple[Path, int]:
    """api_load's data in a SQLite store of its own (made once, reused while recent)."""
    root = Path(tempfile.gettempdir()) / "signalbox-bench-serve-request"
    stamp = root / "end_s"
    if not fresh and stamp.exists():
        end_s = int(stamp.read_text())
        if time.time() - end_s < 3600:
            return root / "signalbox.toml", end_s
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    config = api_load.signalbox_config(root)
    end_s = int(time.time())
    om = root / "data.om"
    with om.open("w") as f:
        api_load.write_openmetrics(f, end_s)
    print(f"importing {om} (once; reused for an hour)", flush=True)
    subprocess.run(
        [signalbox_exe(), "--config", str(config), "import", str(om)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    om.unlink()
    stamp.write_text(str(end_s))
    return config, end_s


def build_app(config: Path) -> tuple[Any, Callable[[], None]]:
    """The app as ``serve`` builds it (its loops not started), and how to close its store."""
    from signalbox.config import load_settings
    from signalbox.runtime import open_metric_store
    from signalbox.server.app import AppOptions, create_app
    from signalbox.server.serve import build_services

    settings = load_settings(config)
    store = open_metric_store(settings)
    services = build_services(settings, store)
    app = create_app(services, AppOptions(stale_after_s=settings.metrics.stale_after_s))

    def close() -> None:
        if services.query_cache is not None:
            services.query_cache.close()
        store.close()

    return app, close


# -- driving the app ---------------------------------------------------------------------
async def request(app: Any, target: str) -> bytes:
    """One GET through the ASGI app, as uvicorn gives it (loopback client); the body."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8910"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8910),
        "state": {},
    }
    sent_body = False
    gone = asyncio.Event()
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                gone.set()

    await app(scope, receive, send)
    body = b"".join(chunks)
    if status != 200:
        raise RuntimeError(f"GET {target}: {status}: {body[:300]!r}")
    return body


async def drive(app: Any, case: Case, n: int, first: int = 0) -> None:
    _, target = case
    for i in range(first, first + n):
        await request(app, target(i))


# -- reports -----------------------------------------------------------------------------
def timing(app: Any, all_cases: list[Case], requests: int, rounds: int) -> None:
    loop = asyncio.new_event_loop()
    for c in all_cases:
        loop.run_until_complete(drive(app, c, 20, first=10**6))  # warm-up
    per: dict[str, list[float]] = {name: [] for name, _ in all_cases}
    for r in range(rounds):
        order = all_cases[r % len(all_cases) :] + all_cases[: r % len(all_cases)]
        for c in order:
            t = time.perf_counter()
            loop.run_until_complete(drive(app, c, requests, first=r * requests))
            per[c[0]].append((time.perf_counter() - t) / requests * 1000)
    loop.close()
    load = os.getloadavg()[0]
    print(f"in process, {rounds} rounds x {requests} requests per case (1-min load {load:.1f})")
    for name, ms in per.items():
        print(
            f"  {name:<14} {statistics.median(ms):7.3f} ms/request"
            f"  (rounds: {min(ms):.3f} .. {max(ms):.3f})"
        )


def profile(app: Any, case: Case, requests: int, top: int) -> None:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(drive(app, case, 20, first=10**6))
    prof = cProfile.Profile()
    prof.enable()
    loop.run_until_complete(drive(app, case, requests))
    prof.disable()
    loop.close()
    # the event loop's thread only: the query threads' work shows under to_thread's wait
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


SHIM = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void cg_stop(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""


def callgrind_child(app: Any, all_cases: list[Case], requests: int, shim: str) -> None:
    """Under callgrind: each case's requests counted alone, dumped under its name."""
    import ctypes

    lib = ctypes.CDLL(shim)
    loop = asyncio.new_event_loop()
    for c in all_cases:
        loop.run_until_complete(drive(app, c, 30, first=10**6))
    for c in all_cases:
        lib.cg_start()
        loop.run_until_complete(drive(app, c, requests))
        lib.cg_stop(c[0].encode())
    loop.close()


def instructions(
    config: Path, end_s: int, all_cases: list[Case], requests: int, keep: Path | None = None
) -> None:
    """Instructions per request for each case, every thread's counted (callgrind's Ir);
    ``keep``: the dumps are left there, for ``callgrind_annotate --inclusive=yes``."""
    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        print("callgrind: valgrind or a C compiler is not installed, skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="serve-request-cg-")) if keep is None else keep
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        (tmp / "shim.c").write_text(SHIM)
        shim = tmp / "shim.so"
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(tmp / "shim.c")], check=True
        )
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmp / 'cg.out'}",
                sys.executable,
                __file__,
                "--config",
                str(config),
                "--callgrind-child",
                str(shim),
                "--requests",
                str(requests),
                "--cases",
                ",".join(name for name, _ in all_cases),
                "--end",
                str(end_s),
            ],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ir = callgrind_requests(tmp)
        print(f"callgrind, {requests} requests per case (instructions per request, all threads)")
        for name, _ in all_cases:
            if name in ir:
                print(f"  {name:<14} {ir[name] / requests:>12,.0f}")
            else:
                print(f"  {name:<14} no count (see {tmp})")
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--config", type=Path, help="a signalbox.toml over api_load's data")
    ap.add_argument("--end", type=int, help="when --config's data ends (unix s; default now)")
    ap.add_argument("--requests", type=int, default=300, help="requests per case and round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fresh", action="store_true", help="rewrite the temp store")
    ap.add_argument("--profile", metavar="CASE", help="cProfile one case instead of timing")
    ap.add_argument("--top", type=int, default=40, help="--profile: functions shown")
    ap.add_argument("--callgrind", type=int, metavar="N", default=0)
    ap.add_argument("--keep", type=Path, metavar="DIR", help="--callgrind: keep the dumps here")
    ap.add_argument("--cases", help="comma-separated case names (default: every case)")
    ap.add_argument("--callgrind-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.config is not None:
        config, end_s = a.config, a.end or int(time.time())
    else:
        config, end_s = site(a.fresh)
    all_cases = cases(end_s)
    if a.cases:
        wanted = a.cases.split(",")
        all_cases = [c for c in all_cases if c[0] in wanted]
    if a.callgrind:
        instructions(config, end_s, all_cases, a.callgrind, a.keep)
        return 0
    app, close = build_app(config)
    try:
        if a.callgrind_child:
            callgrind_child(app, all_cases, a.requests, a.callgrind_child)
        elif a.profile:
            found = [c for c in all_cases if c[0] == a.profile]
            if not found:
                raise SystemExit(f"no case {a.profile!r}: {[n for n, _ in all_cases]}")
            profile(app, found[0], a.requests, a.top)
        else:
            timing(app, all_cases, a.requests, a.rounds)
    finally:
        close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
