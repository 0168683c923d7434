"""Range queries over 8 days at 1-minute steps: signalbox on SQLite beside Prometheus' own
query engine, same data, same expressions, same range and step, in the same run.

Data: two series, ``x{job="api"}`` (a gauge) and ``c_total{job="api"}`` (a counter),
scraped every 10 s for ``--days`` days up to now (8 days: 69,120 samples each), written
once as OpenMetrics text. The samples sit 5 s off the 1-minute step grid, as scrapes do:
Prometheus 2.x windows include their left edge (``[t-5m, t]``), signalbox's windows, like
Prometheus 3's, do not (``(t-5m, t]``), so a sample exactly on an edge would make the two
differ by design. signalbox loads it through ``signalbox import`` into a SQLite
store with the default retention (raw 1 d, then 1m/5m/1h rollups), which compacts as a
user's store is: the 8-day window is answered from 1-minute rollups. Prometheus gets the
same file through ``promtool tsdb create-blocks-from openmetrics``; the script waits for
Prometheus' own compaction of those 2h blocks (about a minute after it starts) so it reads
blocks as a long-running server has them.

Timed, per round and per query, in an order that rotates every round:

* signalbox HTTP: ``GET /api/v1/query_range`` from ``signalbox serve`` (its own process);
* Prometheus HTTP: the same request to Prometheus;
* signalbox engine only: ``Engine.range`` in this process over the same store, one call
  for the whole range (no HTTP, no JSON).

Both HTTP sides get the same requests: Prometheus refuses more than 11,000 steps in one
query, so 8 days at 1 m (11,521 steps) is asked as two requests, for both. The HTTP figures
are the full round trip (new connection, query, JSON encoding, body read). Read the
"signalbox / Prometheus" column, the median of per-round ratios (> 1: signalbox is
slower): each round's pair ran under the same machine state.

Answers are checked against each other: over the last 6 h (raw data on both sides) they
must agree, point for point, within float tolerance, or the script says DIFFER and exits
1; over the whole range the output counts how many points agree. They differ there by
design: signalbox reads 1-minute rollup buckets beyond its raw retention, so a step sees
the newest sample of the bucket ending at it rather than the sample at the step itself,
and ``*_over_time``/``rate`` windows align to bucket edges.

    .venv/bin/python bench/query_engine.py                  # full: 8 days, 9 rounds
    .venv/bin/python bench/query_engine.py --days 1 --rounds 2   # quick check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from peers import (
    Child,
    Prometheus,
    create_blocks,
    free_port,
    http_get,
    http_ok,
    median_ratio,
    run_main,
    signalbox_exe,
    wait_for,
)

SCRAPE_S = 10
OFFSET_S = 5  # samples sit between steps, never on a window's edge (see the docstring)
STEP_S = 60
MAX_STEPS = 11_000  # Prometheus' limit per range query
RAW_CHECK_S = 6 * 3600  # within signalbox's raw retention (1 d) and Prometheus' blocks
REL_TOL = 1e-9
QUERIES = (
    "x",
    "avg_over_time(x[5m])",
    "max_over_time(x[5m])",
    "rate(c_total[5m])",
    "sum by (job) (rate(c_total[5m]))",
    "x > 0.5",
    "x * 2 + 1",
)

Matrix = dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]


def write_openmetrics(path: Path, start_s: int, end_s: int) -> int:
    """Both series as OpenMetrics text with timestamps (the format both loaders read)."""
    n = 0
    with path.open("w") as f:
        f.write("# TYPE x gauge\n")
        for i, t in enumerate(range(start_s + OFFSET_S, end_s, SCRAPE_S)):
            f.write(f'x{{job="api"}} {0.5 + 0.5 * math.sin(i / 500)!r} {t}\n')
            n += 1
        f.write("# TYPE c counter\n")
        for i, t in enumerate(range(start_s + OFFSET_S, end_s, SCRAPE_S)):
            f.write(f'c_total{{job="api"}} {float(i * 3)!r} {t}\n')
            n += 1
        f.write("# EOF\n")
    return n


def chunks(start_s: int, end_s: int) -> list[tuple[int, int]]:
    """The range as the fewest even pieces of at most MAX_STEPS steps, no step twice."""
    steps = (end_s - start_s) // STEP_S + 1
    parts = math.ceil(steps / MAX_STEPS)
    bounds = [round(k * steps / parts) for k in range(parts + 1)]
    return [
        (start_s + bounds[k] * STEP_S, start_s + (bounds[k + 1] - 1) * STEP_S) for k in range(parts)
    ]


def fetch(port: int, query: str, pieces: list[tuple[int, int]]) -> list[bytes]:
    return [
        http_get(
            port,
            "/api/v1/query_range",
            {"query": query, "start": str(a), "end": str(b), "step": str(STEP_S)},
        )
        for a, b in pieces
    ]


def matrix(bodies: list[bytes], who: str, query: str) -> Matrix:
    out: Matrix = {}
    for body in bodies:
        doc = json.loads(body)
        if doc.get("status") != "success" or doc["data"]["resultType"] != "matrix":
            raise RuntimeError(f"{who} answered {query!r} with {body[:300]!r}")
        for series in doc["data"]["result"]:
            key = tuple(sorted(series["metric"].items()))
            out.setdefault(key, []).extend((float(t), float(v)) for t, v in series["values"])
    return out


def agreement(ours: Matrix, theirs: Matrix) -> tuple[int, int, int, float]:
    """(our points, their points, points equal within tolerance, largest difference)."""
    n_ours = sum(map(len, ours.values()))
    n_theirs = sum(map(len, theirs.values()))
    same, worst = 0, 0.0
    for key, pts in ours.items():
        other = dict(theirs.get(key, []))
        for t, v in pts:
            w = other.get(t)
            if w is None:
                continue
            if math.isclose(v, w, rel_tol=REL_TOL, abs_tol=1e-12):
                same += 1
            else:
                worst = max(worst, abs(v - w))
    return n_ours, n_theirs, same, worst


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=8, help="days of data and query range (8)")
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds (9)")
    ap.add_argument(
        "--no-wait-compaction",
        action="store_true",
        help="query Prometheus' backfilled 2h blocks without waiting a minute for its compaction",
    )
    a = ap.parse_args()
    if not 1 <= a.days <= 30 or a.rounds < 1:
        ap.error("--days must be 1..30 and --rounds at least 1")

    from signalbox.config import load_settings
    from signalbox.query import parse_expr
    from signalbox.runtime import open_metric_store, query_engine

    end_s = int(time.time()) // 60 * 60
    start_s = end_s - a.days * 86400
    pieces = chunks(start_s, end_s)
    raw_pieces = chunks(end_s - min(RAW_CHECK_S, a.days * 86400), end_s)
    steps = (end_s - start_s) // STEP_S + 1
    failed = False
    with (
        tempfile.TemporaryDirectory(prefix="sb-bench-query-") as d,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(d)
        om = tmp / "data.om"
        n = write_openmetrics(om, start_s, end_s)
        print(
            f"{a.days} days at 1m steps ({steps:,} steps), 2 series scraped every {SCRAPE_S} s "
            f"({n:,} samples), {a.rounds} rounds"
        )

        # signalbox: `signalbox import` into SQLite (it compacts), then `signalbox serve`
        root = tmp / "sb"
        (root / "monitors").mkdir(parents=True)  # none: serve's monitor loop has nothing to do
        config = root / "signalbox.toml"
        config.write_text(
            f'host = "bench"\nstore = "sqlite:///{root / "sb.db"}"\n[statsd]\nenabled = false\n'
        )
        t = time.perf_counter()
        subprocess.run(
            [signalbox_exe(), "--config", str(config), "import", str(om)],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        print(f"  signalbox import (SQLite, then compaction): {time.perf_counter() - t:6.1f} s")
        sb_port = free_port()
        serve = Child(
            [signalbox_exe(), "--config", str(config), "serve", "--port", str(sb_port)],
            root / "serve.log",
        )
        stack.callback(serve.close)
        wait_for(
            "signalbox serve",
            lambda: http_ok(sb_port, "/-/ready"),
            60,
            serve.proc,
        )

        # Prometheus: promtool backfill of the same file
        t = time.perf_counter()
        create_blocks(om, tmp / "prom" / "data")
        print(f"  promtool tsdb create-blocks-from openmetrics: {time.perf_counter() - t:6.1f} s")
        prom = Prometheus(tmp / "prom", tmp / "prom" / "data", retention=f"{a.days + 30}d")
        stack.callback(prom.close)
        if a.no_wait_compaction:
            blocks = int(prom.value("prometheus_tsdb_blocks_loaded"))
            print(
                f"  Prometheus reads {blocks} backfilled blocks (not compacted: --no-wait-compaction)"
            )
        else:
            t = time.perf_counter()
            blocks = prom.wait_compacted()
            print(
                f"  Prometheus compacted the backfilled blocks into {blocks} "
                f"(waited {time.perf_counter() - t:.0f} s)"
            )

        store = open_metric_store(load_settings(str(config), environ={}))
        stack.callback(store.close)
        engine = query_engine(store)

        print(
            f"answers: last {RAW_CHECK_S // 3600} h (raw on both sides) must agree; the whole "
            "range is read from signalbox's 1m rollups, so it differs by design (see --help)"
        )
        for q in QUERIES:
            raw_ours = matrix(fetch(sb_port, q, raw_pieces), "signalbox", q)
            raw_theirs = matrix(fetch(prom.port, q, raw_pieces), "prometheus", q)
            r_ours, r_theirs, r_same, r_worst = agreement(raw_ours, raw_theirs)
            ok = r_ours == r_theirs == r_same and raw_ours.keys() == raw_theirs.keys()
            failed |= not ok
            f_ours, f_theirs, f_same, f_worst = agreement(
                matrix(fetch(sb_port, q, pieces), "signalbox", q),
                matrix(fetch(prom.port, q, pieces), "prometheus", q),
            )
            print(
                f"  {q:<34} last {RAW_CHECK_S // 3600} h: {'agree' if ok else 'DIFFER'} "
                f"({r_same:,} of {r_ours:,}/{r_theirs:,} points"
                f"{f', max diff {r_worst:.3g}' if r_worst else ''});  whole range: "
                f"{f_same:,} of {f_ours:,}/{f_theirs:,} points equal"
                f"{f', max diff {f_worst:.3g}' if f_worst else ''}"
            )

        exprs = {q: parse_expr(q) for q in QUERIES}
        contenders: dict[str, Callable[[str], Any]] = {
            "sb_http": lambda q: fetch(sb_port, q, pieces),
            "prom_http": lambda q: fetch(prom.port, q, pieces),
            "engine": lambda q: engine.range(exprs[q], start_s * 1000, end_s * 1000, STEP_S * 1000),
        }
        times: dict[tuple[str, str], list[float]] = {
            (q, c): [] for q in QUERIES for c in contenders
        }
        for name in contenders:  # warm-up, untimed: first-touch costs are not the figure
            for q in QUERIES:
                contenders[name](q)
        order = list(contenders)
        for r in range(a.rounds):
            turn = order[r % len(order) :] + order[: r % len(order)]
            for q in QUERIES:
                for name in turn:
                    times[q, name].append(timed(partial(contenders[name], q)))

        print(
            f"query_range over {a.days} d at 1m, {len(pieces)} request(s) of <= {MAX_STEPS:,} "
            f"steps each, medians of {a.rounds} rounds (ms):"
        )
        print(
            f"  {'query':<34} {'signalbox HTTP':>15} {'Prometheus HTTP':>16} "
            f"{'signalbox / Prometheus':>23} {'signalbox engine only':>22}"
        )
        for q in QUERIES:
            ours, theirs, eng = times[q, "sb_http"], times[q, "prom_http"], times[q, "engine"]
            print(
                f"  {q:<34} {statistics.median(ours) * 1000:15.1f} "
                f"{statistics.median(theirs) * 1000:16.1f} "
                f"{median_ratio(ours, theirs):22.2f}x {statistics.median(eng) * 1000:22.1f}"
            )
        print(
            "  (signalbox / Prometheus: median of per-round ratios of the HTTP times; "
            "> 1 means signalbox took longer)"
        )
        if failed:
            print("DIFFER: signalbox and Prometheus disagree on raw data (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
