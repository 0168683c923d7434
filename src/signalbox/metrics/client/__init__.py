"""Metrics from application code: ``gauge``, ``incr``, ``timer``, published through the spool.

The process keeps its current values in memory (:mod:`~signalbox.metrics.client.values`,
which also says what the published file holds) and a daemon thread publishes them, at most
once per ``flush_interval``, to this process's own spool file ``<spool>/<prog>-<pid>.metrics``
(:mod:`~signalbox.metrics.client.writer`: written to a temporary file and renamed, so a
reader never sees half a file). One file per process means no locking between processes
and nothing lost or torn between them.

Every line carries a ``pid="<pid>"`` label (``pid_label``; ``None`` turns it off). Two
processes counting the same series therefore publish two series, each monotonic on its own:
``sum without (pid) (rate(jobs_total[5m]))`` adds them up, a process that dies simply ends
its series, and the spool reader never sees the same series in two files (it would keep
only one of them). Turn it off only when one process at a time records these metrics.
Labels with an empty value are left out (the same series, as in Prometheus).

The promises to the application: these calls never raise and never do I/O in the calling
thread. Bad input is counted (in ``signalbox_client_errors_total``) and logged once per
distinct problem (by the writer thread, through ``logging.getLogger("signalbox")``); a
failing write (missing directory, full or read-only disk) is logged at most once a minute
and retried at the next interval. A live client rewrites its file at least every
``heartbeat`` seconds, so the file's age tells the collector whether the process is still
alive; on exit the last values are written and the file is left in place.

After ``os.fork()`` the child starts empty and writes its own ``<prog>-<child pid>`` file:
inheriting the parent's counts would count them twice when the files are added up.

The spool directory is ``$SIGNALBOX_SPOOL`` if set, else the configured ``spool_dir``, else
``.signalbox/spool``; the directory is never created here (``signalbox init`` does that).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import EllipsisType

from signalbox.metrics.client.timer import Timer
from signalbox.metrics.client.values import ERRORS_METRIC as ERRORS_METRIC
from signalbox.metrics.client.values import REFUSED, MetricValues, as_number
from signalbox.metrics.client.writer import (
    SpoolWriter,
    close_in_multiprocessing_children,
    track,
    untrack,
)
from signalbox.metrics.samples import LABEL_NAME, SeriesKey

__all__ = [
    "Client",
    "Timer",
    "configure",
    "flush",
    "gauge",
    "get_client",
    "incr",
    "reset",
    "timer",
]

log = logging.getLogger("signalbox")

DEFAULT_SPOOL = ".signalbox/spool"


def _default_prog() -> str:
    """A file-name-safe name for this program, from ``sys.argv[0]``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    path = Path(argv0)
    stem = path.parent.name if path.stem == "__main__" else path.stem
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in stem).lstrip("-_")
    return safe or "python"


