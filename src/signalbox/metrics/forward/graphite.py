"""Forwarding to Graphite: the plaintext protocol, ``path value timestamp\\n`` over TCP.

Naming (``[forward.graphite] naming``):
    * ``tags`` (the default; Graphite 1.1+): ``PREFIX.name;label=value;...`` -- every label,
      ``host`` included, becomes a Graphite tag, sorted by name (carbon sorts them too);
      ``seriesByTag('name=PREFIX.http_requests_total', 'code=500')`` finds them.
    * ``dotted`` (any Graphite): ``PREFIX.name.label.value.label.value...``, labels sorted
      by name, for tools that only know paths.
    Label values are percent-escaped (see :mod:`~signalbox.metrics.forward.naming`): in
    ``tags`` everything but ASCII letters, digits and ``_-.:@+`` (so ``;``, spaces, a leading
    ``~``, ``/`` and non-ASCII never reach carbon raw); in ``dotted`` the ``.`` too, since it
    separates path nodes. Empty label values are left out (Prometheus reads them as absent).
    Metric names are Prometheus names (``[a-zA-Z_:][a-zA-Z0-9_:]*``) and pass unchanged.

Values are written as Prometheus writes them (integers without ``.0``); NaN and infinities
are not numbers Graphite stores (carbon drops NaN), and a line longer than carbon's line
reader takes (16 KiB: it would close the connection) is not sent: both are skipped and
counted as dropped. Timestamps are whole seconds.

The connection is kept open between passes and checked for a peer that closed it before
each pass; its kernel send buffer is kept small (:data:`SEND_BUFFER_BYTES`), so a peer that
accepts and never reads is found within a timeout instead of after megabytes. The protocol
has no acknowledgement: "sent" means written to the socket, and lines a peer drops while
closing mid-pass are not known to be lost.
"""

from __future__ import annotations

import math
import select
import socket
from collections.abc import Iterable

from signalbox.metrics.expose import format_value
from signalbox.metrics.forward.naming import escape
from signalbox.metrics.forward.passes import CollectedPass
from signalbox.metrics.forward.sender import Encoded
from signalbox.metrics.samples import Labels, MetricMeta, format_series

__all__ = ["SEND_BUFFER_BYTES", "GraphiteEncoder", "TcpTransport", "graphite_path"]

MAX_LINE_BYTES = 16_000
"""carbon reads lines with Twisted's LineOnlyReceiver (16384 bytes at most, or it drops the
connection); a little less, to be safe."""
CHUNK_BYTES = 64 * 1024
"""Lines are sent in blocks of about this size, each within the timeout: a slow peer that
keeps reading is not cut off, one that stops is."""
SEND_BUFFER_BYTES = 64 * 1024


def graphite_path(name: str, labels: Labels, *, prefix: str = "", naming: str = "tags") -> str:
    """The Graphite path of a series (see the module docstring)."""
    head = f"{prefix}.{escape(name)}" if prefix else escape(name)
    if naming == "tags":
        return head + "".join(f";{k}={escape(v, '-.:@+')}" for k, v in labels if v)
    return head + "".join(f".{k}.{escape(v, '-:@+')}" for k, v in labels if v)


class GraphiteEncoder:
    """A pass as plaintext lines, in blocks of :data:`CHUNK_BYTES`."""

    def __init__(self, *, prefix: str = "", naming: str = "tags") -> None:
        self.prefix = prefix
        self.naming = naming
        self._paths: dict[tuple[str, Labels], str] = {}

    def describe(self, metas: Iterable[MetricMeta]) -> None:
        """Graphite has no types: nothing to keep."""

    def encode(self, p: CollectedPass) -> Encoded:
        paths, fresh = self._paths, {}
        prefix, naming = self.prefix, self.naming
        chunks: list[bytes] = []
        lines: list[str] = []
        size = sent = skipped = 0
        example = ""
        for name, labels, value, ts_ms in p.series():
            key = (name, labels)
            path = paths.get(key)
            if path is None:
                path = graphite_path(name, labels, prefix=prefix, naming=naming)
            fresh[key] = path
            if not math.isfinite(value):
                skipped += 1
                example = example or f"{format_series(name, labels)} is {format_value(value)}"
                continue
            line = f"{path} {format_value(value)} {ts_ms // 1000}\n"
            if len(line) > MAX_LINE_BYTES // 4 and len(line.encode()) > MAX_LINE_BYTES:
                skipped += 1
                example = example or f"a line of {len(line.encode())} bytes for {name}"
                continue
            lines.append(line)
            size += len(line)
            sent += 1
            if size >= CHUNK_BYTES:
                chunks.append("".join(lines).encode())
                lines, size = [], 0
        if lines:
            chunks.append("".join(lines).encode())
        self._paths = fresh  # the series of the last pass: no growth past them
        return Encoded(chunks, sent, skipped, example)


class TcpTransport:
    """One TCP connection to the peer, opened when needed, every operation timed out."""

    def __init__(
        self, host: str, port: int, timeout_s: float, send_buffer: int = SEND_BUFFER_BYTES
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.send_buffer = send_buffer
        self._sock: socket.socket | None = None

    def send(self, chunks: Iterable[bytes]) -> None:
        sock = self._connected()
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            self.close()
            raise

    def _connected(self) -> socket.socket:
        sock = self._sock
        if sock is not None and _closed_by_peer(sock):
            self.close()
            sock = None
        if sock is None:
            family, kind, proto, _, addr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM
            )[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
                sock.settimeout(self.timeout_s)
                sock.connect(addr)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _closed_by_peer(sock: socket.socket) -> bool:
    """Has the peer closed (or reset) the connection? Carbon never writes to us, so a
    readable socket means an end of file or an error."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
