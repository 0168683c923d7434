"""The demo's photo site: a real Starlette app behind :class:`ASGIMiddleware`, and its users.

``serve --demo`` runs it on a loopback port under uvicorn, with simulated traffic calling it
over HTTP: signed-in users browse and upload, partner apps call the REST API with their API
keys. Each view ``note()``-s what the seed's PHP noted (``user_id``, ``api_key``,
``api_method``), so every request writes one access-log line (``[instrument]`` of the
demo's config: ``access.log`` in the data dir), a few of them 5xx; the app logs through the
request filter into ``DATA_DIR/logs/demo-photos.log`` (a ``[logs]`` default), and its request
metrics (``http_requests_total``, ``http_request_duration_seconds``) reach the store through
the photo service's spool file. So ``signalbox logs grep --status 5xx`` and ``signalbox logs trace ID``
have real lines to find; ``signalbox logs fp demo-key-partner`` prints a key's fingerprint.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from signalbox.config import Settings
from signalbox.instrument.asgi import ASGIMiddleware
from signalbox.instrument.context import note
from signalbox.instrument.logging import RequestFilter
from signalbox.instrument.logline import RequestFormatter
from signalbox.instrument.metrics import RequestMetrics
from signalbox.metrics.client import Client

__all__ = ["API_KEYS", "APP_LOG", "USERS", "DemoWeb", "photo_site"]

log = logging.getLogger("signalbox.demo")
USERS = ("5555", "1234", "alice", "bob", "carol")
API_KEYS = {"demo-key-photos-app": "photos-app", "demo-key-partner": "partner"}
"""The partner apps' API keys (in clear only here: the log holds their fingerprints)."""
API_METHODS = ("flickr.photos.search", "flickr.photos.getInfo", "flickr.people.getPhotos")
APP_LOG = "demo-photos.log"


class SimulatedFailure(RuntimeError):
    """A failure the demo makes on purpose (a failed upload): it escapes the app, so the
    middleware logs the request as a 500 with its id and notes, as it would a real one."""


def _not_simulated(record: logging.LogRecord) -> bool:
    """uvicorn logs every exception that escapes an app with its traceback; the demo's own
    simulated ones are already in the app log and the access log (as 500s), so their
    tracebacks would only bury `serve --demo`'s output."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, SimulatedFailure)


def photo_site(app_log: logging.Logger, rng: random.Random) -> Starlette:
    """The photo site's views (before the middleware); ``rng`` decides which requests fail."""

    async def photos(request: Request) -> Response:
        user = request.path_params["user"]
        note(user_id=user)
        app_log.info("listed photos of %s", user)
        return PlainTextResponse(f"photos of {user}\n")

    async def upload(request: Request) -> Response:
        user = request.headers.get("x-demo-user", "")
        note(user_id=user)
        body = await request.body()
        if rng.random() < 0.03:
            app_log.error("upload of %d bytes failed: resize worker unreachable", len(body))
            raise SimulatedFailure("resize worker unreachable")  # the middleware logs a 500
        app_log.info("stored an upload of %d bytes", len(body))
        return JSONResponse({"stored": len(body)}, status_code=201)

    async def rest(request: Request) -> Response:
        key = request.headers.get("x-api-key", "")  # never in the URL: the line keeps URLs
        method = request.query_params.get("method", "")
        note(api_key=key, api_method=method)
        partner = API_KEYS.get(key)
        if partner is None:
            app_log.warning("refused an unknown API key")
            return JSONResponse({"stat": "fail", "message": "Invalid API Key"}, status_code=403)
        note(user_id=request.query_params.get("user_id", ""))
        if rng.random() < 0.02:
            app_log.error("%s for %s: search backend timed out", method, partner)
            return JSONResponse({"stat": "fail", "message": "Service unavailable"}, status_code=503)
        return JSONResponse({"stat": "ok", "method": method})

    return Starlette(
        routes=[
            Route("/photos/{user}", photos),
            Route("/upload", upload, methods=["POST"]),
            Route("/services/rest", rest),
        ]
    )


class DemoWeb:
    """The site on a loopback port and the traffic calling it, started and stopped with the
    demo's photo service."""

    def __init__(
        self, settings: Settings, client: Client, *, seed: int = 11, rate_per_s: float = 4.0
    ) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.rate_per_s = rate_per_s
        logs_dir = settings.data_dir / "logs"
        logs_dir.mkdir(parents=True, exist_ok=True)
        self.app_log_path: Path = logs_dir / APP_LOG
        self._handler = logging.FileHandler(self.app_log_path, encoding="utf-8")
        self._handler.addFilter(RequestFilter(secret_notes=settings.instrument.secret_notes))
        self._handler.setFormatter(RequestFormatter())
        self.app_log = logging.getLogger("demo.photos")
        self.app_log.setLevel(logging.INFO)
        self.app_log.propagate = False  # its own file, not serve's stderr
        self.app_log.addHandler(self._handler)
        self.metrics = RequestMetrics(client)  # into the photo service's spool file
        self.app = ASGIMiddleware(
            photo_site(self.app_log, random.Random(seed + 1)),
            settings=settings,
            metrics=self.metrics,
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        )
        errors = logging.getLogger("uvicorn.error")  # configured by the Config above
        if _not_simulated not in errors.filters:
            errors.addFilter(_not_simulated)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sent = 0

    def start(self) -> None:
        serving = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="demo-web", daemon=True
        )
        serving.start()
        traffic = threading.Thread(target=self._traffic, name="demo-web-traffic", daemon=True)
        traffic.start()
        self._threads = [serving, traffic]
        log.info("demo: the photo site serves on %s behind signalbox's middleware", self.base)

    def _traffic(self) -> None:
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = self.sock.getsockname()[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            while not self._stop.wait(self.rng.expovariate(self.rate_per_s)):
                method, target, body, headers = self._one()
                try:
                    conn.request(method, target, body=body, headers=headers)
                    conn.getresponse().read()
                    self.sent += 1
                except (OSError, http.client.HTTPException) as e:
                    conn.close()  # the next request connects again
                    if not self._stop.is_set():
                        log.warning("demo traffic: %s", e)
        finally:
            conn.close()

    def _one(self) -> tuple[str, str, bytes | None, dict[str, str]]:
        """The next request a simulated user or partner app makes."""
        rng = self.rng
        user = rng.choice(USERS)
        roll = rng.random()
        if roll < 0.45:
            return "GET", f"/photos/{user}?page={rng.randint(1, 4)}", None, {}
        if roll < 0.6:
            body = b"x" * rng.randint(200, 4000)
            return "POST", "/upload", body, {"X-Demo-User": user}
        keys = [*API_KEYS, "stolen-key"] if rng.random() < 0.05 else list(API_KEYS)
        query = {"method": rng.choice(API_METHODS), "user_id": user}
        target = "/services/rest?" + urllib.parse.urlencode(query)
        return "GET", target, None, {"X-Api-Key": rng.choice(keys)}

    def stop(self) -> None:
        """Stop the traffic and the site; lines and metrics still buffered are written."""
        self._stop.set()
        self.server.should_exit = True
        for t in self._threads:
            t.join(timeout=5)
        self.sock.close()
        self.app.core.close()  # buffered lines written, the last metrics handed over
        self.app_log.removeHandler(self._handler)
        self._handler.close()
