"""The HTTP API and the overview under load: ``wrk`` against signalbox and a real Prometheus.

Issue 10's benchmark. 1,000 series (10 metrics x 100 label sets: 5 counters
``bench_c<k>_total``, 5 gauges ``bench_g<k>``, labels ``job``, ``instance``, ``route``), a
sample every 15 s over the 2 hours ending now, written once as OpenMetrics and loaded into
both servers: ``signalbox import`` into a fresh SQLite store served by ``signalbox serve``
(StatsD off, collection every hour so its passes stay out of the timings, no monitors), and
``promtool tsdb create-blocks-from openmetrics`` into blocks served by ``prometheus`` (empty
scrape config, 30 d retention).

Cases, each a fixed URL that ``wrk`` repeats (``--connections`` 32, ``--duration`` 10 s,
``--latency``, a 60 s request timeout so slow answers are measured, not dropped); ``wrk``
keeps its connections open (keep-alive), as Grafana and browsers do; with ``--gzip`` it
also says ``Accept-Encoding: gzip``, as Grafana does, and both servers answer the query
API gzipped (signalbox keeps a cached answer's gzip form; Prometheus compresses each):

* ``rate``: ``/api/v1/query_range`` of ``rate(bench_c0_total[5m])`` over the last hour at a
  15 s step (100 series x 241 points, about 800 kB of JSON);
* ``sum by``: the same, ``sum by (job) (rate(bench_c0_total[5m]))`` (2 series);
* ``overview``: signalbox's dashboard page ``/``; signalbox alone, since Prometheus has no
  page that does the same work (its ``/graph`` is a static shell that queries nothing);
* ``rate new`` and ``sum by new``: the two range queries again, but every request a query
  nobody asked before: a wrk Lua script (``-s``) moves ``start`` and ``end`` back by one
  more millisecond each request, from a base each wrk run gets of its own (20 s apart), so
  no answer is ever in signalbox's results cache (``[server] query_cache_mb``). The
  repeated-URL cases above are what a refreshing dashboard asks (after the first request,
  cache hits until the data changes; collection passes are hourly here); these are what a
  fresh query costs. Prometheus keeps no results cache, so for it both kinds are the same
  work.

Before timing, both servers must hold the 1,000 series (``count`` of them, instant) and give
the same answer to both range queries (every point, relative tolerance 1e-6), so the timings
compare like with like. Sample timestamps sit 7 s off the 15 s query grid, never on a
window's edge: Prometheus 2.x windows are ``[t - r, t]``, signalbox's (and 3.x's)
``(t - r, t]``.

Rounds (``--rounds`` 3): each round runs every case on each server, the server that goes
first alternating; one short untimed ``wrk`` run per case and server warms up first. The
machine has 2 cores and its speed drifts: both servers are pinned to CPU 0 and ``wrk`` (one
thread) to CPU 1 with ``taskset`` (``--no-pin`` shares both cores among all three), so
the load generator does not take CPU from the server it measures and each server gets the
same one core (``GOMAXPROCS`` follows the affinity, so Prometheus runs with 1). Reported per
case and server: the medians over rounds of req/s, p50 and p99; then per case the per-round
ratios signalbox / Prometheus (req/s: < 1 means signalbox serves fewer; p99: > 1 means
signalbox is slower) and their medians. Targets (signalbox, median p99 under the 32
connections): under 50 ms for the 1-hour queries, under 300 ms for the overview (the
uncached cases are reported, not judged). ``wrk`` is
closed-loop: with 32 connections on one core, p99 is about 32 times what one request costs;
so after each loaded run, the same case runs ``--alone`` seconds (5) on one connection,
for the cost of a request without a queue (reported beside, not judged). After every wrk run
the server is drained (a query that reads nothing answers within 50 ms again): neither server
cancels a query whose client left, so an uncached case's queue would otherwise spill its
seconds of evaluation into the next case.

    .venv/bin/python bench/api_load.py                 # 3 rounds (~8 min)
    .venv/bin/python bench/api_load.py --rounds 1 --duration 3   # a smoke run

Needs: Debian's wrk (apt-get install wrk), prometheus and promtool; taskset (util-linux) unless ``--no-pin``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from peers import (
    HOST,
    Child,
    Prometheus,
    create_blocks,
    free_port,
    http_get,
    http_ok,
    need,
    run_main,
    signalbox_exe,
    wait_for,
)

INTERVAL_S = 15
HOURS = 2
OFFSET_S = 7  # samples sit this long before a point of the 15 s grid
COUNTERS, GAUGES, SETS = 5, 5, 100
REL_TOL = 1e-6
RANGE_S, STEP_S = 3600, 15
TARGETS_MS = {"rate": 50.0, "sum by": 50.0, "overview": 300.0}  # signalbox's p99
SERVER_CPU, WRK_CPU = 0, 1
WARMUP_S = 2


# --- data ------------------------------------------------------------------------------


def label_sets() -> list[str]:
    """100 label sets: 25 instances (two jobs) x 4 routes."""
    out = []
    for i in range(SETS // 4):
        job = "api" if i % 2 == 0 else "web"
        for route in ("/", "/login", "/photos", "/upload"):
            out.append(f'job="{job}",instance="host-{i:02d}:9100",route="{route}"')
    return out


def write_openmetrics(f: TextIO, end_s: int) -> int:
    """Every series, one after the other (timestamps increase within each); samples rows."""
    times = range(end_s - HOURS * 3600 + INTERVAL_S, end_s + 1, INTERVAL_S)
    rows = 0
    for k in range(COUNTERS):
        f.write(f"# HELP bench_c{k} Requests.\n# TYPE bench_c{k} counter\n")
        for j, labels in enumerate(label_sets()):
            rng = random.Random(f"c{k}/{j}")
            value, rate = rng.randrange(10_000), rng.uniform(0.5, 50.0)
            for t in times:
                value += int(rng.expovariate(1 / (rate * INTERVAL_S)))
                f.write(f"bench_c{k}_total{{{labels}}} {value} {t}\n")
            rows += len(times)
    for k in range(GAUGES):
        f.write(f"# HELP bench_g{k} Queue depth.\n# TYPE bench_g{k} gauge\n")
        for j, labels in enumerate(label_sets()):
            rng = random.Random(f"g{k}/{j}")
            level = rng.uniform(5, 100)
            for t in times:
                f.write(f"bench_g{k}{{{labels}}} {round(level + rng.gauss(0, 3), 3)!r} {t}\n")
            rows += len(times)
    f.write("# EOF\n")
    return rows


def signalbox_config(root: Path) -> Path:
    (root / "monitors").mkdir(parents=True)  # none: serve's monitor loop has nothing to do
    config = root / "signalbox.toml"
    config.write_text(
        f'host = "bench"\nstore = "sqlite:///{root / "sb.db"}"\n'
        '[statsd]\nenabled = false\n[collect]\ninterval = "1h"\n'
    )
    return config


# --- answers ---------------------------------------------------------------------------

Points = dict[tuple[tuple[tuple[str, str], ...], float], float]


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    params: dict[str, str]
    peer: bool  # whether Prometheus answers it too
    vary: bool = False  # each request moves start and end back by 1 ms more (never cached)

    def target(self) -> str:
        return self.path + ("?" + urllib.parse.urlencode(self.params) if self.params else "")


def cases(end_s: int) -> list[Case]:
    grid = end_s // STEP_S * STEP_S

    def qr(expr: str) -> dict[str, str]:
        return {
            "query": expr,
            "start": str(grid - RANGE_S),
            "end": str(grid),
            "step": str(STEP_S),
        }

    return [
        Case("rate", "/api/v1/query_range", qr("rate(bench_c0_total[5m])"), True),
        Case(
            "sum by",
            "/api/v1/query_range",
            qr("sum by (job) (rate(bench_c0_total[5m]))"),
            True,
        ),
        Case("overview", "/", {}, False),
        Case("rate new", "/api/v1/query_range", qr("rate(bench_c0_total[5m])"), True, True),
        Case(
            "sum by new",
            "/api/v1/query_range",
            qr("sum by (job) (rate(bench_c0_total[5m]))"),
            True,
            True,
        ),
    ]


def ask(port: int, path: str, params: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(http_get(port, path, params, timeout=120))
    if doc.get("status") != "success":
        raise RuntimeError(f"port {port} {path} {params}: {str(doc)[:300]}")
    return doc


def points(doc: dict[str, Any]) -> Points:
    out: Points = {}
    data = doc["data"]
    for s in data["result"]:
        key = tuple(sorted(s["metric"].items()))
        for t, v in s["values"] if data["resultType"] == "matrix" else [s["value"]]:
            out[key, float(t)] = float(v)
    return out


def same_answer(name: str, ours: Points, theirs: Points) -> bool:
    """Print how two answers compare: points both have, equal within REL_TOL, and the rest."""
    both = [k for k in ours if k in theirs]
    differ = [
        k
        for k in both
        if not math.isclose(ours[k], theirs[k], rel_tol=REL_TOL, abs_tol=1e-9)
        and not (math.isnan(ours[k]) and math.isnan(theirs[k]))
    ]
    only_ours, only_theirs = len(ours) - len(both), len(theirs) - len(both)
    series = len({k[0] for k in ours})
    line = f"  {name:<9} {series} series, {len(both):,} points both answer, {len(differ)} differ"
    if differ:
        k = differ[0]
        line += f" (first: {dict(k[0])} at {k[1]:.0f}: signalbox {ours[k]!r}, Prometheus "
        line += f"{theirs[k]!r})"
    if only_ours or only_theirs:
        line += f"; points only signalbox has: {only_ours}, only Prometheus: {only_theirs}"
    print(line)
    return not differ and not only_ours and not only_theirs and bool(both)


def check_answers(sb: int, prom: int, cs: list[Case], end_s: int) -> bool:
    print("answers (before timing):")
    ok = True
    count = {"query": 'count({__name__=~"bench_.*"})', "time": str(end_s)}
    for who, port in (("signalbox", sb), ("Prometheus", prom)):
        n = ask(port, "/api/v1/query", count)["data"]["result"]
        stored = int(float(n[0]["value"][1])) if n else 0
        print(f"  {who} holds {stored:,} bench series")
        ok &= stored == COUNTERS * SETS + GAUGES * SETS
    for c in cs:
        if c.peer and not c.vary:  # a vary case asks its fixed twin's query, moved by ms
            ok &= same_answer(
                c.name,
                points(ask(sb, c.path, c.params)),
                points(ask(prom, c.path, c.params)),
            )
    return ok


# --- wrk -------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx answers and socket errors


def parse_wrk(out: str) -> Run:
    """wrk's ``--latency`` report: requests/s, the 50% and 99% lines, errors."""

    def find(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.MULTILINE)
        if m is None:
            raise RuntimeError(f"wrk output without {pattern!r}:\n{out}")
        return m

    bad = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        bad += int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        bad += sum(int(x) for x in errors.groups())
    return Run(
        rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)").group(1)),
        requests=int(find(r"^\s+(\d+) requests in").group(1)),
        bad=bad,
    )


