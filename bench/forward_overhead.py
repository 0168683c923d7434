"""Forwarding benchmark: what forwarding costs a collection pass, and how fast passes reach
the peers, beside the peers' own figures from the same run.

A spool of ``--series`` labelled series (20,000) is collected by four collectors, each on its
own SQLite store, interleaved round by round (``--runs``): without forwarding; forwarding to
a real carbon-cache (Debian ``graphite-carbon``); forwarding to a peer that accepts and never
reads (the socket timeout is 2 s: a pass that waited for it would show); forwarding to a real
gmond (Debian ``ganglia-monitor``). Per round: each pass's wall time (``PassReport``), and for
carbon and gmond how long after the pass our sender had handed the whole pass over.

The peers' figures, same run: carbon's time to persist the pass (until the whisper file of
the pass's last series holds its value, from the moment our sender finished) -- how fast the
peer takes what we send; and Ganglia's own ``gmetric`` command announcing ``--gmetric``
samples (one process each, as scripts use it) beside our sender announcing the same
samples, per sample.

Usage: .venv/bin/python bench/forward_overhead.py [--series 20000] [--runs 5] [--gmetric 200]
Needs: Debian's graphite-carbon and ganglia-monitor; whisper (PyPI).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import Child, free_port, run_main, wait_for
from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.forward import CollectedPass, Forwarder, PassTap, TappedStore
from signalbox.metrics.forward.ganglia import GangliaEncoder, UdpTransport
from signalbox.metrics.forward.graphite import GraphiteEncoder, TcpTransport
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database


def carbon(root: Path) -> tuple[Child, int, Path]:
    port = free_port()
    whisper_dir = root / "whisper"
    conf = root / "carbon.conf"
    conf.write_text(
        f"[cache]\nSTORAGE_DIR = {root}\nLOCAL_DATA_DIR = {whisper_dir}\n"
        f"WHITELISTS_DIR = {root}/lists\nLOG_DIR = {root}/log\nPID_DIR = {root}\n"
        "ENABLE_LOGROTATION = False\nUSER =\nMAX_CACHE_SIZE = inf\n"
        "MAX_UPDATES_PER_SECOND = inf\nMAX_CREATES_PER_MINUTE = inf\n"
        f"LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {port}\n"
        "ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n"
        f"PICKLE_RECEIVER_PORT = {free_port()}\nCACHE_QUERY_INTERFACE = 127.0.0.1\n"
        f"CACHE_QUERY_PORT = {free_port()}\nENABLE_TAGS = False\n"
    )
    (root / "storage-schemas.conf").write_text("[all]\npattern = .*\nretentions = 1s:10m\n")
    exe = shutil.which("carbon-cache")
    if exe is None:
        raise SystemExit("carbon-cache not found (Debian: apt-get install graphite-carbon)")
    child = Child([exe, f"--config={conf}", "--nodaemon", "start"], root / "carbon.out")
    wait_for("carbon-cache", lambda: _connects(port), 60, child.proc)
    return child, port, whisper_dir


def gmond(root: Path) -> tuple[Child, int]:
    udp, tcp = free_port_udp(), free_port()
    conf = root / "gmond.conf"
    conf.write_text(
        "globals {\n daemonize = no\n setuid = no\n mute = yes\n deaf = no\n"
        " max_udp_msg_len = 1472\n send_metadata_interval = 0\n}\n"
        'cluster {\n name = "bench"\n}\n'
        f"udp_recv_channel {{\n bind = 127.0.0.1\n port = {udp}\n}}\n"
        f"udp_send_channel {{\n host = 127.0.0.1\n port = {udp}\n}}\n"
        f"tcp_accept_channel {{\n bind = 127.0.0.1\n port = {tcp}\n}}\n"
    )
    exe = shutil.which("gmond") or "/usr/sbin/gmond"
    if not os.path.exists(exe):
        raise SystemExit("gmond not found (Debian: apt-get install ganglia-monitor)")
    child = Child([exe, "-c", str(conf), "-f"], root / "gmond.out")
    wait_for("gmond", lambda: _connects(tcp), 30, child.proc)
    return child, udp


def free_port_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class Hanging:
    """Accepts and never reads."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return


def write_spool(spool: Path, series: int, value: float, mtime: float) -> None:
    spool.mkdir(exist_ok=True)
    path = spool / "bench.metrics"
    path.write_text("".join(f'bench_jobs{{queue="q{i}"}}={value}\n' for i in range(series)))
    os.utime(path, (mtime, mtime))


def whisper_value(whisper_dir: Path, path: str, ts: int, timeout: float = 120) -> float:
    """Seconds until carbon's whisper file of tagged ``path`` holds a value at ``ts``."""
    import whisper

    name, *tags = path.split(";")
    digest = hashlib.sha256((name + "".join(f";{t}" for t in sorted(tags))).encode()).hexdigest()
    f = whisper_dir / "_tagged" / digest[:3] / digest[3:6] / f"{digest}.wsp"
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if f.exists():
            _, values = whisper.fetch(str(f), ts - 1, ts)
            if values and values[-1] is not None:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"carbon did not persist {path} at {ts} within {timeout} s")


def wait_sent(f: Forwarder, total: int, timeout: float = 120) -> float:
    started = time.perf_counter()
    while f.sent < total:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{f.peer}: {f.sent} of {total} sent after {timeout} s")
        time.sleep(0.002)
    return time.perf_counter() - started


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gmetric", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sb-forward-") as tmp:
        root = Path(tmp)
        (root / "carbon").mkdir()
        (root / "gmond").mkdir()
        carbon_child, carbon_port, whisper_dir = carbon(root / "carbon")
        gmond_child, gmond_udp = gmond(root / "gmond")
        hanging = Hanging()
        try:
            return run(args, root, carbon_port, whisper_dir, gmond_udp, hanging)
        finally:
            carbon_child.close()
            gmond_child.close()


