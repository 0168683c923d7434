"""A simulated photo service that uses signalbox the way a real app would.

It writes its metrics through the Python client (a real spool file), sends StatsD packets
over UDP to the real listener, and backfills two hours of history so graphs and backtests
have something to show at once. Every 30 minutes resizes get slow for 2.5 minutes (the first
time 45 s after start), which the demo's monitor turns into a CRITICAL alert and recovery.
On stop its spool file is removed: a file left behind would keep its last values alive and
page as stale (:mod:`signalbox.demo.workspace` removes one a killed run left).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import socket
import threading
import time

from signalbox.config import Settings
from signalbox.demo.reprocess import LOAD_METRIC, db_threads_running
from signalbox.demo.webapp import DemoWeb
from signalbox.demo.workspace import CLIENT_PROG
from signalbox.metrics.client import Client
from signalbox.metrics.collect import with_host
from signalbox.metrics.samples import Matcher, MetricMeta, Sample
from signalbox.metrics.sql.store import SQLMetricStore

log = logging.getLogger("signalbox.demo")

CYCLE_S = 1800.0
SLOW_START_S = 45.0
SLOW_FOR_S = 150.0
BACKFILL_S = 2 * 3600
STEP_S = 15


def processing_time(t_since_start: float, rng: random.Random) -> float:
    """Seconds per resize: ~2 s, with a slow spell of ~12 s each cycle."""
    phase = t_since_start % CYCLE_S
    base = 2.0 + 0.3 * math.sin(t_since_start / 120.0) + rng.uniform(-0.3, 0.3)
    if SLOW_START_S <= phase < SLOW_START_S + SLOW_FOR_S:
        return round(base + 10.0, 3)
    return round(base, 3)


def queue_depth(t_since_start: float, rng: random.Random) -> float:
    phase = t_since_start % CYCLE_S
    slow = SLOW_START_S <= phase < SLOW_START_S + SLOW_FOR_S
    return float(
        int(40 + 20 * math.sin(t_since_start / 300.0) + (400 if slow else 0) + rng.randint(0, 10))
    )


class PhotoService:
    def __init__(self, settings: Settings, store: SQLMetricStore, *, seed: int = 7) -> None:
        self.settings = settings
        self.store = store
        self.rng = random.Random(seed)
        self.client = Client(
            settings.metrics.spool_dir, prog=CLIENT_PROG, pid_label=None, flush_interval=1.0
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = time.time()
        # its site, behind the middleware: what `signalbox logs` finds
        self.web = DemoWeb(settings, self.client)

    def backfill(self) -> int:
        """Two hours of history, unless the store already has demo data."""
        if self.store.series([Matcher("__name__", "=", "image_processing_time")]):
            return 0
        host = self.settings.host
        now = time.time()
        samples: list[Sample] = []
        processed = 0.0
        for i in range(BACKFILL_S // STEP_S):
            t = now - BACKFILL_S + i * STEP_S
            since = t - (self.started - BACKFILL_S)  # cycles continue into the live part
            ts = int(t * 1000)
            processed += self.rng.randint(60, 90)
            labels = with_host((), host)
            samples += [
                Sample(
                    "image_processing_time",
                    labels,
                    processing_time(since - BACKFILL_S, self.rng),
                    ts,
                ),
                Sample("image_processed_total", labels, processed, ts),
                Sample(
                    "photo_queue_depth",
                    with_host((("queue", "resize"),), host),
                    queue_depth(since, self.rng),
                    ts,
                ),
                Sample(
                    LOAD_METRIC,
                    with_host((("db", "photos-db"),), host),
                    db_threads_running(since - BACKFILL_S, self.rng),
                    ts,
                ),
            ]
        self.store.write(samples, int(now * 1000))
        self.store.write_metadata(
            [
                MetricMeta("image_processing_time", "gauge", "Seconds to resize one photo (demo)."),
                MetricMeta("image_processed_total", "counter", "Photos resized (demo)."),
                MetricMeta("photo_queue_depth", "gauge", "Photos waiting to be resized (demo)."),
                MetricMeta(LOAD_METRIC, "gauge", "Threads running on the photo database (demo)."),
            ]
        )
        self.store.rebuild_rollups(int((now - BACKFILL_S) * 1000), int(now * 1000))
        self._processed = processed
        return len(samples)

    def start(self, statsd_address: tuple[str, int] | None) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(statsd_address,), name="signalbox-demo", daemon=True
        )
        self._thread.start()
        self.web.start()

    def _run(self, statsd_address: tuple[str, int] | None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if statsd_address else None
        processed = getattr(self, "_processed", 0.0)
        self.client.incr("image_processed_total", processed)
        while not self._stop.wait(1.0):
            since = time.time() - self.started
            n = self.rng.randint(4, 6)
            self.client.incr("image_processed_total", n)
            self.client.gauge("image_processing_time", processing_time(since, self.rng))
            self.client.gauge("photo_queue_depth", queue_depth(since, self.rng), queue="resize")
            self.client.gauge(LOAD_METRIC, db_threads_running(since, self.rng), db="photos-db")
            if sock is not None and statsd_address is not None:
                lines = [
                    f"photos.uploads:{n}|c",
                    f"photos.resize:{int(processing_time(since, self.rng) * 1000)}|ms",
                ]
                code = "500" if self.rng.random() < 0.02 else "200"
                lines.append(f"http.requests:1|c|#route:/upload,code:{code}")
                try:
                    sock.sendto("\n".join(lines).encode(), statsd_address)
                except OSError as e:
                    log.warning("demo could not send StatsD: %s", e)
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        """Stop the simulation and remove its spool file (the photo app is gone)."""
        self._stop.set()
        self.web.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.client.close()
        with contextlib.suppress(FileNotFoundError):
            self.client.path.unlink()
