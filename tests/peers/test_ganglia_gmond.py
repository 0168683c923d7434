"""Forwarding to a real gmond (Debian ``ganglia-monitor``): each series shows up under its
host in the XML gmond serves on its TCP port, with its value, slope and group; hostile label
values and host names leave that XML well-formed (gmond itself escapes nothing)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import settings_from_dict
from signalbox.metrics.collect import Collector
from signalbox.metrics.forward import start_forwarding
from signalbox.metrics.forward.ganglia import ganglia_host, ganglia_name
from signalbox.metrics.samples import escape_label_value
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.peers.peers import free_port

pytestmark = pytest.mark.peer("gmond")

HOSTILE = ["a b", 'q"<&>', "naïve ☃", "x.y", "100%"]


def gmond_exe() -> str:
    return shutil.which("gmond") or "/usr/sbin/gmond"


class Gmond:
    def __init__(self, root: Path) -> None:
        self.udp = free_port(socket.SOCK_DGRAM)
        self.tcp = free_port()
        conf = root / "gmond.conf"
        conf.write_text(
            "globals {\n daemonize = no\n setuid = no\n debug_level = 0\n"
            " max_udp_msg_len = 1472\n mute = yes\n deaf = no\n host_dmax = 0\n"
            " cleanup_threshold = 300\n gexec = no\n send_metadata_interval = 0\n}\n"
            'cluster {\n name = "signalbox-test"\n}\n'
            f"udp_recv_channel {{\n bind = 127.0.0.1\n port = {self.udp}\n}}\n"
            f"tcp_accept_channel {{\n bind = 127.0.0.1\n port = {self.tcp}\n}}\n"
        )
        self.out = (root / "gmond.out").open("wb")
        self.proc = subprocess.Popen(
            [gmond_exe(), "-c", str(conf), "-f"], stdout=self.out, stderr=subprocess.STDOUT
        )

    def xml(self) -> ET.Element:
        with socket.create_connection(("127.0.0.1", self.tcp), timeout=5) as c:
            chunks = []
            while data := c.recv(65536):
                chunks.append(data)
        return ET.fromstring(b"".join(chunks))  # fails on anything not well-formed

    def metrics(self, host: str) -> dict[str, ET.Element]:
        for h in self.xml().iter("HOST"):
            if h.get("NAME") == host:
                return {m.get("NAME", ""): m for m in h.iter("METRIC")}
        return {}

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


@pytest.fixture(scope="module")
def gmond(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gmond]:
    g = Gmond(tmp_path_factory.mktemp("gmond"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                g.xml()
                break
            except OSError:
                if g.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        (tmp_path_factory.getbasetemp() / "gmond0" / "gmond.out").read_text()
                    ) from None
                time.sleep(0.1)
        yield g
    finally:
        g.close()


def wait_metrics(gmond: Gmond, host: str, want: dict[str, str | None]) -> dict[str, ET.Element]:
    """gmond's metrics of ``host`` once each of ``want`` is there (with that value, unless
    None), or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        got = gmond.metrics(host)
        if all(n in got and v in (None, got[n].get("VAL")) for n, v in want.items()):
            return got
        if time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_each_series_is_a_metric_of_its_host_in_gmonds_xml(tmp_path: Path, gmond: Gmond) -> None:
    settings = settings_from_dict(
        {
            "host": "web1",
            "collect": {"interval": "15s"},
            "forward": {"ganglia": {"address": f"127.0.0.1:{gmond.udp}", "lifetime": "1h"}},
        },
        source="test.toml",
        base_dir=tmp_path,
    )
    fwd = start_forwarding(settings)
    assert fwd is not None
    clock = FrozenClock(time.time())
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)
    spool = tmp_path / "spool"
    spool.mkdir()
    hostile = "".join(
        f'odd{{v="{escape_label_value(v)}"}}={i}\n' for i, v in enumerate(HOSTILE, start=1)
    )
    (spool / "jobs.metrics").write_text(
        'jobs_waiting{queue="q1"}=3\nlag{host="db 7<&>"}=0.25\n' + hostile
    )
    (spool / "reqs.prom").write_text('# TYPE reqs_total counter\nreqs_total{code="200"} 17\n')
    collector = Collector(fwd.wrap(store), spool_dir=spool, host="web1", clock=clock)
    try:
        collector.run_once()
        clock.advance(15)
        (spool / "jobs.metrics").write_text('jobs_waiting{queue="q1"}=4\nlag{host="db 7<&>"}=0.5\n')
        collector.run_once()
        want: dict[str, str | None] = {"jobs_waiting.queue.q1": "4", "reqs_total.code.200": None}
        want.update((ganglia_name("odd", (("v", v),)), None) for v in HOSTILE)
        got = wait_metrics(gmond, "web1", want)
    finally:
        fwd.close()
    assert fwd.forwarders[0].dropped == 0
    jobs = got["jobs_waiting.queue.q1"]
    assert (jobs.get("VAL"), jobs.get("TYPE"), jobs.get("SLOPE")) == ("4", "double", "both")
    assert (jobs.get("TMAX"), jobs.get("DMAX")) == ("15", "3600")
    extra = {e.get("NAME"): e.get("VAL") for e in jobs.iter("EXTRA_ELEMENT")}
    assert extra["GROUP"] == "signalbox"
    reqs = got["reqs_total.code.200"]
    assert (reqs.get("VAL"), reqs.get("SLOPE")) == ("17", "positive")  # a counter
    assert [got[ganglia_name("odd", (("v", v),))].get("VAL") for v in HOSTILE] == [
        str(i) for i in range(1, 6)
    ]
    assert len({ganglia_name("odd", (("v", v),)) for v in HOSTILE}) == len(HOSTILE)
    # a series speaking for another host is listed under that host, its name escaped
    db = wait_metrics(gmond, ganglia_host((("host", "db 7<&>"),), "web1"), {"lag": "0.5"})
    assert db["lag"].get("VAL") == "0.5"
