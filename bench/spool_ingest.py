"""Spool ingest benchmark: signalbox `collect --once` vs Graphite whisper vs node_exporter.

200 files x 500 key=value lines = 100,000 samples. We time a steady-state pass (the series
already exist, as when the collector runs every minute): `signalbox collect --once` end to end,
process start included, until all 100k are stored and queryable. In the same run, on the same
data: whisper (PyPI) updating the same 100k series one point each, and Prometheus'
node_exporter textfile collector serving the same files as `.prom` (time of one scrape).
Also: one series over 8 days at 1-minute resolution through the query engine; and, once
each, the first pass (every series and file shape new) and a pass where every file changed shape.

Usage: .venv/bin/python bench/spool_ingest.py [--runs 5] [--skip-whisper] [--skip-node-exporter]
Needs: pip install whisper (the `dev` extra); Debian's prometheus-node-exporter.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FILES, LINES = 200, 500
N = FILES * LINES
SIGNALBOX = str(Path(sys.executable).parent / "signalbox")


def make_spool(spool: Path, *, prom: bool = False, round_no: int = 0, extra: str = "") -> None:
    """``extra``: one more line per file, which gives every file a new shape."""
    spool.mkdir(parents=True, exist_ok=True)
    sep = " " if prom else "="
    for f in range(FILES):
        lines = [
            f"app{f}_metric_{j}{sep}{(f * 7 + j * 13 + round_no) % 1000}.5" for j in range(LINES)
        ]
        if extra:
            lines.append(f"{extra}{f}{sep}1")
        tmp = spool / f".app{f}.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, spool / f"app{f}.{'prom' if prom else 'metrics'}")


def bench_signalbox(root: Path, runs: int) -> tuple[list[float], float, float]:
    """Steady-state pass times; and, once each, the first pass (100k new series, every
    file's shape registered) and a pass where every file gained a line (new shapes)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "signalbox.toml").write_text('host = "bench"\n[statsd]\nenabled = false\n')
    spool = root / ".signalbox" / "spool"
    make_spool(spool)
    # As installed for a user: Python caches compiled modules. (This sandbox sets
    # PYTHONDONTWRITEBYTECODE, which would add ~25 ms of compiling to every process.)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIGNALBOX_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    t = time.perf_counter()
    subprocess.run(
        [SIGNALBOX, "collect", "--once"], cwd=root, env=env, check=True, capture_output=True
    )  # series now exist
    first = time.perf_counter() - t
    times = []
    for r in range(runs):
        make_spool(spool, round_no=r + 1)  # new values, same series
        time.sleep(1.1)  # a new timestamp (1 s apart is enough for distinct samples)
        t = time.perf_counter()
        subprocess.run(
            [SIGNALBOX, "collect", "--once"], cwd=root, env=env, check=True, capture_output=True
        )
        times.append(time.perf_counter() - t)
    # all 100k queryable?
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from signalbox.config import load_settings
    from signalbox.metrics.samples import Matcher
    from signalbox.runtime import open_metric_store

    store = open_metric_store(load_settings(str(root / "signalbox.toml"), environ={}))
    latest = store.latest([Matcher("__name__", "=~", "app.*")])
    assert len(latest) == N, f"only {len(latest)} of {N} series queryable"
    store.close()
    make_spool(spool, round_no=runs + 1, extra="added_line_")
    time.sleep(1.1)
    t = time.perf_counter()
    subprocess.run(
        [SIGNALBOX, "collect", "--once"], cwd=root, env=env, check=True, capture_output=True
    )
    reshaped = time.perf_counter() - t
    return times, first, reshaped


def bench_whisper(root: Path, runs: int) -> list[float] | None:
    try:
        import whisper
    except ImportError:
        print("whisper not installed (pip install whisper): skipped")
        return None
    d = root / "whisper"
    d.mkdir()
    paths = []
    for f in range(FILES):
        for j in range(LINES):
            p = str(d / f"app{f}_metric_{j}.wsp")
            whisper.create(p, [(60, 1440)])  # 1 day at 1 minute: small files, same update cost
            paths.append(p)
    times = []
    now = int(time.time())
    for r in range(runs):
        ts = now - 60 * (runs - r)  # within the archive, one new minute per run
        t = time.perf_counter()
        for i, p in enumerate(paths):
            whisper.update(p, float(i % 1000) + 0.5, ts)
        times.append(time.perf_counter() - t)
    shutil.rmtree(d)
    return times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_node_exporter(root: Path, runs: int) -> list[float] | None:
    exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not exe:
        print("prometheus-node-exporter not installed: skipped")
        return None
    d = root / "textfile"
    make_spool(d, prom=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={d}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=30).read()
                break
            except OSError:
                time.sleep(0.1)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=60).read()
            times.append(time.perf_counter() - t)
        assert body.count(b"\napp") >= N - 1, "node_exporter did not serve all samples"
        return times
    finally:
        proc.terminate()
        proc.wait(10)


def bench_query(root: Path, runs: int) -> list[float]:
    from signalbox.clock import FrozenClock
    from signalbox.metrics.samples import Sample
    from signalbox.metrics.sqlstore import SQLMetricStore
    from signalbox.query import Engine
    from signalbox.storage import open_database

    now = int(time.time()) // 60 * 60 * 1000
    store = SQLMetricStore(
        open_database(f"sqlite:///{root / 'q.db'}"), clock=FrozenClock(now / 1000)
    )
    day = 86400_000
    store.write(
        [
            Sample("latency", (("host", "web1"),), float(i % 97), now - 8 * day + i * 60_000)
            for i in range(8 * 1440)
        ],
        now,
    )
    store.compact(now)
    engine = Engine(store)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        res = engine.range("latency", now - 8 * day, now, 60_000)
        times.append(time.perf_counter() - t)
    pts = len(res.matrix[0][1])
    assert pts >= 8 * 1440 - 5, pts
    store.close()
    return times


def report(name: str, times: list[float] | None, samples: int = N) -> float | None:
    if not times:
        return None
    med = statistics.median(times)
    print(
        f"{name:<42} median {med * 1000:8.1f} ms  {samples / med:>12,.0f} samples/s  (runs: {', '.join(f'{t * 1000:.0f}' for t in times)} ms)"
    )
    return samples / med


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-whisper", action="store_true")
    ap.add_argument("--skip-node-exporter", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        root = Path(tmp)
        print(
            f"spool ingest: {FILES} files x {LINES} lines = {N:,} samples, {a.runs} runs each, {os.cpu_count()} cores"
        )
        steady, first, reshaped = bench_signalbox(root / "sb", a.runs)
        ours = report("signalbox collect --once (process incl.)", steady)
        print(f"  first pass (100k new series, shapes registered): {first * 1000:8.1f} ms")
        print(f"  a pass where every file changed shape:           {reshaped * 1000:8.1f} ms")
        wsp = (
            None if a.skip_whisper else report("whisper.update x 100k", bench_whisper(root, a.runs))
        )
        ne = (
            None
            if a.skip_node_exporter
            else report("node_exporter textfile scrape", bench_node_exporter(root, a.runs))
        )
        for peer, rate in (("whisper", wsp), ("node_exporter", ne)):
            if rate and ours:
                print(f"  signalbox / {peer}: {ours / rate:.1f}x")
        q = bench_query(root, max(a.runs, 9))
        print(
            f"{'query: 1 series, 8 days at 1m (11,520 pts)':<42} median {statistics.median(q) * 1000:8.1f} ms  (target < 20 ms)"
        )


if __name__ == "__main__":
    main()
