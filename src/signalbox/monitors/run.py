"""The monitor runner: one evaluation pass over every monitor, and the loop ``serve`` runs.

A pass (:meth:`MonitorRunner.run_pass`, time injected as ``now_ms``):

1. load the monitor files; lint errors are logged, every valid monitor still runs;
2. observe each monitor: a threshold query through the PromQL engine, a staleness or queue
   check through its rule selector, a Nagios plugin through :func:`run_plugin` (plugins run
   in parallel; their perfdata becomes samples in the metric store);
3. apply the state machine (:func:`evaluate_vector`) to the persisted previous state,
   dependencies first so ``depends_on`` sees this pass's answer;
4. decide notifications (:func:`decide`): firing, repeat, resolved, or held back by a
   silence, a dependency that is not OK, or flapping;
5. in ONE transaction: persist every series, every transition and flapping event, run the
   flag actions, and enqueue the notifications in the outbox, so a crash loses none;
6. write ``signalbox_monitor_state`` for every series into the metric store, then deliver
   due outbox entries.

Notification policy is level-based: a series remembers which firing state receivers were
last told about (``notified_state``), and every pass reconciles it with the current state.
A notification held back (silence, dependency, flapping) is therefore sent as soon as the
hold ends, and a "resolved" is sent only when a "firing" was.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from signalbox.clock import Clock, SystemClock
from signalbox.config import Settings
from signalbox.exceptions import ConfigError, SignalboxError, UsageError
from signalbox.metrics.samples import Labels, MetricMeta, Sample, labels_of
from signalbox.metrics.store import MetricStore
from signalbox.monitors.actions import ActionHandler, RecordingActionHandler, action_for
from signalbox.monitors.evaluate import Observation, SeriesState, Transition, evaluate_vector
from signalbox.monitors.load import LintError, LoadResult, load_monitors
from signalbox.monitors.model import (
    Monitor,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
    worst,
)
from signalbox.monitors.nagios import PluginResult, run_plugin
from signalbox.monitors.notify import (
    Notification,
    NotificationKind,
    Notifier,
    NotifyError,
    build_notifier,
)
from signalbox.monitors.notify.notification import json_number, rfc3339
from signalbox.monitors.outbox import Delivery, DeliveryReport, Outbox, OutboxEntry
from signalbox.monitors.perfdata import PluginOutput, perfdata_metadata, perfdata_to_samples
from signalbox.monitors.store import HistoryEntry, MonitorStore, SeriesRecord, Silence
from signalbox.query import Engine, VectorSelector, parse_expr
from signalbox.storage.database import Database

log = logging.getLogger("signalbox.monitors")

STATE_METRIC = "signalbox_monitor_state"
STATE_VALUES: Mapping[State, float] = {
    State.OK: 0,
    State.WARNING: 1,
    State.CRITICAL: 2,
    State.UNKNOWN: 3,
}
DELIVER_EVERY_S = 5.0
MAX_PLUGIN_THREADS = 8

PluginRunner = Callable[[list[str], float], PluginResult]
Observed = dict[Labels, float | Observation]


# -- notification policy (pure) -------------------------------------------------------------


def hold_reason(state: SeriesState, *, silence: Silence | None, suppressed_by: str) -> str:
    """Why notifications for a series are held back now, or "" when they are not."""
    if silence is not None:
        return f"silenced by {silence.describe()}"
    if suppressed_by:
        return f"suppressed by {suppressed_by}"
    if state.flapping:
        return "flapping"
    return ""


def decide(
    rec: SeriesRecord, *, now_ms: int, repeat_ms: int, hold: str, acked: bool
) -> tuple[SeriesRecord, NotificationKind | None]:
    """Which notification ``rec`` (already carrying the new state) needs now, and its new bookkeeping.

    * firing: the series fires in a state receivers were not told about (new problem,
      escalation, de-escalation, or a hold that just ended);
    * repeat: still firing, told, ``repeat_ms`` since the last one, not acknowledged;
    * resolved: back to OK after a firing notification was sent.
    Nothing while ``hold`` is set; the next pass without a hold catches up.
    """
    s = rec.state
    if hold:
        return rec, None
    if s.state.firing:
        if rec.notified_state is not s.state:
            return replace(
                rec,
                notified_state=s.state,
                fired_at_ms=s.since,
                last_notified_ms=now_ms,
                last_notified_kind="firing",
            ), "firing"
        due = rec.last_notified_ms is None or now_ms - rec.last_notified_ms >= repeat_ms
        if due and not acked:
            return replace(rec, last_notified_ms=now_ms, last_notified_kind="repeat"), "repeat"
        return rec, None
    if s.state is State.OK and rec.notified_state is not None:
        return replace(
            rec,
            notified_state=None,
            fired_at_ms=None,
            last_notified_ms=now_ms,
            last_notified_kind="resolved",
        ), "resolved"
    return rec, None


def make_notification(
    m: Monitor,
    kind: NotificationKind,
    before: SeriesRecord,
    after: SeriesRecord,
    *,
    now_ms: int,
    repeat_s: float,
    previous: State,
) -> Notification:
    """The notification ``decide`` asked for; ``previous`` is the state before a firing."""
    s = after.state
    ends: float | None = None
    if kind == "resolved":
        started = before.fired_at_ms if before.fired_at_ms is not None else s.since
        prev_state = before.notified_state or previous
        ends = s.since / 1000
    elif kind == "repeat":
        started = after.fired_at_ms if after.fired_at_ms is not None else s.since
        prev_state = s.state
    else:
        started, prev_state = s.since, previous
    return Notification(
        monitor=m.name,
        state=s.state,
        previous_state=prev_state,
        kind=kind,
        summary=s.reason,
        started_at=started / 1000,
        created_at=now_ms / 1000,
        description=m.description,
        owner=m.owner or "",
        runbook=m.runbook or "",
        labels=labels_of({**dict(m.labels), **dict(after.labels)}),
        value=s.last_value,
        ends_at=ends,
        repeat_s=repeat_s,
    )


def state_samples(monitor: str, states: Mapping[Labels, State]) -> list[Sample]:
    """``signalbox_monitor_state{monitor=...,<series labels>}`` 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    out = []
    for labels, st in sorted(states.items()):
        pairs = {("exported_monitor" if k == "monitor" else k): v for k, v in labels}
        out.append(Sample(STATE_METRIC, labels_of({**pairs, "monitor": monitor}), STATE_VALUES[st]))
    return out


