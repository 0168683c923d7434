"""The background work of ``serve`` and ``agent``: collection passes, rollups, StatsD.

Each loop runs in a daemon thread with its own store connection and stops when the shared
event is set; a failing pass is logged and the loop goes on (a collector must never die).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from signalbox.config import Settings
from signalbox.metrics.collect import SampleSource
from signalbox.runtime import build_collector, open_metric_store

log = logging.getLogger("signalbox.serve")

COMPACT_EVERY_S = 60.0


def every(
    interval_s: float, stop: threading.Event, fn: Callable[[], object], name: str
) -> threading.Thread:
    """Run ``fn`` now and then every ``interval_s`` until ``stop``; errors are logged, not fatal."""

    def run() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                fn()
            except Exception:
                log.exception("%s failed; will retry next interval", name)
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))

    t = threading.Thread(target=run, name=f"signalbox-{name}", daemon=True)
    t.start()
    return t


@dataclass
class Background:
    """The threads behind one ``serve``/``agent`` process."""

    settings: Settings
    monitors: bool = False  # serve evaluates monitors; agents only collect
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    statsd_address: tuple[str, int] | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        s = self.settings
        sources: list[SampleSource] = []
        if s.metrics.statsd.enabled:
            from signalbox.metrics.statsd.aggregate import StatsdAggregator
            from signalbox.metrics.statsd.server import StatsdServer

            agg = StatsdAggregator()
            server = StatsdServer(agg, host=s.metrics.statsd.host, port=s.metrics.statsd.port)
            server.start()
            self.statsd_address = server.address
            self._closers.append(server.stop)
            sources.append(agg)
            log.info("StatsD listening on udp://%s:%d", *server.address)
        store = open_metric_store(s)
        self._closers.append(store.close)
        collector = build_collector(s, store, sources)
        self.threads.append(every(s.metrics.interval_s, self.stop, collector.run_once, "collect"))
        self.threads.append(
            every(
                COMPACT_EVERY_S,
                self.stop,
                lambda: store.compact(int(time.time() * 1000)),
                "compact",
            )
        )
        if self.monitors:
            from signalbox.monitors.engine.loop import start_monitor_loop

            self.threads.append(start_monitor_loop(s, lambda: open_metric_store(s), self.stop))

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        for c in reversed(self._closers):
            try:
                c()
            except Exception:
                log.exception("error while shutting down")


def run_agent(settings: Settings, started: Callable[[Background], None] | None = None) -> None:
    """Collect until SIGINT/SIGTERM; ``started`` is told once the listeners are bound."""
    bg = Background(settings)
    bg.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        if started is not None:
            started(bg)  # after the handler: a stop right after the news still cleans up
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bg.close()
