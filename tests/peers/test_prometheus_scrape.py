"""A real Prometheus (Debian ``prometheus``) scrapes ``signalbox serve``'s ``/metrics`` and an
``agent``'s, every second; what its HTTP API answers is what signalbox exposed: every series,
label for label (hostile values included), value for value, with the types we declared."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signalbox.metrics.parse.promtext import parse_prometheus
from signalbox.metrics.samples import Labels, escape_label_value
from tests.cli.helpers import SIGNALBOX, free_port
from tests.serving import fetch, serve_process, wait_for

pytestmark = pytest.mark.peer("prometheus")

HOSTILE = ['say "hi"', "back\\slash", "new\nline", "naïve ☃", "{}=,", ""]

SPOOL_METRICS = "".join(
    f'odd_value{{v="{escape_label_value(v)}",i="{i}"}}={i}\n' for i, v in enumerate(HOSTILE)
) + (
    "jobs_waiting=5\nratio=0.125\nbig=1e20\nnegative=-3.5\nnot_a_number=NaN\n"
    'cron_last_run{job="backup",instance="db1"}=1700000000\n'
    'hidden{__secret="1"}=1\nhidden{__secret="2"}=2\n'
)

SPOOL_PROM = """\
# HELP reqs_total Requests served.
# TYPE reqs_total counter
reqs_total{code="200"} 1027
reqs_total{code="500"} 3
# HELP latency_seconds Request latency \\\\ in seconds,\\nper "route".
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 10
latency_seconds_bucket{le="1"} 15
latency_seconds_bucket{le="+Inf"} 17
latency_seconds_sum 9.5
latency_seconds_count 17
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds{quantile="0.99"} 1.5
rpc_seconds_sum 40
rpc_seconds_count 100
# TYPE temperature gauge
temperature{room="a:b"} +Inf
# TYPE lag_count gauge
lag_count 4
weird:name_total 2
"""

STABLE_PREFIXES = ("odd_value", "jobs_waiting", "ratio", "big", "negative", "not_a_number")
STABLE_PREFIXES += ("reqs_total", "latency_seconds", "rpc_seconds", "temperature", "lag_count")
STABLE_PREFIXES += ("weird:name_total",)


def get(port: int, path: str, **params: str) -> bytes:
    q = "?" + urllib.parse.urlencode(params) if params else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}{q}", timeout=10) as r:
        body: bytes = r.read()
        return body


@dataclass
class Prometheus:
    port: int
    proc: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, object]]:
        answer = json.loads(get(self.port, "/api/v1/query", query=expr))
        assert answer["status"] == "success", answer
        result: list[dict[str, object]] = answer["data"]["result"]
        return result

    def targets(self) -> dict[str, dict[str, object]]:
        answer = json.loads(get(self.port, "/api/v1/targets"))
        return {t["labels"]["job"]: t for t in answer["data"]["activeTargets"]}


def start_prometheus(root: Path, targets: dict[str, int]) -> Prometheus:
    exe = shutil.which("prometheus")
    assert exe is not None
    root.mkdir(parents=True, exist_ok=True)
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port in targets.items()
    )
    (root / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}"
    )
    port = free_port()
    out = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    prom = Prometheus(port, proc)
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/-/ready")[0] == 200)
    return prom


def project(root: Path, host: str, extra: str = "") -> int:
    """A project folder whose spool holds the files above; its StatsD port."""
    udp = free_port(socket.SOCK_DGRAM)
    spool = root / "spool"
    spool.mkdir(parents=True)
    (spool / "odd.metrics").write_text(SPOOL_METRICS)
    (spool / "app.prom").write_text(SPOOL_PROM)
    (root / "signalbox.toml").write_text(
        f'host = "{host}"\n[collect]\ninterval = "1s"\nspool_dir = "spool"\n'
        f'[statsd]\nlisten = "127.0.0.1:{udp}"\n{extra}'
    )
    return udp


STATSD = [
    b"uploads:1|c|#route:/api/photos,code:201",
    b"uploads:2|c|#route:/api/photos,code:201",
    b"queue_depth:17|g",
    b"resize_time:120|ms\nresize_time:80|ms\nresize_time:100|ms",
    b"visitors:alice|s\nvisitors:bob|s",
]


def send_statsd(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for packet in STATSD:
            s.sendto(packet, ("127.0.0.1", port))


@dataclass
class Scraped:
    prom: Prometheus
    serve_port: int
    agent_port: int


@contextlib.contextmanager
def agent_process(root: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``signalbox agent --listen`` in ``root``, answering, until the end; then stopped
    with SIGTERM, which must end it cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    out = (root / "agent.out").open("wb")
    proc = subprocess.Popen(
        [SIGNALBOX, "agent", "--listen", f"127.0.0.1:{port}"],
        cwd=root,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    try:
        wait_for(lambda: fetch(f"http://127.0.0.1:{port}/-/healthy")[0] == 200)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)
        text = (root / "agent.out").read_text(errors="replace")
        assert proc.returncode in (0, -15), text
        assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    root = tmp_path_factory.mktemp("scrape")
    serve_port = free_port()
    agent_port = free_port()
    udp = project(root / "serve", "serve1", f"[server]\nport = {serve_port}\n")
    # the agent also forwards to a Graphite that is not there: its counters are scraped too
    dead = f'[forward.graphite]\naddress = "127.0.0.1:{free_port()}"\n'
    agent_udp = project(root / "agent", "agent1", dead)
    # Prometheus first: its discovery hands targets to the scrapers ~5 s after start, while
    # serve starts
    prom = start_prometheus(root / "prometheus", {"serve": serve_port, "agent": agent_port})
    try:
        with (
            serve_process(root / "serve", serve_port),
            agent_process(root / "agent", agent_port),
        ):
            send_statsd(udp)
            send_statsd(agent_udp)
            # both up, and scraped after the passes that stored the spool and StatsD
            for expr in ("up == 1", "jobs_waiting", "resize_time_seconds_count"):
                wait_for(lambda e=expr: len(prom.query(e)) == 2, timeout=30)
            yield Scraped(prom, serve_port, agent_port)
    finally:
        prom.proc.terminate()
        prom.proc.wait(15)


def exposed(text: str) -> dict[tuple[str, Labels], float]:
    parsed = parse_prometheus(text, "metrics")
    assert not parsed.errors, parsed.errors
    return {(s.name, s.labels): s.value for s in parsed.samples}


def in_prometheus(prom: Prometheus, job: str) -> dict[tuple[str, Labels], float]:
    """Every series of ``job`` as scraped, the target's labels taken off; a label of ours
    named like one of them (``instance``, ``job``) is back under its name (Prometheus keeps
    it as ``exported_instance`` without ``honor_labels``)."""
    out = {}
    for r in prom.query(f'{{job="{job}"}}'):
        metric = dict(r["metric"])  # type: ignore[call-overload]
        name = metric.pop("__name__")
        metric.pop("job")
        metric.pop("instance")
        for k in [k for k in metric if k.startswith("exported_")]:
            metric[k.removeprefix("exported_")] = metric.pop(k)
        value = r["value"][1]  # type: ignore[index]
        out[(name, tuple(sorted(metric.items())))] = float(value)
    return out


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("job", ["serve", "agent"])
def test_prometheus_reads_back_every_series_we_expose(scraped: Scraped, job: str) -> None:
    prom = scraped.prom
    target = prom.targets()[job]
    assert target["health"] == "up" and target["lastError"] == "", target
    port = scraped.serve_port if job == "serve" else scraped.agent_port
    ours = exposed(get(port, "/metrics").decode())
    theirs = in_prometheus(prom, job)
    # every series we expose is in Prometheus, and nothing else (its own scrape series aside;
    # StatsD timer quantiles and sets are a flush interval's: a pass without timings has none,
    # so between its scrape and ours they may come or go)
    scrape_own = {k for k in theirs if k[0].startswith("scrape_") or k[0] == "up"}

    def lasting(keys: set[tuple[str, Labels]]) -> set[tuple[str, Labels]]:
        return {k for k in keys if not k[0].startswith(("resize_time_seconds", "visitors"))}

    assert lasting(set(theirs) - scrape_own) == lasting(set(ours))
    stable = {k: v for k, v in ours.items() if k[0].startswith(STABLE_PREFIXES)}
    assert len(stable) == len(HOSTILE) + 19
    for key, value in stable.items():
        assert same(theirs[key], value), (key, theirs[key], value)
    assert not any(k[0] == "hidden" for k in theirs)  # refused at the spool: __ names
    statsd = {
        k[0]: v for k, v in theirs.items() if k[0].startswith(("uploads", "resize", "queue_d"))
    }
    assert statsd["uploads_total"] == 3 and statsd["queue_depth"] == 17, statsd
    assert statsd["resize_time_seconds_count"] == 3, statsd
    # hostile label values arrive as they were written
    values = {dict(k[1]).get("v") for k in theirs if k[0] == "odd_value"}
    assert values == set(HOSTILE) - {""} | {None}
    assert {dict(k[1]).get("host") for k in ours} == {f"{job}1"}


def test_the_agents_forwarder_counters_are_scraped(scraped: Scraped) -> None:
    sent = scraped.prom.query('signalbox_forward_sent_total{job="agent",peer="graphite"}')
    dropped = scraped.prom.query('signalbox_forward_dropped_total{job="agent",peer="graphite"}')
    assert float(sent[0]["value"][1]) == 0  # type: ignore[index]
    assert float(dropped[0]["value"][1]) >= 0  # type: ignore[index]
    buffered = scraped.prom.query('signalbox_forward_buffered_samples{job="agent"}')
    assert float(buffered[0]["value"][1]) > 0  # type: ignore[index]  # the passes waiting


@pytest.mark.parametrize("job", ["serve", "agent"])
def test_prometheus_knows_the_types_we_declared(scraped: Scraped, job: str) -> None:
    answer = json.loads(
        get(scraped.prom.port, "/api/v1/targets/metadata", match_target=f'{{job="{job}"}}')
    )
    types = {m["metric"]: m["type"] for m in answer["data"]}
    helps = {m["metric"]: m["help"] for m in answer["data"]}
    assert helps["latency_seconds"] == 'Request latency \\ in seconds,\nper "route".'

    assert types["reqs_total"] == "counter"
    assert types["latency_seconds"] == "histogram"
    assert types["rpc_seconds"] == "summary"
    assert types["temperature"] == "gauge"
    assert types["signalbox_collect_duration_seconds"] == "gauge"
    assert types["uploads_total"] == "counter"
    assert types["resize_time_seconds"] == "summary"
    # a histogram read back as Prometheus computes it from our buckets
    q = scraped.prom.query(f'histogram_quantile(0.5, latency_seconds_bucket{{job="{job}"}})')
    assert float(q[0]["value"][1]) == pytest.approx(0.1 * 8.5 / 10)  # type: ignore[index]
    # what promtool's linter would have flagged is not declared with a type it would judge
    assert types.get("lag_count", "unknown") in ("unknown", "untyped")
