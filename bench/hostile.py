"""Hostile load against a real ``signalbox serve``: does it stay answerable?

Issue 8's benchmark. The script seeds a store (SQLite, or ``--store postgresql`` in a fresh
schema of the ``test`` database at 127.0.0.1:5432) with ``--series`` series of a gauge ``m``
scraped every 15 s for ``--hours`` hours, plus a few series ``x{v=...}`` whose label values
are 30 characters long (the input a backtracking regex chokes on), writes a
``signalbox.toml`` with the ``[query]`` limits given on the command line (printed) and
starts ``signalbox serve`` as its own process. Then, case after case, while the case runs:

* a health prober asks ``/-/healthy`` every 50 ms (1 s client timeout, a new connection each
  time, as a load balancer would): max and p99 latency, failures;
* a cheap prober asks an instant query for one series every 100 ms: p50/p99/max, statuses;
* a sampler reads the server's VmRSS (children included) every 100 ms: the peak.

Cases (each ``--duration`` seconds, then the requests in flight are waited for; the probes
cover that drain too):

1. ``heavy``: 8 clients each looping ``sum by (x) (rate(m[5m]))`` over all series for 8 h at
   15 s (~7.7M samples charged: heavy, under ``max_samples``), plus one client looping a
   query holding about twice that (past ``max_samples``: a 422 when it gets to run). Before
   the load, each is timed once alone, as the reference;
2. ``regex``: 8 clients looping ``{__name__=~"(((((((((((.*)*)*)*)*)*)*)*)*)*)*)*x"}`` and
   ``x{v=~"(a+)+b"}`` (catastrophic backtracking for a backtracking engine);
3. ``nesting``: 8 clients looping 5,000 nested parentheses, 5,000 unary minus, a chain of
   5,000 ``+``, 500 nested ``abs()`` and ``step=1e-9`` (each must be a 400);
4. ``statsd``: one UDP client sends 200,000 distinct names as fast as it can (the datagrams
   the kernel drops for a full socket buffer are read from ``/proc/net/snmp``); then one new,
   legitimate name, which must be queryable after a flush.

A case that leaves the server unable to answer a cheap query 30 s after it ended is marked
"hung after" and the server is restarted, so the next case measures a server of its own.
Everything runs on this machine: the clients share its cores with the server, and
whatever else runs meanwhile moves the figures (read them beside the "alone" timings).
The default ``--max-concurrency 4`` is below the 9 heavy clients on purpose: queries that
wait for a heavy slot keep their place in the queue, and a cheap query then waits behind
them; ``--max-concurrency 20`` (the product's default) shows the other side.

It prints one table (case | health max/p99 | cheap p50/p99/max | peak RSS | healthy? |
notes) and PASS/FAIL per target of the issue: health answered within 100 ms throughout,
cheap-query p99 under 250 ms while the 8 heavy queries run, peak RSS within a bound derived
from the configured limits (see ``rss_bound``). It exits 0 whatever it found: it reports.

    .venv/bin/python bench/hostile.py            # 2,000 series x 24 h, 15 s per case (~2.5 min)
    .venv/bin/python bench/hostile.py --quick    # 2,000 series x 8.5 h, 8 s per case (~1.5 min)
    .venv/bin/python bench/hostile.py --store postgresql --quick   # (~3 min: seeding is slower)
    .venv/bin/python bench/hostile.py --cases heavy --max-concurrency 20
"""

from __future__ import annotations

import argparse
import contextlib
import math
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from peers import HOST, Child, free_port, http_ok, parse_metrics, run_main, signalbox_exe, wait_for

SCRAPE_S = 15
HEAVY_RANGE_S = 8 * 3600
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
CHEAP_QUERY = 'm{instance="i1",job="j0"}'
HEALTH_TARGET_MS = 100.0
CHEAP_TARGET_MS = 250.0
CLIENTS = 8
REGEX_SERIES = 20
STATSD_NAMES = 200_000
LEGIT_NAME = "hostile_legit_after_flood"

Request = tuple[str, str, dict[str, str]]
"""(label, path, form params): one query a load client sends, by POST (5,000 parentheses
do not fit in a request line)."""


# --- seeding --------------------------------------------------------------------------


def long_value(i: int) -> str:
    """30 characters ending in no ``b``: ``(a+)+b`` must fail to match, the costly case."""
    return f"{'a' * 30}{i}"[-30:].replace("b", "c")