def dependency_order(monitors: Sequence[Monitor]) -> list[Monitor]:
    """``monitors`` with every dependency before its dependents (file order otherwise)."""
    by_name = {m.name: m for m in monitors}
    out: list[Monitor] = []
    done: set[str] = set()

    def visit(m: Monitor, path: set[str]) -> None:
        if m.name in done or m.name in path:
            return  # cycles are lint errors; never loop on one
        path.add(m.name)
        for dep in m.depends_on:
            if dep in by_name:
                visit(by_name[dep], path)
        done.add(m.name)
        out.append(m)

    for m in monitors:
        visit(m, set())
    return out


# -- notifiers from settings ----------------------------------------------------------------


class BrokenNotifier:
    """Stands in for a notifier whose config is wrong: rows for it stay pending (retryable)
    until the config is fixed or they age out as dead, visible, never silently dropped."""

    def __init__(self, name: str, error: str) -> None:
        self.name, self.error = name, error

    def send(self, n: Notification) -> None:
        raise NotifyError(
            self.name, f"not usable, fix signalbox.toml: {self.error}", retryable=True
        )


def build_notifiers(
    settings: Settings, *, clock: Clock | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Notifier], list[ConfigError]]:
    """Every ``[notifiers.NAME]``; a bad one becomes a :class:`BrokenNotifier` plus an error."""
    out: dict[str, Notifier] = {}
    errors: list[ConfigError] = []
    for name, cfg in settings.notifiers.items():
        try:
            out[name] = build_notifier(
                name,
                cfg,
                file=settings.source,
                environ=environ,
                clock=clock,
                repeat_s=settings.monitor_repeat_s,
            )
        except ConfigError as e:
            errors.append(e)
            out[name] = BrokenNotifier(name, str(e))
    return out, errors


def describe_notifier(settings: Settings, name: str) -> str:
    """``webhook http://host:port/...``: where a notifier delivers, with no secret in it."""
    from signalbox.monitors.notify._config import redact_url

    cfg = settings.notifiers.get(name)
    if cfg is None:
        return "not configured"
    kind = str(cfg.get("type"))
    if isinstance(cfg.get("url"), str):
        return f"{kind} {redact_url(cfg['url'])}"
    if kind == "email" and isinstance(cfg.get("to"), list):
        return f"email to {', '.join(map(str, cfg['to']))}"
    if kind == "command":
        cmd = cfg.get("command")
        first = (
            cmd.split()[0]
            if isinstance(cmd, str) and cmd.split()
            else (cmd[0] if isinstance(cmd, list) and cmd else "")
        )
        return f"command {first}"
    return kind


