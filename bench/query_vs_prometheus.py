"""Dashboard and monitor queries, signalbox beside a real Prometheus: 200 series, 30 days.

The same OpenMetrics history goes into both: ``signalbox import`` into a SQLite store (raw
samples kept 1 day, then rollups 1m for 8 d, 5m for 35 d, 1h for 400 d: ``signalbox init``'s
defaults, written out), served by ``signalbox serve``; and ``promtool tsdb
create-blocks-from openmetrics``, fed a day at a time (2.42 rereads its whole input for
every 2h block it writes), into blocks served by ``prometheus`` (60 d retention, empty
scrape config), whose own compaction of the backfilled 2h blocks is waited for, so it reads
blocks as a long-running server has them. ``signalbox import`` packs the imported
rollups' closed units before it ends, as a long-running server has them; the run checks
that none is left (:func:`packing_left`; it would wait for serve's compactions, a budget
each, to pack any), so no timed query competes with packing or reads unpacked rows. The
import runs while promtool does.

The cached data (``$TMPDIR/signalbox-bench-query-vs-prometheus/<key>``) is locked
(``<key>.lock``, :class:`CacheLock`): shared while runs read it, exclusively while one makes
it, so two runs at once never write it together.

Data (``--series 200``, ``--days 30``, one sample a minute, ending at the current minute):
half ``http_requests_total{job,instance,code}`` counters with occasional resets, a quarter
``queue_depth{job,instance,queue}`` gauges, a quarter classic histogram
``request_duration_seconds_bucket{job,instance,le}`` (5 buckets per label set, resets
shared by the buckets of one instance). The file, its days and promtool's blocks are made
once and cached in the temp dir, keyed by the parameters; they are reused while the data
ends less than an hour ago, and "now" below is the minute the data ends. The signalbox
import is not cached: it is the code under test.

Timestamps sit on whole minutes when Prometheus is 3.x: its windows are ``(t - r, t]``,
as signalbox's are, and signalbox's rollup buckets ``(end - res, end]``. Prometheus 2.x
windows are ``[t - r, t]``: a sample exactly on a window's left edge would be counted by it
and not by signalbox, so against 2.x (Debian 12 ships 2.42) every sample sits
``--offset-s`` (30) seconds before its minute, never on an edge; each minute still holds
one sample and each bucket the same one.

Queries, each over the last 1 h, 1 d, 7 d and 30 d (a range longer than ``--days`` still
runs, over the data there is, so a smoke run exercises every row), with the step Grafana
picks for a ~1000 px panel: range / 1000 rounded *up* to a nice interval, at least the
1 m sample interval, start and end aligned down to the step::

    1 h -> 1m step (61 points)   1 d -> 2m (721)   7 d -> 15m (673)   30 d -> 1h (721)

``rate``/``avg_over_time`` windows are ``max(5m, step)`` (``$__rate_interval``-like);
``increase`` is over a fixed 1h. Two monitor-style instant queries run at "now", and the
query ``1``, which reads nothing: the floor of each side's HTTP and query overhead, to read
the short ranges' ratios against.

Timing: each round runs every (query, range) on both sides, the list rotated by one each
round and the side that goes first alternating, after one untimed warm-up of each; the
time is the HTTP round trip (a new connection per request, for both: ``peers.http_get``),
body read, not parsed. Reported per row: p50 and p99 (nearest rank: with few rounds, the
slowest) of each side, and the median of per-round ratios signalbox / Prometheus (> 1:
signalbox slower). Targets, per range class: every query faster than Prometheus (ratio
< 1) on 7 d and 30 d, within 3x on 1 h; 1 d and the instant queries are reported only.

Answers are compared once, before timing: points (same labels, same timestamp) both
answer, equal within rel 1e-6 or not (the largest relative difference and the first
differing point), and points only one side has. ``warnings`` in either response are
printed: signalbox gives one when an answer is an estimate (a window split a rollup bucket
it could not answer from finer data); an answer that differs without one is marked
SILENT. A query a side refuses is printed as ``refused: <error>`` and the run goes on.
Against Prometheus 2.x, expect ``rate``/``increase`` to differ (SILENT) in the window where a
counter series starts: 2.x clamps the extrapolation to the counter's zero point before it
applies the 1.1-gap threshold, 3.x (and signalbox, on raw samples and buckets alike) after
it; ``promql/functions.go`` ``extrapolatedRate`` in either version shows the order.

    .venv/bin/python bench/query_vs_prometheus.py            # full: 200 series, 30 d, 7 rounds
    .venv/bin/python bench/query_vs_prometheus.py --quick    # smoke: 40 series, 8 d (~1.5 min)
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from peers import (
    Child,
    Prometheus,
    create_blocks,
    free_port,
    http_get,
    http_ok,
    median_ratio,
    need,
    run_main,
    signalbox_exe,
    wait_for,
)

INTERVAL_S = 60
REL_TOL = 1e-6
CACHE_MAX_AGE_S = 3600
GENERATOR = 2  # bump when the data written changes: it is part of the cache key
NICE_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
RANGES = (("1h", 3600), ("1d", 86400), ("7d", 7 * 86400), ("30d", 30 * 86400))
TARGETS = {"1h": 3.0, "7d": 1.0, "30d": 1.0}  # signalbox / Prometheus must stay below
CODES = ("200", "201", "404", "500", "503")
QUEUES = ("ingest", "resize", "mail", "billing", "export")
LE = ("0.1", "0.5", "1", "5", "+Inf")


def step_for(range_s: int) -> int:
    """Grafana's choice for a ~1000 px panel: range/1000 rounded up to a nice interval."""
    want = max(INTERVAL_S, range_s / 1000)
    return next((s for s in NICE_STEPS_S if s >= want), NICE_STEPS_S[-1])


