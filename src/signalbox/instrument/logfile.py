"""The access-log file: one ``os.write`` per line, or per batch of whole lines, on an
``O_APPEND`` descriptor.

``O_APPEND`` makes each write land at the end of the file as a whole, so many worker
processes (gunicorn's, uvicorn's) can append to one file without interleaving their lines.
The file is reopened when logrotate has moved it (its inode at the path changed; checked at
most once a second) and after a ``SIGHUP`` (the handler only raises a flag; the next write
reopens, so no I/O or lock is taken inside a signal handler). A failing write (full disk,
a removed directory) drops that line and is logged at most once a minute; the application
never sees it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["AccessLogFile", "reopen_on_sighup"]

log = logging.getLogger("signalbox")

_FAIL_LOG_EVERY = 60.0
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class AccessLogFile:
    """Appends lines to ``path`` (``"-"``: standard output, never reopened)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(path)
        self._stdout = self.path == "-"
        self._check_every = check_every
        self._clock = clock
        self._lock = threading.Lock()
        self._fd = -1
        self._ino: tuple[int, int] | None = None
        self._next_check = 0.0
        self._last_fail = -_FAIL_LOG_EVERY
        self.reopen_requested = False
        self.dropped = 0  # lines lost to failing writes
        _files.add(self)

    def _open_locked(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, _FLAGS, 0o644)
        st = os.fstat(fd)
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)

    def _moved_locked(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ino

    def write(self, line: str) -> None:
        """Append ``line`` (one line, or whole lines joined by newlines) and a newline in one
        write. Never raises."""
        data = (line + "\n").encode("utf-8", "surrogateescape")
        if self._stdout:
            try:
                os.write(1, data)
            except OSError as e:
                self._failed(e)
            return
        with self._lock:
            try:
                now = self._clock()
                if self._fd < 0 or self.reopen_requested:
                    self.reopen_requested = False
                    self._open_locked()
                    self._next_check = now + self._check_every
                elif now >= self._next_check:
                    self._next_check = now + self._check_every
                    if self._moved_locked():
                        self._open_locked()
                os.write(self._fd, data)
            except OSError as e:
                self._failed(e)

    def _failed(self, e: OSError) -> None:
        self.dropped += 1
        now = self._clock()
        if now - self._last_fail >= _FAIL_LOG_EVERY:
            self._last_fail = now
            log.error(
                "signalbox access log %s: cannot write (%s); %d line(s) dropped so far",
                self.path,
                e,
                self.dropped,
            )

    def reopen(self) -> None:
        """Reopen at the next write (what ``SIGHUP`` does)."""
        self.reopen_requested = True

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        _files.discard(self)


_files: weakref.WeakSet[AccessLogFile] = weakref.WeakSet()
_installed = False


def _on_sighup(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        for f in list(_files):
            f.reopen_requested = True
        if callable(previous):
            previous(signum, frame)

    return handler


def reopen_on_sighup() -> bool:
    """Reopen every access log at ``SIGHUP`` (the handler before ours still runs: a
    server's own ``SIGHUP`` meaning is kept). True when installed; only the main thread of
    a process can install it, elsewhere the inode check alone follows logrotate."""
    global _installed
    if _installed:
        return True
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return False
    previous = signal.getsignal(signal.SIGHUP)
    if previous in (signal.SIG_DFL, None):
        previous = None  # the default would end the process: a HUP now only reopens
    signal.signal(signal.SIGHUP, _on_sighup(previous))
    _installed = True
    return True
