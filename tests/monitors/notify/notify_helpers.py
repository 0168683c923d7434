"""Shared pieces for notifier tests: a notification builder and a real HTTP receiver.

(A module of its own rather than conftest, so tests can import the builders.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import Notification
from tests.ports import free_port as free_port  # re-exported for the tests here

T0 = 1_700_000_000.0

MakeNotification = Callable[..., Notification]


def make_notification(**overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "monitor": "image_processing_slow",
        "state": State.CRITICAL,
        "previous_state": State.OK,
        "kind": "firing",
        "summary": "resize p95 is 9.2s (> 8)",
        "description": "Resizes slower than users tolerate.",
        "owner": "photos",
        "runbook": "https://wiki.example/runbooks/resize",
        "labels": (("shard", "7"),),
        "value": 9.2,
        "started_at": T0,
        "created_at": T0 + 180,
        "id": "n-0001",
    }
    fields.update(overrides)
    return Notification(**fields)


@pytest.fixture
def notification() -> MakeNotification:
    return make_notification


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on an ephemeral port that records requests and answers as told."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    reply: bytes = b"ok"
    reply_headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(Received("POST", self.path, dict(self.headers.items()), body))
            if state.hang:
                state.release.wait(10)
                return
            self.send_response(state.status)
            for k, v in state.reply_headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(state.reply)))
            self.end_headers()
            self.wfile.write(state.reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound and released just now)."""
    return free_port()