# -- the runner -----------------------------------------------------------------------------


@dataclass(slots=True)
class PassReport:
    """What one pass did."""

    at_ms: int
    monitors: int = 0
    series: int = 0
    transitions: list[Transition] = field(default_factory=list)
    queued: list[OutboxEntry] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    lint_errors: tuple[LintError, ...] = ()
    check_errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Batch:
    """Everything a pass writes in its one transaction."""

    records: list[SeriesRecord] = field(default_factory=list)
    removed: list[tuple[str, Labels]] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    outbox: list[tuple[str, Notification, Labels]] = field(default_factory=list)
    actions: list[tuple[Monitor, Transition]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    metas: list[MetricMeta] = field(default_factory=list)


class MonitorRunner:
    """Evaluates monitors against a metric store and keeps their state in a :class:`MonitorStore`.

    Args:
        paths: monitor files and directories.
        metric_store: where queries read and where state gauges and perfdata go.
        state: persisted monitor state; ``outbox``: the notification outbox (same database).
        notifiers: by name, as ``notify:`` lists them.
        repeat_s: default repeat interval (a monitor's ``repeat`` wins).
        host: the ``host`` label of Nagios perfdata samples.
        action_handler: carries out ``on_critical``/``on_warning`` (default: record + log).
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
    ) -> None:
        self.paths = list(paths)
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
            paths=settings.monitor_paths,
            metric_store=metric_store,
            state=MonitorStore(db),
            outbox=outbox or Outbox(db),
            notifiers=notifiers,
            repeat_s=settings.monitor_repeat_s,
            host=settings.host,
            action_handler=action_handler,
            engine=Engine(metric_store, coarsest_resolution_s=settings.tiers[-1].resolution),
        )

    # -- loading --------------------------------------------------------------------------
    def load(self) -> LoadResult:
        """Monitor files -> monitors; new lint errors are logged once, not every pass.

        A ``notify:`` naming an unconfigured notifier is reported (with its line) but does
        not stop the monitor from running: its state and history are kept, and its
        notifications to that name end up dead in the outbox, visibly.
        """
        result = load_monitors(self.paths)
        known = set(self.notifier_names)
        if any(n not in known for m in result.monitors for n in m.notify):
            strict = load_monitors(self.paths, notifiers=known)  # the same errors, plus notify
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
        raise UsageError(
            f"no monitor named {name!r} in {', '.join(map(str, self.paths))} (known: {known})"
        )

    # -- observing ------------------------------------------------------------------------
    def observe(self, m: Monitor, now_ms: int) -> Observed:
        """One observation per series; raises when the check itself cannot run."""
        check = m.check
        if isinstance(check, ThresholdCheck):
            return self._vector(m, check.query, now_ms)
        if isinstance(check, QueueCheck):
            return self._vector(m, check.selector, now_ms)
        if isinstance(check, StaleCheck):
            sel = parse_expr(check.selector)
            assert isinstance(sel, VectorSelector)  # the loader only lets selectors through
            out: Observed = {}
            for _name, labels, ts, value in self.metric_store.latest(sel.all_matchers()):
                age = max(0.0, (now_ms - ts) / 1000)
                out[labels] = (
                    age if check.metric is not None else value + age
                )  # spool: age at collection
            return out
        raise TypeError(f"not an observable check: {check!r}")

    def _vector(self, m: Monitor, query: str, now_ms: int) -> Observed:
        res = self.engine.instant(query, now_ms)
        if res.result_type == "scalar":
            return {} if res.scalar is None else {(): res.scalar}
        out: Observed = {}
        for metric, value in res.vector:
            labels = labels_of({k: v for k, v in metric.items() if k != "__name__"})
            if labels in out:
                log.warning(
                    "monitor %s: two series of %s share labels %s without their names; keeping the first",
                    m.name,
                    query,
                    labels,
                )
                continue
            out[labels] = value
        return out

    def _run_plugins(
        self, monitors: Sequence[Monitor], now_ms: int, batch: _Batch
    ) -> dict[str, Observed]:
        plugins = [m for m in monitors if isinstance(m.check, NagiosCheck)]
        if not plugins:
            return {}

        def one(m: Monitor) -> PluginResult:
            assert isinstance(m.check, NagiosCheck)
            try:
                return self.plugin_runner(list(m.check.command), m.check.timeout_seconds)
            except Exception as e:  # run_plugin never raises; an injected runner might
                log.exception("monitor %s: running the plugin failed", m.name)
                why = f"check failed: {type(e).__name__}: {e}"
                return PluginResult(State.UNKNOWN, None, PluginOutput(""), 0.0, False, why)

        with ThreadPoolExecutor(
            min(MAX_PLUGIN_THREADS, len(plugins)), thread_name_prefix="signalbox-plugin"
        ) as pool:
            results = list(pool.map(one, plugins))
        out: dict[str, Observed] = {}
        for m, r in zip(plugins, results, strict=True):
            for err in r.output.errors:
                log.warning("monitor %s: plugin perfdata not understood: %s", m.name, err)
            host = {"host": self.host} if self.host else {}
            batch.samples += perfdata_to_samples(
                m.name, r.output.perfdata, labels=host, timestamp_ms=now_ms
            )
            batch.metas += perfdata_metadata(m.name, r.output.perfdata)
            out[m.name] = {
                (): Observation(state=r.state, text=r.summary or f"plugin exited {r.exit_code}")
            }
        return out

    # -- the pass -------------------------------------------------------------------------
    def run_pass(self, now_ms: int, *, deliver: bool = True) -> PassReport:
        """Evaluate every monitor at ``now_ms``, persist, enqueue, then deliver due notifications."""
        loaded = self.load()
        p = _Pass(self, now_ms, PassReport(now_ms, lint_errors=loaded.errors))
        monitors = dependency_order(loaded.monitors)
        plugin_obs = self._run_plugins(monitors, now_ms, p.batch)
        for m in monitors:
            p.evaluate(m, plugin_obs.get(m.name))
        with self.state.transaction():
            self.state.save_series(p.batch.records, p.batch.removed)
            self.state.add_history(p.batch.history)
            for m, t in p.batch.actions:
                self._apply_action(m, t)
            for notifier, n, series in p.batch.outbox:
                p.report.queued.append(self.outbox.enqueue(notifier, n, now_ms, series=series))
        self._write_samples(p.batch, now_ms)
        if deliver:
            p.report.delivery = self.deliver(now_ms)
        self.outbox.purge(now_ms)
        return p.report

    def _apply_action(self, m: Monitor, t: Transition) -> None:
        action = action_for(m, t)
        assert action is not None
        try:
            self.actions.apply(action, m, t)
        except Exception as e:  # a broken handler must not lose the pass
            log.exception("monitor %s: action %s failed", m.name, action)
            entry = HistoryEntry(
                m.name, t.labels, t.at_ms, "action", f"action failed: {e}", t.from_state, t.to_state
            )
            self.state.add_history([entry])

    def _write_samples(self, batch: _Batch, now_ms: int) -> None:
        try:
            self.metric_store.write_metadata(
                [
                    MetricMeta(
                        STATE_METRIC,
                        "gauge",
                        "Monitor state per series: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
                    ),
                    *batch.metas,
                ]
            )
            if batch.samples:
                self.metric_store.write(batch.samples, now_ms)
        except Exception:
            log.exception("could not write monitor state and perfdata samples to the metric store")

    # -- delivery, drills -----------------------------------------------------------------
    def deliver(self, now_ms: int) -> DeliveryReport:
        """Send what is due in the outbox."""
        return self.outbox.deliver_due(now_ms, self.notifiers)

    def drill(self, name: str, now_ms: int) -> list[Delivery]:
        """Send a notification marked as a TEST through ``name``'s notifiers now (via the outbox)."""
        m = self.monitor(name)
        if not m.notify:
            raise UsageError(
                f"monitor {name!r} has no notifiers (its notify: list is empty): nothing to drill"
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
            self.state.add_history(
                [
                    HistoryEntry(
                        m.name, (), now_ms, "drill", f"drill queued for {', '.join(m.notify)}"
                    )
                ]
            )
        report = self.outbox.deliver_due(now_ms, self.notifiers, ids={e.id for e in entries})
        done = {d.entry.id: d for d in report.deliveries}
        return [
            done.get(e.id) or Delivery(e, "retry", "waiting behind an older notification")
            for e in entries
        ]


class _Pass:
    """One pass in progress: what it read at the start and what it will write."""

    def __init__(self, runner: MonitorRunner, now_ms: int, report: PassReport) -> None:
        self.runner, self.now_ms, self.report = runner, now_ms, report
        self.records = runner.state.series()
        self.silences = runner.state.silences(active_at=now_ms)
        self.acks = runner.state.acks()
        self.batch = _Batch()
        self.current: dict[str, list[State]] = {}  # states of the monitors evaluated so far

    def observe(self, m: Monitor, plugin: Observed | None) -> tuple[Observed, str]:
        """The monitor's observations, or (for a check that cannot run) UNKNOWN and why."""
        try:
            return (plugin if plugin is not None else self.runner.observe(m, self.now_ms)), ""
        except Exception as e:  # a check that cannot run is UNKNOWN, never OK
            if isinstance(e, SignalboxError):
                log.error("monitor %s: check failed: %s", m.name, e)
            else:
                log.exception("monitor %s: check failed", m.name)
            why = f"check failed: {e}"
            self.report.check_errors[m.name] = why
            bad = Observation(state=State.UNKNOWN, text=why)
            return {labels: bad for labels in self.records.get(m.name, {})} or {(): bad}, why

    def suppressor(self, m: Monitor) -> str:
        """The first dependency of ``m`` that is not OK (this pass's state, else the stored one)."""
        for dep in m.depends_on:
            states = self.current.get(dep)
            if states is None:
                states = [r.state.state for r in self.records.get(dep, {}).values()]
            if worst(states) is not State.OK:
                return dep
        return ""

    def evaluate(self, m: Monitor, plugin: Observed | None) -> None:
        prev = self.records.get(m.name, {})
        observed, failed = self.observe(m, plugin)
        vr = evaluate_vector(m, {k: r.state for k, r in prev.items()}, observed, self.now_ms)
        self.report.transitions += vr.transitions
        suppressed_by = self.suppressor(m)
        gauges: dict[Labels, State] = {}
        by_series: dict[Labels, list[Transition]] = {}
        for t in vr.transitions:
            by_series.setdefault(t.labels, []).append(t)
        for labels in sorted(set(vr.states) | set(prev)):
            trans = by_series.get(labels, [])
            before = prev.get(labels) or SeriesRecord(
                m.name, labels, SeriesState.initial(self.now_ms)
            )
            if labels in vr.states:
                st = vr.states[labels]
                if failed:  # an error is not data: "last seen" stays as it was
                    st = replace(st, last_seen_ms=before.state.last_seen_ms)
            else:  # absent and at rest: evaluate_vector forgot it; kept while a resolve is owed
                st = _at_rest(before.state, self.now_ms, trans)
            gauges[labels] = st.state
            rec = replace(before, state=st, suppressed_by=suppressed_by, updated_ms=self.now_ms)
            after = self.notify(m, before, rec, trans)
            if labels in vr.states or after.notified_state is not None:
                self.batch.records.append(after)
            else:
                self.batch.removed.append((m.name, labels))
            self.report.series += 1
        self.batch.samples += state_samples(m.name, gauges)
        self.current[m.name] = [s for k, s in gauges.items() if k in vr.states]
        self.report.monitors += 1

    def notify(
        self, m: Monitor, before: SeriesRecord, rec: SeriesRecord, trans: list[Transition]
    ) -> SeriesRecord:
        """Record ``trans``, queue actions and the notification the policy asks for."""
        st, labels, now = rec.state, rec.labels, self.now_ms
        silence = next((s for s in self.silences if s.matches(m.name, labels)), None)
        hold = hold_reason(st, silence=silence, suppressed_by=rec.suppressed_by)
        ack = self.acks.get((m.name, labels))
        repeat_s = m.repeat_seconds if m.repeat_seconds is not None else self.runner.repeat_s
        acked = ack is not None and ack.holds(st)
        after, kind = decide(
            rec, now_ms=now, repeat_ms=round(repeat_s * 1000), hold=hold, acked=acked
        )
        for t in trans:
            note = "notifications held while flapping" if t.event == "flapping_started" else hold
            self.batch.history.append(
                HistoryEntry(
                    m.name,
                    labels,
                    t.at_ms,
                    t.event,
                    t.reason,
                    t.from_state,
                    t.to_state,
                    t.value,
                    note,
                )
            )
            if action_for(m, t) is not None:
                self.batch.actions.append((m, t))
        if kind is None:
            return after
        change = next((t for t in trans if t.event == "state"), None)
        previous = before.notified_state or (change.from_state if change else before.state.state)
        for notifier in m.notify:  # one notification (so one id) per notifier
            n = make_notification(
                m, kind, before, after, now_ms=now, repeat_s=repeat_s, previous=previous
            )
            self.batch.outbox.append((notifier, n, labels))
        if kind != "repeat":
            where = ", ".join(m.notify) or "nobody (the monitor has no notify: list)"
            was = previous if kind == "firing" else before.notified_state
            self.batch.history.append(
                HistoryEntry(
                    m.name,
                    labels,
                    now,
                    "notification",
                    f"{kind} to {where}",
                    was,
                    st.state,
                    st.last_value,
                )
            )
        return after


def _at_rest(p: SeriesState, now_ms: int, trans: list[Transition]) -> SeriesState:
    """The OK state of a series ``evaluate_vector`` dropped because it is absent and at rest."""
    change = next((t for t in trans if t.event == "state"), None)
    since = now_ms if p.state is not State.OK else p.since
    reason = change.reason if change else p.reason
    return replace(p, state=State.OK, since=since, pending=None, pending_since=None, reason=reason)


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """One series as ``monitors status`` shows it."""

    labels: Labels
    state: State
    since_ms: int
    value: float | None
    reason: str
    pending: State | None
    pending_since_ms: int | None
    silenced: str
    acknowledged: str
    suppressed_by: str
    flapping: bool
    flap_percent: float
    last_notified_kind: str
    last_notified_ms: int | None
    delivery: OutboxEntry | None

    def to_dict(self) -> dict[str, Any]:
        last = None
        if self.last_notified_ms is not None:
            d = self.delivery
            delivery = None
            if d is not None:
                delivery = {
                    "notifier": d.notifier,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error or None,
                }
            last = {
                "kind": self.last_notified_kind,
                "at_ms": self.last_notified_ms,
                "delivery": delivery,
            }
        return {
            "labels": dict(self.labels),
            "state": self.state.value,
            "since_ms": self.since_ms,
            "value": json_number(self.value),
            "reason": self.reason,
            "pending": self.pending.value if self.pending else None,
            "pending_since_ms": self.pending_since_ms,
            "silenced": self.silenced or None,
            "acknowledged": self.acknowledged or None,
            "suppressed_by": self.suppressed_by or None,
            "flapping": self.flapping,
            "flap_percent": round(self.flap_percent, 1),
            "last_notification": last,
        }


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """One monitor: its worst state and its series. ``loaded`` False: state persisted from
    earlier passes, but the monitor is not in the files now (removed, or a lint error)."""

    name: str
    kind: str
    loaded: bool
    state: State
    series: list[SeriesStatus]
    silences: list[Silence]
    owner: str = ""
    file: str = ""
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "loaded": self.loaded,
            "state": self.state.value,
            "owner": self.owner or None,
            "file": self.file or None,
            "line": self.line or None,
            "silences": [
                {
                    "id": x.id,
                    "series": dict(x.matchers),
                    "by": x.created_by,
                    "reason": x.reason,
                    "since_ms": x.created_ms,
                    "until_ms": x.until_ms,
                }
                for x in self.silences
            ],
            "series": [x.to_dict() for x in self.series],
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    at_ms: int
    monitors: list[MonitorStatus]
    lint_errors: tuple[LintError, ...]
    pending: list[OutboxEntry]
    dead: list[OutboxEntry]

    def to_dict(self) -> dict[str, Any]:
        def entry(e: OutboxEntry) -> dict[str, Any]:
            return {
                "id": e.id,
                "notifier": e.notifier,
                "monitor": e.monitor,
                "kind": e.kind,
                "labels": dict(e.series),
                "created_ms": e.created_ms,
                "attempts": e.attempts,
                "next_attempt_ms": e.next_attempt_ms if e.status == "pending" else None,
                "last_error": e.last_error or None,
                "status": e.status,
            }

        return {
            "at_ms": self.at_ms,
            "monitors": [m.to_dict() for m in self.monitors],
            "lint_errors": [str(e) for e in self.lint_errors],
            "outbox": {
                "pending": [entry(e) for e in self.pending],
                "dead": [entry(e) for e in self.dead],
            },
        }


def build_status(
    runner: MonitorRunner, now_ms: int, *, dead_since_ms: int | None = None
) -> StatusReport:
    """Everything ``monitors status`` shows, read from the files and the store at ``now_ms``.

    Dead notifications are listed from ``dead_since_ms`` (default: the last 7 days).
    """
    loaded = runner.load()
    records = runner.state.series()
    silences = runner.state.silences(active_at=now_ms)
    acks = runner.state.acks()
    latest = runner.outbox.latest()
    by_name = {m.name: m for m in loaded.monitors}
    out: list[MonitorStatus] = []
    for name in [*by_name, *sorted(set(records) - set(by_name))]:
        series = []
        for labels, r in sorted(records.get(name, {}).items()):
            st = r.state
            silence = next((x for x in silences if x.matches(name, labels)), None)
            ack = acks.get((name, labels))
            acked = ack is not None and ack.holds(st)
            series.append(
                SeriesStatus(
                    labels=labels,
                    state=st.state,
                    since_ms=st.since,
                    value=st.last_value,
                    reason=st.reason,
                    pending=st.pending,
                    pending_since_ms=st.pending_since,
                    silenced=f"{silence.describe()} until {rfc3339(silence.until_ms / 1000)}"
                    if silence
                    else "",
                    acknowledged=f"by {ack.by}" + (f": {ack.reason}" if ack.reason else "")
                    if ack is not None and acked
                    else "",
                    suppressed_by=r.suppressed_by,
                    flapping=st.flapping,
                    flap_percent=st.flap_percent,
                    last_notified_kind=r.last_notified_kind,
                    last_notified_ms=r.last_notified_ms,
                    delivery=latest.get((name, labels)),
                )
            )
        m = by_name.get(name)
        out.append(
            MonitorStatus(
                name=name,
                kind=m.kind if m else "?",
                loaded=m is not None,
                state=worst([x.state for x in series]),
                series=series,
                silences=[x for x in silences if x.monitor == name],
                owner=(m.owner or "") if m else "",
                file=m.file if m else "",
                line=m.line if m else 0,
            )
        )
    since = dead_since_ms if dead_since_ms is not None else now_ms - 7 * 86_400_000
    dead = [e for e in runner.outbox.entries(status="dead") if (e.done_ms or 0) >= since]
    return StatusReport(now_ms, out, loaded.errors, runner.outbox.entries(status="pending"), dead)


def start_monitor_loop(
    settings: Settings,
    metric_store_factory: Callable[[], MetricStore],
    stop_event: threading.Event,
    *,
    clock: Clock | None = None,
) -> threading.Thread:
    """Run a pass every ``monitors.interval`` and outbox deliveries in between, until
    ``stop_event`` is set; returns the started daemon thread. Errors are logged, never fatal.

    The thread opens its own database connection and metric store (from the factory) and
    closes them when it stops.
    """
    from signalbox.storage import open_database

    clk = clock or SystemClock()

    def run() -> None:
        with contextlib.ExitStack() as stack:
            try:
                db = open_database(settings.store_url)
                stack.callback(db.close)
                store = metric_store_factory()
                stack.callback(store.close)
                runner = MonitorRunner.from_settings(settings, store, db, clock=clk)
            except Exception:
                log.exception("monitor loop cannot start: monitors are NOT being evaluated")
                return
            _loop(runner, settings.monitor_interval_s, stop_event, clk)

    t = threading.Thread(target=run, name="signalbox-monitors", daemon=True)
    t.start()
    return t


def _loop(runner: MonitorRunner, interval_s: float, stop: threading.Event, clock: Clock) -> None:
    next_pass = 0.0
    while not stop.is_set():
        now = clock.now()
        # PostgreSQL with several `serve` instances (a later issue): elect the leader here
        # (a lease row or pg_try_advisory_lock) and let only the leader run passes and
        # deliveries. Until then, the outbox claim already keeps two senders off one row.
        try:
            if now >= next_pass:
                next_pass = now + interval_s
                runner.run_pass(int(now * 1000))
            else:
                runner.deliver(int(now * 1000))
        except Exception:
            log.exception("monitor pass failed; will retry next interval")
        stop.wait(max(0.0, min(DELIVER_EVERY_S, next_pass - clock.now())))
