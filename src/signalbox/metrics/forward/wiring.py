"""A process's forwarders, built from ``[forward]``, and the agent's ``/metrics`` listener,
behind one tap (see the package docstring)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from signalbox.metrics.forward.ganglia import GangliaEncoder, UdpTransport
from signalbox.metrics.forward.graphite import GraphiteEncoder, TcpTransport
from signalbox.metrics.forward.passes import PassTap, TappedStore
from signalbox.metrics.forward.sender import SELF_METRICS, Forwarder
from signalbox.metrics.forward.settings import ForwardSettings
from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.metrics.store import MetricStore

if TYPE_CHECKING:
    from signalbox.config import Settings
    from signalbox.metrics.forward.scrape import ScrapeServer

log = logging.getLogger("signalbox.forward")

__all__ = ["Forwarders", "build_forwarders", "start_forwarding"]


class Forwarders(PassTap):
    """A process's forwarders and its ``/metrics`` listener behind one tap: started, their
    counters a sample source of the collection passes, and stopped together."""

    def __init__(
        self, forwarders: Sequence[Forwarder], scrape: ScrapeServer | None = None, host: str = ""
    ) -> None:
        super().__init__(
            forwarders, [scrape.last] if scrape is not None else [], add_labels=(("host", host),)
        )
        self.forwarders = list(forwarders)
        self.scrape = scrape

    def wrap(self, store: MetricStore) -> TappedStore:
        """``store`` as the collector should write to it: each stored write handed over."""
        return TappedStore(store, self)

    def start(self) -> None:
        for f in self.forwarders:
            f.start()
        if self.scrape is not None:
            self.scrape.start()

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        samples: list[Sample] = []
        for f in self.forwarders:
            samples.extend(f.flush(now_ms)[0])
        return samples, list(SELF_METRICS) if samples else []

    def close(self) -> None:
        """Stop listening, and stop every forwarder, each given its socket timeout to send
        what is queued."""
        if self.scrape is not None:
            self.scrape.stop()
        for f in self.forwarders:
            f.close()


def start_forwarding(
    settings: Settings, *, listen: tuple[str, int] | None = None
) -> Forwarders | None:
    """The forwarders ``[forward]`` configures and, given ``listen``, the ``/metrics``
    listener (``agent --listen``), started; None when there is neither."""
    forwarders = build_forwarders(
        settings.forward, host=settings.host, collect_interval_s=settings.metrics.interval_s
    )
    scrape = None
    if listen is not None:
        from signalbox.metrics.forward.scrape import LastPass, ScrapeServer

        scrape = ScrapeServer(LastPass(), *listen)
    if not forwarders and scrape is None:
        return None
    out = Forwarders(forwarders, scrape, host=settings.host)
    out.start()
    for f in forwarders:
        log.info("forwarding each stored pass to %s at %s", f.peer, f.address)
    return out


def build_forwarders(
    settings: ForwardSettings, *, host: str, collect_interval_s: float
) -> list[Forwarder]:
    """The forwarders ``settings`` configure (none when it names no peer), not started."""
    out: list[Forwarder] = []
    g = settings.graphite
    if g is not None:
        out.append(
            Forwarder(
                "graphite",
                f"{g.host}:{g.port}",
                TcpTransport(g.host, g.port, g.timeout_s),
                GraphiteEncoder(prefix=g.prefix, naming=g.naming),
                max_buffer=g.max_buffer,
                interval_s=g.interval_s,
                timeout_s=g.timeout_s,
            )
        )
    m = settings.ganglia
    if m is not None:
        out.append(
            Forwarder(
                "ganglia",
                f"{m.host}:{m.port}",
                UdpTransport(m.host, m.port, m.timeout_s),
                GangliaEncoder(
                    host=host,
                    tmax_s=max(m.interval_s, collect_interval_s),
                    dmax_s=m.lifetime_s,
                    group=m.group,
                ),
                max_buffer=m.max_buffer,
                interval_s=m.interval_s,
                timeout_s=m.timeout_s,
            )
        )
    return out
