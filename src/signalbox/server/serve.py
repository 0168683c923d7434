"""Run ``serve``: background loops plus uvicorn, stopped together on Ctrl-C / SIGTERM."""

from __future__ import annotations

import dataclasses
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

from signalbox.config import Settings
from signalbox.exceptions import CorruptDatabaseError, UsageError
from signalbox.metrics.spooldir import ensure_spool_dir
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.runtime import open_metric_store
from signalbox.server.app import AppOptions, create_app
from signalbox.server.auth import check_bind
from signalbox.server.auth.store import TokenStore
from signalbox.server.loops import Background, LoopHealth
from signalbox.server.resultcache import ResultCache, data_version
from signalbox.server.services import ReadyCheck, RunnerStatus, Services, database_ready
from signalbox.server.taskrunner import EmbeddedTasks
from signalbox.storage.connections import release_thread
from signalbox.storage.database import redact_url
from signalbox.storage.integrity import check_in_background, checked_at_open
from signalbox.storage.leader import leadership_for
from signalbox.tasks.registry import open_queue_store
from signalbox.tasks.store import QueueStore

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from signalbox.flags.admin import FlagAdmin
    from signalbox.storage.database import Database

log = logging.getLogger("signalbox.serve")

SWITCH_INTERVAL_S = 0.0005
"""How long a thread waiting for the GIL waits before it asks for it (CPython: 5 ms). Every
row a database driver fetches gives the GIL up and takes it back; while a heavy query keeps
the GIL busy, each take-back of a cheap query waits this long, so a 240-row read cost it
1.2 s at 5 ms. At 0.5 ms cheap queries stay fast while heavy ones run (bench/hostile.py)."""


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    demo: bool = False,
    workers: int = 0,
) -> None:
    """Serve until SIGINT/SIGTERM; ``workers``: job slots of embedded task workers (the demo
    runs one at least, for its reprocessing jobs)."""
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    check_bind(bind_host, bind_port, reads_need_token=settings.server.reads_need_token)
    if demo:  # its settings come from its own config file (signalbox.demo.workspace)
        logging.getLogger("signalbox.notify").setLevel(logging.INFO)
        logging.getLogger("signalbox.demo").setLevel(logging.INFO)
    sock = listen(bind_host, bind_port)  # before anything starts: a taken port is a clear error
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    bind_port = sock.getsockname()[1]
    _spool_dir_ready(settings)
    store = open_metric_store(settings)  # refuses another application's or a damaged file
    damage = _check_integrity(store)
    threading.Thread(target=warm_up, args=(store,), name="signalbox-warm-up", daemon=True).start()
    leader = leadership_for(store.db, f"{settings.host}:{bind_port}", settings.server.leader_ttl_s)
    bg = Background(settings, monitors=True, sessions=True, leader=leader)
    if demo:
        from signalbox.demo.reprocess import demo_tasks_settings
        from signalbox.demo.workspace import write_flags

        settings = dataclasses.replace(settings, tasks=demo_tasks_settings(settings.tasks))
        workers = max(workers, 1)
        if write_flags(settings.flags.paths) is None:
            log.warning(
                "demo: this config (from an earlier demo) names no demo/flags folder, so the "
                "demo_reprocessing flag is not declared; delete the config for a fresh one"
            )
    queue = open_queue_store(settings)
    # migrates every area before the loops start
    services = build_services(settings, store, bg.health, damage, queue=queue)
    if store.db.dialect.name == "postgresql":  # SQLite's one instance: nothing to say
        services = dataclasses.replace(services, leader=leader)
    if services.query_cache is not None:  # its counters are stored every pass
        bg.sources.append(services.query_cache)
    sim = jobs = None
    if demo:
        from signalbox.demo.reprocess import Reprocessing, install
        from signalbox.demo.service import PhotoService

        sim = PhotoService(settings, store)
        sim.backfill()
        jobs = Reprocessing(install(services.engine, settings=settings), queue)
    task_metrics = open_metric_store(settings)  # the workers' and the metrics loop's writer
    tasks = EmbeddedTasks(settings, queue, task_metrics, workers, health=bg.health)
    bg.start()
    tasks_said = tasks.start()
    if sim is not None:
        sim.start(bg.statsd_address)
    if jobs is not None:
        jobs.start()
    options = AppOptions(
        stale_after_s=settings.metrics.stale_after_s,
        demo=demo,
        reads_need_token=settings.server.reads_need_token,
    )
    app = create_app(services, options)
    print(
        f"signalbox serving on http://{bind_host}:{bind_port}/  (store {redact_url(settings.store_url)}, spool {settings.metrics.spool_dir})",
        flush=True,
    )
    print(f"tasks: {tasks_said}", flush=True)
    if demo:
        print(
            "demo: when the database stays busy, monitor demo_db_overloaded switches flag "
            "demo_reprocessing off and the reprocessing jobs wait; once it recovers, turn the "
            f"flag back on at http://{bind_host}:{bind_port}/flags or with `signalbox flags set "
            'demo_reprocessing on --reason "..."`',
            flush=True,
        )
    # the stores' connections this thread opened (migrations) go back to PostgreSQL: from
    # now on it runs the event loop, and the requests run on threads of their own
    release_thread()
    try:
        uvicorn.Server(uvicorn_config(app)).run(sockets=[sock])
    finally:
        if jobs is not None:
            jobs.stop()
        tasks.stop()
        if sim is not None:
            sim.stop()
        bg.close()
        if services.query_cache is not None:
            services.query_cache.close()
        task_metrics.close()
        queue.close()
        store.close()


