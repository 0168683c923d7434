"""The background work of ``serve`` and ``agent``: collection passes, rollups, StatsD, and
the process's own metrics (:mod:`signalbox.metrics.process`), stored by every pass; in
``serve``, ended dashboard sessions deleted too (:meth:`SessionStore.purge_ended`).

With a PostgreSQL store several ``serve`` instances share, only the elected leader
(:mod:`signalbox.storage.leader`, :mod:`signalbox.server.leadership`) compacts, purges and
evaluates monitors; every instance collects and says who leads (``signalbox_leader``).
Agents on PostgreSQL collect and say who leads (``signalbox_leader_info``); one of them
compacts while no ``serve`` instance leads (:mod:`signalbox.server.compactor`).

Each loop runs in a daemon thread with its own store connection and stops when the shared
event is set; a failing pass is logged and the loop goes on (a collector must never die).
A store that refuses writes (a full disk) fails every pass until someone acts: that is said
in one line naming the path, repeated only as a reminder, with the recovery logged too, and
``/-/ready`` answers 503 with the reason meanwhile (:class:`LoopHealth`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from signalbox.config import Settings
from signalbox.durations import format_duration
from signalbox.exceptions import CorruptDatabaseError, ForeignDatabaseError, StoreError
from signalbox.metrics.collect import SampleSource
from signalbox.metrics.forward import start_forwarding
from signalbox.metrics.process import ProcessMetrics
from signalbox.runtime import build_collector, open_metric_store
from signalbox.storage.failures import is_driver_error

if TYPE_CHECKING:
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.server.auth.sessions import SessionStore
    from signalbox.server.leadership import LeaderSeen
    from signalbox.storage.database import Database
    from signalbox.storage.leader import Leadership

log = logging.getLogger("signalbox.serve")

COMPACT_EVERY_S = 60.0
PURGE_SESSIONS_EVERY_S = 600.0
"""How often ``serve`` deletes ended dashboard sessions (logins delete a few too)."""
REMIND_EVERY_S = 300.0
"""While a loop keeps failing the same way, how often the log says so again."""


@dataclass
class _Failing:
    error: str  # the first line of what it raised
    store: bool  # a StoreError: the store refuses the work (readiness says so)
    since: float  # wall clock, for people
    runs: int = 1
    said_at: float = 0.0  # monotonic


class LoopHealth:
    """How each background loop's latest run went, for the log and ``/-/ready``.

    A full disk fails every pass until space returns: one log line names the path when it
    starts (no traceback: the error says all there is), a reminder follows every
    :data:`REMIND_EVERY_S` while it lasts, and one line says when writes work again. An
    unexpected error keeps its traceback, once.
    """

    def __init__(self, remind_every_s: float = REMIND_EVERY_S) -> None:
        self.remind_every_s = remind_every_s
        self._lock = threading.Lock()
        self._failing: dict[str, _Failing] = {}

    def succeeded(self, name: str) -> None:
        with self._lock:
            was = self._failing.pop(name, None)
        if was is not None:
            log.warning(
                "%s works again after %d failed run(s) over %s",
                name,
                was.runs,
                format_duration(max(1, round(time.time() - was.since))),
            )

    def failed(self, name: str, exc: Exception) -> None:
        # a driver's own error (the connection to PostgreSQL broke mid-statement) is the
        # store's too: the database went away, readiness says so
        store = isinstance(exc, StoreError) or is_driver_error(exc)
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        now = time.monotonic()
        with self._lock:
            f = self._failing.get(name)
            if f is None:
                f = self._failing[name] = _Failing(error, store, time.time(), said_at=now)
                first = True
            else:
                f.runs += 1
                first = f.error != error  # failing differently: say so now
                if not first and now - f.said_at < self.remind_every_s:
                    return
                f.error, f.store, f.said_at = error, store, now
            runs = f.runs
        if first and not store:
            log.error("%s failed; will retry next interval", name, exc_info=exc)
        elif first:
            log.error("%s failed: %s; will retry next interval", name, error)
        else:
            log.error("%s still failing (%d runs in a row): %s", name, runs, error)

    def probe(self) -> None:
        """Raise (for ``/-/ready``) while a loop's latest run failed with a store error."""
        with self._lock:
            failing = [(n, f) for n, f in self._failing.items() if f.store]
        for name, f in failing:
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(f.since))
            raise StoreError(f"{name} failing since {since}: {f.error}")


