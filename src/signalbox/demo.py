"""``serve --demo``: a simulated photo service that uses signalbox the way a real app would.

It writes its metrics through the Python client (a real spool file), sends StatsD packets
over UDP to the real listener, and backfills two hours of history so graphs and backtests
have something to show at once. Every 30 minutes resizes get slow for 2.5 minutes (the first
time 45 s after start), which the example monitor turns into a CRITICAL alert and recovery.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import socket
import threading
import time

from signalbox.config import Settings
from signalbox.metrics.client import Client
from signalbox.metrics.collect import with_host
from signalbox.metrics.samples import Matcher, MetricMeta, Sample
from signalbox.metrics.sql.store import SQLMetricStore

log = logging.getLogger("signalbox.demo")

DEMO_MONITORS = """\
# Written by `signalbox serve --demo`: monitors over the simulated photo service.
- name: demo_image_processing_slow
  description: (demo) Resizes are slower than users tolerate; uploads back up behind them.
  owner: photos
  runbook: https://wiki.example/runbooks/resize
  query: avg_over_time(image_processing_time[1m])
  warning: "> 4"
  critical: "> 8"
  for: 30s
  recover: "< 3"
  notify: [demo_log]
- name: demo_resize_queue_high
  description: (demo) Photos are piling up waiting to be resized.
  owner: photos
  query: max(photo_queue_depth)
  warning: "> 200"
  critical: "> 400"
  notify: [demo_log]
- name: demo_photo_app_alive
  description: (demo) The photo app rewrites its spool file every few seconds; a stale file means it died.
  owner: photos
  stale: {spool_file: "demo-photos-*.metrics", after: 1m}
  notify: [demo_log]
"""

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


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: faster loops, its monitors (written beside the data) and a log notifier."""
    folder = settings.data_dir / "demo" / "monitors"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo.yaml").write_text(DEMO_MONITORS, encoding="utf-8")
    notifiers = dict(settings.notifiers)
    notifiers.setdefault("demo_log", {"type": "log"})
    return dataclasses.replace(
        settings,
        interval_s=min(settings.interval_s, 5.0),
        monitor_interval_s=min(settings.monitor_interval_s, 10.0),
        monitor_paths=(*(p for p in settings.monitor_paths if p.exists()), folder),
        notifiers=notifiers,
    )


class PhotoService:
    def __init__(self, settings: Settings, store: SQLMetricStore, *, seed: int = 7) -> None:
        self.settings = settings
        self.store = store
        self.rng = random.Random(seed)
        self.client = Client(
            settings.spool_dir, prog="demo-photos", pid_label=None, flush_interval=1.0
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = time.time()

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
            ]
        self.store.write(samples, int(now * 1000))
        self.store.write_metadata(
            [
                MetricMeta("image_processing_time", "gauge", "Seconds to resize one photo (demo)."),
                MetricMeta("image_processed_total", "counter", "Photos resized (demo)."),
                MetricMeta("photo_queue_depth", "gauge", "Photos waiting to be resized (demo)."),
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
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.client.close()