def seed(config: Path, series: int, hours: float, now_s: int) -> tuple[int, float]:
    """Write the history in this process through the store API, then compact it, so
    ``serve`` starts on a store as a long-running one has it. (samples, seconds)."""
    from signalbox.config import load_settings
    from signalbox.metrics.samples import Sample
    from signalbox.runtime import open_metric_store

    labels = [
        (("instance", f"i{i % 50}"), ("job", f"j{i // 50}"), ("x", f"g{i % 10}"))
        for i in range(series)
    ]
    xlabels = [(("v", long_value(i)),) for i in range(REGEX_SERIES)]
    steps = int(hours * 3600) // SCRAPE_S
    started = time.perf_counter()
    store = open_metric_store(load_settings(str(config), environ={}))
    try:
        n = 0
        for k in range(steps):
            ts_ms = (now_s - (steps - 1 - k) * SCRAPE_S) * 1000
            batch = [Sample("m", lb, float(k * (i % 97 + 1))) for i, lb in enumerate(labels)]
            batch += [Sample("x", lb, float(k)) for lb in xlabels]
            store.write(batch, ts_ms)
            n += len(batch)
        store.compact(now_s * 1000)
    finally:
        store.close()
    return n, time.perf_counter() - started


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A store URL on a fresh schema of the test database, dropped afterwards."""
    import psycopg

    schema = f"sbbench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


# --- measuring ------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants (0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class RssSampler(threading.Thread):
    """The server's RSS every 100 ms; :meth:`take_peak` returns the peak since last asked."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._peak = 0

    def run(self) -> None:
        while not self.stop.wait(0.1):
            r = rss_bytes(self.pid)
            with self._lock:
                self._peak = max(self._peak, r)

    def take_peak(self) -> int:
        with self._lock:
            peak, self._peak = max(self._peak, rss_bytes(self.pid)), 0
        return peak


@dataclass
class Probe:
    """Latencies (ms) and outcomes (status code, or ``timeout``/``error``) of one prober."""

    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def failures(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k != "200")


class Prober(threading.Thread):
    """GET ``path`` every ``period_s`` (never two at once) until stopped."""

    def __init__(
        self, base: str, path: str, period_s: float, timeout_s: float, *, fresh: bool
    ) -> None:
        super().__init__(daemon=True)
        self.base, self.path, self.period_s = base, path, period_s
        self.stop = threading.Event()
        self.probe = Probe()
        limits = httpx.Limits(max_keepalive_connections=0 if fresh else 1)
        self._client = httpx.Client(base_url=base, timeout=timeout_s, limits=limits)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                t = time.perf_counter()
                try:
                    outcome = str(self._client.get(self.path).status_code)
                except httpx.TimeoutException:
                    outcome = "timeout"
                except httpx.HTTPError:
                    outcome = "error"
                took = time.perf_counter() - t
                self.probe.latencies.append(took * 1000)
                self.probe.outcomes[outcome] += 1
                self.stop.wait(max(0.0, self.period_s - took))
        finally:
            self._client.close()


@dataclass
class Load:
    """What the load clients of a case got: per query label, durations (s) and outcomes."""

    durations: dict[str, list[float]] = field(default_factory=dict)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, seconds: float, outcome: str) -> None:
        with self.lock:
            self.durations.setdefault(label, []).append(seconds)
            self.outcomes.setdefault(label, Counter())[outcome] += 1

    def summary(self) -> str:
        parts = []
        for label, durs in self.durations.items():
            codes = ",".join(f"{k}x{n}" for k, n in sorted(self.outcomes[label].items()))
            parts.append(
                f"{label}: {codes} (median {statistics.median(durs):.2f} s, max {max(durs):.2f} s)"
            )
        return "; ".join(parts)


def load_client(
    base: str, requests: list[Request], until: float, timeout_s: float, load: Load
) -> None:
    """Send ``requests`` round-robin until ``until`` (the last one started is finished)."""
    with httpx.Client(base_url=base, timeout=timeout_s) as client:
        k = 0
        while time.monotonic() < until:
            label, path, params = requests[k % len(requests)]
            k += 1
            t = time.perf_counter()
            try:
                outcome = str(client.post(path, data=params).status_code)
            except httpx.TimeoutException:
                outcome = "timeout"
            except httpx.HTTPError as e:
                outcome = type(e).__name__
            load.add(label, time.perf_counter() - t, outcome)


# --- cases ----------------------------------------------------------------------------


