"""Evaluate many monitors at one instant with one read of the store.

Asking the store once per monitor costs a round trip each: with 10,000 monitors that is
10,000 SQL queries per evaluation pass. Instead, :func:`query_many` reads every series the
queries can touch in ONE ``select`` over the widest window any of them needs, then runs each
query with the ordinary engine against that in-memory copy (:class:`PrefetchedStore`), so
every query still means exactly what it means everywhere else. Identical queries are run
once. :func:`evaluate_many` adds the state machine on top: one pass of the runner.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import Labels, Matcher, MetricMeta, Sample, series_matches
from signalbox.metrics.store import MetricStore, SeriesPoints, WriteResult
from signalbox.monitors.evaluate import SeriesState, VectorResult, evaluate_vector
from signalbox.monitors.model import Monitor, QueueCheck, StaleCheck, ThresholdCheck
from signalbox.monitors.replay import series_key
from signalbox.query import Engine, QueryResult, parse_expr
from signalbox.query.ast import Expr, MatrixSelector, VectorSelector

_NAME_REGEX_MAX = 64  # above this many metric names, read every series and filter here
_parse = functools.lru_cache(maxsize=100_000)(parse_expr)  # monitors' queries repeat every pass


class PrefetchedStore:
    """A read-only :class:`~signalbox.metrics.store.MetricStore` over points read once.

    ``select`` answers from memory: candidates by metric name, narrowed by an index on the
    first ``label="value"`` matcher, then sliced by time. The points cover the store from
    ``since_ms`` on; a select reaching further back (the engine probing for coarse rollups
    when a window is empty) goes to ``fallback``, the real store. Writes are refused.
    """

    def __init__(
        self,
        points: Sequence[SeriesPoints],
        *,
        since_ms: int | None = None,
        fallback: MetricStore | None = None,
    ) -> None:
        self._by_name: dict[str, list[SeriesPoints]] = defaultdict(list)
        for sp in points:
            self._by_name[sp.name].append(sp)
        self._all = list(points)
        self._eq: dict[tuple[str, str], dict[str, list[SeriesPoints]]] = {}
        self._since_ms, self._fallback = since_ms, fallback

    def _indexed(self, name: str, label: str, value: str) -> list[SeriesPoints]:
        index = self._eq.get((name, label))
        if index is None:
            index = self._eq[(name, label)] = defaultdict(list)
            for sp in self._by_name.get(name, ()):
                index[dict(sp.labels).get(label, "")].append(sp)
        return index.get(value, [])

    def _candidates(self, matchers: Sequence[Matcher]) -> list[SeriesPoints]:
        name = next((m.value for m in matchers if m.label == "__name__" and m.op == "="), None)
        if name is None:
            return self._all
        for m in matchers:
            if m.op == "=" and m.label != "__name__" and m.value:
                return self._indexed(name, m.label, m.value)
        return self._by_name.get(name, [])

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, *, step_ms: int = 0
    ) -> list[SeriesPoints]:
        if self._fallback is not None and self._since_ms is not None and start_ms < self._since_ms:
            return self._fallback.select(matchers, start_ms, end_ms, step_ms=step_ms)
        ms = tuple(matchers)
        out: list[SeriesPoints] = []
        for sp in self._candidates(ms):
            if not series_matches(sp.name, sp.labels, ms):
                continue
            lo, hi = bisect_left(sp.timestamps, start_ms), bisect_right(sp.timestamps, end_ms)
            if hi <= lo:
                continue
            if lo == 0 and hi == len(sp.timestamps):
                out.append(sp)
                continue
            part = SeriesPoints(
                sp.name, sp.labels, sp.timestamps[lo:hi], sp.values[lo:hi], sp.resolution
            )
            for attr in ("mins", "maxs", "sums", "counts"):
                full = getattr(sp, attr)
                if full is not None:
                    setattr(part, attr, full[lo:hi])
            out.append(part)
        return out

    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        ms = tuple(matchers)
        return [
            (sp.name, sp.labels)
            for sp in self._candidates(ms)
            if series_matches(sp.name, sp.labels, ms)
        ]

    def latest(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels, int, float]]:
        ms = tuple(matchers)
        return [
            (sp.name, sp.labels, sp.timestamps[-1], sp.values[-1])
            for sp in self._candidates(ms)
            if sp.timestamps and series_matches(sp.name, sp.labels, ms)
        ]

    def write(self, samples: Sequence[Sample], default_ts_ms: int) -> WriteResult:
        raise StoreError("a prefetched store is read-only")

    def write_metadata(self, metas: Iterable[MetricMeta]) -> None:
        raise StoreError("a prefetched store is read-only")

    def metadata(self) -> dict[str, MetricMeta]:
        return {}

    def compact(self, now_ms: int) -> None:
        """Nothing to compact."""

    def close(self) -> None:
        """Nothing to release."""


def _reach_ms(expr: Expr, lookback_ms: int) -> int:
    """How far before the evaluation time any selector of ``expr`` reads."""
    reach = 0
    for node in expr.walk():
        if isinstance(node, MatrixSelector):
            reach = max(reach, node.selector.offset_ms + node.range_ms)
        elif isinstance(node, VectorSelector):
            reach = max(reach, node.offset_ms + lookback_ms)
    return reach


def _fetch_matchers(exprs: Sequence[Expr]) -> tuple[list[Matcher], set[str] | None]:
    """Matchers for the one store read, and the metric names to keep (None: all)."""
    names: set[str] = set()
    for e in exprs:
        for sel in e.selectors():
            name = sel.metric_name
            if name is None:
                return [], None
            names.add(name)
    if len(names) == 1:
        return [Matcher("__name__", "=", next(iter(names)))], None
    if len(names) <= _NAME_REGEX_MAX:
        return [Matcher("__name__", "=~", "|".join(re.escape(n) for n in sorted(names)))], None
    return [], names


def _read(
    store: MetricStore, exprs: Sequence[Expr], at_ms: int, reach_ms: int
) -> list[SeriesPoints]:
    matchers, keep = _fetch_matchers(exprs)
    got = store.select(matchers, at_ms - reach_ms, at_ms)
    return got if keep is None else [sp for sp in got if sp.name in keep]


def query_many(
    store: MetricStore, queries: Sequence[str | Expr], at_ms: int, *, lookback_ms: int = 300_000
) -> list[QueryResult]:
    """Instant results of every query at ``at_ms``, reading the store once.

    Equivalent to ``[Engine(store, lookback_ms=...).instant(q, at_ms) for q in queries]``.
    Every series the queries can touch is read over the widest window any of them needs;
    when the store answers that with rollup buckets (the window reaches past raw
    retention) the queries are regrouped by window width and read once per group, so the
    store picks the same resolution for each query as it would for the query alone.
    Identical queries are evaluated once.
    """
    exprs = [_parse(q) if isinstance(q, str) else q for q in queries]
    keys = [q if isinstance(q, str) else str(q) for q in queries]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(exprs):
        groups[_reach_ms(e, lookback_ms)].append(i)
    if not groups:
        return []
    widest = max(groups)
    got = _read(store, exprs, at_ms, widest)
    reads: list[tuple[list[SeriesPoints], int, list[int]]] = []
    if all(sp.resolution == 0 for sp in got):  # raw for the widest, so raw for every group
        reads = [(got, at_ms - widest, [i for idxs in groups.values() for i in idxs])]
    else:
        for reach, idxs in groups.items():
            part = _read(store, [exprs[i] for i in idxs], at_ms, reach)
            res_ms = max((sp.resolution for sp in part), default=0) * 1000
            if res_ms:  # the engine widens windows to whole buckets: read those too
                reach += 2 * res_ms
                part = _read(store, [exprs[i] for i in idxs], at_ms, reach)
            reads.append((part, at_ms - reach, idxs))
    out: list[QueryResult | None] = [None] * len(exprs)
    done: dict[str, QueryResult] = {}
    for points, since, idxs in reads:
        prefetched = PrefetchedStore(points, since_ms=since, fallback=store)
        engine = Engine(prefetched, lookback_ms=lookback_ms)
        done.clear()
        for i in idxs:
            key = keys[i]
            if key not in done:
                done[key] = engine.instant(exprs[i], at_ms)
            out[i] = done[key]
    return [r for r in out if r is not None]


def observations(result: QueryResult) -> dict[Labels, float]:
    """An instant result as the state machine's input: ``{series key: value}``.

    Keyed as the runner keys it (:func:`~signalbox.monitors.replay.series_key`): labels
    without the metric name, the first of two series with equal labels kept.
    """
    if result.result_type == "scalar":
        return {} if result.scalar is None else {(): result.scalar}
    out: dict[Labels, float] = {}
    for s in result.vector:
        out.setdefault(series_key(s.metric), s.value)
    return out


def monitor_query(monitor: Monitor) -> str:
    """The query whose value a monitor compares; ValueError for checks that have none."""
    check = monitor.check
    if isinstance(check, ThresholdCheck):
        return check.query
    if isinstance(check, QueueCheck) or (isinstance(check, StaleCheck) and check.spool_file):
        return check.selector
    raise ValueError(
        f"monitor {monitor.name!r} ({monitor.kind}) is not a query: evaluate it on its own"
    )


def evaluate_many(
    monitors: Sequence[Monitor],
    store: MetricStore,
    at_ms: int,
    prev: Mapping[str, Mapping[Labels, SeriesState]],
    *,
    lookback_ms: int = 300_000,
) -> dict[str, VectorResult]:
    """One evaluation pass of query-based monitors: one store read, then the state machine.

    ``prev`` holds each monitor's series states from the pass before (by monitor name).
    Raises ValueError for a monitor without a query (a plugin or a metric staleness check).
    """
    queries = [monitor_query(m) for m in monitors]
    results = query_many(store, queries, at_ms, lookback_ms=lookback_ms)
    return {
        m.name: evaluate_vector(m, prev.get(m.name, {}), observations(r), at_ms)
        for m, r in zip(monitors, results, strict=True)
    }
