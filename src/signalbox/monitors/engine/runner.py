"""The monitor runner: one evaluation pass over every monitor.

A pass (:meth:`MonitorRunner.run_pass`, time injected as ``now_ms``):

1. load the monitor files (unchanged files are not parsed again); lint errors are logged,
   every valid monitor still runs;
2. observe every monitor (:mod:`signalbox.monitors.engine.observe`): all threshold and queue
   queries through ONE read of the metric store, all staleness checks through one
   ``latest`` read, Nagios plugins in parallel (their perfdata becomes samples);
3. apply the state machine to the persisted previous state, dependencies first so
   ``depends_on`` sees this pass's answer (:mod:`signalbox.monitors.engine.passes`);
4. decide notifications (:mod:`signalbox.monitors.engine.policy`): firing, repeat, resolved, or
   held back by a silence, a dependency that is not OK, or flapping;
5. in ONE transaction: persist every series, every transition and flapping event, run the
   flag actions, and enqueue the notifications in the outbox, so a crash loses none;
6. write ``signalbox_monitor_state`` for every series into the metric store (labels:
   ``monitor``, the series' own, and ``host`` once -- this runner's unless the series has
   one -- so every series of one monitor has the same label names) and the delivery
   metrics per notifier (:mod:`signalbox.monitors.outbox.metrics`), then deliver due
   outbox entries -- unless the caller delivers elsewhere (``deliver=False``: ``serve``'s
   loop has a worker per notifier, so a hung receiver cannot hold the pass).

The loop ``serve`` runs is :mod:`signalbox.monitors.engine.loop`, ``monitors status`` is
:mod:`signalbox.monitors.status`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from signalbox.clock import Clock
from signalbox.config import Settings
from signalbox.exceptions import NotFoundError, StoreError, UsageError
from signalbox.gcpause import gc_paused
from signalbox.metrics.samples import Labels, MetricMeta
from signalbox.metrics.store import MetricStore
from signalbox.monitors.definitions.load import LintError, LoadCache, LoadResult, load_monitors
from signalbox.monitors.definitions.model import Monitor, State
from signalbox.monitors.engine.actions import (
    ActionHandler,
    FlagActionHandler,
    RecordingActionHandler,
    action_for,
)
from signalbox.monitors.engine.evaluate import Transition
from signalbox.monitors.engine.observe import (
    Observed,
    PluginRunner,
    observe_many,
    observe_one,
    run_plugins,
)
from signalbox.monitors.engine.passes import MonitorPass, PassReport, PassWrites
from signalbox.monitors.engine.policy import (
    STATE_METRIC,
    dependency_order,
)
from signalbox.monitors.nagios.plugin import run_plugin
from signalbox.monitors.notify import Notification, Notifier
from signalbox.monitors.notify.registry import build_notifiers
from signalbox.monitors.outbox.delivery import Delivery, DeliveryReport, OutboxEntry
from signalbox.monitors.outbox.metrics import DELIVERY_METAS, delivery_samples
from signalbox.monitors.outbox.store import Outbox
from signalbox.monitors.state.records import HistoryEntry
from signalbox.monitors.state.store import MonitorStore
from signalbox.query import Engine
from signalbox.storage.database import Database

log = logging.getLogger("signalbox.monitors")


class MonitorRunner:
    """Evaluates monitors against a metric store and keeps their state in a :class:`MonitorStore`.

    Args:
        paths: monitor files and directories.
        metric_store: where queries read and where state gauges and perfdata go.
        state: persisted monitor state; ``outbox``: the notification outbox (same database).
        notifiers: by name, as ``notify:`` lists them.
        repeat_s: default repeat interval (a monitor's ``repeat`` wins).
        host: the ``host`` label of Nagios perfdata samples.
        action_handler: carries out ``on_critical``/``on_warning``/``on_recover`` (default:
            record + log; :meth:`from_settings` flips flags in the store's database).
        plugin_runner: runs a Nagios plugin (default :func:`run_plugin`).
    """

    def __init__(
        self,
        *,
        paths: Sequence[Path],
        metric_store: MetricStore,
        state: MonitorStore,
        outbox: Outbox,
        notifiers: Mapping[str, Notifier],
        repeat_s: float,
        host: str = "",
        action_handler: ActionHandler | None = None,
        engine: Engine | None = None,
        plugin_runner: PluginRunner = run_plugin,
        notifier_names: Sequence[str] | None = None,
        optional_paths: Sequence[Path] = (),
    ) -> None:
        self.paths = list(paths)
        self.optional_paths = frozenset(optional_paths)
        self._missing_logged: frozenset[Path] = frozenset()
        self.metric_store, self.state, self.outbox = metric_store, state, outbox
        self.notifiers = dict(notifiers)
        self.notifier_names = (
            list(self.notifiers) if notifier_names is None else list(notifier_names)
        )
        self.repeat_s, self.host = repeat_s, host
        self.actions: ActionHandler = action_handler or RecordingActionHandler(state)
        self.engine = engine or Engine(metric_store)
        self.plugin_runner = plugin_runner
        self._logged_lint: tuple[LintError, ...] = ()
        self._load_cache = LoadCache()  # files are parsed again only when they change

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metric_store: MetricStore,
        db: Database,
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        action_handler: ActionHandler | None = None,
        outbox: Outbox | None = None,
    ) -> MonitorRunner:
        """The runner ``serve`` and the CLI use; notifier config errors are logged."""
        notifiers, errors = build_notifiers(settings, clock=clock, environ=environ)
        for e in errors:
            log.error("notifier config error, its notifications wait in the outbox: %s", e)
        return cls(
            paths=settings.monitors.paths,
            optional_paths=() if settings.monitors.paths_configured else settings.monitors.paths,
            metric_store=metric_store,
            state=MonitorStore(db),
            outbox=outbox
            or Outbox(
                db,
                base_delay_s=settings.monitors.retry_delay_s,
                max_delay_s=settings.monitors.retry_max_delay_s,
            ),
            notifiers=notifiers,
            repeat_s=settings.monitors.repeat_s,
            host=settings.host,
            action_handler=action_handler or flag_actions(settings, db),
            engine=Engine(
                metric_store, coarsest_resolution_s=settings.metrics.retention.tiers[-1].resolution
            ),
        )

    # -- loading --------------------------------------------------------------------------
    def load(self) -> LoadResult:
        """Monitor files -> monitors; new lint errors are logged once, not every pass.

        A ``notify:`` naming an unconfigured notifier is reported (with its line) but does
        not stop the monitor from running: its state and history are kept, and its
        notifications to that name end up dead in the outbox, visibly.
        """
        paths = self._paths_present()
        result = load_monitors(paths, cache=self._load_cache)
        known = set(self.notifier_names)
        if any(n not in known for m in result.monitors for n in m.notify):
            # the same errors, plus the unknown notifiers
            strict = load_monitors(paths, notifiers=known, cache=self._load_cache)
            result = LoadResult(result.monitors, strict.errors)
        if result.errors != self._logged_lint:
            running = {m.name for m in result.monitors}
            for e in result.errors:
                if e.monitor in running:
                    log.error("monitor runs, but its notifications cannot all be sent: %s", e)
                else:
                    log.error("monitor not loaded: %s", e)
            self._logged_lint = result.errors
        return result

    def _paths_present(self) -> list[Path]:
        """The monitor paths to read: a default path (not configured) that does not exist is
        left out and said once at INFO; a configured path that does not exist stays (lint
        reports it as an error)."""
        missing = frozenset(p for p in self.optional_paths if not p.exists())
        if missing - self._missing_logged:
            for p in sorted(missing - self._missing_logged):
                log.info(
                    "no monitors yet: %s does not exist (create it, or set [monitors] paths)", p
                )
        self._missing_logged = missing
        return [p for p in self.paths if p not in missing]

    def monitor(self, name: str, loaded: LoadResult | None = None) -> Monitor:
        """The loaded monitor ``name``, or a UsageError saying why there is none."""
        res = loaded or self.load()
        for m in res.monitors:
            if m.name == name:
                return m
        broken = [e for e in res.errors if e.monitor == name]
        if broken:
            raise UsageError(f"monitor {name!r} has lint errors and is not loaded: {broken[0]}")
        known = ", ".join(sorted(m.name for m in res.monitors)) or "none"
        raise NotFoundError(
            "monitor", name, f"in {', '.join(map(str, self.paths))}; known: {known}"
        )

    # -- observing ------------------------------------------------------------------------
    def observe(self, m: Monitor, now_ms: int) -> Observed:
        """One monitor's observations, one per series; raises when the check cannot run.

        A pass observes all its monitors at once instead (:func:`observe_many`).
        """
        return observe_one(self.engine, self.metric_store, m, now_ms)

    # -- the pass -------------------------------------------------------------------------
    def run_pass(
        self, now_ms: int, *, deliver: bool = True, fence: Callable[[], None] | None = None
    ) -> PassReport:
        """Evaluate every monitor at ``now_ms``, persist, enqueue, then deliver due
        notifications (``deliver=False``: the caller's delivery workers do). ``fence`` runs
        last in the pass's transaction, before the commit: ``serve``'s leader check, which
        raises (rolling the pass back) once another instance leads
        (:mod:`signalbox.storage.leader`)."""
        with gc_paused():
            report = self._evaluate_and_commit(now_ms, fence)
        if deliver:
            report.delivery = self.deliver(now_ms)
        self.outbox.purge(now_ms)
        return report

    def _evaluate_and_commit(self, now_ms: int, fence: Callable[[], None] | None) -> PassReport:
        backlog = self._backlog()  # before this pass queues: what earlier ones left waiting
        loaded = self.load()
        p = MonitorPass(
            self.state,
            now_ms,
            PassReport(now_ms, lint_errors=loaded.errors),
            repeat_s=self.repeat_s,
        )
        monitors = dependency_order(loaded.monitors)
        plugins = run_plugins(monitors, self.plugin_runner, host=self.host, now_ms=now_ms)
        p.writes.samples += plugins.samples
        p.writes.metas += plugins.metas
        observed: dict[str, Observed | Exception] = dict(plugins.observed)
        observed.update(observe_many(self.engine, self.metric_store, monitors, now_ms))
        for m in monitors:
            p.evaluate(m, observed[m.name])
        with self.state.transaction():
            self.state.save_series(p.writes.records, p.writes.removed)
            self.state.add_history(p.writes.history)
            said: dict[tuple[str, Labels], str] = {}
            for m, t in p.writes.actions:
                note = self._apply_action(m, t)
                if note:
                    said[(m.name, t.labels)] = note
            for notifier, n, series in p.writes.outbox:
                note = said.get((n.monitor, series))
                if note and n.kind in ("firing", "resolved"):  # receivers learn what flipped
                    n = dataclasses.replace(n, summary=f"{n.summary}; {note}")
                p.report.queued.append(self.outbox.enqueue(notifier, n, now_ms, series=series))
            if fence is not None:  # last: it may lock a row other processes wait for
                fence()
        self._write_samples(p.writes, now_ms, backlog)
        return p.report

    def _backlog(self) -> dict[str, int] | None:
        try:
            return self.outbox.pending_counts()
        except Exception:
            log.exception("could not count the notifications waiting in the outbox")
            return None

    def _apply_action(self, m: Monitor, t: Transition) -> str | None:
        action = action_for(m, t)
        assert action is not None
        try:
            return self.actions.apply(action, m, t)
        except StoreError:  # the flip and the transition commit together or not at all
            raise
        except Exception as e:  # a broken handler must not lose the pass
            log.exception("monitor %s: action %s failed", m.name, action)
            entry = HistoryEntry(
                m.name, t.labels, t.at_ms, "action", f"action failed: {e}", t.from_state, t.to_state
            )
            self.state.add_history([entry])
            return None

    def _write_samples(
        self, writes: PassWrites, now_ms: int, backlog: dict[str, int] | None
    ) -> None:
        try:
            self.metric_store.write_metadata(
                [
                    MetricMeta(
                        STATE_METRIC,
                        "gauge",
                        "Monitor state per series: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
                    ),
                    *DELIVERY_METAS,
                    *writes.metas,
                ]
            )
            samples = list(writes.samples)
            if backlog is not None:
                samples += delivery_samples(
                    self.notifier_names, backlog, self.outbox.stats.snapshot()
                )
            if samples:  # host= as the collector adds it: once, unless the series has one
                host = (("host", self.host),) if self.host else ()
                self.metric_store.write(samples, now_ms, add_labels=host)
        except Exception:
            log.exception(
                "could not write monitor state, delivery and perfdata samples to the metric store"
            )

    # -- delivery, drills -----------------------------------------------------------------
    def deliver(self, now_ms: int) -> DeliveryReport:
        """Send what is due in the outbox."""
        return self.outbox.deliver_due(now_ms, self.notifiers)

    def drill(self, name: str, now_ms: int, *, by: str = "") -> list[Delivery]:
        """Send a notification marked as a TEST through ``name``'s notifiers now (via the
        outbox); ``by`` is who asked, for the history."""
        return self.deliver_drill(self.queue_drill(self.monitor(name), now_ms, by=by), now_ms)

    def queue_drill(self, m: Monitor, now_ms: int, *, by: str = "") -> list[OutboxEntry]:
        """Enqueue ``m``'s drill notifications and record the drill in its history."""
        if not m.notify:
            raise UsageError(
                f"monitor {m.name!r} has no notifiers (its notify: list is empty): nothing to drill"
            )
        entries: list[OutboxEntry] = []
        with self.state.transaction():
            for notifier in m.notify:
                n = Notification(
                    monitor=m.name,
                    state=State.CRITICAL,
                    previous_state=State.OK,
                    kind="drill",
                    summary=f"drill: testing the notification path of monitor {m.name}; nothing is wrong",
                    started_at=now_ms / 1000,
                    created_at=now_ms / 1000,
                    description=m.description,
                    owner=m.owner or "",
                    runbook=m.runbook or "",
                    labels=m.labels,
                )
                entries.append(self.outbox.enqueue(notifier, n, now_ms, series=()))
            who = f" by {by}" if by else ""
            self.state.add_history(
                [
                    HistoryEntry(
                        m.name, (), now_ms, "drill", f"drill queued{who} for {', '.join(m.notify)}"
                    )
                ]
            )
        return entries

    def deliver_drill(self, entries: Sequence[OutboxEntry], now_ms: int) -> list[Delivery]:
        """Deliver the drill ``entries`` now; what became of each (an older notification of
        the same alert still waiting goes first)."""
        report = self.outbox.deliver_due(now_ms, self.notifiers, ids={e.id for e in entries})
        done = {d.entry.id: d for d in report.deliveries}
        return [
            done.get(e.id) or Delivery(e, "retry", "waiting behind an older notification")
            for e in entries
        ]


def flag_actions(settings: Settings, db: Database) -> FlagActionHandler:
    """Monitor actions that flip flags in ``db`` (the monitor state's own database, so a
    flip commits with its transition), declared in ``[flags] paths``."""
    from signalbox.flags.admin import FlagAdmin
    from signalbox.flags.store import SQLFlagStore

    admin = FlagAdmin(
        SQLFlagStore(db),
        settings.flags.paths,
        stale_after_s=settings.flags.stale_after_s,
        refresh_s=settings.flags.refresh_s,
    )
    return FlagActionHandler(MonitorStore(db), admin)
