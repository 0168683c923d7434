"""Run ``serve``: background loops plus uvicorn, stopped together on Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
import socket

import uvicorn

from signalbox.config import Settings
from signalbox.exceptions import UsageError
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.runtime import open_metric_store
from signalbox.server.app import AppOptions, create_app
from signalbox.server.loops import Background, LoopHealth
from signalbox.server.services import ReadyCheck, RunnerStatus, Services, database_ready
from signalbox.storage.database import redact_url

log = logging.getLogger("signalbox.serve")


def serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, demo: bool = False
) -> None:
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    if demo:  # its settings come from its own config file (signalbox.demo.workspace)
        logging.getLogger("signalbox.notify").setLevel(logging.INFO)
        logging.getLogger("signalbox.demo").setLevel(logging.INFO)
    sock = listen(bind_host, bind_port)  # before anything starts: a taken port is a clear error
    bind_port = sock.getsockname()[1]
    settings.metrics.spool_dir.mkdir(parents=True, exist_ok=True)
    store = open_metric_store(settings)
    bg = Background(settings, monitors=True)
    # migrates every area before the loops start
    services = build_services(settings, store, bg.health)
    sim = None
    if demo:
        from signalbox.demo.service import PhotoService

        sim = PhotoService(settings, store)
        sim.backfill()
    bg.start()
    if sim is not None:
        sim.start(bg.statsd_address)
    app = create_app(services, AppOptions(stale_after_s=settings.metrics.stale_after_s, demo=demo))
    print(
        f"signalbox serving on http://{bind_host}:{bind_port}/  (store {redact_url(settings.store_url)}, spool {settings.metrics.spool_dir})",
        flush=True,
    )
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        if sim is not None:
            sim.stop()
        bg.close()
        store.close()


def build_services(
    settings: Settings, store: SQLMetricStore, loops: LoopHealth | None = None
) -> Services:
    """What the app reads, over ``serve``'s API store: its metrics, the monitor states (from
    the same database) and readiness probes: that database answers, and (``loops``) the
    background loops can write to it (a full disk makes the instance not ready)."""
    from signalbox.monitors.engine.runner import MonitorRunner

    runner = MonitorRunner.from_settings(settings, store, store.db)
    return Services.over(
        store,
        clock=store.clock,
        coarsest_resolution_s=store.levels[-1].tier,
        monitors=RunnerStatus(runner),
        ready=(
            database_ready(f"store {store.db.url}", store.db),
            *(() if loops is None else (ReadyCheck("store writes", loops.probe),)),
        ),
        limits=settings.query,
    )


def listen(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound now so that errors name the setting to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise UsageError(
            f"cannot listen on http://{host}:{port}/: {e.strerror} (change --port/--host or [server] in signalbox.toml)"
        ) from None
    sock.set_inheritable(True)
    return sock