def dur(s: int) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


@dataclass(frozen=True)
class Query:
    """One row: an expression (``{w}`` is the window), a range class, or instant at now."""

    name: str
    expr: str
    range_name: str  # "1h".."30d", or "instant"
    start_s: int
    end_s: int
    step_s: int

    def request(self) -> tuple[str, dict[str, str]]:
        if self.range_name == "instant":
            return "/api/v1/query", {"query": self.expr, "time": str(self.end_s)}
        return "/api/v1/query_range", {
            "query": self.expr,
            "start": str(self.start_s),
            "end": str(self.end_s),
            "step": str(self.step_s),
        }


RANGE_EXPRS = (
    ("sum(rate)", "sum(rate(http_requests_total[{w}]))"),
    ("sum by code(increase 1h)", "sum by (code) (increase(http_requests_total[1h]))"),
    ("avg_over_time(gauge)", "avg_over_time(queue_depth[{w}])"),
    ("max by instance(gauge)", "max by (instance) (queue_depth)"),
    (
        "histogram_quantile p99",
        "histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[{w}])))",
    ),
)
INSTANT_EXPRS = (
    ("monitor rate > 1", "rate(http_requests_total[5m]) > 1"),
    ("monitor queue avg > 60", "avg_over_time(queue_depth[10m]) > 60"),
)


def queries(end_s: int) -> list[Query]:
    out = []
    for range_name, range_s in RANGES:
        step = step_for(range_s)
        end = end_s // step * step
        start = (end_s - range_s) // step * step
        window = dur(max(300, step))
        for name, expr in RANGE_EXPRS:
            out.append(Query(name, expr.format(w=window), range_name, start, end, step))
    for name, expr in INSTANT_EXPRS:
        out.append(Query(name, expr, "instant", end_s, end_s, 0))
    out.append(Query("floor: the query 1", "1", "instant", end_s, end_s, 0))
    return out


# --- data ------------------------------------------------------------------------------