class Client:
    """An independent set of metric values with its own spool file and writer thread.

    Libraries and tests make their own; applications use the module-level functions, which
    share one default instance. ``environ`` and ``clock`` (monotonic seconds, used for
    timers and write pacing) are injectable for tests. ``max_series`` bounds memory: new
    series beyond it are refused and counted as errors. ``background=False`` starts no
    writer thread: values are published by :meth:`flush`, :meth:`close` and at exit only
    (for tests, and for programs that publish at moments of their choosing).
    """

    def __init__(
        self,
        spool_dir: str | os.PathLike[str] | None = None,
        *,
        prog: str | None = None,
        flush_interval: float = 1.0,
        heartbeat: float = 30.0,
        max_series: int = 10_000,
        pid_label: str | None = "pid",
        background: bool = True,
        fsync: bool = False,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self._prog = prog or _default_prog()
        self.pid_label = _checked_pid_label(pid_label, None)
        self.flush_interval = flush_interval
        self.heartbeat = heartbeat
        self.background = background
        self.fsync = fsync
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._reset_state(max_series)
        track(self)

    def _reset_state(self, max_series: int) -> None:
        """Fresh, empty state; also the child's state after a fork."""
        self._lock = threading.Lock()  # guards the values, the settings and the writer's thread
        self._values = MetricValues(max_series)
        self._writer = SpoolWriter(self, self._lock, self._values, self._clock)
        self._mp_registered = False

    # -- configuration ---------------------------------------------------------------

    def configure(
        self,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        prog: str | None = None,
        flush_interval: float | None = None,
        pid_label: str | EllipsisType | None = ...,
    ) -> None:
        """Change where and how often values are published (``SIGNALBOX_SPOOL`` still wins)."""
        with self._lock:
            if not isinstance(pid_label, EllipsisType):
                self.pid_label = _checked_pid_label(pid_label, self.pid_label)
            if spool_dir is not None:
                self._spool_dir = os.fspath(spool_dir)
            if prog is not None:
                self._prog = prog
            if flush_interval is not None:
                self.flush_interval = flush_interval

    @property
    def max_series(self) -> int:
        """How many distinct series this client holds at most; new ones beyond are refused."""
        return self._values.max_series

    @max_series.setter
    def max_series(self, value: int) -> None:
        self._values.max_series = value

    @property
    def spool_dir(self) -> Path:
        return Path(self._environ.get("SIGNALBOX_SPOOL") or self._spool_dir or DEFAULT_SPOOL)

    @property
    def path(self) -> Path:
        """This process's spool file (the pid is read now, so it is right after a fork)."""
        return self.spool_dir / f"{self._prog}-{os.getpid()}.metrics"

    @property
    def errors(self) -> int:
        """Calls refused so far (bad name, label or value, too many series)."""
        return self._values.errors

    # -- the hot path: one frame deep, values updated inline under the lock -----------

    def incr(self, name: str, n: float = 1, **labels: object) -> None:
        """Add ``n`` (>= 0) to the counter ``name{labels}``. Never raises."""
        try:
            if n.__class__ is not int:
                checked = as_number(n)
                if checked is None:
                    return self._problem(f"incr({name!r}): value {n!r} is not a finite number")
                n = checked
            if n < 0:
                return self._problem(f"incr({name!r}): negative increment {n!r}")
            raw = (name, tuple(labels.items())) if labels else name
            with self._lock:
                values = self._values
                series = values.canon_counter.get(raw)
                if series is None:
                    series = values.register_locked(
                        values.canon_counter, raw, name, labels, "counter"
                    )
                elif series is REFUSED:
                    values.errors += 1  # logged the first time, counted every time
                    values.dirty = True
                if series is REFUSED:
                    return None
                values.counters[series] += n
                values.dirty = True
            if self._writer.thread is None and self.background:
                self._writer.start()
        except Exception as exc:  # the application must never see our failures
            self._problem(f"incr({name!r}): {exc!r}")
        return None

    def gauge(self, name: str, value: float, **labels: object) -> None:
        """Set the gauge ``name{labels}`` to ``value``. Never raises."""
        try:
            if value.__class__ is not int:
                checked = as_number(value)
                if checked is None:
                    return self._problem(f"gauge({name!r}): value {value!r} is not a finite number")
                value = checked
            raw = (name, tuple(labels.items())) if labels else name
            with self._lock:
                values = self._values
                series = values.canon_gauge.get(raw)
                if series is None:
                    series = values.register_locked(values.canon_gauge, raw, name, labels, "gauge")
                elif series is REFUSED:
                    values.errors += 1
                    values.dirty = True
                if series is REFUSED:
                    return None
                values.gauges[series] = value
                values.dirty = True
            if self._writer.thread is None and self.background:
                self._writer.start()
        except Exception as exc:
            self._problem(f"gauge({name!r}): {exc!r}")
        return None

    def timer(self, name: str, **labels: object) -> Timer:
        """A :class:`Timer` recording into ``name_seconds_{count,sum,last}``. Never raises.

        A refused name or label is counted here, once per ``timer()`` call (so once per
        decorated function), and the returned timer records nothing.
        """
        series: SeriesKey | None = None
        try:
            raw = (name, tuple(labels.items())) if labels else name
            with self._lock:
                values = self._values
                series = values.canon_timer.get(raw)
                if series is None:
                    series = values.register_locked(values.canon_timer, raw, name, labels, "timer")
                elif series is REFUSED:
                    values.errors += 1
                    values.dirty = True
        except Exception as exc:
            self._problem(f"timer({name!r}): {exc!r}")
        return Timer(self, None if series is REFUSED else series)

    def _observe(self, series: SeriesKey | None, seconds: float) -> None:
        if series is None:
            return  # refused at timer(); already counted
        try:
            with self._lock:
                values = self._values
                t = values.timers.get(series)
                if t is None:  # first use in a forked child, whose state starts empty
                    if not values.claim_locked(series, "timer", series[0]):
                        return
                    t = values.timers[series]
                t[0] += 1
                t[1] += seconds
                t[2] = seconds
                values.dirty = True
            if self._writer.thread is None and self.background:
                self._writer.start()
        except Exception as exc:
            self._problem(f"timer: {exc!r}")

    def _problem(self, message: str) -> None:
        try:
            with self._lock:
                self._values.problem_locked(message)
        except Exception:  # pragma: no cover - nothing sensible left to do
            pass

    # -- publishing ------------------------------------------------------------------

    def render(self) -> str:
        """The spool file's text for the current values (what :meth:`flush` writes)."""
        with self._lock:
            return self._render_locked()

    def _render_locked(self) -> str:
        return self._values.render_locked(self._prog, os.getpid(), self.pid_label)

    def flush(self) -> bool:
        """Write the file now, in the calling thread; True when it was written."""
        try:
            return self._writer.write()
        except Exception as exc:  # pragma: no cover - write() already guards its I/O
            self._problem(f"flush: {exc!r}")
            return False

    def close(self) -> None:
        """Stop the writer thread and write the final values (if anything was recorded)."""
        self._writer.stop()
        values = self._values
        if values.dirty or values.pending_logs:
            self.flush()
        untrack(self)

    # -- exit and fork (called by the process-wide hooks of client_writer) -----------

    def _flush_at_exit(self) -> None:
        if self._values.dirty:
            self.flush()

    def _before_fork(self) -> None:
        if not self._mp_registered:
            self._mp_registered = close_in_multiprocessing_children(self)
        self._lock.acquire()

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        self._reset_state(self.max_series)
        self._mp_registered = True  # the parent's registration is inherited


_default: Client | None = None
_default_lock = threading.Lock()


def _checked_pid_label(label: str | None, old: str | None) -> str | None:
    if label is None or (isinstance(label, str) and LABEL_NAME.match(label)):
        return label
    log.warning("signalbox metrics: pid_label %r is not a valid label name; ignored", label)
    return old


def get_client() -> Client:
    """The process-wide client behind the module-level functions."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = Client()
            client = _default
    return client


def reset() -> None:
    """Close the default client (writing its last values) and forget it; for tests."""
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is not None:
        client.close()


def configure(
    *,
    spool_dir: str | os.PathLike[str] | None = None,
    prog: str | None = None,
    flush_interval: float | None = None,
    pid_label: str | EllipsisType | None = ...,
) -> None:
    """Configure the default client (``SIGNALBOX_SPOOL``, when set, still decides the directory).

    ``pid_label=None`` drops the ``pid`` label: only right when a single process at a
    time records these metrics on this host.
    """
    get_client().configure(
        spool_dir=spool_dir, prog=prog, flush_interval=flush_interval, pid_label=pid_label
    )


def incr(name: str, n: float = 1, **labels: object) -> None:
    """Add ``n`` to a counter of this process. Never raises, never blocks on I/O."""
    get_client().incr(name, n, **labels)


def gauge(name: str, value: float, **labels: object) -> None:
    """Set a gauge of this process. Never raises, never blocks on I/O."""
    get_client().gauge(name, value, **labels)


def timer(name: str, **labels: object) -> Timer:
    """Time a ``with`` block or, as a decorator, every call of a function."""
    return get_client().timer(name, **labels)


def flush() -> bool:
    """Write the default client's file now; True when written."""
    return get_client().flush()
