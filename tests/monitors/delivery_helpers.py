"""Receivers for the delivery tests: real HTTP servers that answer, fail, or never answer.

:func:`hook` serves on an ephemeral port: it reads each POST completely, records when it
arrived and its JSON body, then answers ``status`` -- or, with ``status = None``, holds the
connection open without a byte of answer until the server closes (a receiver that accepts
and hangs). The status can change while it runs (a receiver that comes back).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hook:
    """What a receiver got (``hits``: arrival on the monotonic clock, wall time, body)."""

    url: str = ""
    status: int | None = 200
    hits: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for _, _, b in self.hits]

    def times(self) -> list[float]:
        with self.lock:
            return [t for t, _, _ in self.hits]


@contextlib.contextmanager
def hook(status: int | None = 200, path: str = "/hook") -> Iterator[Hook]:
    """A receiver at ``http://127.0.0.1:PORT{path}`` answering ``status`` (None: never)."""
    state = Hook(status=status)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.hits.append((time.monotonic(), time.time(), json.loads(body)))
            status = state.status
            if status is None:
                state.closing.wait(60)  # accepted, read, and never answered
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield state
    finally:
        state.closing.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def always_down(*notifiers: str, repeat: str = "1s") -> str:
    """Monitors YAML of one monitor that is critical on every pass (its metric never exists)
    and notifies ``notifiers`` again every ``repeat``."""
    return f"""
- name: always_down
  description: Critical on every pass (its metric never exists), repeating every pass.
  query: never_written_metric
  critical: "> 0"
  no_data: critical
  repeat: {repeat}
  notify: [{", ".join(notifiers)}]
"""
