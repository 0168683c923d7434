"""StatsD over UDP: the listener (I/O) feeding the pure parser and aggregator.

The StatsD pieces live one concept per module: :mod:`signalbox.metrics.statsd.parse`
(packets → :class:`StatsdLine`, with the accepted syntax and DogStatsD extensions) and
:mod:`signalbox.metrics.statsd.aggregate` (what each StatsD type becomes as Prometheus
series, between collections). This module listens.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time

from signalbox.exceptions import SignalboxError
from signalbox.metrics.statsd.aggregate import StatsdAggregator

log = logging.getLogger("signalbox")


class StatsdListenError(SignalboxError):
    """The UDP socket could not be opened (address in use, bad host, no permission)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port, self.reason = host, port, reason
        super().__init__(f"cannot listen for StatsD on {host}:{port}: {reason}")


MAX_PACKET = 65535


class StatsdServer:
    """A UDP listener on a daemon thread feeding a :class:`StatsdAggregator`.

    Synchronous on purpose: the CLI starts it with :meth:`start` and ends it with
    :meth:`stop`; no event loop is needed. ``port=0`` picks a free port (see
    :attr:`address`). Any input, however malformed, is counted, never fatal.
    """

    def __init__(
        self, aggregator: StatsdAggregator, host: str = "127.0.0.1", port: int = 8125
    ) -> None:
        self.aggregator = aggregator
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound; only meaningful after :meth:`start`."""
        if self._sock is None:
            return (self.host, self.port)
        bound = self._sock.getsockname()
        return (str(bound[0]), int(bound[1]))

    def start(self) -> None:
        """Bind now (so a bad address fails here, as :class:`StatsdListenError`) and start receiving."""
        if self._thread is not None:
            return
        try:
            family, _, _, _, addr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise StatsdListenError(self.host, self.port, str(exc)) from exc
        try:
            with contextlib.suppress(OSError):  # a bigger buffer absorbs bursts between reads
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind(addr)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise StatsdListenError(self.host, self.port, exc.strerror or str(exc)) from exc
        self._sock = sock
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="signalbox-statsd", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving and close the socket; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        thread.join(timeout)
        for s in (self._sock, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._sock = self._wake_r = self._wake_w = None

    def __enter__(self) -> StatsdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        sock, wake = self._sock, self._wake_r
        assert sock is not None and wake is not None
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                try:
                    sel.select()
                except OSError:  # pragma: no cover - interrupted; check the flag again
                    continue
                self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(10_000):  # bounded, so a flood cannot starve stop()
            try:
                data, peer = sock.recvfrom(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP errors surfacing on the socket; keep listening
                return
            try:
                self.aggregator.add_packet(data, f"statsd {peer[0]}:{peer[1]}", sender=peer[0])
            except Exception:  # never let one packet kill the listener
                log.exception("statsd: failed to process a %d-byte packet from %s", len(data), peer)
            # Let the HTTP server's thread in: CPython's GIL is not fair, and under a flood
            # this thread kept it from /-/healthy for 300-600 ms at a time.
            time.sleep(0)