def heavy_requests(now_s: int) -> tuple[Request, Request]:
    """The heavy range query, and one that holds about twice its samples (past the limit)."""
    rng = {"start": str(now_s - HEAVY_RANGE_S), "end": str(now_s), "step": str(SCRAPE_S)}
    heavy = ("heavy", "/api/v1/query_range", {"query": "sum by (x) (rate(m[5m]))", **rng})
    over = (
        "over-limit",
        "/api/v1/query_range",
        {"query": "sum by (x) (rate(m[5m])) / sum by (x) (rate(m[10m]))", **rng},
    )
    return heavy, over


def regex_requests() -> list[Request]:
    return [
        (
            "name=~nested",
            "/api/v1/query",
            {"query": '{__name__=~"(((((((((((.*)*)*)*)*)*)*)*)*)*)*)*x"}'},
        ),
        ("v=~(a+)+b", "/api/v1/query", {"query": 'x{v=~"(a+)+b"}'}),
    ]


def nesting_requests(now_s: int) -> list[Request]:
    q = "/api/v1/query"
    return [
        ("5000 parens", q, {"query": "(" * 5000 + "1" + ")" * 5000}),
        ("5000 minus", q, {"query": "-" * 5000 + "1"}),
        ("5000 plus", q, {"query": "+".join(["1"] * 5001)}),
        ("500 abs", q, {"query": "abs(" * 500 + "m" + ")" * 500}),
        (
            "step=1e-9",
            "/api/v1/query_range",
            {"query": "m", "start": str(now_s - 60), "end": str(now_s), "step": "1e-9"},
        ),
    ]


def alone(base: str, requests: list[Request], timeout_s: float) -> str:
    """Each request once, by itself: the reference for what the load does to it."""
    load = Load()
    with httpx.Client(base_url=base, timeout=timeout_s) as client:
        for label, path, params in requests:
            t = time.perf_counter()
            try:
                outcome = str(client.post(path, data=params).status_code)
            except httpx.HTTPError as e:
                outcome = type(e).__name__
            load.add(label, time.perf_counter() - t, outcome)
    return "alone (no load, no probes): " + load.summary()


def run_clients(
    base: str, clients: list[list[Request]], seconds: float, timeout_s: float
) -> tuple[Load, float]:
    """Each client its own thread for ``seconds``; (what they got, time until all ended)."""
    load = Load()
    until = time.monotonic() + seconds
    t = time.perf_counter()
    threads = [
        threading.Thread(target=load_client, args=(base, reqs, until, timeout_s, load))
        for reqs in clients
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + timeout_s + 5)
    return load, time.perf_counter() - t


