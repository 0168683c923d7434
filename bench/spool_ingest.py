"""Spool ingest benchmark: signalbox `collect --once` vs Graphite whisper vs node_exporter.

200 files x 500 key=value lines = 100,000 samples (``--files 2000``: a million). We time
steady-state passes (the series already exist, as when the collector runs every minute), end
to end, process start included, until all are stored and queryable:

* `signalbox collect --once --no-compact` -- the ingest figure: spool read, parse, store.
  This is what every host of a shared store runs; it does not depend on the clock.
* `signalbox collect --once` -- the same pass followed by compaction (rollups of every
  closed bucket, retention), as a single-host cron runs it. Compaction only has work when a
  minute has closed since the last one, so this figure depends on how many of the rounds
  cross a minute; the output says how many did, and the per-round difference between the
  two passes.
* `signalbox collect --once --no-compact` over the same files as `.prom` (Prometheus text,
  another spool dir and store): their frames path.
* Compaction on its own line: in-process, at one pass a minute ("rollup at one pass a
  minute"), 1m buckets of the series each minute and 5m buckets every fifth minute.

In the same run, round by round, on the same data: whisper (PyPI) updating the same 100k
series one point each (one archive, so no rollups on its side; skipped past 200 files: a
million whisper files), and Prometheus' node_exporter textfile collector serving the same
files as `.prom` (time of one scrape).
Each round runs every contender once, so the machine's speed drift hits all alike; read the
"median of per-round ratios" lines for the comparison. Also: one series over 8 days at
1-minute resolution through the query engine, stored as rows and as frames (4 files x 500
series, at a 1m and a 1h step); ``sum by (shard)`` at one instant over ``--files`` files of
one metric with a ``shard`` label, written once by ``collect --once``; and, once each, the first pass (every series
and file shape new) of the `.metrics` spool, of the `.prom` spool and of a labelled `.metrics`
spool (``bench_requests{shard,file,line}``, every line one metric), with the peak RSS of that
`collect --once` process, and a pass where every file changed shape.

``--baseline-src DIR`` (another checkout's ``src``, e.g. ``git worktree add /tmp/old
<commit>``): the first passes (.metrics, .prom, labelled) of that tree's code and of this one,
each in a new store, ``--first-rounds`` times, alternating which goes first, with wall time,
CPU time (user + system: the figure a loaded machine disturbs least) and peak RSS of each,
and the median of per-round ratios. ``--first-only``: those first passes and nothing else
(no steady rounds, peers, rollups or queries): the way to compare first passes at 1M.

``--day``: a day's cycle of compaction with the day's partitions filling up (``bench_day``:
a frozen clock driven minute by minute through a day, one frame per file a minute), per kind
of minute (1m only, a 5m bucket closes, a 1h bucket closes), early vs late in the day, its
process's peak RSS and the store's size. A day at 2,000 files stores ~50 GB (raw frames and
1m buckets 8 bytes a value a minute, 5m and 1h buckets 11 statistics): ``--day-max-gb``
(30) scales the day's files down and says so; ``--day-minutes N`` compacts only the first
and last N/2 minutes one by one (the others written, compacted at once) to save time.

``--pg URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``): SQLite against PostgreSQL
and nothing else: ``--first-rounds`` first passes and ``--runs`` steady passes (``--no-compact``
and plain) of each, a new schema per store (dropped after), the order swapped every round;
wall and CPU of the ``collect --once`` process (the server's own CPU is not in it), medians
of per-round ratios.

Usage: .venv/bin/python bench/spool_ingest.py [--files 200] [--runs 5] [--skip-whisper]
       [--skip-node-exporter] [--skip-rollup] [--day | --day-only] [--day-minutes 1440]
       [--day-files N] [--day-max-gb 30] [--baseline-src DIR] [--first-rounds 1] [--first-only] [--pg URL]
Needs: pip install whisper (the `dev` extra); Debian's prometheus-node-exporter.
Runs against any checkout whose CLI has `collect --once --no-compact`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

FILES, LINES = 200, 500  # FILES: --files
N = FILES * LINES
SIGNALBOX = str(Path(sys.executable).parent / "signalbox")
TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time: a child's peak RSS (see _pass)


def make_spool(
    spool: Path, *, prom: bool = False, round_no: int = 0, extra: str = "", shards: int = 0
) -> None:
    """``extra``: one more line per file, which gives every file a new shape. ``shards``:
    every line is instead the one metric ``bench_requests{shard="<file % shards>",line="j"}``
    (a million series of one name at 2,000 files, for ``sum by (shard)``)."""
    spool.mkdir(parents=True, exist_ok=True)
    sep = " " if prom else "="
    for f in range(FILES):
        lines = [
            (
                f'bench_requests{{shard="{f % shards}",file="{f}",line="{j}"}}'
                if shards
                else f"app{f}_metric_{j}"
            )
            + f"{sep}{(f * 7 + j * 13 + round_no) % 1000}.5"
            for j in range(LINES)
        ]
        if extra:
            lines.append(f"{extra}{f}{sep}1")
        tmp = spool / f".app{f}.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, spool / f"app{f}.{'prom' if prom else 'metrics'}")


_ENV = {  # as installed for a user: Python caches compiled modules (this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which would add ~25 ms of compiling to every process)
    k: v
    for k, v in os.environ.items()
    if not k.startswith("SIGNALBOX_") and k != "PYTHONDONTWRITEBYTECODE"
}


def rollup_grace_s() -> float:
    """How long after a minute ends compaction rolls it up (30 s where not found)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    try:
        from signalbox.metrics.sql import rollup

        return float(getattr(rollup, "_ROLLUP_GRACE_MS", 30_000)) / 1000
    except ImportError:
        return 30.0