def every(
    interval_s: float,
    stop: threading.Event,
    fn: Callable[[], object],
    name: str,
    health: LoopHealth | None = None,
) -> threading.Thread:
    """Run ``fn`` now and then every ``interval_s`` until ``stop``; errors are logged (through
    ``health``, once per kind of failure), not fatal."""
    watch = health or LoopHealth()

    def run() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                fn()
            except Exception as e:
                watch.failed(name, e)
            else:
                watch.succeeded(name)
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))

    t = threading.Thread(target=run, name=f"signalbox-{name}", daemon=True)
    t.start()
    return t


@dataclass
class Background:
    """The threads behind one ``serve``/``agent`` process."""

    settings: Settings
    monitors: bool = False  # serve evaluates monitors; agents only collect
    sessions: bool = False  # serve purges ended dashboard sessions; agents have none
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    statsd_address: tuple[str, int] | None = None
    health: LoopHealth = field(default_factory=LoopHealth)
    sources: list[SampleSource] = field(default_factory=list)
    """More for the collection passes to store (``serve``'s query cache counters)."""
    leader: Leadership | None = None
    """``serve``'s election: compaction, purges and monitors only while it leads; started
    here, and stopped (its lease released) after the loops."""
    listen: tuple[str, int] | None = None
    """``agent --listen``: where the agent serves its last pass as ``/metrics``."""
    scrape_address: tuple[str, int] | None = None  # where it listens, once started
    wait_for_store: bool = False
    """An agent started while its store is unreachable waits for it (StatsD listening
    meanwhile, so its counters keep counting); ``serve`` has no use without one."""
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _seen: LeaderSeen | None = None  # an agent on PostgreSQL: who leads, as last seen

    def start(self) -> None:
        s = self.settings
        sources: list[SampleSource] = []
        if s.metrics.statsd.enabled:
            from signalbox.metrics.statsd.aggregate import StatsdAggregator
            from signalbox.metrics.statsd.server import StatsdServer

            agg = StatsdAggregator.from_settings(s.metrics.statsd)
            server = StatsdServer(agg, host=s.metrics.statsd.host, port=s.metrics.statsd.port)
            server.start()
            self.statsd_address = server.address
            self._closers.append(server.stop)
            sources.append(agg)
            log.info("StatsD listening on udp://%s:%d", *server.address)
        sources.append(ProcessMetrics(memory_warn_bytes=s.server.memory_warn_bytes or None))
        sources.extend(self.sources)
        opened = self._open_store()
        if opened is None:  # stopped while waiting for it
            return
        store = opened
        self._closers.append(store.close)
        leader = self._elect(store.db, sources)
        forwarding = start_forwarding(s, listen=self.listen)  # [forward] peers, --listen
        if forwarding is not None:
            sources.append(forwarding)  # its counters
            self._closers.append(forwarding.close)  # after the collector's last write
            self.scrape_address = forwarding.scrape.address if forwarding.scrape else None
            if forwarding.scrape is not None:  # its /-/ready: 503 while collect fails
                forwarding.scrape.ready = self.health.probe
                if self._seen is not None:  # ...and who leads, when it is said
                    forwarding.scrape.notes = self._seen.ready_line
        collector = build_collector(s, store, sources, hold=True)
        if forwarding is not None:  # each stored write handed over, off this thread
            collector.store = forwarding.wrap(collector.store)
            collector.on_held = forwarding.held  # and what the agent's /metrics shows
        self._closers.append(collector.close)  # after the loop stops, before the store
        self.threads.append(
            every(s.metrics.interval_s, self.stop, collector.run_once, "collect", self.health)
        )
        self.threads.append(
            self._leading(COMPACT_EVERY_S, self._compaction(store, leader), "compact", leader)
        )
        if self.sessions:
            from signalbox.server.auth.sessions import SessionStore

            ended = SessionStore(store.db)  # migrated here, before the loop's first run
            self.threads.append(
                self._leading(
                    PURGE_SESSIONS_EVERY_S,
                    lambda: _purge_sessions(ended),
                    "purge sessions",
                    leader,
                )
            )
        if self.monitors:
            from signalbox.monitors.engine.loop import start_monitor_loop

            self.threads.append(
                start_monitor_loop(s, lambda: open_metric_store(s), self.stop, leader=leader)
            )

    def _elect(self, db: Database, sources: list[SampleSource]) -> Leadership | None:
        """Start ``serve``'s election (stopped last, lease released) and its metric; an
        agent on PostgreSQL says who leads instead."""
        from signalbox.server.leadership import LeaderMetrics, LeaderSeen

        if self.leader is not None:
            self.leader.start()
            self._closers.insert(0, self.leader.stop)  # closers run last-first
            if db.dialect.name == "postgresql":  # SQLite's one serve: nothing to say
                sources.append(LeaderMetrics(self.leader))
        elif db.dialect.name == "postgresql":
            self._seen = LeaderSeen(db)
            sources.append(self._seen)
        return self.leader

    def _compaction(self, store: SQLMetricStore, leader: Leadership | None) -> Callable[[], object]:
        """A compaction turn: ``serve`` compacts while it leads (its loop runs only then), a
        process on SQLite always; an agent on PostgreSQL when no ``serve`` leads and the
        agents' own lease says it is its turn (:mod:`signalbox.server.compactor`)."""

        def compact() -> None:
            store.compact(int(time.time() * 1000))

        if leader is not None or store.db.dialect.name != "postgresql":
            return compact
        from signalbox.server.compactor import AgentCompactor

        turns = AgentCompactor(store.db, self.settings.host)
        self._closers.append(turns.stop)  # runs before the store closes

        def agent_turn() -> None:
            if turns.turn():
                compact()

        return agent_turn

    def _leading(
        self, interval_s: float, fn: Callable[[], object], name: str, leader: Leadership | None
    ) -> threading.Thread:
        if leader is None:
            return every(interval_s, self.stop, fn, name, self.health)
        from signalbox.server.leadership import every_leading

        return every_leading(interval_s, self.stop, fn, name, self.health, leader)

    def _open_store(self) -> SQLMetricStore | None:
        """The store; an agent's, once it can be reached (None: stopped before that). One
        line when the wait starts, one when it ends."""
        s = self.settings
        tries = 0
        while True:
            try:
                store = open_metric_store(s)
            except Exception as e:
                if not self.wait_for_store or not _unreachable(e):
                    raise
                if not tries:
                    log.error(
                        "cannot open the store: %s; StatsD keeps counting meanwhile, "
                        "trying again every %s",
                        (str(e).strip().splitlines() or [type(e).__name__])[0],
                        format_duration(s.metrics.interval_s),
                    )
                tries += 1
                if self.stop.wait(s.metrics.interval_s):
                    return None
                continue
            if tries:
                log.warning("the store opened after %d failed attempt(s)", tries)
            return store

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        for c in reversed(self._closers):
            try:
                c()
            except Exception:
                log.exception("error while shutting down")


def _purge_sessions(sessions: SessionStore) -> None:
    gone = sessions.purge_ended(int(time.time() * 1000))
    if gone:
        log.info("purged %d ended dashboard session(s)", gone)


def _unreachable(e: Exception) -> bool:
    """Worth waiting for: not another application's database, not a damaged one."""
    if isinstance(e, (ForeignDatabaseError, CorruptDatabaseError)):
        return False
    return isinstance(e, StoreError) or is_driver_error(e)


def run_agent(
    settings: Settings,
    started: Callable[[Background], None] | None = None,
    listen: tuple[str, int] | None = None,
) -> None:
    """Collect until SIGINT/SIGTERM; ``started`` is told once the listeners are bound;
    ``listen``: serve the last pass as ``/metrics`` there."""
    bg = Background(settings, listen=listen, wait_for_store=True)
    done = threading.Event()

    def stop(*_: object) -> None:
        done.set()
        bg.stop.set()  # also ends a wait for the store

    signal.signal(signal.SIGTERM, stop)
    try:
        bg.start()
    except KeyboardInterrupt:
        bg.close()
        return
    try:
        if bg.stop.is_set():
            return
        if started is not None:
            started(bg)  # after the handler: a stop right after the news still cleans up
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bg.close()
