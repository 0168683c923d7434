"""Importing old history: ``signalbox import`` beside ``promtool tsdb create-blocks-from
openmetrics`` (Prometheus' own backfill), on the same OpenMetrics file, in the same run.

The file is the one ``bench/query_vs_prometheus.py`` imports (made by its generator and cached
in the temp dir the same way): ``--series`` series over ``--days`` days at one sample a minute
-- counters with resets, gauges, classic histogram buckets -- ending at the current minute, so
all but the last day is older than signalbox's raw retention (1 d, ``signalbox init``'s
defaults written out: rollups 1m for 8 d, 5m for 35 d, 1h for 400 d). That is the path this
measures: samples written, rolled up into every tier, and the raw partitions past retention
dropped, as ``signalbox import`` does it end to end (a fresh SQLite store each round, process
start included, until it exits).

promtool 2.42 has no ``--max-block-duration``: it reads its whole input once per 2h block it
writes, so its time grows with the square of the days in one file. ``--promtool-by-day`` feeds
it one file per day instead (the query bench's way, a day's 12 blocks each), and times the
sum; the default is the same file as signalbox's.

Each round runs both, the side that goes first alternating; reported: each side's times, the
median, and the median of per-round ratios (signalbox / promtool; > 1: signalbox slower), with
the machine's load average before and after (the machine is shared: read the ratios).

    .venv/bin/python bench/import_history.py --quick          # 40 series x 8 d, 3 rounds
    .venv/bin/python bench/import_history.py                  # 200 series x 30 d, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from query_vs_prometheus import cached_openmetrics, signalbox_config

from peers import median_ratio, need, run_main, signalbox_exe


def signalbox_import(om: Path, root: Path, tiers: str, src: Path | None = None) -> float:
    """Seconds for ``signalbox import`` of ``om`` into a fresh store under ``root``; with
    ``src``, the signalbox package of that source tree instead of this checkout's."""
    shutil.rmtree(root, ignore_errors=True)
    config = signalbox_config(root, tiers)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    t = time.perf_counter()
    r = subprocess.run(
        [signalbox_exe(), "--config", str(config), "import", str(om)],
        capture_output=True,
        text=True,
        timeout=7200,
        env=env,
    )
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"signalbox import failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return took


def promtool_blocks(files: list[Path], out: Path) -> float:
    """Seconds for promtool to write the blocks of ``files`` (one after the other) to ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    promtool = need("promtool")
    t = time.perf_counter()
    for f in files:
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(f), str(out)],
            check=True,
            capture_output=True,
            timeout=7200,
        )
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    ap.add_argument("--days", type=int, help="days of data, 1..60 (30; --quick: 8)")
    ap.add_argument("--series", type=int, help="series, at least 20 (200; --quick: 40)")
    ap.add_argument("--quick", action="store_true", help="40 series, 8 days")
    ap.add_argument("--offset-s", type=int, default=30, help="seconds before each minute (30)")
    ap.add_argument("--tiers", default="1m:8d,5m:35d,1h:400d", help="signalbox rollup tiers")
    ap.add_argument("--promtool-by-day", action="store_true", help="promtool fed a day a file")
    ap.add_argument("--fresh", action="store_true", help="rewrite the cached data file")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="also time the signalbox of this source tree (e.g. `git archive REV src | tar -x`)",
    )
    a = ap.parse_args()
    days = a.days or (8 if a.quick else 30)
    n_series = a.series or (40 if a.quick else 200)
    if not 1 <= days <= 60 or a.rounds < 1 or n_series < 20:
        ap.error("--days must be 1..60, --rounds at least 1, --series at least 20")
    om, day_files, _ = cached_openmetrics(n_series, days, a.offset_s, a.fresh)
    samples = n_series * days * 1440
    peer_files = day_files if a.promtool_by_day else [om]
    how = f"{len(day_files)} files of a day" if a.promtool_by_day else "the same file"
    print(
        f"{n_series} series x {days} d at 60 s (~{samples:,} samples, "
        f"{om.stat().st_size / 1e6:.0f} MB); promtool on {how}; {a.rounds} rounds; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    ours: list[float] = []
    theirs: list[float] = []
    baseline: list[float] = []
    if a.baseline_src is not None and not (a.baseline_src / "signalbox").is_dir():
        ap.error(f"--baseline-src {a.baseline_src}: no signalbox package in it")
    with tempfile.TemporaryDirectory(prefix="sb-bench-import-") as d:
        tmp = Path(d)
        for r in range(a.rounds):
            sides = [
                (ours, lambda: signalbox_import(om, tmp / "sb", a.tiers)),
                (theirs, lambda: promtool_blocks(peer_files, tmp / "prom")),
            ]
            if a.baseline_src is not None:
                base = a.baseline_src
                sides.append(
                    (baseline, lambda b=base: signalbox_import(om, tmp / "sb", a.tiers, b))
                )
            k = r % len(sides)
            for times, run in sides[k:] + sides[:k]:
                times.append(run())
            line = (
                f"  round {r + 1}: signalbox import {ours[-1]:7.1f} s, promtool {theirs[-1]:7.1f} s"
            )
            if baseline:
                line += f", baseline signalbox import {baseline[-1]:7.1f} s"
            print(f"{line}  (load {os.getloadavg()[0]:.1f})")
    med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
    print(
        f"signalbox import: median {med_ours:.1f} s ({samples / med_ours:,.0f} samples/s); "
        f"promtool: median {med_theirs:.1f} s ({samples / med_theirs:,.0f} samples/s)"
    )
    print(f"signalbox / promtool: {median_ratio(ours, theirs):.2f}x (median of per-round ratios)")
    if baseline:
        print(
            f"baseline signalbox import: median {statistics.median(baseline):.1f} s; "
            f"signalbox / baseline: {median_ratio(ours, baseline):.2f}x, baseline / promtool: "
            f"{median_ratio(baseline, theirs):.2f}x (medians of per-round ratios)"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