class Signalbox:
    """``collect --once`` passes over the spool (``prom``: the files as ``.prom``); the first
    pass creates the series."""

    def __init__(
        self,
        root: Path,
        *,
        prom: bool = False,
        shards: int = 0,
        src: str | None = None,
        store: str | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # store: a store URL (e.g. PostgreSQL, see --pg); the default is the data dir's SQLite
        line = "" if store is None else f"store = {json.dumps(store)}\n"
        (root / "signalbox.toml").write_text(f'host = "bench"\n{line}[statsd]\nenabled = false\n')
        self.root, self.spool, self.prom = root, root / ".signalbox" / "spool", prom
        # src: another checkout's code (its first pass beside ours, see --baseline-src)
        self.env = _ENV if src is None else {**_ENV, "PYTHONPATH": src}
        self.cpu_s = 0.0
        make_spool(self.spool, prom=prom, shards=shards)
        os.sync()
        self.first = self._pass()  # every series new, every file's shape registered
        self.first_rss_kb, self.first_cpu_s = self.rss_kb, self.cpu_s
        self.grace_s = rollup_grace_s()
        self.compacted_at = time.time() - self.grace_s  # the last compaction's cut-off
        self.minutes_crossed = 0  # plain passes whose compaction had a closed minute to roll up

    def _pass(self, *, compact: bool = True) -> float:
        """One ``collect --once`` process: its wall time; its peak RSS in :attr:`rss_kb`,
        its CPU time (user + system) in :attr:`cpu_s`.

        The peak comes from ``/usr/bin/time`` (about 1 ms of its own): a child's
        ``ru_maxrss`` as this process would read it counts this process's RSS at the fork
        (Linux keeps the high-water mark across exec), which would hide a small pass."""
        argv = [SIGNALBOX, "collect", "--once"] + ([] if compact else ["--no-compact"])
        with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as out:
            if TIME:
                argv = [TIME, "-f", "%M", "-o", rss.name, *argv]
            t = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=self.root, env=self.env, stdout=out, stderr=out)
            _, status, usage = os.wait4(proc.pid, 0)
            took = time.perf_counter() - t
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                out.seek(0)
                raise RuntimeError(f"{argv} failed: {out.read().decode(errors='replace')}")
            self.rss_kb = int(rss.read().split()[-1]) if TIME else usage.ru_maxrss
            self.cpu_s = usage.ru_utime + usage.ru_stime  # the child's, its own child's included
        return took

    def prepare(self, r: int) -> None:
        make_spool(self.spool, prom=self.prom, round_no=r + 1)  # new values, same series

    def run(self, r: int, *, compact: bool = True) -> float:
        """One steady pass; with ``compact``, note whether a minute closed since the last
        compaction (only then has it rollups to build)."""
        if not compact:
            return self._pass(compact=False)
        started = time.time() - self.grace_s  # a minute is rolled up this long after it ends
        took = self._pass()
        if int(started // 60) > int(self.compacted_at // 60):
            self.minutes_crossed += 1
        self.compacted_at = started
        return took

    def finish(self, rounds: int) -> float:
        """Check all 100k are queryable; then time a pass where every file changed shape."""
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from signalbox.config import load_settings
        from signalbox.metrics.samples import Matcher
        from signalbox.runtime import open_metric_store

        store = open_metric_store(load_settings(str(self.root / "signalbox.toml"), environ={}))
        latest = store.latest([Matcher("__name__", "=~", "app.*")])
        assert len(latest) == N, f"only {len(latest)} of {N} series queryable"
        store.close()
        make_spool(self.spool, prom=self.prom, round_no=rounds + 1, extra="added_line_")
        time.sleep(1.1)
        return self._pass()


class Whisper:
    """Graphite's whisper updating the same 100k series, one point each."""

    def __init__(self, root: Path) -> None:
        import whisper

        self.whisper = whisper
        d = root / "whisper"
        d.mkdir()
        self.paths: list[str] = []
        for f in range(FILES):
            for j in range(LINES):
                p = str(d / f"app{f}_metric_{j}.wsp")
                whisper.create(p, [(60, 1440)])  # 1 day at 1 minute: small files, same update cost
                self.paths.append(p)
        self.now = int(time.time())

    def run(self, r: int) -> float:
        ts = self.now - 60 * (1000 - r)  # within the archive, one new minute per round
        update = self.whisper.update
        t = time.perf_counter()
        for i, p in enumerate(self.paths):
            update(p, float(i % 1000) + 0.5, ts)
        return time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeExporter:
    """node_exporter's textfile collector serving the same files as ``.prom``; one scrape."""

    def __init__(self, root: Path, exe: str) -> None:
        d = root / "textfile"
        make_spool(d, prom=True)
        port = free_port()
        self.proc = subprocess.Popen(
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
        self.url = f"http://127.0.0.1:{port}/metrics"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(self.url, timeout=30).read()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"node_exporter did not answer on {self.url} within 10 s")
        except BaseException:
            self.close()
            raise

    def run(self, r: int) -> float:
        t = time.perf_counter()
        body = urllib.request.urlopen(self.url, timeout=60).read()
        took = time.perf_counter() - t
        assert body.count(b"\napp") >= N - 1, "node_exporter did not serve all samples"
        return took

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench_query(root: Path, runs: int) -> list[float]:
    from signalbox.clock import FrozenClock
    from signalbox.metrics.samples import Sample
    from signalbox.metrics.sql.store import SQLMetricStore
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


def bench_rollup(root: Path, minutes: int = 10) -> tuple[list[float], list[float]]:
    """Compaction as a collector running once a minute pays it: each minute's 1m buckets of
    the 100k series, and every 5 minutes the 5m buckets too. In-process, with a frozen clock,
    through the same frames a steady `collect --once` writes."""
    from signalbox.clock import FrozenClock
    from signalbox.metrics.samples import Sample
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.metrics.store import Frame, NewLayout
    from signalbox.storage import open_database

    t0 = int(time.time()) // 3600 * 3600 * 1000
    clock = FrozenClock(t0 / 1000)
    store = SQLMetricStore(open_database(f"sqlite:///{root / 'rollup.db'}"), clock=clock)
    host = (("host", "bench"),)
    layouts: list[NewLayout] = []
    samples: list[Sample] = []
    for f in range(FILES):
        layouts.append(NewLayout(f"bench-file-{f:06d}".encode(), len(samples), LINES))
        samples += [Sample(f"app{f}_metric_{j}", (), float(j)) for j in range(LINES)]
    store.write(samples, t0 + 1000, add_labels=host, layouts=layouts)
    store.compact(t0 + 1000)
    per_minute: list[float] = []
    per_five: list[float] = []
    for m in range(1, minutes + 1):
        ts = t0 + m * 60_000 + 1000
        clock.set(ts / 1000)
        frames = [Frame(lay.layout, [float(m + j) for j in range(LINES)]) for lay in layouts]
        store.write([], ts, add_labels=host, frames=frames)
        t = time.perf_counter()
        store.compact(ts + 31_000)
        (per_five if m % 5 == 0 else per_minute).append(time.perf_counter() - t)
    store.close()
    return per_minute, per_five


def _hwm_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ``ru_maxrss``, it starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def day_store_gb(files: int) -> float:
    """A day's store at one frame a file a minute: raw frames and 1m buckets 8 bytes a
    value a minute, 5m and 1h buckets 11 statistics of 8 bytes (framebuckets.FIELDS)."""
    return files * LINES * 8 * (1440 + 1440 + 288 * 11 + 24 * 11) / 1e9


DAY = 1440


def bench_day(root: Path, files: int, minutes: int) -> dict[str, object]:
    """A day's cycle of compaction with the day's partitions filling up, as a collector
    running once a minute pays it; in-process, with a frozen clock. Minute ``m`` (1..1440)
    writes one frame per file at ``m`` minutes past midnight (+1 s), then compacts 32 s
    later, when minute ``m - 1`` has closed: its 1m buckets, the 5m ones when ``m % 5 == 0``,
    the 1h ones when ``m % 60 == 0`` (``m = 1440``, 00:00 next day: 23:59 and 23:00-24:00).

    ``minutes`` < 1440 samples the day: the first ``minutes // 2`` and the last
    ``minutes - minutes // 2`` minutes are compacted one by one; the minutes between are
    written as usual but compacted once, at the end of the gap ("catch-up"), so the late
    minutes find the day's partitions as full as a real day leaves them.
    Runs in a fresh process (its peak RSS is this function's alone)."""
    global FILES, N
    FILES, N = files, files * LINES
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from signalbox.clock import FrozenClock
    from signalbox.metrics.samples import Sample
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.metrics.store import Frame, NewLayout
    from signalbox.storage import open_database

    early_n = DAY if minutes >= DAY else minutes // 2
    late_from = early_n + 1 if minutes >= DAY else DAY - (minutes - early_n) + 1
    t0 = int(time.time()) // 86400 * 86400 * 1000  # midnight UTC: the day's partition starts
    clock = FrozenClock(t0 / 1000)
    path = root / "day.db"
    store = SQLMetricStore(open_database(f"sqlite:///{path}"), clock=clock)
    host = (("host", "bench"),)
    layouts: list[NewLayout] = []
    samples: list[Sample] = []
    for f in range(files):
        layouts.append(NewLayout(f"bench-day-{f:06d}".encode(), len(samples), LINES))
        samples += [Sample(f"app{f}_metric_{j}", (), float(j)) for j in range(LINES)]
    store.write(samples, t0 + 1000, add_labels=host, layouts=layouts)
    del samples
    base = [float(j % 97) for j in range(LINES)]
    writes: dict[int, float] = {}
    compactions: dict[int, float] = {}
    catch_up = 0.0
    started = time.perf_counter()
    for m in range(1, DAY + 1):
        ts = t0 + m * 60_000 + 1000
        clock.set(ts / 1000)
        # values: column 0 a counter, the others gauges that change every minute
        frames = [
            Frame(lay.layout, [float(m * 10 + f)] + [v + m % 7 for v in base[1:]])
            for f, lay in enumerate(layouts)
        ]
        t = time.perf_counter()
        store.write([], ts, add_labels=host, frames=frames)
        writes[m] = time.perf_counter() - t
        if early_n < m < late_from - 1:
            continue  # a gap minute: written, compacted at the gap's end
        clock.set((ts + 31_000) / 1000)
        t = time.perf_counter()
        store.compact(ts + 31_000)
        took = time.perf_counter() - t
        if early_n < m < late_from:
            catch_up = took
        else:
            compactions[m] = took
        if m % 60 == 0:
            print(
                f"  day: {m // 60:2d}:00 after {time.perf_counter() - started:6.0f} s, "
                f"store {_db_bytes(path) / 1e9:.1f} GB",
                file=sys.stderr,
                flush=True,
            )
    store.close()
    return {
        "files": files,
        "writes": writes,
        "compactions": compactions,
        "catch_up": catch_up,
        "late_from": late_from,
        "early_n": early_n,
        "rss_mb": _hwm_mb(),
        "bytes": _db_bytes(path),
        "wall": time.perf_counter() - started,
    }


def _kind(m: int) -> str:
    return "1h" if m % 60 == 0 else "5m" if m % 5 == 0 else "1m"


KIND_MINUTES = {"1m": DAY - DAY // 5, "5m": DAY // 5 - DAY // 60, "1h": DAY // 60}
KIND_LABEL = {"1m": "1m only", "5m": "5m closes", "1h": "1h closes"}


def report_day(res: dict[str, object], window: int = 70) -> None:
    writes: dict[int, float] = res["writes"]  # type: ignore[assignment]
    comp: dict[int, float] = res["compactions"]  # type: ignore[assignment]
    files = int(res["files"])  # type: ignore[call-overload]
    measured = sorted(comp)
    early = [m for m in measured if m <= window]
    late = [m for m in measured if m > DAY - window]

    def by_kind(ms: list[int]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"1m": [], "5m": [], "1h": []}
        for m in ms:
            out[_kind(m)].append(comp[m])
        return out

    def cell(ts: list[float]) -> str:
        if not ts:
            return f"{'-':>17}"
        return f"{statistics.median(ts) * 1000:7.0f} / {max(ts) * 1000:7.0f}"

    everything, e, l_ = by_kind(measured), by_kind(early), by_kind(late)
    full = int(res["late_from"]) == int(res["early_n"]) + 1  # type: ignore[call-overload]
    print(
        f"day of compaction: {files} files x {LINES} = {files * LINES:,} series, one frame a file "
        f"a minute, {len(measured)} of {DAY} minutes compacted one by one"
        + (
            ""
            if full
            else f" (minutes {int(res['early_n']) + 1}-{int(res['late_from']) - 1} "  # type: ignore[call-overload]
            f"written, compacted at once: {float(res['catch_up']):.1f} s)"
        )  # type: ignore[arg-type]
        + f", {float(res['wall']):.0f} s wall"  # type: ignore[arg-type]
    )
    print(
        f"  compaction, ms median / max:  {'all measured':>17}  {'00:00-01:10':>17}  {'22:50-24:00':>17}"
    )
    for k in ("1m", "5m", "1h"):
        print(
            f"    {KIND_LABEL[k]:<10} ({len(everything[k]):4d} min) {cell(everything[k])}  "
            f"{cell(e[k])}  {cell(l_[k])}"
        )

    def cycle(d: dict[str, list[float]]) -> float | None:
        if not all(d.values()):
            return None
        return sum(KIND_MINUTES[k] * statistics.mean(d[k]) for k in d) / DAY

    w_all = statistics.mean(writes.values())
    w_e = statistics.mean(writes[m] for m in range(1, window + 1))
    w_l = statistics.mean(writes[m] for m in range(DAY - window + 1, DAY + 1))
    for label, d, w in (("whole day", everything, w_all), ("early", e, w_e), ("late", l_, w_l)):
        c = cycle(d)
        if c is None:
            continue
        print(
            f"  {label:<9}: write {w * 1000:6.0f} ms + compaction {c * 1000:6.0f} ms (day-cycle "
            f"average, weights 1152/264/24) = {(w + c) * 1000:6.0f} ms a minute (target 2,000 ms with the pass)"
        )
    print(
        f"  peak RSS {float(res['rss_mb']):.0f} MB (the day's process), store file "  # type: ignore[arg-type]
        f"{int(res['bytes']) / 1e9:.1f} GB at 24:00"  # type: ignore[call-overload]
    )


def bench_query_days(root: Path, runs: int, files: int = 4) -> dict[str, list[float]]:
    """8 days of 1-minute frames of ``files`` files x 500 series (column 0 a counter, the
    rest gauges), compacted every hour as written; one series over the 8 days through the
    query engine, at a 1m and at a 1h step (the window aligned to the step)."""
    from signalbox.clock import FrozenClock
    from signalbox.metrics.samples import Sample
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.metrics.store import Frame, NewLayout
    from signalbox.query import Engine
    from signalbox.storage import open_database

    day = 86400_000
    now = int(time.time()) // 60 * 60 * 1000
    t0 = now - 8 * day
    clock = FrozenClock(t0 / 1000)
    store = SQLMetricStore(open_database(f"sqlite:///{root / 'q8.db'}"), clock=clock)
    host = (("host", "bench"),)
    layouts: list[NewLayout] = []
    samples: list[Sample] = []
    for f in range(files):
        layouts.append(NewLayout(f"bench-q8-{f:06d}".encode(), len(samples), LINES))
        samples += [
            Sample(
                "bench_requests_total" if j == 0 else f"bench_gauge_{j}", (("file", str(f)),), 0.0
            )
            for j in range(LINES)
        ]
    store.write(samples, t0, add_labels=host, layouts=layouts)
    base = [float(j % 97) for j in range(LINES)]
    for m in range(1, 8 * 1440 + 1):
        ts = t0 + m * 60_000
        clock.set(ts / 1000)
        frames = [
            Frame(lay.layout, [float(m * 3 + f)] + [v + (m * 7 + f) % 13 for v in base[1:]])
            for f, lay in enumerate(layouts)
        ]
        store.write([], ts, add_labels=host, frames=frames)
        if m % 60 == 0:
            store.compact(ts + 1000)
    clock.set(now / 1000 + 1)
    store.compact(now + 1000)
    engine = Engine(store)
    out: dict[str, list[float]] = {}
    sel = 'bench_requests_total{file="1"}'
    for label, step, want in (("1m", 60_000, 8 * 1440 - 5), ("1h", 3_600_000, 8 * 24 - 1)):
        times = out[label] = []
        # aligned to the step, as Grafana sends it: a coarser tier answers exactly only then
        # (the 1h step of a window ending at hh:05 reads the 5m tier, at hh:03 the 1m tier)
        end = now // step * step
        for _ in range(runs):
            t = time.perf_counter()
            res = engine.range(sel, end - 8 * day, end, step)
            times.append(time.perf_counter() - t)
        assert len(res.matrix) == 1, len(res.matrix)
        assert len(res.matrix[0].points) >= want, (label, len(res.matrix[0].points))
    store.close()
    return out


def bench_shard_sum(root: Path, runs: int, shards: int = 16) -> tuple[Signalbox, list[float]]:
    """``--files`` files of one metric ``bench_requests{shard,file,line}`` written once by a
    ``collect --once`` (the first pass), then ``sum by (shard)`` over all of them at one
    instant through one query engine, ``runs`` times: the first decodes each series' group
    (kept by the engine, as ``serve``'s is, for the next ones)."""
    sb = Signalbox(root / "sb-shard", shards=shards)
    from signalbox.config import load_settings
    from signalbox.query import Engine
    from signalbox.runtime import open_metric_store

    store = open_metric_store(load_settings(str(sb.root / "signalbox.toml"), environ={}))
    engine = Engine(store)
    now = int(time.time() * 1000)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        res = engine.instant("sum by (shard) (bench_requests)", now)
        times.append(time.perf_counter() - t)
    assert len(res.vector) == min(shards, FILES), len(res.vector)
    total = sum(v.value for v in res.vector)
    want = sum((f * 7 + j * 13) % 1000 + 0.5 for f in range(FILES) for j in range(LINES))
    assert abs(total - want) < 1e-6 * want, (total, want)
    store.close()
    return sb, times


def report(name: str, times: list[float] | None, samples: int = N) -> float | None:
    if not times:
        return None
    med = statistics.median(times)
    print(
        f"{name:<56} median {med * 1000:8.1f} ms  {samples / med:>12,.0f} samples/s  (runs: {', '.join(f'{t * 1000:.0f}' for t in times)} ms)"
    )
    return samples / med


PLAIN = "signalbox collect --once (process incl.)"
INGEST = "signalbox collect --once --no-compact (process incl.)"
PROM = "signalbox collect --once --no-compact, .prom files"


def compare(label: str, mine: list[float], theirs: list[float], peer: str) -> None:
    per_round = [p / o for p, o in zip(theirs, mine, strict=True)]
    print(
        f"  {label} vs {peer.split()[0]}: {statistics.median(per_round):.1f}x faster "
        f"(median of per-round ratios; ratio of medians {statistics.median(theirs) / statistics.median(mine):.1f}x)"
    )


FIRST_KINDS = {".metrics": (False, 0), ".prom": (True, 0), "labelled": (False, 16)}  # prom, shards


def first_passes(root: Path, baseline: str | None, rounds: int) -> None:
    """The first pass of each kind of spool, by this tree's code and (``baseline``) another
    tree's, each in a new store removed after it; rounds alternate which tree goes first."""
    trees = {"ours": None} if baseline is None else {"baseline": baseline, "ours": None}
    got: dict[tuple[str, str], list[Signalbox]] = {}
    for r in range(rounds):
        order = list(trees.items())
        if r % 2:
            order.reverse()
        for kind, (prom, shards) in FIRST_KINDS.items():
            for tree, src in order:
                d = root / f"first-{tree}-{kind.strip('.')}"
                sb = Signalbox(d, src=src, prom=prom, shards=shards)
                got.setdefault((kind, tree), []).append(sb)
                shutil.rmtree(d)
    print(f"first passes ({N:,} new series, shapes registered), {rounds} round(s), median:")
    for kind in FIRST_KINDS:
        for tree in trees:
            sbs = got[(kind, tree)]
            print(
                f"  {kind:<9} {tree:<8}  wall {statistics.median(s.first for s in sbs) * 1000:8.0f} ms"
                f"  CPU {statistics.median(s.first_cpu_s for s in sbs) * 1000:8.0f} ms"
                f"  peak RSS {statistics.median(s.first_rss_kb for s in sbs) / 1024:5.0f} MB"
                f"  (walls: {', '.join(f'{s.first * 1000:.0f}' for s in sbs)} ms)"
            )
        if baseline is not None:
            old, new = got[(kind, "baseline")], got[(kind, "ours")]
            ratio = statistics.median(o.first / n.first for o, n in zip(old, new, strict=True))
            cpu = statistics.median(
                o.first_cpu_s / n.first_cpu_s for o, n in zip(old, new, strict=True)
            )
            print(
                f"  {kind:<9} ours vs baseline: {ratio:.2f}x wall, {cpu:.2f}x CPU "
                "(median of per-round ratios)"
            )


@contextlib.contextmanager
def pg_schema(base: str) -> Iterator[str]:
    """A store URL on ``base`` whose search_path is a new schema, dropped afterwards (the
    server's settings otherwise as they are: commits wait for their WAL flush)."""
    import uuid

    import psycopg

    schema = f"sbbench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_versus(
    root: Path, base: str, runs: int, first_rounds: int, baseline: str | None = None
) -> None:
    """SQLite vs PostgreSQL (``--pg URL``): first passes (a new store each, ``first_rounds``
    rounds) and steady passes (``runs`` rounds, ``--no-compact`` and plain), every store
    in every round, the order rotated each round; wall and the process's CPU. With
    ``baseline`` (``--baseline-src``), that tree's code on PostgreSQL too, in the same
    rounds."""
    kinds = ["sqlite", "postgresql"] + (["pg-baseline"] if baseline else [])

    def make(kind: str, d: Path, st: contextlib.ExitStack) -> Signalbox:
        url = None if kind == "sqlite" else st.enter_context(pg_schema(base))
        return Signalbox(d, store=url, src=baseline if kind == "pg-baseline" else None)

    firsts: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for r in range(first_rounds):
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            d = root / f"first-{kind}"
            with contextlib.ExitStack() as st:
                sb = make(kind, d, st)
                firsts[kind].append((sb.first, sb.first_cpu_s))
            shutil.rmtree(d)
    steady: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    with contextlib.ExitStack() as st:
        stores = {k: make(k, root / f"steady-{k}", st) for k in kinds}
        for r in range(runs):
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for compact in (False, True):
                for kind in order:
                    sb = stores[kind]
                    sb.prepare(2 * r + compact)
                    time.sleep(1.1)
                    os.sync()
                    took = sb.run(r, compact=compact)
                    steady.setdefault((kind, compact), []).append((took, sb.cpu_s))
    print(f"SQLite vs PostgreSQL ({base}), {N:,} samples (load {os.getloadavg()[0]:.1f}):")

    def line(label: str, sq: list[tuple[float, float]], pg: list[tuple[float, float]]) -> None:
        def ms(xs: list[tuple[float, float]], i: int) -> str:
            return f"{statistics.median(x[i] for x in xs) * 1000:7.0f}"

        wall = statistics.median(p[0] / s[0] for s, p in zip(sq, pg, strict=True))
        cpu = statistics.median(p[1] / s[1] for s, p in zip(sq, pg, strict=True))
        print(
            f"  {label:<40} wall ms {ms(sq, 0)} vs {ms(pg, 0)}  CPU ms {ms(sq, 1)} vs "
            f"{ms(pg, 1)}  ratio {wall:.2f}x wall, {cpu:.2f}x CPU (median of "
            f"{len(sq)} per-round ratios; walls {', '.join(f'{p[0] * 1000:.0f}' for p in pg)})"
        )

    for pg in kinds[1:]:
        print(f" {pg} / sqlite:")
        line("first pass", firsts["sqlite"], firsts[pg])
        line("steady --no-compact", steady["sqlite", False], steady[pg, False])
        line("steady (with compaction)", steady["sqlite", True], steady[pg, True])
    if baseline:
        print(" postgresql (ours) / pg-baseline:")
        line("first pass", firsts["pg-baseline"], firsts["postgresql"])
        line("steady --no-compact", steady["pg-baseline", False], steady["postgresql", False])
        line("steady (with compaction)", steady["pg-baseline", True], steady["postgresql", True])


def main() -> None:
    global FILES, N
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=FILES, help="500 series each (2000: 1M)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-whisper", action="store_true")
    ap.add_argument("--skip-node-exporter", action="store_true")
    ap.add_argument("--skip-rollup", action="store_true", help="no rollup and query lines")
    ap.add_argument(
        "--day", action="store_true", help="a day's cycle of compaction (see bench_day)"
    )
    ap.add_argument("--day-only", action="store_true", help="--day and nothing else")
    ap.add_argument(
        "--day-minutes",
        type=int,
        default=DAY,
        help="compact this many minutes one by one (early and late)",
    )
    ap.add_argument(
        "--day-files",
        type=int,
        help="files for --day (default --files, scaled down to --day-max-gb)",
    )
    ap.add_argument("--day-max-gb", type=float, default=30.0)
    ap.add_argument(
        "--baseline-src",
        help="another checkout's src dir: its first passes beside ours (see the docstring)",
    )
    ap.add_argument("--first-rounds", type=int, default=1, help="rounds of first passes")
    ap.add_argument("--first-only", action="store_true", help="the first passes and nothing else")
    ap.add_argument(
        "--pg",
        metavar="URL",
        help="only SQLite vs PostgreSQL at URL (a new schema each): first and steady passes",
    )
    a = ap.parse_args()
    FILES, N = a.files, a.files * LINES

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds: node_exporter stopped, tmp removed

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        if a.day_only:
            run_day(root, a)
            return
        if a.pg:  # before --baseline-src's first passes: with --pg it is PostgreSQL's baseline
            pg_versus(root, a.pg, a.runs, a.first_rounds, a.baseline_src)
            return
        print(
            f"spool ingest: {FILES} files x {LINES} lines = {N:,} samples, {a.runs} rounds, "
            f"{os.cpu_count()} cores; each round runs every contender, so machine drift hits all alike"
            f" (load average {os.getloadavg()[0]:.1f})"
        )
        if a.first_only or a.baseline_src:
            first_passes(root, a.baseline_src, a.first_rounds)
            if a.first_only:
                return
        ours = Signalbox(root / "sb")
        ours_prom = Signalbox(root / "sb-prom", prom=True)
        # the labelled first pass (``bench_requests{shard,file,line}``): its store is not kept
        labelled = Signalbox(root / "sb-labelled", shards=16)
        shutil.rmtree(labelled.root)
        peers: dict[str, Whisper | NodeExporter] = {}
        if FILES > 200 and not a.skip_whisper:
            print(f"whisper skipped: {N:,} whisper files is more than this benchmark creates")
        elif not a.skip_whisper:
            try:
                peers["whisper.update x 100k"] = Whisper(root)
            except ImportError:
                print("whisper not installed (pip install whisper): skipped")
        exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
        if not a.skip_node_exporter:
            if exe:
                exporter = NodeExporter(root, exe)
                stack.callback(exporter.close)
                peers["node_exporter textfile scrape"] = exporter
            else:
                print("prometheus-node-exporter not installed: skipped")
        times: dict[str, list[float]] = {INGEST: [], PLAIN: [], PROM: []}
        times.update({name: [] for name in peers})
        for r in range(a.runs):
            # the two passes swap places every round, so neither always follows the peers
            first, second = (INGEST, PLAIN) if r % 2 == 0 else (PLAIN, INGEST)
            for k, which in enumerate((first, second)):
                ours.prepare(2 * r + k)
                time.sleep(1.1)  # a new timestamp (1 s apart is enough for distinct samples)
                # each timed run starts with no one else's dirty pages to flush: whisper's
                # 100k file writes would otherwise land on the next fsync, whoever's it is
                os.sync()
                times[which].append(ours.run(r, compact=which == PLAIN))
                if k == 0:
                    ours_prom.prepare(r)
                    time.sleep(1.1)
                    os.sync()
                    times[PROM].append(ours_prom.run(r, compact=False))
                    for name, peer in peers.items():
                        os.sync()
                        times[name].append(peer.run(r))
        stack.close()
        steady_rss = ours.rss_kb, ours_prom.rss_kb  # the last steady pass of each
        reshaped = ours.finish(2 * a.runs)
        for name, ts in times.items():
            report(name, ts)
        for label, sb in ((".metrics", ours), (".prom", ours_prom), ("labelled", labelled)):
            print(
                f"  first pass, {label:<9} ({N:,} new series, shapes registered): "
                f"{sb.first * 1000:8.1f} ms, peak RSS {sb.first_rss_kb / 1024:6.0f} MB"
            )
        print(
            f"  steady pass peak RSS: .metrics {steady_rss[0] / 1024:.0f} MB, "
            f".prom {steady_rss[1] / 1024:.0f} MB (the last pass of each)"
        )
        print(f"  a pass where every file changed shape:           {reshaped * 1000:8.1f} ms")
        added = [p - i for p, i in zip(times[PLAIN], times[INGEST], strict=True)]
        print(
            f"  compaction as `collect --once` adds it: median of per-round differences "
            f"{statistics.median(added) * 1000:.1f} ms ({ours.minutes_crossed} of {a.runs} passes "
            "crossed a minute, so had 1m buckets to build; the others only checked)"
        )
        for name in peers:
            compare("signalbox", times[PLAIN], times[name], name)
            compare("signalbox --no-compact", times[INGEST], times[name], name)
            compare("signalbox .prom --no-compact", times[PROM], times[name], name)
        if "whisper.update x 100k" in peers:
            print("  (whisper keeps one archive here: it builds no rollups, like --no-compact)")
        if not a.skip_rollup:
            rollup_and_queries(root, a.runs)
        if a.day:
            run_day(root, a)


