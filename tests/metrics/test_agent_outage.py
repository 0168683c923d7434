"""`signalbox agent` through a database outage, for real: two agent processes write to one
PostgreSQL schema through a TCP proxy the test cuts (open connections break, new ones are
refused) for several passes while spool values and StatsD counters keep coming, then
restores. Each agent stays up, says what happens once per episode, answers ``/-/ready`` 503
meanwhile, and when the database returns stores every held pass at its own time, no point
twice, counters exact; the one with a tiny ``buffer_max_samples`` drops its oldest passes,
counts them and says so once -- and its counter is exact all the same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signalbox.metrics.samples import Matcher
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.cli.helpers import SIGNALBOX, free_port
from tests.server.tcpproxy import TcpProxy
from tests.serving import fetch, wait_for
from tests.stores import pg_schema_url

VALUES = 3  # spool values (and StatsD hits) sent while the database is away
EVERY_S = 1.5  # between them: at least one 1s pass sees each
TINY = 100  # samples: room for about two passes of an agent


@dataclass
class Agent:
    host: str
    spool: Path
    udp: int
    http: int
    log: Path
    proc: subprocess.Popen[bytes]

    def send(self, value: int) -> None:
        """The spool value (published as writers must) and one StatsD hit."""
        tmp = self.spool / "outage.metrics.tmp"
        tmp.write_text(f"outage_value={value}\n")
        tmp.replace(self.spool / "outage.metrics")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"hits:1|c", ("127.0.0.1", self.udp))

    def ready(self) -> tuple[int, str]:
        return fetch(f"http://127.0.0.1:{self.http}/-/ready")

    def lines(self, text: str) -> list[str]:
        return [ln for ln in self.log.read_text().splitlines() if text in ln]


@contextlib.contextmanager
def agent(tmp_path: Path, host: str, url: str, collect: str = "") -> Iterator[Agent]:
    root = tmp_path / host
    spool = root / "spool"
    spool.mkdir(parents=True)
    udp, http = free_port(socket.SOCK_DGRAM), free_port()
    (root / "signalbox.toml").write_text(
        f'store = "{url}"\nhost = "{host}"\n[collect]\ninterval = "1s"\n'
        f'spool_dir = "{spool}"\n{collect}[statsd]\nlisten = "127.0.0.1:{udp}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    log = root / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SIGNALBOX, "--config", str(root / "signalbox.toml"), "agent", "--listen",
             f"127.0.0.1:{http}"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    a = Agent(host, spool, udp, http, log, proc)
    try:
        wait_for(lambda: a.ready()[0] == 200)  # StatsD is bound before HTTP
        yield a
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def points(store: SQLMetricStore, name: str, host: str) -> list[tuple[int, float]]:
    """(ts ms, value) of every raw point of the series, as stored (duplicates included)."""
    now = int(time.time() * 1000)
    got = store.select(
        [Matcher("__name__", "=", name), Matcher("host", "=", host)], now - 600_000, now
    )
    assert len(got) <= 1
    return list(zip(got[0].timestamps, got[0].values, strict=True)) if got else []


def latest(store: SQLMetricStore, name: str, host: str) -> float | None:
    pts = points(store, name, host)
    return pts[-1][1] if pts else None


@pytest.mark.service("postgresql")
def test_agents_hold_passes_through_a_database_outage_and_store_each_at_its_own_time(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url())
        proxy = TcpProxy(("127.0.0.1", 5432))
        stack.callback(lambda: proxy.stop())
        via_proxy = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        reader = SQLMetricStore(open_database(url))
        stack.callback(reader.close)
        roomy = stack.enter_context(agent(tmp_path, "a1", via_proxy))
        tiny = stack.enter_context(
            agent(tmp_path, "a2", via_proxy, f"buffer_max_samples = {TINY}\n")
        )
        agents = (roomy, tiny)
        for a in agents:
            a.send(0)
        wait_for(
            lambda: all(
                latest(reader, "outage_value", a.host) == 0.0
                and latest(reader, "hits_total", a.host) == 1.0
                for a in agents
            )
        )

        proxy.stop()  # the database goes away
        sent: list[int] = []  # when each value was published, ms
        for v in range(1, VALUES + 1):
            sent.append(int(time.time() * 1000))
            for a in agents:
                a.send(v)
            time.sleep(EVERY_S)
        for a in agents:
            assert a.proc.poll() is None, a.log.read_text()
            status, body = a.ready()
            assert status == 503 and body.startswith("not ready: collect failing since "), body
        back = int(time.time() * 1000)
        proxy = TcpProxy(("127.0.0.1", 5432), port=proxy.port)  # and returns
        for a in agents:
            a.send(VALUES + 1)
        wait_for(
            lambda: all(
                latest(reader, "outage_value", a.host) == VALUES + 1
                and latest(reader, "signalbox_agent_buffer_passes", a.host) == 0.0
                for a in agents
            )
        )
        wait_for(lambda: all(a.ready()[0] == 200 for a in agents))

        ends = [*sent[1:], back]
        for a in agents:
            values = points(reader, "outage_value", a.host)
            stamps = [t for t, _ in values]
            assert stamps == sorted(set(stamps)), "a point stored twice"
            hits = points(reader, "hits_total", a.host)
            assert [t for t, _ in hits] == sorted({t for t, _ in hits}), "a point stored twice"
            assert [v for _, v in hits] == sorted(v for _, v in hits)  # no reset, no double
            assert hits[-1][1] == VALUES + 2  # every hit, once: exact, drops or not
            outage = [(t, v) for t, v in values if sent[0] <= t < back]
            for t, v in outage:  # each at the time a pass read it, not at reconnect
                i = int(v) - 1
                assert 0 <= i < VALUES, (t, v)
                assert sent[i] - 1000 <= t <= ends[i] + 300, (a.host, t, v, sent, back)
            seen = sorted({int(v) for _, v in outage})
            held = points(reader, "signalbox_agent_buffer_passes", a.host)
            assert max(v for _, v in held) >= 2 and held[-1][1] == 0.0
            assert len(a.lines("holding the collection passes the store refuses")) == 1
            assert len(a.lines("the store takes writes again: stored ")) == 1
            failed = a.lines("collect failed") + a.lines("collect still failing")
            assert 1 <= len(failed) <= 2, a.log.read_text()  # broken, then refused: no more
            assert "Traceback" not in a.log.read_text()
            if a is roomy:
                assert seen == list(range(1, VALUES + 1)), (outage, sent)
                assert latest(reader, "signalbox_agent_dropped_samples_total", a.host) == 0.0
                assert a.lines("buffer_max_samples") == []
            else:  # the oldest passes dropped, the newest kept: a suffix of what was sent
                assert seen and seen == list(range(seen[0], VALUES + 1)) and seen[0] > 1, outage
                dropped = latest(reader, "signalbox_agent_dropped_samples_total", a.host)
                assert dropped is not None and dropped > 0
                assert len(a.lines(f"held passes passed buffer_max_samples ({TINY})")) == 1
                assert "; dropped " in a.lines("the store takes writes again")[0]
        for a in agents:
            a.proc.send_signal(signal.SIGTERM)
            assert a.proc.wait(timeout=20) == 0, a.log.read_text()
            assert a.lines("stopping with") == []  # nothing left unstored


@pytest.mark.service("postgresql")
def test_an_agent_started_while_the_database_is_away_waits_for_it_counting_statsd(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url())
        proxy = TcpProxy(("127.0.0.1", 5432))
        proxy.stop()  # away before the agent starts: its port refuses connections
        via_proxy = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        root = tmp_path / "a3"
        udp = free_port(socket.SOCK_DGRAM)
        root.mkdir()
        (root / "signalbox.toml").write_text(
            f'store = "{via_proxy}"\nhost = "a3"\n[collect]\ninterval = "1s"\n'
            f'spool_dir = "{root / "spool"}"\n[statsd]\nlisten = "127.0.0.1:{udp}"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
        log = root / "agent.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [SIGNALBOX, "--config", str(root / "signalbox.toml"), "agent"],
                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        stack.callback(lambda: proc.poll() is None and proc.kill())
        wait_for(lambda: "cannot open the store: " in log.read_text())
        for _ in range(3):  # StatsD is listening: these are counted while it waits
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"hits:1|c", ("127.0.0.1", udp))
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        proxy = TcpProxy(("127.0.0.1", 5432), port=proxy.port)
        stack.callback(lambda: proxy.stop())
        reader = SQLMetricStore(open_database(url))
        stack.callback(reader.close)
        wait_for(lambda: latest(reader, "hits_total", "a3") == 3.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
        text = log.read_text()
        assert text.count("cannot open the store: cannot connect to PostgreSQL") == 1, text
        assert "the store opened after " in text and "Traceback" not in text