def instant(base: str, query: str, timeout_s: float = 10) -> list[dict[str, object]] | None:
    """An instant query's result, or None when the server did not answer it with a 200."""
    try:
        r = httpx.get(base + "/api/v1/query", params={"query": query}, timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    result: list[dict[str, object]] = r.json()["data"]["result"]
    return result


def udp_rcvbuf_errors() -> int:
    """Datagrams this host dropped for a full socket buffer (``/proc/net/snmp``)."""
    rows = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [r for r in rows if r and r[0] == "Udp:"]
    return int(dict(zip(udp[0], udp[1], strict=True))["RcvbufErrors"])


def statsd_flood(base: str, statsd_port: int, interval_s: float, seconds: float) -> str:
    """200k distinct names from one socket, as fast as it goes; then a legitimate new name,
    sent after a flush has passed (a new interval, a new budget) until it can be queried."""
    started = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drops_before = udp_rcvbuf_errors()
    t = time.perf_counter()
    packets, lines = 0, []
    for i in range(STATSD_NAMES):
        lines.append(f"hostile_flood_{i}:1|c")
        if len(lines) == 40 or i == STATSD_NAMES - 1:  # ~1 kB a packet
            sock.sendto("\n".join(lines).encode(), (HOST, statsd_port))
            packets += 1
            lines = []
    flood_s = time.perf_counter() - t
    time.sleep(0.5)
    dropped = udp_rcvbuf_errors() - drops_before
    time.sleep(interval_s + 0.5)  # the flood's interval ends: the next one has a fresh budget
    t = time.perf_counter()
    deadline = time.monotonic() + 5 * interval_s + 5
    seen = False
    while not seen and time.monotonic() < deadline:
        sock.sendto(f"{LEGIT_NAME}:1|g".encode(), (HOST, statsd_port))
        time.sleep(0.5)
        seen = bool(instant(base, LEGIT_NAME))
    legit_s = time.perf_counter() - t
    sock.close()
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    stored = instant(base, 'count({__name__=~"hostile_flood_.*"})')
    n_stored = (
        "no answer" if stored is None else f"{int(float(stored[0]['value'][1])) if stored else 0:,}"  # type: ignore[index]
    )
    refused = Counter[str]()
    try:
        metrics = httpx.get(base + "/metrics", timeout=10).text
    except httpx.HTTPError as e:
        metrics = ""
        refused[f"/metrics unanswered ({type(e).__name__})"] = 0
    for lbl, v in parse_metrics(metrics, "signalbox_statsd_refused_total"):
        refused[lbl.get("reason", "?")] += int(v)
    refused_txt = ",".join(f"{k}={v:,}" for k, v in sorted(refused.items())) or "none reported"
    return (
        f"{STATSD_NAMES:,} names in {packets:,} packets sent in {flood_s:.2f} s "
        f"({dropped:,} packets dropped by the kernel: socket buffer full); "
        f"flood series stored {n_stored}; refused: {refused_txt}; new name after the flood "
        + (f"queryable after {legit_s:.1f} s" if seen else f"NOT queryable within {legit_s:.0f} s")
    )


@dataclass
class CaseResult:
    name: str
    health: Probe
    cheap: Probe
    peak_rss: int
    alive: bool
    notes: str
    recovered: bool = True


class Server:
    """``signalbox serve`` on one config, with its RSS sampler; restartable, so a case that
    leaves it hung does not spoil the cases after it (each start gets its own log)."""

    def __init__(self, root: Path, config: Path, port: int) -> None:
        self.root, self.config, self.port = root, config, port
        self.base = f"http://{HOST}:{port}"
        self.logs: list[Path] = []
        self.child: Child | None = None
        self.sampler: RssSampler | None = None

    def start(self) -> None:
        log = self.root / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        argv = [signalbox_exe(), "--config", str(self.config), "serve", "--port", str(self.port)]
        self.child = child = Child(argv, log, cwd=self.root)
        wait_for("signalbox serve", lambda: http_ok(self.port, "/-/healthy"), 60, child.proc)
        settle(self.base)
        self.sampler = RssSampler(child.proc.pid)
        self.sampler.start()

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop.set()
        if self.child is not None:
            self.child.close()

    def alive(self) -> bool:
        return self.child is not None and self.child.proc.poll() is None

    def take_peak(self) -> int:
        assert self.sampler is not None
        return self.sampler.take_peak()

    def tracebacks(self) -> list[tuple[Path, str]]:
        """(log, its last 1500 characters) of each start whose log holds a traceback."""
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                out.append((log, text[-1500:]))
        return out


def measure(name: str, server: Server, work: Callable[[], str]) -> CaseResult:
    """Run ``work`` with the probers going; the figures of that stretch."""
    health = Prober(server.base, "/-/healthy", 0.05, 1.0, fresh=True)
    cheap = Prober(
        server.base,
        "/api/v1/query?" + str(httpx.QueryParams(query=CHEAP_QUERY)),
        0.1,
        10.0,
        fresh=False,
    )
    server.take_peak()
    health.start()
    cheap.start()
    try:
        notes = work()
    finally:
        for p in (health, cheap):
            p.stop.set()
        for p in (health, cheap):
            p.join(15)
    return CaseResult(name, health.probe, cheap.probe, server.take_peak(), server.alive(), notes)


def settle(base: str, timeout_s: float = 30) -> float | None:
    """Seconds until a cheap query is fast again (abandoned work done), None if never."""
    t = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = time.perf_counter()
        answered = instant(base, CHEAP_QUERY, timeout_s=5) is not None
        if answered and time.perf_counter() - s < CHEAP_TARGET_MS / 1000:
            return time.perf_counter() - t
        time.sleep(0.2)
    return None


# --- report ---------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (nan when empty)."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def rss_bound(a: argparse.Namespace, baseline: int) -> int:
    """What the limits allow the queries to hold: at most ``heavy_concurrency`` queries
    past ``heavy_samples`` (each up to ``max_samples``), the rest of ``max_concurrency``
    under ``heavy_samples``; at ``--bytes-per-sample`` each (a Python float and timestamp in
    lists, the rows read, the output), on top of the baseline before any case."""
    samples = a.heavy_concurrency * a.max_samples + (a.max_concurrency - a.heavy_concurrency) * min(
        a.heavy_samples, a.max_samples
    )
    return int(baseline + samples * a.bytes_per_sample)


def healthy(r: CaseResult) -> str:
    if not r.alive:
        return "NO: exited"
    if r.health.failures():
        return f"NO: {r.health.failures()} of {len(r.health.latencies)} probes failed"
    if not r.recovered:
        return "NO: hung after"
    return "yes"


def row(r: CaseResult) -> str:
    h, c = r.health.latencies, r.cheap.latencies
    cheap_codes = ",".join(f"{k}x{n}" for k, n in sorted(r.cheap.outcomes.items()))
    health_codes = ",".join(f"{k}x{n}" for k, n in sorted(r.health.outcomes.items()))
    return (
        f"{r.name:<8} | {max(h, default=math.nan):8.1f}/{pct(h, 99):8.1f} | "
        f"{pct(c, 50):7.1f}/{pct(c, 99):7.1f}/{max(c, default=math.nan):7.1f} | "
        f"{r.peak_rss / 2**20:11.0f} | {healthy(r):<24} | health {health_codes}; "
        f"cheap {cheap_codes}"
    )


HEAD = (
    f"{'case':<8} | {'health max/p99 ms':>17} | {'cheap p50/p99/max ms':>23} | "
    f"{'peak RSS MB':>11} | {'healthy?':<24} | statuses"
)


def report(results: list[CaseResult], baseline: int, bound: int) -> None:
    print()
    print(HEAD)
    print("-" * len(HEAD))
    print(f"{'baseline':<8} | {'':>17} | {'':>23} | {baseline / 2**20:11.0f} | {'':<24} |")
    for r in results:
        print(row(r))
    for r in results:
        print(f"  {r.name}: {r.notes}")
    print()
    worst = max(results, key=lambda r: max(r.health.latencies, default=math.inf))
    worst_ms = max(worst.health.latencies, default=math.inf)
    all_ok = all(healthy(r) == "yes" for r in results)
    ok = all_ok and worst_ms <= HEALTH_TARGET_MS
    print(
        f"{'PASS' if ok else 'FAIL'}  health answered within {HEALTH_TARGET_MS:.0f} ms throughout "
        f"(worst {worst_ms:.1f} ms, in {worst.name}; "
        f"{'every probe answered 200' if all_ok else 'the server did not stay healthy'})"
    )
    heavy = next((r for r in results if r.name == "heavy"), None)
    if heavy is not None:
        p99 = pct(heavy.cheap.latencies, 99)
        cheap_ok = p99 < CHEAP_TARGET_MS and set(heavy.cheap.outcomes) == {"200"}
        print(
            f"{'PASS' if cheap_ok else 'FAIL'}  cheap-query p99 under {CHEAP_TARGET_MS:.0f} ms "
            f"while {CLIENTS} heavy queries run ({p99:.1f} ms, statuses "
            f"{dict(heavy.cheap.outcomes)})"
        )
    peak = max(r.peak_rss for r in results)
    print(
        f"{'PASS' if peak <= bound else 'FAIL'}  peak RSS within the configured limits' bound "
        f"({peak / 2**20:.0f} MB, bound {bound / 2**20:.0f} MB)"
    )


# --- main -----------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="8.5 h of history, 8 s per case")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--series", type=int, default=2000, help="series of m (2000)")
    ap.add_argument("--hours", type=float, help="hours of history (24; --quick: 8.5)")
    ap.add_argument("--duration", type=float, help="seconds per case (15; --quick: 8)")
    ap.add_argument("--cases", default="heavy,regex,nesting,statsd", help="which, in order")
    ap.add_argument("--timeout", default="20s", help="[query] timeout (20s)")
    ap.add_argument("--max-samples", type=int, default=10_000_000, help="(10,000,000)")
    ap.add_argument("--max-concurrency", type=int, default=4, help="(4)")
    ap.add_argument("--heavy-samples", type=int, default=1_000_000, help="(1,000,000)")
    ap.add_argument("--heavy-concurrency", type=int, default=2, help="(2)")
    ap.add_argument(
        "--bytes-per-sample", type=int, default=100, help="for the RSS bound (100, see rss_bound)"
    )
    a = ap.parse_args()
    hours = a.hours if a.hours is not None else (8.5 if a.quick else 24.0)
    duration = a.duration if a.duration is not None else (8.0 if a.quick else 15.0)
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    unknown = set(cases) - {"heavy", "regex", "nesting", "statsd"}
    if unknown:
        ap.error(f"--cases: unknown {sorted(unknown)}; choose from heavy,regex,nesting,statsd")
    if hours * 3600 < HEAVY_RANGE_S + 600:
        ap.error(f"--hours must be at least {(HEAVY_RANGE_S + 600) / 3600:.2f} (the heavy range)")
    interval_s = 2.0
    now_s = int(time.time()) // SCRAPE_S * SCRAPE_S
    from signalbox.durations import parse_duration

    with (
        tempfile.TemporaryDirectory(prefix="sb-bench-hostile-") as d,
        contextlib.ExitStack() as stack,
    ):
        root = Path(d)
        (root / "monitors").mkdir()  # none: the monitor loop has nothing to do
        url = (
            stack.enter_context(pg_schema())
            if a.store == "postgresql"
            else f"sqlite:///{root / 'sb.db'}"
        )
        port, statsd_port = free_port(), free_port()
        query_table = (
            f'timeout = "{a.timeout}"\nmax_samples = {a.max_samples}\n'
            f"max_concurrency = {a.max_concurrency}\nheavy_samples = {a.heavy_samples}\n"
            f"heavy_concurrency = {a.heavy_concurrency}\n"
        )
        config = root / "signalbox.toml"
        config.write_text(
            f'host = "bench"\nstore = "{url}"\n[collect]\ninterval = "{interval_s:g}s"\n'
            f'[statsd]\nlisten = "{HOST}:{statsd_port}"\n[query]\n{query_table}'
        )
        print(
            f"store {a.store}: {a.series:,} series of m x {hours:g} h at {SCRAPE_S} s "
            f"(+{REGEX_SERIES} series x{{v=<30 chars>}}); cases of {duration:g} s, "
            f"{CLIENTS} clients each; collect/StatsD flush every {interval_s:g} s"
        )
        print("[query] " + query_table.strip().replace("\n", ", "))
        n, took = seed(config, a.series, hours, now_s)
        print(f"seeded {n:,} samples and compacted in {took:.1f} s")

        server = Server(root, config, port)
        stack.callback(server.stop)
        server.start()
        base = server.base
        time.sleep(1)
        baseline = server.take_peak()
        bound = rss_bound(a, baseline)
        assert server.child is not None
        print(
            f"serve pid {server.child.proc.pid}, baseline RSS {baseline / 2**20:.0f} MB; RSS "
            f"bound {bound / 2**20:.0f} MB (baseline + ({a.heavy_concurrency} x max_samples + "
            f"{a.max_concurrency - a.heavy_concurrency} x heavy_samples) x "
            f"{a.bytes_per_sample} B)"
        )
        client_timeout = parse_duration(a.timeout) + 5  # the server's own timeout answers first
        heavy, over = heavy_requests(now_s)
        regex = regex_requests()
        work: dict[str, Callable[[], str]] = {
            "heavy": lambda: describe(
                run_clients(base, [[heavy]] * CLIENTS + [[over]], duration, client_timeout)
            ),
            "regex": lambda: describe(
                run_clients(
                    base,
                    [regex[i % 2 :] + regex[: i % 2] for i in range(CLIENTS)],
                    duration,
                    client_timeout,
                )
            ),
            "nesting": lambda: describe(
                run_clients(base, [nesting_requests(now_s)] * CLIENTS, duration, client_timeout)
            ),
            "statsd": lambda: statsd_flood(base, statsd_port, interval_s, duration),
        }
        results = []
        print(HEAD)
        for case in cases:
            reference = alone(base, [heavy, over], client_timeout) if case == "heavy" else ""
            r = measure(case, server, work[case])
            if reference:
                r.notes = f"{r.notes}; {reference}"
            results.append(r)
            waited = settle(base) if r.alive else None
            if waited is None:
                r.recovered = False
                r.notes += "; afterwards the server " + (
                    "had exited" if not r.alive else "still did not answer a cheap query in 30 s"
                )
                server.stop()
                server.start()  # the next case gets a server of its own
                r.notes += ": restarted for the next case"
            elif waited > 1:
                r.notes += f"; it took {waited:.1f} s after the case to answer cheaply again"
            print(row(r), flush=True)
        report(results, baseline, bound)
        for log, tail in server.tracebacks():
            print(f"{log.name} holds a traceback; it ends:\n{tail}")
    return 0


def describe(run: tuple[Load, float]) -> str:
    load, took = run
    return f"{load.summary()}; all done in {took:.1f} s"


if __name__ == "__main__":
    run_main(main)
