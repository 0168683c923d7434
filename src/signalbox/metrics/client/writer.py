"""Publishing a metrics client's values: the atomic file write, the writer thread, exit and fork.

Each process publishes to its own spool file ``<spool>/<prog>-<pid>.metrics``, written as
``.<prog>-<pid>.metrics.tmp`` and renamed, so a reader never sees half a file. One file per
process means no locking between processes and nothing lost or torn between them.

A daemon thread, started lazily (only processes that record anything get one), rewrites
the file at most once per ``flush_interval`` and only when something changed, but at least
every ``heartbeat`` seconds: the file's age tells the collector whether the process is
still alive. A failing write (missing directory, full or read-only disk) is logged at most
once a minute and retried at the next interval.

The process-wide hooks registered here write every client's last values at exit, and keep
each client's lock consistent across ``os.fork()`` (the child then starts afresh). Children
made by :mod:`multiprocessing` leave through ``os._exit``, skipping atexit, so they close
their clients through its own exit hooks instead.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from signalbox.metrics.client.values import ERRORS_METRIC, MetricValues

__all__ = [
    "Publisher",
    "SpoolWriter",
    "close_in_multiprocessing_children",
    "publish",
    "track",
    "untrack",
]

log = logging.getLogger("signalbox")

_FAIL_LOG_EVERY = 60.0  # seconds between two log lines about failing writes


class Publisher(Protocol):
    """What a writer reads from its client at each use (``configure()`` may change it)."""

    flush_interval: float
    heartbeat: float
    fsync: bool
    background: bool

    @property
    def path(self) -> Path: ...

    def _render_locked(self) -> str: ...


def publish(path: Path, text: str, *, fsync: bool) -> None:
    """Replace ``path`` by ``text`` atomically: write a hidden temporary file, then rename it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class SpoolWriter:
    """Publishes one client's values: on demand (:meth:`write`) or from a daemon thread.

    ``lock`` is the client's own; it guards :attr:`thread` and :attr:`closed` together with
    the values. A client makes a fresh writer with its fresh state after a fork: the
    parent's thread does not exist in the child.
    """

    def __init__(
        self,
        client: Publisher,
        lock: threading.Lock,
        values: MetricValues,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._lock = lock
        self._values = values
        self._clock = clock
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.closed = False
        self._last_write: float | None = None
        self._last_fail_log: float | None = None
        self._failed_writes = 0

    def write(self) -> bool:
        """Write the file now, in the calling thread; True when it was written."""
        with self._write_lock:
            with self._lock:
                text = self._client._render_locked()
                self._values.dirty = False
                pending = self._values.take_logs_locked()
                path = self._client.path
            for message in pending:
                log.warning("signalbox metrics: %s (counted in %s)", message, ERRORS_METRIC)
            try:
                publish(path, text, fsync=self._client.fsync)
            except OSError as exc:
                with self._lock:
                    self._values.dirty = True  # retry at the next interval
                self._write_failed(path, exc)
                return False
            self._last_write = self._clock()
            if self._failed_writes:
                log.warning("signalbox metrics: writing %s works again", path)
                self._failed_writes = 0
            return True

    def _write_failed(self, path: Path, exc: OSError) -> None:
        self._failed_writes += 1
        now = self._clock()
        if self._last_fail_log is not None and now - self._last_fail_log < _FAIL_LOG_EVERY:
            return
        self._last_fail_log = now
        hint = ""
        if not path.parent.is_dir():
            hint = " (create it with `signalbox init` or point SIGNALBOX_SPOOL elsewhere)"
        log.warning(
            "signalbox metrics: cannot write %s: %s%s; %d failed write(s) so far, retrying every %gs",
            path,
            exc.strerror or exc,
            hint,
            self._failed_writes,
            self._client.flush_interval,
        )

    def _due(self) -> bool:
        if self._values.dirty or self._last_write is None:
            return True
        return self._clock() - self._last_write >= self._client.heartbeat

    def start(self) -> None:
        """Start the writer thread, unless it runs, was stopped, or the client wants none."""
        with self._lock:
            if self.thread is not None or self.closed or not self._client.background:
                return
            thread = threading.Thread(target=self._run, name="signalbox-metrics", daemon=True)
            self.thread = thread
        with contextlib.suppress(RuntimeError):  # interpreter shutting down: atexit writes
            thread.start()

    def _run(self) -> None:
        wake = self._wake
        while not wake.is_set():
            if self._due():
                self.write()
            wake.wait(self._client.flush_interval)

    def stop(self) -> None:
        """Stop the writer thread for good, waiting (bounded) for a write in progress."""
        with self._lock:
            thread, self.thread = self.thread, None
            self.closed = True
        self._wake.set()
        if thread is not None and thread.is_alive():
            thread.join(max(5.0, 2 * self._client.flush_interval))


# -- process-wide machinery -----------------------------------------------------------


class Tracked(Protocol):
    """A client as the exit and fork hooks see it."""

    def _flush_at_exit(self) -> None: ...

    def _before_fork(self) -> None: ...

    def _after_fork_parent(self) -> None: ...

    def _after_fork_child(self) -> None: ...


class Closable(Protocol):
    def close(self) -> None: ...


_clients: weakref.WeakSet[Tracked] = weakref.WeakSet()


def track(client: Tracked) -> None:
    """Have the exit and fork hooks look after ``client`` (for as long as it lives)."""
    _clients.add(client)


def untrack(client: Tracked) -> None:
    _clients.discard(client)


def _flush_all_at_exit() -> None:
    for client in list(_clients):
        client._flush_at_exit()


def _before_fork() -> None:
    for client in list(_clients):
        client._before_fork()


def _after_fork_parent() -> None:
    for client in list(_clients):
        client._after_fork_parent()


def _after_fork_child() -> None:
    for client in list(_clients):
        client._after_fork_child()


atexit.register(_flush_all_at_exit)
os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
)


def close_in_multiprocessing_children(client: Closable) -> bool:
    """Have :mod:`multiprocessing`'s fork children close ``client`` as they exit.

    Returns False (and does nothing) while multiprocessing is not imported: there is
    nothing to register with yet, so the caller asks again at the next fork.
    """
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return False
    mp_util.register_after_fork(client, _register_mp_finalizer)
    return True


def _register_mp_finalizer(client: Closable) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(client, client.close, exitpriority=10)