def uvicorn_config(app: Starlette) -> uvicorn.Config:
    """How uvicorn serves ``app``: its log at warnings only, and no access log of its own.
    At that level uvicorn's access lines (info) were never written, yet each request still
    formatted their arguments (client address, path and query) before the logger dropped
    them; without the access log that work is not done (a 1-hour query's URL is long)."""
    return uvicorn.Config(app, log_level="warning", access_log=False)


def warm_up(store: SQLMetricStore) -> None:
    """The series index loaded in the background at start (:meth:`SQLMetricStore.warm_up`),
    so the first query over many series need not; a failure is logged and left to the
    queries (each reads what it needs, as without a warm-up), never raised into serve."""
    try:
        store.warm_up()
    except Exception as e:
        log.warning("series index not loaded at start (queries will load it): %s", e)
    finally:
        release_thread()  # this thread's PostgreSQL connection, no longer needed


def build_services(
    settings: Settings,
    store: SQLMetricStore,
    loops: LoopHealth | None = None,
    damage: list[CorruptDatabaseError] | None = None,
    *,
    queue: QueueStore | None = None,
) -> Services:
    """What the app reads and writes, over ``serve``'s API store: its metrics, the monitor
    states and writes and the API tokens (from the same database) and readiness probes: that database answers, (``loops``) the
    background loops can write to it (a full disk makes the instance not ready), and
    (``damage``) the start-up integrity check found nothing; ``queue``: the task queue of
    ``/api/v1/tasks`` and the queues page."""
    from signalbox.instrument.logsources import ConfiguredLogs
    from signalbox.monitors.engine.runner import MonitorRunner

    runner = RunnerStatus(MonitorRunner.from_settings(settings, store, store.db), settings)
    size_store_caches(settings)
    services = Services.over(
        store,
        clock=store.clock,
        coarsest_resolution_s=store.levels[-1].tier,
        monitors=runner,
        monitor_writes=runner,
        tokens=TokenStore(store.db),
        ready=(
            database_ready(f"store {store.db.url}", store.db),
            *(() if loops is None else (ReadyCheck("store writes", loops.probe),)),
            *(() if damage is None else (ReadyCheck("store integrity", _raiser(damage)),)),
        ),
        limits=settings.query,
        query_cache=query_cache(settings, store),
        queue=queue,
        flags=flag_admin(settings, store.db),
    )
    return dataclasses.replace(services, logs=ConfiguredLogs.from_settings(settings))


def flag_admin(settings: Settings, db: Database) -> FlagAdmin:
    """The flags area over ``db`` (the store's database: flags live beside the metrics)."""
    from signalbox.flags.admin import FlagAdmin
    from signalbox.flags.store import SQLFlagStore

    return FlagAdmin(
        SQLFlagStore(db),
        settings.flags.paths,
        stale_after_s=settings.flags.stale_after_s,
        refresh_s=settings.flags.refresh_s,
    )


def size_store_caches(settings: Settings) -> None:
    """The process-wide caches below the results cache, sized by ``[server]``: decoded
    packed units (``packed_cache_mb``) and raw samples (``raw_cache_mb``). They are the
    store's, checked against it at every read, so they apply whatever the results cache
    does."""
    from signalbox.metrics.sql import rawcache, unitcache

    unitcache.configure(settings.server.packed_cache_mb)
    rawcache.configure(settings.server.raw_cache_mb)


def query_cache(settings: Settings, store: SQLMetricStore) -> ResultCache | None:
    """The results cache ``[server] query_cache_mb`` asks for, if the store has a data
    version this process can read (see :mod:`signalbox.server.resultcache`)."""
    version = data_version(store) if settings.server.query_cache_mb else None
    if version is None:
        return None
    return ResultCache(settings.server.query_cache_mb * 2**20, version)


def _spool_dir_ready(settings: Settings) -> None:
    """Create a missing spool dir and say so once (a wrong path collects nothing silently)."""
    path = settings.metrics.spool_dir
    try:
        warning = ensure_spool_dir(path)
    except OSError as e:
        raise UsageError(
            f"cannot create the spool dir {path}: {e.strerror} (set [collect] spool_dir in "
            "signalbox.toml)"
        ) from None
    if warning:
        log.warning("%s", warning)


def _check_integrity(store: SQLMetricStore) -> list[CorruptDatabaseError] | None:
    """A SQLite file too big to check at open is checked now, in the background (the server
    starts meanwhile); what it finds fails ``/-/ready``. None when there is nothing to wait
    for (PostgreSQL, in-memory SQLite; a small file, checked at open)."""
    db = store.db
    if db.dialect.name != "sqlite" or db.path == ":memory:" or checked_at_open(db):
        return None
    found: list[CorruptDatabaseError] = []
    check_in_background(db, found.append)
    return found


def _raiser(found: list[CorruptDatabaseError]) -> Callable[[], None]:
    def probe() -> None:
        if found:
            raise found[0]

    return probe


def listen(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound now so that errors name the setting to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets
    # that say so; with Nagle on, a reply written in two pieces waited ~40 ms for the
    # client's delayed ACK on every keep-alive request (Grafana's and browsers')
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
