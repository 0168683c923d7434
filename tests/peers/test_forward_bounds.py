"""Forwarders are bounded and never block collection: a peer that refuses, or accepts and never
reads, leaves pass times as they are; what could not be sent is dropped, counted and said once;
a peer that comes back gets the passes that waited."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.forward import CollectedPass, Forwarder, PassTap, TappedStore
from signalbox.metrics.forward.ganglia import GangliaEncoder, UdpTransport
from signalbox.metrics.forward.graphite import GraphiteEncoder, TcpTransport
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.peers.peers import HangingPeer, LinesPeer, OnePassPeer, free_port, write_spool
from tests.peers.test_tap import Recorder

NOW = 1_700_000_000.0
SERIES = 3000  # ~100 KB of lines a pass: more than a hanging peer's buffers take
TIMEOUT_S = 0.5


def graphite(port: int, max_buffer: int) -> Forwarder:
    return Forwarder(
        "graphite",
        f"127.0.0.1:{port}",
        TcpTransport("127.0.0.1", port, TIMEOUT_S, send_buffer=4096),
        GraphiteEncoder(),
        max_buffer=max_buffer,
        timeout_s=TIMEOUT_S,
        backoff_s=0.2,
    )


def ganglia(port: int, max_buffer: int) -> Forwarder:
    return Forwarder(
        "ganglia",
        f"127.0.0.1:{port}",
        UdpTransport("127.0.0.1", port, TIMEOUT_S),
        GangliaEncoder(host="web1", tmax_s=15, dmax_s=600, group="signalbox"),
        max_buffer=max_buffer,
        timeout_s=TIMEOUT_S,
        backoff_s=0.2,
    )


def passes(tmp_path: Path, f: Forwarder, rounds: int) -> tuple[list[float], list[float], int]:
    """Interleaved passes of a plain collector and one forwarding through ``f``, over the
    same spool: (plain pass times, forwarding pass times, samples handed to ``f``)."""
    clock = FrozenClock(NOW)
    spool = tmp_path / "spool"
    rec = Recorder()
    plain = Collector(
        SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'a.db'}"), clock=clock),
        spool_dir=spool,
        host="web1",
        clock=clock,
    )
    fwd = Collector(
        TappedStore(
            SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'b.db'}"), clock=clock),
            PassTap([f, rec]),
        ),
        spool_dir=spool,
        host="web1",
        clock=clock,
        sources=[f],
    )
    base: list[float] = []
    timed: list[float] = []
    for i in range(rounds):
        clock.advance(15)
        write_spool(spool, SERIES, float(i), clock.now())
        base.append(plain.run_once().duration_s)
        timed.append(fwd.run_once().duration_s)
    return base, timed, sum(p.size for p in rec.passes)


def retried(f: Forwarder, times: int) -> None:
    """Wait until ``f`` has failed ``times`` sends (a few backoffs: one episode)."""
    deadline = time.monotonic() + 10
    while f.failures < times and time.monotonic() < deadline:
        time.sleep(0.02)
    assert f.failures >= times


def said(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.name == "signalbox.forward")


@pytest.mark.parametrize("peer", ["hanging", "refusing"])
def test_a_dead_graphite_never_slows_collection_and_drops_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, peer: str
) -> None:
    caplog.set_level(logging.INFO, "signalbox.forward")
    with HangingPeer() as hanging:
        port = hanging.port if peer == "hanging" else free_port()
        f = graphite(port, max_buffer=2 * SERIES)
        f.start()
        try:
            base, timed, handed = passes(tmp_path, f, rounds=8)
            retried(f, 3)
            assert f.dropped > 0  # the buffer overflowed while the peer took nothing
            assert f.sent == 0
            assert f.waiting <= 2 * SERIES
        finally:
            f.close()
    # every sample handed over is either sent or counted as dropped
    assert f.sent + f.dropped == handed
    # a pass only queues: never the socket timeout, and about as fast as without forwarding
    assert max(timed) < TIMEOUT_S
    assert statistics.median(timed) < 2 * statistics.median(base) + 0.05, (base, timed)
    assert said(caplog, "cannot send to") == 1  # once per episode, not per pass or retry
    assert said(caplog, "buffer full") == 1
    if peer == "hanging":
        assert hanging.conns  # it did connect: the send is what timed out


def test_a_refused_ganglia_port_is_counted_the_same_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = ganglia(free_port(), max_buffer=2 * SERIES)
    f.start()
    try:
        base, timed, handed = passes(tmp_path, f, rounds=6)
        retried(f, 3)
        assert f.dropped > 0 and f.sent == 0
    finally:
        f.close()
    assert f.sent + f.dropped == handed
    assert max(timed) < TIMEOUT_S
    assert statistics.median(timed) < 2 * statistics.median(base) + 0.05, (base, timed)
    assert said(caplog, "cannot send to") == 1


def test_a_peer_that_comes_back_gets_the_passes_that_waited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "signalbox.forward")
    port = free_port()
    f = graphite(port, max_buffer=100 * SERIES)  # room for every pass: none dropped
    f.start()
    try:
        _, _, handed = passes(tmp_path / "down", f, rounds=3)
        assert f.sent == 0 and f.dropped == 0 and f.waiting == handed
        with LinesPeer(port) as peer:
            deadline = time.monotonic() + 10
            while f.sent < handed and time.monotonic() < deadline:
                time.sleep(0.05)
            assert f.sent == handed and f.waiting == 0
            while peer.count() < handed and time.monotonic() < deadline:
                time.sleep(0.05)
            assert peer.count() == handed
            lines = list(peer.lines)
    finally:
        f.close()
    assert f.dropped == 0
    # every pass arrived with its own time: three passes 15 s apart
    stamps = sorted({int(line.split()[2]) for line in lines if line.startswith("jobs_waiting;")})
    assert stamps == [int(NOW) + 15, int(NOW) + 30, int(NOW) + 45]
    assert said(caplog, "cannot send to") == 1
    assert said(caplog, "takes passes again") == 1


def test_an_interval_sends_every_pass_queued_meanwhile_together() -> None:
    with LinesPeer() as peer:
        f = graphite(peer.port, max_buffer=1000)
        f.interval_s = 0.6
        f.start()
        try:
            sizes = []
            started = time.monotonic()
            for i in range(4):  # four passes within one interval
                p = CollectedPass(
                    i * 1000, (), [Sample("m", (("i", str(j)),), 1.0) for j in range(10)]
                )
                f.submit(p)
                sizes.append(p.size)
                time.sleep(0.1)
            deadline = time.monotonic() + 5
            while peer.count() < 40 and time.monotonic() < deadline:
                time.sleep(0.01)
            took = time.monotonic() - started
        finally:
            f.close()
    assert peer.count() == 40 and f.sent == 40 and f.dropped == 0
    # the first pass at once, the three that came meanwhile one interval later, together
    assert 0.6 <= took < 2.0
    assert [line.split()[2] for line in peer.lines] == [str(i) for i in range(4) for _ in range(10)]


def test_a_pass_bigger_than_the_buffer_is_dropped_whole_and_said_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    f = graphite(free_port(), max_buffer=5)
    p = CollectedPass(0, (), [Sample("m", (("i", str(j)),), 1.0) for j in range(6)])
    f.submit(p)
    f.submit(p)
    f.close()
    assert (f.sent, f.dropped) == (0, 12)
    assert said(caplog, "is more than max_buffer (5)") == 1


def test_a_connection_the_peer_closed_is_opened_again_before_the_next_pass() -> None:
    with OnePassPeer(per_connection=10) as peer:
        f = graphite(peer.port, max_buffer=1000)
        f.start()
        try:
            for i in range(3):
                p = CollectedPass(
                    i * 1000, (), [Sample("m", (("i", str(j)),), 1.0) for j in range(10)]
                )
                f.submit(p)
                deadline = time.monotonic() + 5
                while peer.count() < 10 * (i + 1) and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.1)  # the peer's close reaches us before the next pass
        finally:
            f.close()
    assert peer.count() == 30 and f.sent == 30 and f.dropped == 0
    assert len(peer.conns) == 3  # one connection a pass, each closed by the peer
