"""The process's own health as metrics: memory, file descriptors, CPU, threads, GC time.

A ``serve`` that runs for months at a million series must show whether its memory stays
put, and a leak of sockets or files must show before ``EMFILE`` does. The names are those of
Prometheus' client libraries' process collector with a ``signalbox_`` prefix, so the usual
dashboards and alerts apply after a rename. :class:`ProcessMetrics` is a
:class:`~signalbox.metrics.collect.SampleSource`: every collection pass stores them with the
host label, like the other self-metrics.

Linux ``/proc`` first; elsewhere what the standard library knows (CPU time, the fd limit).
A value that cannot be read is absent, never 0: an absent series is an honest "unknown", a
0 would be a lie a monitor could act on.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signalbox.metrics.samples import Labels, MetricMeta, Sample

log = logging.getLogger("signalbox.process")

PREFIX = "signalbox_process_"

PROCESS_METRICS: dict[str, MetricMeta] = {
    m.name: m
    for m in (
        MetricMeta(PREFIX + "resident_memory_bytes", "gauge", "Resident memory size in bytes."),
        MetricMeta(PREFIX + "virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
        MetricMeta(PREFIX + "open_fds", "gauge", "Number of open file descriptors."),
        MetricMeta(PREFIX + "max_fds", "gauge", "Maximum number of open file descriptors."),
        MetricMeta(
            PREFIX + "cpu_seconds_total", "counter", "Total user and system CPU time in seconds."
        ),
        MetricMeta(
            PREFIX + "start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        ),
        MetricMeta(PREFIX + "threads", "gauge", "Number of OS threads in the process."),
        MetricMeta(
            PREFIX + "gc_seconds_total",
            "counter",
            "Wall time spent in Python's cyclic garbage collector since the collector of "
            "process metrics started.",
        ),
        MetricMeta(
            PREFIX + "gc_collections_total",
            "counter",
            "Python cyclic garbage collections since the process started, per generation.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """One reading of the process; None where this platform cannot say."""

    resident_memory_bytes: int | None = None
    virtual_memory_bytes: int | None = None
    open_fds: int | None = None
    max_fds: int | None = None
    cpu_seconds: float | None = None
    start_time_seconds: float | None = None
    threads: int | None = None


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name)
    except (AttributeError, ValueError, OSError):
        return None
    return value if value > 0 else None


def _boot_time(proc: Path) -> float | None:
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _max_fds() -> int | None:
    try:
        import resource
    except ImportError:  # not Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def read_process_stats(proc: Path = Path("/proc")) -> ProcessStats:
    """This process as ``proc`` (a procfs mount) says, else as the standard library can.

    ``proc`` is a parameter so that a test can point it at a folder without it, as on a
    platform without procfs.
    """
    me = proc / "self"
    rss = vms = threads = None
    cpu = start = None
    try:
        stat = (me / "stat").read_text()
        # comm (field 2) may hold spaces and parentheses: split after its last ")"
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = _sysconf("SC_CLK_TCK")
        page = _sysconf("SC_PAGE_SIZE")
        if ticks:
            cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
            boot = _boot_time(proc)
            if boot is not None:
                start = boot + int(fields[19]) / ticks
        threads = int(fields[17])
        vms = int(fields[20])
        if page:
            rss = int(fields[21]) * page
    except (OSError, ValueError, IndexError):
        pass
    if cpu is None:
        t = os.times()
        cpu = t.user + t.system
    try:
        fds: int | None = len(os.listdir(me / "fd"))
    except OSError:
        fds = None
    return ProcessStats(rss, vms, fds, _max_fds(), cpu, start, threads)


class GCTimer:
    """Time spent in CPython's cyclic GC, measured by a ``gc.callbacks`` hook.

    Collections are synchronous on the thread that triggered them and never nest, so one
    start stamp is enough; the GIL (held throughout a collection) orders the updates.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None
        self._lock = threading.Lock()
        self._installed = False

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif phase == "stop" and self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def install(self) -> None:
        """Start measuring (once per process; later calls do nothing)."""
        with self._lock:
            if not self._installed:
                gc.callbacks.append(self)
                self._installed = True

    def uninstall(self) -> None:
        with self._lock:
            if self._installed:
                gc.callbacks.remove(self)
                self._installed = False


GC_TIMER = GCTimer()
"""The process-wide GC timer: GC time is a property of the process, not of one collector."""


def gc_collections() -> list[int]:
    """Collections per generation since the process started (CPython counts them itself)."""
    return [int(g.get("collections", 0)) for g in gc.get_stats()]


class MemoryWarning:
    """Log once when resident memory passes ``limit_bytes`` and once when it is back below,
    not at every pass in between (a log that repeats every 15 s gets muted)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.above = False

    def check(self, rss: int) -> None:
        if rss >= self.limit_bytes and not self.above:
            self.above = True
            log.warning(
                "resident memory %s passed [server] memory_warn_bytes = %s",
                _mb(rss),
                _mb(self.limit_bytes),
            )
        elif rss < self.limit_bytes and self.above:
            self.above = False
            log.warning(
                "resident memory %s is back below [server] memory_warn_bytes = %s",
                _mb(rss),
                _mb(self.limit_bytes),
            )


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class ProcessMetrics:
    """A :class:`~signalbox.metrics.collect.SampleSource` of this process's metrics.

    Args:
        memory_warn_bytes: log a warning when resident memory passes this (see
            :class:`MemoryWarning`); None or 0: never.
        read: how to read the process (a test passes a fixed reading).
        gc_timer: where GC time is measured; installed here.
    """

    def __init__(
        self,
        *,
        memory_warn_bytes: int | None = None,
        read: Callable[[], ProcessStats] = read_process_stats,
        gc_timer: GCTimer = GC_TIMER,
    ) -> None:
        self.read = read
        self.gc_timer = gc_timer
        self.warning = MemoryWarning(memory_warn_bytes) if memory_warn_bytes else None
        gc_timer.install()

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        """Samples stamped ``now_ms`` for what could be read, and their metadata."""
        st = self.read()
        if self.warning is not None and st.resident_memory_bytes is not None:
            self.warning.check(st.resident_memory_bytes)
        samples: list[Sample] = []

        def emit(suffix: str, value: float | None, labels: Labels = ()) -> None:
            if value is not None:
                samples.append(Sample(PREFIX + suffix, labels, float(value), now_ms))

        emit("resident_memory_bytes", st.resident_memory_bytes)
        emit("virtual_memory_bytes", st.virtual_memory_bytes)
        emit("open_fds", st.open_fds)
        emit("max_fds", st.max_fds)
        emit("cpu_seconds_total", st.cpu_seconds)
        emit("start_time_seconds", st.start_time_seconds)
        emit("threads", st.threads)
        emit("gc_seconds_total", round(self.gc_timer.seconds, 6))
        for generation, n in enumerate(gc_collections()):
            emit("gc_collections_total", n, (("generation", str(generation)),))
        names = {s.name for s in samples}
        return samples, [m for name, m in PROCESS_METRICS.items() if name in names]