def run(
    args: argparse.Namespace,
    root: Path,
    carbon_port: int,
    whisper_dir: Path,
    gmond_udp: int,
    hanging: Hanging,
) -> int:
    clock = FrozenClock(float(int(time.time())))
    spool = root / "spool"
    to_carbon = Forwarder(
        "graphite",
        "carbon",
        TcpTransport("127.0.0.1", carbon_port, 2.0),
        GraphiteEncoder(),
        max_buffer=10 * args.series,
    )
    to_hanging = Forwarder(
        "graphite",
        "hanging",
        TcpTransport("127.0.0.1", hanging.port, 2.0),
        GraphiteEncoder(),
        max_buffer=2 * args.series,
    )
    to_gmond = Forwarder(
        "ganglia",
        "gmond",
        UdpTransport("127.0.0.1", gmond_udp, 2.0),
        GangliaEncoder(host="bench", tmax_s=15, dmax_s=0, group="bench"),
        max_buffer=10 * args.series,
    )
    kinds = {"none": None, "carbon": to_carbon, "hanging": to_hanging, "gmond": to_gmond}
    collectors = {}
    for kind, f in kinds.items():
        store = SQLMetricStore(open_database(f"sqlite:///{root / kind}.db"), clock=clock)
        if f is None:
            collectors[kind] = Collector(store, spool_dir=spool, host="bench", clock=clock)
        else:
            f.start()
            collectors[kind] = Collector(
                TappedStore(store, PassTap([f])),
                spool_dir=spool,
                host="bench",
                clock=clock,
            )
    times: dict[str, list[float]] = {k: [] for k in kinds}
    sent_after = {"carbon": [], "gmond": []}  # type: dict[str, list[float]]
    persisted: list[float] = []
    last = f"bench_jobs;host=bench;queue=q{args.series - 1}"
    # round 0 warms up (every series and layout new); rounds after it are steady passes
    for rnd in range(args.runs + 1):
        clock.advance(1)
        write_spool(spool, args.series, float(rnd), clock.now())
        for kind, c in collectors.items():
            f = kinds[kind]
            before = f.sent if f is not None else 0
            took = c.run_once().duration_s
            if f is not None and kind != "hanging":
                wait = wait_sent(f, before + args.series)
                if rnd:
                    sent_after[kind].append(wait)
                if kind == "carbon":
                    p = whisper_value(whisper_dir, last, int(clock.now()))
                    if rnd:
                        persisted.append(p)
            if rnd:
                times[kind].append(took)
    base = times["none"]
    print(
        f"collection pass of {args.series} series, {args.runs} rounds, medians "
        f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):"
    )
    for kind in kinds:
        ratio = med([t / b for t, b in zip(times[kind], base, strict=True)])
        print(
            f"  forwarding to {kind:8s} {med(times[kind]) * 1000:8.1f} ms   "
            f"x{ratio:.2f} of the pass without forwarding (median of per-round ratios)"
        )
    for kind, xs in sent_after.items():
        print(
            f"  our sender had handed the pass to {kind} {med(xs) * 1000:.0f} ms after it "
            f"({args.series / med(xs):,.0f} samples/s)"
        )
    print(
        f"  peer: carbon-cache persisted the pass's last series {med(persisted) * 1000:.0f} ms "
        "after our sender finished"
    )
    print(
        f"  hanging peer: {to_hanging.dropped} samples dropped, {to_hanging.sent} sent, "
        f"{to_hanging.failures} failed sends"
    )
    gmetric_vs_ours(args.gmetric, gmond_udp)
    for f in kinds.values():
        if f is not None:
            f.close(0.5)
    return 0


def gmetric_vs_ours(n: int, gmond_udp: int) -> None:
    """Ganglia's own gmetric (a process per sample, as scripts use it) beside our sender,
    announcing the same n samples to the same gmond, rounds interleaved."""
    import subprocess

    exe = shutil.which("gmetric")
    if exe is None:
        print("  gmetric not found: skipped")
        return
    conf = Path(tempfile.mkdtemp()) / "gmetric.conf"
    conf.write_text(
        f"globals {{\n}}\nudp_send_channel {{\n host = 127.0.0.1\n port = {gmond_udp}\n}}\n"
    )
    theirs, ours = [], []
    for rnd in range(3):
        started = time.perf_counter()
        for i in range(n):
            subprocess.run(
                [
                    exe,
                    "-c",
                    str(conf),
                    "-n",
                    f"gm_{i}",
                    "-v",
                    str(rnd),
                    "-t",
                    "double",
                    "-S",
                    "bench:bench",
                ],
                check=True,
            )
        theirs.append((time.perf_counter() - started) / n)
        f = Forwarder(
            "ganglia",
            "gmond",
            UdpTransport("127.0.0.1", gmond_udp, 2.0),
            GangliaEncoder(host="bench", tmax_s=60, dmax_s=0, group="bench"),
            max_buffer=10 * n,
        )
        f.start()
        started = time.perf_counter()
        f.submit(
            CollectedPass(
                int(time.time() * 1000),
                (("host", "bench"),),
                [Sample(f"sb_{i}", (), float(rnd)) for i in range(n)],
            )
        )
        wait_sent(f, n)
        ours.append((time.perf_counter() - started) / n)
        f.close(0.5)
    ratio = med([t / o for t, o in zip(theirs, ours, strict=True)])
    print(
        f"  peer: gmetric {med(theirs) * 1e6:,.0f} us a sample (a process each), ours "
        f"{med(ours) * 1e6:,.1f} us: gmetric x{ratio:,.0f} (median of per-round ratios)"
    )


if __name__ == "__main__":
    run_main(main)