VARY_LUA = """
local base, n = 0, 0
function init(args) base = tonumber(args[1]) end
function request()
  n = n + 1
  local back = (base + n) / 1000
  return wrk.format("GET", string.format("%s", %d - back, %d - back))
end
"""
"""wrk's script for a ``vary`` case: every request's ``start`` and ``end`` one millisecond
further back than the last, from a base (ms) given per run; one wrk thread, one counter."""

VARY_RUN_MS = 20_000  # each wrk run's base is this much further back than the last's
_runs = 0


def vary_script(case: Case, directory: Path) -> Path:
    """The Lua script of ``case`` (its query; the times filled in per request)."""
    fixed = {k: v for k, v in case.params.items() if k not in ("start", "end")}
    query = urllib.parse.urlencode(fixed).replace("%", "%%")
    path = f"{case.path}?{query}&start=%.3f&end=%.3f"
    lua = VARY_LUA % (path, int(case.params["start"]), int(case.params["end"]))
    script = directory / f"vary-{abs(hash(case.name))}.lua"
    script.write_text(lua)
    return script


def drain(port: int, within_s: float = 60.0) -> None:
    """Wait until the server answers a query that reads nothing quickly: requests wrk left
    behind when it stopped (servers do not cancel a query whose client left) would otherwise
    run on into the next case's timing. A new ``time`` each probe, so no cache answers it."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        t = time.perf_counter()
        http_get(port, "/api/v1/query", {"query": "1", "time": f"{random.uniform(1, 1e9):.3f}"})
        if time.perf_counter() - t < 0.05:
            return
        time.sleep(0.2)


GZIP = False
"""``--gzip``: every wrk request says ``Accept-Encoding: gzip``, as Grafana's (Go) HTTP
client does; both servers then answer the query API gzipped."""


def wrk(port: int, case: Case, connections: int, duration_s: int, pin: bool) -> Run:
    global _runs
    argv = [
        need("wrk"),
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "60s",
        "--latency",
    ]
    if GZIP:
        argv += ["-H", "Accept-Encoding: gzip"]
    if case.vary:
        _runs += 1
        script = vary_script(case, Path(tempfile.gettempdir()))
        argv += ["-s", str(script), f"http://{HOST}:{port}/", "--", str(_runs * VARY_RUN_MS)]
    else:
        argv.append(f"http://{HOST}:{port}{case.target()}")
    if pin:
        argv = [need("taskset"), "-c", str(WRK_CPU), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 120)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --- report ----------------------------------------------------------------------------


def report(
    cs: list[Case], runs: dict[tuple[str, str, int], list[Run]], loads: list[int], duration_s: int
) -> None:
    med = statistics.median
    print(f"\nwrk -t1 -d{duration_s}s (1 connection: --alone s), medians over rounds:")
    print(
        f"  {'case':<10} {'conns':>5} {'server':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'errors':>7}"
    )
    for c in cs:
        for n in loads:
            for who in ("signalbox", "prometheus"):
                rs = runs.get((c.name, who, n))
                if not rs:
                    continue
                print(
                    f"  {c.name:<10} {n:>5} {who:<10} {med(r.rps for r in rs):8.1f}"
                    f" {med(r.p50_ms for r in rs):8.1f} {med(r.p99_ms for r in rs):8.1f}"
                    f" {sum(r.bad for r in rs):7}"
                )
    print("per-round ratios signalbox / Prometheus (req/s < 1: signalbox serves fewer;")
    print("p99 > 1: signalbox slower), and their median:")
    for c in cs:
        for n in loads:
            ours, theirs = runs.get((c.name, "signalbox", n)), runs.get((c.name, "prometheus", n))
            if not ours or not theirs:
                continue
            rps = [_ratio(o.rps, t.rps) for o, t in zip(ours, theirs, strict=True)]
            p99 = [_ratio(o.p99_ms, t.p99_ms) for o, t in zip(ours, theirs, strict=True)]
            print(
                f"  {c.name:<10} {n:>2} conns: req/s {', '.join(map(_shown, rps))}"
                f" (median {_shown(_median(rps))}); p99 {', '.join(map(_shown, p99))}"
                f" (median {_shown(_median(p99))})"
            )
    print(f"targets (signalbox's median p99 at {loads[0]} connections):")
    for c in cs:
        ours = runs.get((c.name, "signalbox", loads[0]))
        target = TARGETS_MS.get(c.name)
        if not ours or target is None:
            continue
        p99_ms = med(r.p99_ms for r in ours)
        verdict = "PASS" if p99_ms < target else "FAIL"
        alone = runs.get((c.name, "signalbox", 1)) if loads[-1] == 1 else None
        extra = f" (alone: p99 {med(r.p99_ms for r in alone):.1f} ms)" if alone else ""
        print(f"  {c.name:<10} p99 {p99_ms:.1f} ms{extra}, target under {target:g} ms: {verdict}")


def _ratio(ours: float, theirs: float) -> float | None:
    """ours / theirs, or None when the peer's figure is 0 (a round in which it served
    nothing under load: no ratio to report, and no division by zero)."""
    return ours / theirs if theirs else None


def _median(ratios: list[float | None]) -> float | None:
    """The median of the rounds that have a ratio (None when none has)."""
    known = [r for r in ratios if r is not None]
    return statistics.median(known) if known else None


def _shown(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}"


# --- main ------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    ap.add_argument(
        "--alone",
        type=int,
        default=5,
        help="seconds of a 1-connection run after each loaded one, for context (5; 0: none)",
    )
    ap.add_argument(
        "--no-pin", action="store_true", help="no taskset: servers and wrk share all cores"
    )
    ap.add_argument(
        "--gzip",
        action="store_true",
        help="wrk sends Accept-Encoding: gzip, as Grafana does (both servers compress)",
    )
    a = ap.parse_args()
    global GZIP
    GZIP = a.gzip
    if GZIP:
        print("wrk sends Accept-Encoding: gzip (--gzip)")
    if a.rounds < 1 or a.duration < 1 or a.connections < 2 or a.alone < 0:
        ap.error("--rounds and --duration at least 1, --connections at least 2, --alone >= 0")
    need("wrk")
    pin = not a.no_pin
    if pin:
        need("taskset")
        cpus = os.sched_getaffinity(0)
        if not {SERVER_CPU, WRK_CPU} <= cpus:
            ap.error(f"pinning needs CPUs {SERVER_CPU} and {WRK_CPU}; this has {sorted(cpus)}")

    began = time.perf_counter()
    end_s = int(time.time()) // STEP_S * STEP_S - OFFSET_S  # the last sample
    cs = cases(end_s + OFFSET_S)
    with (
        tempfile.TemporaryDirectory(prefix="sb-bench-api-load-") as d,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(d)
        om = tmp / "data.om"
        t = time.perf_counter()
        with om.open("w") as f:
            rows = write_openmetrics(f, end_s)
        print(
            f"data: {COUNTERS * SETS + GAUGES * SETS:,} series ({COUNTERS} counters, {GAUGES}"
            f" gauges x {SETS} label sets), {rows:,} samples every {INTERVAL_S} s over {HOURS} h"
            f" ending {time.strftime('%F %H:%M:%S', time.gmtime(end_s))} UTC"
            f" ({time.perf_counter() - t:.1f} s to write)"
        )
        root = tmp / "sb"
        config = signalbox_config(root)
        t = time.perf_counter()
        importer = Child(
            [signalbox_exe(), "--config", str(config), "import", str(om)], root / "import.log"
        )
        stack.callback(importer.close)
        create_blocks(om, tmp / "prom" / "data")
        print(f"  promtool tsdb create-blocks-from openmetrics: {time.perf_counter() - t:.1f} s")
        if importer.proc.wait(timeout=1800) != 0:
            print(f"signalbox import failed:\n{importer.tail()}")
            return 1
        print(f"  signalbox import (beside promtool): {time.perf_counter() - t:.1f} s")

        if pin:  # the servers inherit this process's CPU; wrk gets the other one
            os.sched_setaffinity(0, {SERVER_CPU})
        prom = Prometheus(tmp / "prom", tmp / "prom" / "data", retention="30d")
        stack.callback(prom.close)
        sb_port = free_port()
        serve = Child(
            [signalbox_exe(), "--config", str(config), "serve", "--port", str(sb_port)],
            root / "serve.log",
        )
        stack.callback(serve.close)
        wait_for("signalbox serve", lambda: http_ok(sb_port, "/-/ready"), 60, serve.proc)
        if pin:
            os.sched_setaffinity(0, {SERVER_CPU, WRK_CPU})  # this process just waits for wrk
            print(f"pinned: signalbox serve and prometheus to CPU {SERVER_CPU}, wrk to {WRK_CPU}")
        else:
            print("not pinned: signalbox serve, prometheus and wrk share all cores")
        compactions = prom.value("prometheus_tsdb_compactions_total")
        blocks = int(prom.value("prometheus_tsdb_blocks_loaded"))
        print(f"  Prometheus loaded {blocks} block(s), {compactions:.0f} compaction(s) so far")
        sizes = ", ".join(
            f"{c.name} {len(http_get(sb_port, c.path, c.params)) / 1e3:.0f} kB"
            + (f" / {len(http_get(prom.port, c.path, c.params)) / 1e3:.0f} kB" if c.peer else "")
            for c in cs
            if not c.vary
        )
        print(f"  response bodies, signalbox / Prometheus: {sizes}")

        if not check_answers(sb_port, prom.port, cs, end_s + OFFSET_S):
            print("the answers differ: not timing unlike work")
            return 1

        sides = {"signalbox": sb_port, "prometheus": prom.port}
        loads = [a.connections] + ([1] if a.alone else [])
        seconds = {a.connections: a.duration, 1: a.alone}
        for c in cs:  # warm-up, untimed
            for who, port in sides.items():
                if c.peer or who == "signalbox":
                    wrk(port, c, a.connections, WARMUP_S, pin)
                    drain(port)
        runs: dict[tuple[str, str, int], list[Run]] = {}
        names = list(sides)
        for r in range(a.rounds):
            order = names[r % 2 :] + names[: r % 2]
            print(f"round {r + 1} ({' first, '.join(order)} second):")
            for c in cs:
                for n in loads:
                    for who in order:
                        if not c.peer and who != "signalbox":
                            continue
                        run = wrk(sides[who], c, n, seconds[n], pin)
                        drain(sides[who])
                        runs.setdefault((c.name, who, n), []).append(run)
                        print(
                            f"  {c.name:<10} {n:>2} conns {who:<10} {run.rps:8.1f} req/s"
                            f"  p50 {run.p50_ms:7.1f} ms  p99 {run.p99_ms:7.1f} ms"
                            f"  ({run.requests} requests"
                            + (f", {run.bad} errors" if run.bad else "")
                            + ")"
                        )
        report(cs, runs, loads, a.duration)
        blocks = int(prom.value("prometheus_tsdb_blocks_loaded"))
        compactions = prom.value("prometheus_tsdb_compactions_total") - compactions
        print(f"Prometheus: {blocks} block(s) loaded, {compactions:.0f} compaction(s) while timed")
        if serve.proc.poll() is not None:
            print(f"signalbox serve exited: {serve.tail()}")
            return 1
    print(f"whole run: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
