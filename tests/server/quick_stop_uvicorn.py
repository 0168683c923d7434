"""An app under uvicorn on a loopback socket (a real socket: the peer address is real), as
``serve`` serves it, stopped in milliseconds rather than ~0.15 s.

uvicorn looks whether it should exit every 0.1 s and, stopping, sleeps 0.1 s before it waits
for connections to close; for a fixture that starts a server for each of 20 cases on each
backend, that is most of its teardown. Here the main loop looks every 10 ms and the stop
closes the listener, asks each connection to shut down and waits (10 ms at a time) until
connections and tasks are gone, as uvicorn's own does, without the fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

_TICK_S = 0.01


class _QuickStopServer(uvicorn.Server):
    async def main_loop(self) -> None:
        await self.on_tick(0)  # the default headers (Date, Server) as uvicorn's loop sets them
        while not self.should_exit:
            await asyncio.sleep(_TICK_S)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + 10
        while (self.server_state.connections or self.server_state.tasks) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(_TICK_S)
        for server in self.servers:
            await server.wait_closed()


@contextlib.contextmanager
def on_socket(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (a real socket: the peer address is real)."""
    # IPPROTO_TCP, as serve's listen(): asyncio sets TCP_NODELAY on accepted connections only
    # for such sockets
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = _QuickStopServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"
        sock.close()
