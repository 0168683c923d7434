"""Small real peers for the forwarder tests: TCP servers that read lines, that accept and
never read, and ports where nothing listens; and a spool with many series."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from types import TracebackType

from tests.ports import free_port as free_port  # re-exported for the tests here


def write_spool(spool: Path, series: int, value: float, mtime: float) -> None:
    """One ``.metrics`` file of ``series`` labelled series, all at ``value``."""
    spool.mkdir(exist_ok=True)
    path = spool / "many.metrics"
    path.write_text("".join(f'jobs_waiting{{queue="q{i}"}}={value}\n' for i in range(series)))
    os.utime(path, (mtime, mtime))


class _Server:
    def __init__(self, port: int = 0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:  # inherited by accepted connections
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            self.serve(conn)

    def serve(self, conn: socket.socket) -> None:
        """Accept and hold: never read."""

    def __enter__(self) -> _Server:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        for c in self.conns:
            c.close()


class HangingPeer(_Server):
    """Accepts connections and never reads from them (its receive buffer kept small)."""

    def __init__(self) -> None:
        super().__init__(rcvbuf=4096)


class LinesPeer(_Server):
    """Reads every line each connection sends."""

    def __init__(self, port: int = 0) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        super().__init__(port)

    def serve(self, conn: socket.socket) -> None:
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            *done, buf = buf.split(b"\n")
            with self._lock:
                self.lines.extend(d.decode() for d in done)

    def count(self) -> int:
        with self._lock:
            return len(self.lines)


class OnePassPeer(LinesPeer):
    """Reads lines, and closes each connection once it has read ``per_connection`` of them
    (a relay restarting, an idle timeout): the sender must not lose what follows."""

    def __init__(self, per_connection: int) -> None:
        self.per_connection = per_connection
        super().__init__()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        got = 0
        while got < self.per_connection:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            *done, buf = buf.split(b"\n")
            got += len(done)
            with self._lock:
                self.lines.extend(d.decode() for d in done)
        conn.close()