def series_mix(n: int) -> tuple[int, int, int]:
    """(counters, gauges, histogram label sets): half, a quarter, a quarter in 5 buckets."""
    sets = max(1, n // 20)
    gauges = max(1, n // 4)
    return n - gauges - sets * len(LE), gauges, sets


def _instance(i: int) -> tuple[str, str]:
    return ("api" if i % 2 == 0 else "web"), f"host-{i:02d}:9100"


def _daily(t: int, phase: float) -> float:
    return 1.0 + 0.6 * math.sin(2 * math.pi * (t / 86400 + phase))


def write_openmetrics(f: TextIO, n_series: int, start_s: int, end_s: int, offset_s: int) -> int:
    """The whole history, series after series (timestamps increase within each)."""
    n_counters, n_gauges, n_sets = series_mix(n_series)
    times = range(start_s - offset_s, end_s - offset_s + 1, INTERVAL_S)
    rows = 0

    def emit(series: str, values: Iterator[str]) -> None:
        nonlocal rows
        f.writelines(f"{series} {v} {t}\n" for t, v in zip(times, values, strict=True))
        rows += len(times)

    f.write("# HELP http_requests Requests served.\n# TYPE http_requests counter\n")
    for k in range(n_counters):
        job, inst = _instance(k // len(CODES))
        code = CODES[k % len(CODES)]
        rng = random.Random(f"c{k}")
        base = rng.uniform(0.5, 40.0) * (0.05 if code[0] in "45" else 1.0)
        emit(
            f'http_requests_total{{job="{job}",instance="{inst}",code="{code}"}}',
            _counter(rng, times, base, phase=rng.random()),
        )
    f.write("# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\n")
    for k in range(n_gauges):
        job, inst = _instance(k // len(QUEUES))
        rng = random.Random(f"g{k}")
        level, phase = rng.uniform(5, 100), rng.random()
        emit(
            f'queue_depth{{job="{job}",instance="{inst}",queue="{QUEUES[k % len(QUEUES)]}"}}',
            (repr(round(level * _daily(t, phase) + rng.gauss(0, 3), 3)) for t in times),
        )
    f.write(
        "# HELP request_duration_seconds Request latency.\n"
        "# TYPE request_duration_seconds histogram\n"
    )
    for k in range(n_sets):
        job, inst = _instance(k)
        rng = random.Random(f"h{k}")
        cumulative = _histogram(rng, times)
        for b, le in enumerate(LE):
            emit(
                f'request_duration_seconds_bucket{{job="{job}",instance="{inst}",le="{le}"}}',
                (str(c[b]) for c in cumulative),
            )
    f.write("# EOF\n")
    return rows


def _counter(rng: random.Random, times: range, base: float, phase: float) -> Iterator[str]:
    """A counter with a daily rhythm that restarts from zero about every 4 days."""
    value = rng.randrange(1000)
    for t in times:
        if rng.random() < 1 / 5760:
            value = 0
        value += int(rng.expovariate(1 / (base * 60 * _daily(t, phase))))
        yield str(value)


def _histogram(rng: random.Random, times: range) -> list[tuple[int, ...]]:
    """Cumulative bucket counts per minute; one reset restarts all buckets together."""
    shares = (0.55, 0.25, 0.12, 0.06, 0.02)
    counts = [0] * len(LE)
    out = []
    for t in times:
        if rng.random() < 1 / 5760:
            counts = [0] * len(LE)
        n = int(rng.expovariate(1 / (300 * _daily(t, 0.3))))
        slow = 1.0 + 3.0 * (rng.random() < 0.01)  # now and then a slow minute
        acc = 0
        for b, share in enumerate(shares):
            acc += int(n * share * (slow if b >= 2 else 1.0))
            counts[b] += acc  # cumulative in le, as classic buckets are
        out.append(tuple(counts))
    return out


def split_by_day(om: Path, out: Path) -> list[Path]:
    """The file cut into one file per UTC day, each with its families' headers.

    promtool 2.42 (no ``--max-block-duration``) reads its whole input once per 2h block it
    writes: 360 passes over 30 days of data would take it 20 minutes, a day at a time
    (12 passes over a thirtieth) under a minute.
    """
    out.mkdir(parents=True, exist_ok=True)
    files: dict[int, TextIO] = {}
    header_of: dict[int, int] = {}  # day -> the family whose header it has
    header: list[str] = []
    family, in_header = -1, False
    try:
        with om.open() as f:
            for line in f:
                if line[0] == "#":
                    if line.startswith("# EOF"):
                        break
                    if not in_header:
                        header, family, in_header = [], family + 1, True
                    header.append(line)
                    continue
                in_header = False
                day = int(line[line.rindex(" ") + 1 :]) // 86400
                g = files.get(day)
                if g is None:
                    g = files[day] = (out / f"day-{day}.om").open("w")
                if header_of.get(day) != family:
                    g.writelines(header)
                    header_of[day] = family
                g.write(line)
    finally:
        for g in files.values():
            g.write("# EOF\n")
            g.close()
    return [out / f"day-{day}.om" for day in sorted(files)]


def _stale(d: Path, now_s: int) -> bool:
    """A cache entry too old to reuse (or half-written and left an hour ago)."""
    meta = d / "data.json"
    if meta.exists():
        return now_s - int(json.loads(meta.read_text())["end_s"]) >= CACHE_MAX_AGE_S
    return now_s - d.stat().st_mtime >= CACHE_MAX_AGE_S


CACHE_ROOT = Path(tempfile.gettempdir()) / "signalbox-bench-query-vs-prometheus"


def cache_dir(n_series: int, days: int, offset_s: int) -> Path:
    key = hashlib.sha256(f"{GENERATOR}:{n_series}:{days}:{offset_s}".encode()).hexdigest()[:12]
    return CACHE_ROOT / key


class CacheLock:
    """A run's hold on a cache dir's lock file (beside it, ``<key>.lock``): shared while it
    reads the data and blocks, exclusive while it makes them. Two runs at once share the
    dir (promtool once failed writing the same blocks twice): they read it together, and one
    that must write waits for every reader, then checks again whether another wrote it."""

    def __init__(self, f: IO[str]) -> None:
        self._f = f

    def _take(self, how: int, what: str) -> None:
        try:
            fcntl.flock(self._f, how | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"data: waiting for other runs to {what} {self._f.name}")
            fcntl.flock(self._f, how)

    def exclusive(self) -> None:
        self._take(fcntl.LOCK_EX, "leave")

    def shared(self) -> None:
        self._take(fcntl.LOCK_SH, "finish writing")


@contextlib.contextmanager
def cache_lock(d: Path) -> Iterator[CacheLock]:
    """``d``'s lock, shared, until the end (see :class:`CacheLock`); another key's stale data
    is removed only under its own exclusive lock (:func:`_remove_stale`)."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(d.with_suffix(".lock"), "a+") as f:
        lock = CacheLock(f)
        lock.shared()
        try:
            yield lock
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_stale(keep: Path, now_s: int) -> None:
    """Every other key's data past its use, unless a run holds its lock."""
    for old in CACHE_ROOT.iterdir():
        if old == keep or not old.is_dir() or not _stale(old, now_s):
            continue
        with open(old.with_suffix(".lock"), "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use
            shutil.rmtree(old, ignore_errors=True)


def cached_openmetrics(
    d: Path, lock: CacheLock, n_series: int, days: int, offset_s: int, fresh: bool
) -> tuple[Path, list[Path], int]:
    """The data file in ``d``, its days for promtool, and the minute it ends: reused while
    the data ended under an hour ago (else made again under ``lock``, exclusive)."""
    om, meta = d / "data.om", d / "data.json"
    for writing in (False, True):
        now_min = int(time.time()) // 60 * 60
        if not fresh and om.exists() and meta.exists():
            done = json.loads(meta.read_text())
            end_s = int(done["end_s"])
            if not _stale(d, now_min):
                print(f"data: cached {om} (ends {(now_min - end_s) // 60} min ago)")
                return om, [d / p for p in done["days"]], end_s
        if not writing:
            lock.exclusive()  # then look again: another run may have written it meanwhile
    shutil.rmtree(d, ignore_errors=True)  # this key's data, and any other past its use
    _remove_stale(d, now_min)
    d.mkdir(parents=True)
    t = time.perf_counter()
    with om.open("w") as f:
        rows = write_openmetrics(
            f, n_series, now_min - days * 86400 + INTERVAL_S, now_min, offset_s
        )
    day_files = split_by_day(om, d / "days")
    meta.write_text(
        json.dumps(
            {"end_s": now_min, "samples": rows, "days": [str(p.relative_to(d)) for p in day_files]}
        )
    )
    print(f"data: wrote {rows:,} samples to {om} (and by day) in {time.perf_counter() - t:.1f} s")
    return om, day_files, now_min


# --- the two servers -------------------------------------------------------------------


def prometheus_blocks(day_files: list[Path], cache: Path, out: Path, lock: CacheLock) -> bool:
    """promtool's blocks for the data in ``out``: made once per data file (under ``lock``,
    exclusive) and copied, since Prometheus compacts (rewrites) the copy it is given.
    Whether they were made now."""
    if not cache.exists():
        lock.exclusive()
    made = not cache.exists()
    if made:
        part = cache.with_suffix(".part")
        shutil.rmtree(part, ignore_errors=True)
        for day in day_files:
            create_blocks(day, part)
        os.replace(part, cache)
    shutil.copytree(cache, out)
    return made


def prometheus_major() -> int:
    out = subprocess.run([need("prometheus"), "--version"], capture_output=True, text=True)
    m = re.search(r"version (\d+)\.", out.stdout + out.stderr)
    return int(m.group(1)) if m else 2


def signalbox_config(
    root: Path, tiers: str, packed_cache_mb: int | None = None, raw_cache_mb: int | None = None
) -> Path:
    """``packed_cache_mb``, ``raw_cache_mb``: serve's decoded packed-unit cache and raw
    samples cache (None: serve's default). They are storage, not results: the results
    cache is off, every timed request is evaluated, as every Prometheus one is."""
    (root / "monitors").mkdir(parents=True)  # none: serve's monitor loop has nothing to do
    config = root / "signalbox.toml"
    packed = "" if packed_cache_mb is None else f"packed_cache_mb = {packed_cache_mb}\n"
    if raw_cache_mb is not None:
        packed += f"raw_cache_mb = {raw_cache_mb}\n"
    config.write_text(
        f'host = "bench"\nstore = "sqlite:///{root / "sb.db"}"\n'
        f'[statsd]\nenabled = false\n[retention]\nraw = "1d"\ntiers = "{tiers}"\n'
        f"[server]\nquery_cache_mb = 0\n{packed}"
    )
    return config


def packing_left(db: Path, tiers: str) -> int:
    """How many tiers still have closed units of row buckets that serve's compactions have
    not packed (``metrics/sql/rowsealing.py``: the same limit, every coarser tier's
    watermark). The import leaves them to serve, a budget per compaction: queries timed
    while it packs compete with it and read rows a long-running server has packed."""
    from signalbox.durations import parse_retention
    from signalbox.metrics.partitions import levels

    lvs = levels(86400, parse_retention(tiers))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:  # the tables are made by serve's first compaction: missing until then
        marks = dict(conn.execute("SELECT tier, watermark_ms FROM metric_rollups").fetchall())
        packed = dict(conn.execute("SELECT tier, sealed_ms FROM metric_sealed").fetchall())
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    finally:
        conn.close()
    left = 0
    for i in range(1, len(lvs)):
        lv, unit = lvs[i], lvs[i].unit_ms
        if not unit or not any(n.startswith(f"buckets_r{lv.tier}_") for n in names):
            continue
        wms = [marks.get(x.tier) for x in lvs[i:]]
        if any(m is None for m in wms):
            continue
        limit = min(int(m) for m in wms if m is not None) // unit * unit
        u = packed.get(-lv.tier)
        left += u is None or int(u) + unit <= limit
    return left


def packing_done(db: Path, tiers: str) -> bool:
    try:
        return packing_left(db, tiers) == 0
    except sqlite3.OperationalError:  # a table not made yet, or a moment's lock
        return False


# --- answers ---------------------------------------------------------------------------

Points = dict[tuple[tuple[tuple[str, str], ...], float], float]


def ask(port: int, q: Query) -> tuple[dict[str, Any] | None, str]:
    """The decoded answer, or None and the server's error."""
    path, params = q.request()
    try:
        doc: dict[str, Any] = json.loads(http_get(port, path, params, timeout=300))
    except RuntimeError as e:
        return None, server_error(str(e))
    if doc.get("status") != "success":
        return None, str(doc.get("error", doc))[:300]
    return doc, ""


def server_error(message: str) -> str:
    """The ``error`` of the JSON body in ``http_get``'s message (it quotes the body's repr)."""
    m = re.search(r"HTTP \d+: (b['\"].*)$", message, re.DOTALL)
    if m is None:
        return message
    body: str = ast.literal_eval(m.group(1)).decode(errors="replace")
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body


def points(doc: dict[str, Any]) -> Points:
    out: Points = {}
    data = doc["data"]
    if data["resultType"] == "scalar":
        return {((), float(data["result"][0])): float(data["result"][1])}
    for s in data["result"]:
        key = tuple(sorted(s["metric"].items()))
        for t, v in s["values"] if data["resultType"] == "matrix" else [s["value"]]:
            out[key, float(t)] = float(v)
    return out


@dataclass(frozen=True)
class Agreement:
    both: int  # points (labels, timestamp) both sides answer
    same: int  # of them, equal within REL_TOL
    worst: float  # the largest relative difference among the others
    only_ours: int
    only_theirs: int
    example: str  # the first differing point, to start looking from

    def line(self) -> str:
        differ = self.both - self.same
        out = f"{self.same:>6,} of {self.both:>6,} equal, {differ:>5,} differ"
        if differ:
            out += f" (max rel diff {self.worst:.2e}; first: {self.example})"
        if self.only_ours or self.only_theirs:
            out += f"; points only signalbox has: {self.only_ours:,}, only Prometheus: "
            out += f"{self.only_theirs:,}"
        return out

    @property
    def exact(self) -> bool:
        return self.same == self.both and not self.only_ours and not self.only_theirs


def compare(ours: Points, theirs: Points) -> Agreement:
    same = both = 0
    worst = 0.0
    example = ""
    for k, v in sorted(ours.items(), key=lambda kv: kv[0][1]):
        w = theirs.get(k)
        if w is None:
            continue
        both += 1
        if math.isclose(v, w, rel_tol=REL_TOL, abs_tol=1e-9) or (math.isnan(v) and math.isnan(w)):
            same += 1
            continue
        worst = max(worst, abs(v - w) / max(abs(v), abs(w)))
        if not example:
            labels = ",".join(f"{n}={x}" for n, x in k[0])
            when = time.strftime("%m-%d %H:%M", time.gmtime(k[1]))
            example = f"{{{labels}}} at {when}: signalbox {v!r}, Prometheus {w!r}"
    return Agreement(both, same, worst, len(ours) - both, len(theirs) - both, example)


def differing(ours: Points, theirs: Points) -> list[tuple[Any, float, float, float]]:
    """(labels, time, ours, theirs) of each point both answer differently."""
    out = []
    for k, v in ours.items():
        w = theirs.get(k)
        if w is None or math.isclose(v, w, rel_tol=REL_TOL, abs_tol=1e-9):
            continue
        if not (math.isnan(v) and math.isnan(w)):
            out.append((k[0], k[1], v, w))
    return out


def check_answers(
    sb_port: int, prom_port: int, qs: list[Query], om: Path | None = None
) -> dict[Query, str]:
    """Print how the answers compare; the queries a side refused, with the error. With
    ``om`` (the data, against Prometheus 2.x), a silent difference is checked against 2.x's
    extrapolation order from the raw samples (bench/prom2x.py)."""
    refused: dict[Query, str] = {}
    print("answers (points where both answer, equal within rel 1e-6):")
    for q in qs:
        (ours, our_err), (theirs, their_err) = ask(sb_port, q), ask(prom_port, q)
        label = f"  {q.range_name:>7} {q.name:<24}"
        if ours is None or theirs is None:
            refused[q] = f"signalbox: {our_err}" if ours is None else f"prometheus: {their_err}"
            print(f"{label} refused: {refused[q]}")
            continue
        agreement = compare(points(ours), points(theirs))
        print(f"{label} {agreement.line()}")
        warned = False
        for who, doc in (("signalbox", ours), ("Prometheus", theirs)):
            for w in doc.get("warnings") or []:
                print(f"          {who} warning: {w}")
                warned |= who == "signalbox"
        if not agreement.exact and not warned:
            why = None
            if om is not None and not agreement.only_ours and not agreement.only_theirs:
                import prom2x

                why = prom2x.explains(om, q.expr, differing(points(ours), points(theirs)))
            if why:
                print(
                    "          explained: at every differing point Prometheus 2.x's "
                    "extrapolation order from the raw samples gives Prometheus' answer, 3.x's "
                    "gives signalbox's (a counter starting inside the window; bench/prom2x.py)"
                )
            else:
                print("          SILENT: signalbox's answer differs and it gave no warning")
    return refused


# --- timing ----------------------------------------------------------------------------


def nearest_rank(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(p * len(s)) - 1)]


def timed_get(port: int, q: Query) -> float:
    path, params = q.request()
    t = time.perf_counter()
    http_get(port, path, params, timeout=300)
    return time.perf_counter() - t


def run_rounds(
    sides: dict[str, int], qs: list[Query], rounds: int
) -> dict[tuple[Query, str], list[float]]:
    times: dict[tuple[Query, str], list[float]] = {(q, s): [] for q in qs for s in sides}
    for q in qs:  # warm-up, untimed: first-touch costs are not the figure
        for port in sides.values():
            timed_get(port, q)
    names = list(sides)
    for r in range(rounds):
        turn = qs[r % len(qs) :] + qs[: r % len(qs)]
        order = names[r % 2 :] + names[: r % 2]
        for q in turn:
            for name in order:
                times[q, name].append(timed_get(sides[name], q))
    return times


def report(
    qs: list[Query], refused: dict[Query, str], times: dict[tuple[Query, str], list[float]]
) -> None:
    print(
        f"  {'range':>7} {'step':>5} {'query':<24} {'signalbox p50':>13} {'p99':>8}"
        f" {'Prometheus p50':>15} {'p99':>8} {'signalbox/Prom':>15}"
    )
    ratios: dict[str, list[float]] = {}
    for q in qs:
        step = dur(q.step_s) if q.step_s else "-"
        head = f"  {q.range_name:>7} {step:>5} {q.name:<24}"
        if q in refused:
            print(f"{head} refused: {refused[q]}")
            ratios.setdefault(q.range_name, []).append(math.inf)
            continue
        ours, theirs = times[q, "signalbox"], times[q, "prometheus"]
        ratio = median_ratio(ours, theirs)
        ratios.setdefault(q.range_name, []).append(ratio)
        print(
            f"{head} {statistics.median(ours) * 1e3:13.1f} {nearest_rank(ours, 0.99) * 1e3:8.1f}"
            f" {statistics.median(theirs) * 1e3:15.1f} {nearest_rank(theirs, 0.99) * 1e3:8.1f}"
            f" {ratio:14.2f}x"
        )
    print("  (ms; signalbox/Prom: median of per-round ratios, > 1 means signalbox took longer)")
    print("targets per range class (every query of the class must meet it):")
    for name, rs in ratios.items():
        finite = [r for r in rs if math.isfinite(r)]
        geo = math.exp(statistics.fmean(map(math.log, finite))) if finite else math.nan
        target = TARGETS.get(name)
        if target is None:
            verdict = "no target"
        else:
            over = sum(r >= target for r in rs)
            verdict = "PASS" if not over else f"FAIL ({over} of {len(rs)} at or over)"
            verdict = f"{'faster than' if target == 1 else f'within {target:g}x of'} Prometheus: {verdict}"
        print(
            f"  {name:>7}: ratios {', '.join(f'{r:.2f}' for r in rs)}"
            f" (geometric mean {geo:.2f}x); {verdict}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (7)")
    ap.add_argument("--days", type=int, help="days of data, 1..60 (30; --quick: 8)")
    ap.add_argument("--series", type=int, help="series, at least 20 (200; --quick: 40)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 40 series, 8 days")
    ap.add_argument(
        "--offset-s",
        type=int,
        help="seconds each sample sits before its minute (0 for Prometheus 3, else 30)",
    )
    ap.add_argument(
        "--tiers", default="1m:8d,5m:35d,1h:400d", help="signalbox rollup tiers (the defaults)"
    )
    ap.add_argument("--fresh", action="store_true", help="rewrite the cached data file")
    ap.add_argument(
        "--packed-cache-mb",
        type=int,
        help="serve's [server] packed_cache_mb (its default when not given)",
    )
    ap.add_argument(
        "--raw-cache-mb",
        type=int,
        help="serve's [server] raw_cache_mb (its default when not given)",
    )
    ap.add_argument(
        "--no-wait-compaction",
        action="store_true",
        help="query Prometheus' backfilled 2h blocks without waiting for its compaction",
    )
    a = ap.parse_args()
    days = a.days or (8 if a.quick else 30)
    n_series = a.series or (40 if a.quick else 200)
    if not 1 <= days <= 60 or a.rounds < 1 or n_series < 20:
        ap.error("--days must be 1..60, --rounds at least 1, --series at least 20")
    major = prometheus_major()
    offset_s = a.offset_s if a.offset_s is not None else (0 if major >= 3 else 30)
    if not 0 <= offset_s < INTERVAL_S:
        ap.error("--offset-s must be 0..59")

    began = time.perf_counter()
    n_counters, n_gauges, n_sets = series_mix(n_series)
    cache = cache_dir(n_series, days, offset_s)
    held = contextlib.ExitStack()
    lock = held.enter_context(cache_lock(cache))
    om, day_files, end_s = cached_openmetrics(cache, lock, n_series, days, offset_s, a.fresh)
    print(
        f"{n_series} series ({n_counters} counters, {n_gauges} gauges, {n_sets} x {len(LE)} "
        f"histogram buckets) over {days} d at {INTERVAL_S} s, samples {offset_s} s before "
        f"each minute (Prometheus {major}.x); now = {time.strftime('%F %H:%M', time.gmtime(end_s))}"
        f" UTC; {a.rounds} rounds, a new connection per request on both sides"
    )
    qs = queries(end_s)
    with (
        held,
        tempfile.TemporaryDirectory(prefix="sb-bench-qvp-") as d,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(d)
        # the import runs while promtool does, and Prometheus compacts while it finishes
        root = tmp / "sb"
        config = signalbox_config(root, a.tiers, a.packed_cache_mb, a.raw_cache_mb)
        started = time.perf_counter()
        importer = Child(
            [signalbox_exe(), "--config", str(config), "import", str(om)], root / "import.log"
        )
        stack.callback(importer.close)
        t = time.perf_counter()
        made = prometheus_blocks(day_files, om.parent / "blocks", tmp / "prom" / "data", lock)
        lock.shared()  # data and blocks made: other runs may read them now
        print(
            f"  promtool tsdb create-blocks-from openmetrics, {len(day_files)} files of a day"
            f"{'' if made else ' (cached blocks copied)'}: {time.perf_counter() - t:6.1f} s"
        )
        prom = Prometheus(tmp / "prom", tmp / "prom" / "data", retention="60d")
        stack.callback(prom.close)
        if importer.proc.wait(timeout=3600) != 0:
            print(f"signalbox import failed:\n{importer.tail()}")
            return 1
        print(
            "  signalbox import (SQLite, then compaction and packing), beside promtool: "
            f"{time.perf_counter() - started:6.1f} s"
        )
        for line in importer.tail(4000).splitlines():
            if line.startswith(("packed", "reclaimed")):
                print(f"    import: {line}")
        sb_port = free_port()
        serve = Child(
            [signalbox_exe(), "--config", str(config), "serve", "--port", str(sb_port)],
            root / "serve.log",
        )
        stack.callback(serve.close)
        wait_for("signalbox serve", lambda: http_ok(sb_port, "/-/ready"), 60, serve.proc)
        size = sum(p.stat().st_size for p in root.glob("sb.db*"))
        print(f"  signalbox store: {size / 1e6:.0f} MB (raw 1d, tiers {a.tiers})")

        if a.no_wait_compaction:
            blocks = int(prom.value("prometheus_tsdb_blocks_loaded"))
            print(f"  Prometheus reads {blocks} backfilled blocks (not compacted)")
        else:
            t = time.perf_counter()
            blocks = prom.wait_compacted(timeout_s=600)
            print(
                f"  Prometheus compacted the backfilled blocks into {blocks} "
                f"(waited {time.perf_counter() - t:.0f} s more)"
            )
        t = time.perf_counter()
        wait_for(
            "signalbox serve's packing of the imported rollups",
            lambda: packing_done(root / "sb.db", a.tiers),
            1800,
            serve.proc,
        )
        print(
            "  signalbox: every closed unit packed "
            f"(checked, waited {time.perf_counter() - t:.0f} s for serve's compactions)"
        )
        size = sum(p.stat().st_size for p in (tmp / "prom" / "data").rglob("*") if p.is_file())
        print(f"  Prometheus TSDB: {size / 1e6:.0f} MB")

        refused = check_answers(sb_port, prom.port, qs, om if major < 3 else None)
        timed = [q for q in qs if q not in refused]
        t = time.perf_counter()
        load_before = os.getloadavg()[0]
        times = run_rounds({"signalbox": sb_port, "prometheus": prom.port}, timed, a.rounds)
        print(
            f"timings: {len(timed)} queries x 2 sides x {a.rounds} rounds "
            f"in {time.perf_counter() - t:.0f} s (1-min load {load_before:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs)"
        )
        report(qs, refused, times)
        if serve.proc.poll() is not None:
            print(f"signalbox serve exited: {serve.tail()}")
            return 1
    print(f"whole run: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
