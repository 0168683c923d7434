"""The agent's ``/metrics``: its last collection pass, as Prometheus text, for scraping.

``serve`` exposes the store's latest values; an ``agent`` (``signalbox agent --listen
HOST:PORT``) exposes what it collected itself in its last pass -- its spool files, StatsD,
its own process, buffer and forwarder counters, with its ``host`` label -- from memory,
whether the store took the pass or refused it (a database away: the scrape still shows
the host, and the agent's buffer filling up), so a Prometheus scraping each host sees
that host's agent directly. A series the last pass did
not collect is not listed, as a target's dropped series are not. The text is built by
:func:`signalbox.metrics.expose.render`, as ``serve``'s is.

The listener is a small threaded HTTP server on its own threads: ``GET /metrics`` and
``GET /-/healthy``, and ``GET /-/ready`` (503 naming the failure while the store refuses
the agent's writes: passes are held meanwhile, see :mod:`signalbox.metrics.buffer`);
everything else is 404, and it never writes anything. Like
``node_exporter`` it has no authentication: bind it to an address only scrapers reach.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from signalbox.metrics.expose import render
from signalbox.metrics.forward.passes import CollectedPass
from signalbox.metrics.samples import MetricMeta

__all__ = ["EXPOSITION_TYPE", "LastPass", "ScrapeServer"]

EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("signalbox.agent")


class LastPass:
    """A pass sink keeping the newest pass and every metric's metadata seen."""

    def __init__(self) -> None:
        self._last: CollectedPass | None = None
        self._metas: dict[str, MetricMeta] = {}

    def submit(self, p: CollectedPass) -> None:
        """Keep ``p`` unless it is older than the pass kept (a held pass written late)."""
        last = self._last
        if last is None or p.ts_ms >= last.ts_ms:
            self._last = p

    def describe(self, metas: Iterable[MetricMeta]) -> None:
        known = dict(self._metas)  # replaced whole: a render reading the old one is unharmed
        known.update((m.name, m) for m in metas)
        self._metas = known

    def exposition(self) -> str:
        p = self._last
        if p is None:
            return ""
        rows = [(name, labels, ts, value) for name, labels, value, ts in p.series()]
        return render(rows, self._metas)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a connection may stay silent: a stuck client frees its thread

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = self.server.last.exposition().encode()
            self._answer(200, EXPOSITION_TYPE, body)
        elif path == "/-/healthy":
            self._answer(200, "text/plain; charset=utf-8", b"signalbox agent is healthy\n")
        elif path == "/-/ready":  # 503 while the store refuses the agent's writes
            try:
                self.server.ready()
            except Exception as e:
                self._answer(503, "text/plain; charset=utf-8", f"not ready: {e}\n".encode())
            else:
                said = "signalbox agent is ready\n" + self.server.notes()
                self._answer(200, "text/plain; charset=utf-8", said.encode())
        else:
            self._answer(404, "text/plain; charset=utf-8", b"not found: GET /metrics\n")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes come every few seconds: not worth a log line each."""


def _always_ready() -> None:
    pass


def _no_notes() -> str:
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    last: LastPass
    ready: Callable[[], None] = staticmethod(_always_ready)
    notes: Callable[[], str] = staticmethod(_no_notes)


class ScrapeServer:
    """``/metrics`` of ``last`` on ``host:port`` (port 0: any free one, see :attr:`address`)."""

    def __init__(self, last: LastPass, host: str, port: int) -> None:
        self.last = last
        if ":" in host:  # an IPv6 address
            self._server: _Server = type(
                "_Server6", (_Server,), {"address_family": socket.AF_INET6}
            )((host, port), _Handler)
        else:
            self._server = _Server((host, port), _Handler)
        self._server.last = last
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="signalbox-agent-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def ready(self) -> Callable[[], None]:
        """Raises while the agent cannot store (its loops' health): ``/-/ready`` is 503."""
        return self._server.ready

    @ready.setter
    def ready(self, probe: Callable[[], None]) -> None:
        self._server.ready = probe

    @property
    def notes(self) -> Callable[[], str]:
        """Lines a ready answer adds (which ``serve`` instance leads the store)."""
        return self._server.notes

    @notes.setter
    def notes(self, lines: Callable[[], str]) -> None:
        self._server.notes = lines

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
