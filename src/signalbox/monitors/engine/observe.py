"""What every monitor of a pass sees now: one value (or plugin state) per series.

A threshold or queue monitor sees its query's instant result; a staleness monitor sees the
age of each series' newest sample; a Nagios monitor sees its plugin's exit code. A pass
observes all of them up front: the query-based ones through one store read
(:func:`~signalbox.query.batch.instant_many`), the staleness ones through one ``latest``
read, the plugins in parallel threads. A check that cannot run yields its exception, for
the pass to turn into UNKNOWN; it never stops the other monitors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from signalbox.metrics.samples import Labels, MetricMeta, Sample, labels_of
from signalbox.metrics.store import MetricReader
from signalbox.monitors.definitions.model import (
    Monitor,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
)
from signalbox.monitors.engine.evaluate import Observation
from signalbox.monitors.nagios.perfdata_metrics import perfdata_metadata, perfdata_to_samples
from signalbox.monitors.nagios.perfdata_parse import PluginOutput
from signalbox.monitors.nagios.plugin import PluginResult
from signalbox.query import Engine, QueryResult, VectorSelector, parse_expr
from signalbox.query.batch import LatestRow, instant_many, latest_many

log = logging.getLogger("signalbox.monitors")

MAX_PLUGIN_THREADS = 8

PluginRunner = Callable[[list[str], float], PluginResult]
Observed = dict[Labels, float | Observation]


def from_result(m: Monitor, query: str, res: QueryResult) -> Observed:
    """An instant result keyed by series labels without the metric name.

    Two series that differ only by name would collide: the first (engine order) is kept
    and the collision logged, as replays do.
    """
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


def stale_ages(check: StaleCheck, rows: Sequence[LatestRow], now_ms: int) -> Observed:
    """Seconds since each series' newest sample; a spool file adds its age at collection."""
    out: Observed = {}
    for _name, labels, ts, value in rows:
        age = max(0.0, (now_ms - ts) / 1000)
        out[labels] = age if check.metric is not None else value + age
    return out


def _query_of(m: Monitor) -> str | None:
    check = m.check
    if isinstance(check, ThresholdCheck):
        return check.query
    if isinstance(check, QueueCheck):
        return check.selector
    return None


def observe_one(engine: Engine, store: MetricReader, m: Monitor, now_ms: int) -> Observed:
    """One monitor's observations on its own; raises when the check cannot run."""
    check = m.check
    query = _query_of(m)
    if query is not None:
        return from_result(m, query, engine.instant(query, now_ms))
    if isinstance(check, StaleCheck):
        sel = parse_expr(check.selector)
        assert isinstance(sel, VectorSelector)  # the loader only lets selectors through
        return stale_ages(check, store.latest(sel.all_matchers()), now_ms)
    raise TypeError(f"not an observable check: {check!r}")


def observe_many(
    engine: Engine, store: MetricReader, monitors: Sequence[Monitor], now_ms: int
) -> dict[str, Observed | Exception]:
    """Observations of every threshold, queue and staleness monitor (by name), read at once.

    The same answers as :func:`observe_one` for each: queries go through ``engine`` (its
    store, lookback and rollup settings), staleness through ``store.latest``. Nagios
    monitors are left out (see :func:`run_plugins`).
    """
    out: dict[str, Observed | Exception] = {}
    queried = [(m, q) for m in monitors if (q := _query_of(m)) is not None]
    results = instant_many(engine, [q for _, q in queried], now_ms)
    for (m, q), res in zip(queried, results, strict=True):
        out[m.name] = res if isinstance(res, Exception) else from_result(m, q, res)
    stale = [(m, m.check) for m in monitors if isinstance(m.check, StaleCheck)]
    rows = latest_many(store, [c.selector for _, c in stale])
    for (m, check), got in zip(stale, rows, strict=True):
        out[m.name] = got if isinstance(got, Exception) else stale_ages(check, got, now_ms)
    return out


@dataclass(slots=True)
class PluginPass:
    """What the plugins of one pass said: observations, and perfdata to store as samples."""

    observed: dict[str, Observed] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    metas: list[MetricMeta] = field(default_factory=list)


def run_plugins(
    monitors: Sequence[Monitor], plugin_runner: PluginRunner, *, host: str, now_ms: int
) -> PluginPass:
    """Run every Nagios monitor's plugin, up to :data:`MAX_PLUGIN_THREADS` at once.

    A plugin that cannot run is UNKNOWN with the reason; perfdata becomes samples of
    ``nagios_<monitor>_<label>`` (with ``host`` when given).
    """
    done = PluginPass()
    plugins = [m for m in monitors if isinstance(m.check, NagiosCheck)]
    if not plugins:
        return done

    def one(m: Monitor) -> PluginResult:
        assert isinstance(m.check, NagiosCheck)
        try:
            return plugin_runner(list(m.check.command), m.check.timeout_seconds)
        except Exception as e:  # run_plugin never raises; an injected runner might
            log.exception("monitor %s: running the plugin failed", m.name)
            why = f"check failed: {type(e).__name__}: {e}"
            return PluginResult(State.UNKNOWN, None, PluginOutput(""), 0.0, False, why)

    with ThreadPoolExecutor(
        min(MAX_PLUGIN_THREADS, len(plugins)), thread_name_prefix="signalbox-plugin"
    ) as pool:
        results = list(pool.map(one, plugins))
    labels = {"host": host} if host else {}
    for m, r in zip(plugins, results, strict=True):
        for err in r.output.errors:
            log.warning("monitor %s: plugin perfdata not understood: %s", m.name, err)
        done.samples += perfdata_to_samples(
            m.name, r.output.perfdata, labels=labels, timestamp_ms=now_ms
        )
        done.metas += perfdata_metadata(m.name, r.output.perfdata)
        done.observed[m.name] = {
            (): Observation(state=r.state, text=r.summary or f"plugin exited {r.exit_code}")
        }
    return done