def run_day(root: Path, a: argparse.Namespace) -> None:
    files = a.day_files or a.files
    if day_store_gb(files) > a.day_max_gb:
        scaled = int(files * a.day_max_gb / day_store_gb(files))
        print(
            f"day: a day at {files} files would store {day_store_gb(files):.0f} GB "
            f"(> --day-max-gb {a.day_max_gb:g}): scaled down to {scaled} files"
        )
        files = scaled
    # a fresh process: its peak RSS is the day's alone
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        res = pool.submit(bench_day, root, files, min(a.day_minutes, DAY)).result()
    report_day(res)
    (root / "day.db").unlink(missing_ok=True)


def rollup_and_queries(root: Path, runs: int) -> None:
    """The rollup and query lines."""
    minute, five = bench_rollup(root)
    print(
        f"{'rollup at one pass a minute: 1m buckets':<56} median {statistics.median(minute) * 1000:8.1f} ms"
        f"  (+ 5m buckets every 5th minute: {', '.join(f'{t * 1000:.0f}' for t in five)} ms)"
    )
    q = bench_query(root, max(runs, 9))
    print(
        f"{'query: 1 series, 8 days at 1m (11,520 pts)':<56} median {statistics.median(q) * 1000:8.1f} ms  (target < 20 ms)"
    )
    q8 = bench_query_days(root, max(runs, 9))
    for step, ts in q8.items():
        print(
            f"{f'query: 1 series of 4x500 in frames, 8 days, step {step}':<56} median {statistics.median(ts) * 1000:8.1f} ms"
            f"  (target < 20 ms; runs: {', '.join(f'{t * 1000:.0f}' for t in ts)} ms)"
        )
    (root / "q8.db").unlink()
    sb, qs = bench_shard_sum(root, max(runs, 3) + 1)
    print(
        f"{f'query: sum by (shard) over {N:,} series, one instant':<56} median {statistics.median(qs[1:]) * 1000:8.1f} ms"
        f"  (target < 2,000 ms; runs: {', '.join(f'{t * 1000:.0f}' for t in qs[1:])} ms; "
        f"the first, {qs[0] * 1000:.0f} ms, also loads the series index and decodes each "
        "series' group once)"
    )
    print(
        f"  its store: first pass {sb.first * 1000:.0f} ms, peak RSS {sb.first_rss_kb / 1024:.0f} MB"
    )
    shutil.rmtree(sb.root)


if __name__ == "__main__":
    main()
