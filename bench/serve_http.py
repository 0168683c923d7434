"""What one query API request costs ``signalbox serve`` over HTTP, a new connection each:
the whole server process (uvicorn's h11 protocol, the app, the query thread), beside a
baseline ``serve`` from another source tree (a worktree of main) on the same store.

Issue 9's 1-hour target (within 3x of Prometheus, ``bench/query_vs_prometheus.py``) is
mostly this floor: the query ``1`` reads nothing, yet took 0.8 ms against Prometheus' 0.4 ms
there, and a 1-hour query costs only 0.7-1.8 ms in process. ``bench/serve_request.py``
counts the app's own work in process; this counts what the client waits for.

The store is ``bench/serve_request.py``'s (or ``--config``'s). Cases: ``floor``, its
``/api/v1/query?query=1`` (reads nothing); ``floor POST``, the same as a form, as Grafana
sends its queries; ``1h series``: the ``rate`` of one counter over the last hour at a 60 s
step, every request 1 ms further back (never a results cache hit), a 1-hour query of
``query_vs_prometheus``'s size. Every request is made on a connection of its own, as
``peers.http_get`` makes them for ``query_vs_prometheus``.

Timing (default): ``--rounds`` rounds; in each, every case sends ``--requests`` requests to
each server, the side that goes first alternating. Reported per case: each side's p50 over
all its requests and the median of per-round ratios ours / baseline (each round's pair saw
the same machine state; wall clock, so compare runs made under the same load).

``--callgrind N``: each server under valgrind's callgrind, counting the threads a request
runs in (the event loop's and the query threads, not the background loops'): warmed up
and left until its idle count holds still (:func:`settle`: what starts with serve must not
fall into a count; it once made a floor request look 3.9M instructions), then for each case its counts zeroed, ``N`` requests sent, dumped; then zeroed again, left
idle as long as those requests took, dumped. Instructions per request are the case's dump
minus the idle one (the background loops' wake-ups per second, not per request), over N.

    .venv/bin/python bench/serve_http.py --baseline /work/wt-base/src
    .venv/bin/python bench/serve_http.py --baseline /work/wt-base/src --callgrind 200
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import serve_request

from peers import free_port, http_ok, http_request, signalbox_exe, stop, wait_for

Send = Callable[[int, int], None]  # port, request number


def get(target: Callable[[int], str]) -> Send:
    def send(port: int, i: int) -> None:
        http_request(port, "GET", target(i), timeout=120)

    return send


def post(target: Callable[[int], str]) -> Send:
    """The same request as a form body (Grafana's data source POSTs its queries)."""

    def send(port: int, i: int) -> None:
        path, _, query = target(i).partition("?")
        http_request(port, "POST", path, query.encode(), timeout=120)

    return send


def cases(end_s: int) -> list[tuple[str, Send]]:
    floor = dict(serve_request.cases(end_s))["floor"]
    one_hour = serve_request.last_hour(
        'rate(bench_c0_total{instance="host-00:9100",route="/"}[5m])', end_s
    )

    return [("floor", get(floor)), ("floor POST", post(floor)), ("1h series", get(one_hour))]


def start(
    config: Path, src: Path | None, port: int, log: Path, wrap: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """``signalbox serve`` on ``port`` from the source tree ``src`` (None: the installed one)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = [*(wrap or []), sys.executable, signalbox_exe()]
    argv += ["--config", str(config), "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(f"serve ({log})", lambda: http_ok(port, "/-/ready"), 900, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def timing(
    config: Path,
    sides: dict[str, Path | None],
    all_cases: list[tuple[str, Send]],
    n: int,
    rounds: int,
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="serve-http-"))
    procs: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for name, src in sides.items():
            port = free_port()
            procs[name] = port, start(config, src, port, tmp / f"{name}.log")
        for _, send in all_cases:  # warm-up
            for port, _ in procs.values():
                for i in range(30):
                    send(port, 10**6 + i)
        times: dict[tuple[str, str], list[list[float]]] = {
            (c, s): [] for c, _ in all_cases for s in procs
        }
        names = list(procs)
        for r in range(rounds):
            order = names[r % 2 :] + names[: r % 2]
            for case, send in all_cases:
                for side in order:
                    port = procs[side][0]
                    got = []
                    for i in range(r * n, (r + 1) * n):
                        t = time.perf_counter()
                        send(port, i)
                        got.append(time.perf_counter() - t)
                    times[case, side].append(got)
        load = os.getloadavg()[0]
        print(
            f"over HTTP, a new connection per request: {rounds} rounds x {n} requests per "
            f"case and side (1-min load {load:.1f} after)"
        )
        head = "  ".join(f"{s + ' p50':>14}" for s in names)
        print(f"  {'case':<12}{head}" + ("  ratio (median of rounds)" if len(names) > 1 else ""))
        for case, _ in all_cases:
            p50 = [statistics.median(x for rd in times[case, s] for x in rd) * 1e3 for s in names]
            line = f"  {case:<12}" + "  ".join(f"{v:11.3f} ms" for v in p50)
            if len(names) > 1:
                per_round = [
                    statistics.median(a) / statistics.median(b)
                    for a, b in zip(times[case, names[0]], times[case, names[1]], strict=True)
                ]
                line += f"  {statistics.median(per_round):.3f}"
            print(line)
    finally:
        for _, p in procs.values():
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


def _total(dump: Path) -> int:
    m = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.M)
    if m is None:
        raise RuntimeError(f"no totals in {dump}")
    return int(m.group(1))


def _dump(pid: int, d: Path, name: str) -> int:
    """The instructions the request path counted since the last zeroing (dumped as
    ``name``, then zeroed again): the event loop's thread and the query threads, not the
    background loops (compaction, monitors, metrics): at ~10M instructions a second under
    valgrind, their passes made the difference of two windows noise of ~100k a request."""
    ctl = ["callgrind_control"]
    subprocess.run([*ctl, "-d", name, str(pid)], check=True, capture_output=True)
    subprocess.run([*ctl, "-z", str(pid)], check=True, capture_output=True)
    total, found = 0, 0
    for f in d.glob("cg.out.*"):
        text = f.read_text(errors="replace")
        if f"Trigger: dump {name}\n" not in text:
            continue
        found += 1
        # one file per thread: the main thread runs the event loop, query threads wait
        # for their jobs in SimpleQueue.get
        if f.name.endswith("-01") or "SimpleQueue_get" in text:
            total += _total(f)
    if not found:
        raise RuntimeError(f"dump {name}: no file in {d}")
    return total


def settle(pid: int, d: Path, window_s: float = 3.0) -> None:
    """Wait until the idle server's instructions per ``window_s`` hold still (three windows
    in a row within 20% of each other): what starts with serve (the series index's
    load, the compactor's first passes) must not fall into a count."""
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    seen: list[int] = []
    for k in range(60):
        time.sleep(window_s)
        seen.append(_dump(pid, d, f"settle-{k}"))
        last = seen[-3:]
        if len(last) == 3 and max(last) <= 1.2 * min(last):
            return
    raise RuntimeError(f"serve did not settle: idle counts {seen}")


def instructions(
    config: Path,
    sides: dict[str, Path | None],
    all_cases: list[tuple[str, Send]],
    n: int,
    keep: Path | None,
) -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("callgrind: valgrind is not installed, skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="serve-http-cg-")) if keep is None else keep
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"callgrind of serve (its event loop and query threads), {n} requests per case")
    print("  instructions per request: (the case's count - idle as long) / requests")
    print(f"  {'side':<10}{'case':<12}{'Ir/request':>12}{'idle share':>12}{'raw':>12}")
    try:
        for side, src in sides.items():
            d = tmp / side
            d.mkdir(exist_ok=True)
            port = free_port()
            wrap = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
            wrap.append(f"--callgrind-out-file={d / 'cg.out'}")
            proc = start(config, src, port, d / "serve.log", wrap)
            try:
                for _, send in all_cases:
                    for i in range(20):
                        send(port, 10**6 + i)
                settle(proc.pid, d)
                for case, send in all_cases:
                    tag = case.replace(" ", "_")
                    subprocess.run(
                        ["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True
                    )
                    t = time.perf_counter()
                    for i in range(n):
                        send(port, i)
                    took = time.perf_counter() - t
                    req = _dump(proc.pid, d, f"req-{tag}")
                    time.sleep(took)
                    idle = _dump(proc.pid, d, f"idle-{tag}")
                    print(
                        f"  {side:<10}{case:<12}{(req - idle) / n:>12,.0f}"
                        f"{idle / req:>11.1%}{req / n:>12,.0f}",
                        flush=True,
                    )
            finally:
                stop(proc)
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  dumps kept in {tmp}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--config", type=Path, help="a signalbox.toml over api_load's data")
    ap.add_argument("--end", type=int, help="when --config's data ends (unix s; default now)")
    ap.add_argument("--fresh", action="store_true", help="rewrite serve_request's temp store")
    ap.add_argument("--baseline", type=Path, help="a source tree (its src/) to serve beside")
    ap.add_argument("--ours", type=Path, help="our source tree's src/ (default: the installed)")
    ap.add_argument(
        "--also", action="append", default=[], metavar="NAME=SRC", help="another tree to count"
    )
    ap.add_argument("--requests", type=int, default=100, help="requests per case and round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--callgrind", type=int, metavar="N", default=0)
    ap.add_argument("--keep", type=Path, metavar="DIR", help="--callgrind: keep the dumps here")
    ap.add_argument("--cases", help="comma-separated case names (default: every case)")
    a = ap.parse_args()
    if a.config is not None:
        config, end_s = a.config, a.end or int(time.time())
    else:
        config, end_s = serve_request.site(a.fresh)
    all_cases = cases(end_s)
    if a.cases:
        wanted = a.cases.split(",")
        all_cases = [c for c in all_cases if c[0] in wanted]
    sides: dict[str, Path | None] = {"ours": a.ours}
    if a.baseline is not None:
        sides["baseline"] = a.baseline
    for more in a.also:
        name, _, src = more.partition("=")
        sides[name] = Path(src)
    if a.callgrind:
        instructions(config, sides, all_cases, a.callgrind, a.keep)
    else:
        timing(config, sides, all_cases, a.requests, a.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
