"""Evaluate many monitors at one instant with one read of the store.

Asking the store once per monitor costs a round trip each: with 10,000 monitors that is
10,000 SQL queries per evaluation pass. Instead, :func:`instant_many` reads every series
the queries can touch in ONE ``select`` over the widest window any of them needs, then runs
each query with the ordinary engine against that in-memory copy (:class:`PrefetchedStore`),
so every query still means exactly what it means everywhere else. Identical queries are run
once. :func:`latest_many` does the same for staleness checks (one ``latest`` read), and
:func:`evaluate_many` adds the state machine on top.

Exactness is kept by construction: the copy answers a read only when the real store would
have answered it with the same raw points (a window inside the one read, which came back
raw); anything else (a probe further back, rollups) goes to the real store.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from signalbox.metrics.samples import Labels, Matcher, series_matches
from signalbox.metrics.store import MetricReader, SeriesPoints
from signalbox.monitors.backtest.replay import series_key
from signalbox.monitors.definitions.model import Monitor, QueueCheck, StaleCheck, ThresholdCheck
from signalbox.monitors.engine.evaluate import SeriesState, VectorResult, evaluate_vector
from signalbox.query import Engine, QueryResult, parse_expr
from signalbox.query.ast import Expr, MatrixSelector, VectorSelector
from signalbox.query.prefetch import PrefetchedStore
from signalbox.query.shapes import Narrower, Widened, widen

_NAME_REGEX_MAX = 64  # above this many metric names, read every series and filter here
# Windows up to this wide are read together, over the widest of them; a longer window is
# read on its own so one monitor over a day does not make every monitor read a day.
_MERGE_REACH_MS = 3_600_000

LatestRow = tuple[str, Labels, int, float]

__all__ = [
    "LatestRow",
    "PrefetchedStore",
    "evaluate_many",
    "instant_many",
    "latest_many",
    "monitor_query",
    "observations",
    "query_many",
]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A query parsed, with what its one read must cover."""

    expr: Expr
    back_ms: int  # how far before the evaluation time its selectors read
    ahead_ms: int  # how far after it (only a negative offset, ``x offset -5m``, does)
    selectors: tuple[VectorSelector, ...]
    widened: Widened | None  # its shape, when it can share an evaluation (see .shapes)


def _plan(expr: Expr, lookback_ms: int) -> _Plan:
    back = ahead = 0
    for node in expr.walk():
        if isinstance(node, MatrixSelector):
            back = max(back, node.selector.offset_ms + node.range_ms)
            ahead = max(ahead, -node.selector.offset_ms)
        elif isinstance(node, VectorSelector):
            back = max(back, node.offset_ms + lookback_ms)
            ahead = max(ahead, -node.offset_ms)
    return _Plan(expr, back, ahead, tuple(expr.selectors()), widen(expr))


@functools.lru_cache(maxsize=100_000)  # monitors' queries repeat every pass
def _plan_text(text: str, lookback_ms: int) -> _Plan:
    return _plan(parse_expr(text), lookback_ms)


def _name_matchers(
    selectors: Sequence[VectorSelector],
) -> tuple[list[Matcher], set[str] | None]:
    """Matchers for one store read covering ``selectors``, and the names to keep (None: all).

    A single selector (however often repeated) is read with its own matchers: the read a
    query alone would make.
    """
    names: set[str] = set()
    for sel in selectors:
        name = sel.metric_name
        if name is None:
            return [], None
        names.add(name)
    if selectors and all(s == selectors[0] for s in selectors):
        return list(selectors[0].all_matchers()), None
    if len(names) == 1:
        return [Matcher("__name__", "=", next(iter(names)))], None
    if len(names) <= _NAME_REGEX_MAX:
        return [Matcher("__name__", "=~", "|".join(re.escape(n) for n in sorted(names)))], None
    return [], names


def _read(
    store: MetricReader, matchers: list[Matcher], keep: set[str] | None, start: int, end: int
) -> list[SeriesPoints]:
    got = store.select(matchers, start, end)
    return got if keep is None else [sp for sp in got if sp.name in keep]


class _Batch:
    """One :func:`instant_many` call: planned queries and their answers."""

    def __init__(self, engine: Engine, queries: Sequence[str | Expr], at_ms: int) -> None:
        self.engine, self.at_ms = engine, at_ms
        self.keys = [q if isinstance(q, str) else str(q) for q in queries]
        self.out: list[QueryResult | Exception | None] = [None] * len(queries)
        self.plans: dict[int, _Plan] = {}
        lookback = engine.lookback_ms
        for i, q in enumerate(queries):
            try:
                self.plans[i] = (
                    _plan_text(q, lookback) if isinstance(q, str) else _plan(q, lookback)
                )
            except Exception as err:  # a query that does not parse fails alone
                self.out[i] = err

    def run(self) -> list[QueryResult | Exception]:
        short: list[int] = []
        long: dict[int, list[int]] = defaultdict(list)
        for i, p in self.plans.items():
            if p.back_ms <= _MERGE_REACH_MS:
                short.append(i)
            else:
                long[p.back_ms].append(i)
        if short:
            self.unit(short, merged=True)
        for _, idxs in sorted(long.items()):
            self.unit(idxs, merged=False)
        return [r for r in self.out if r is not None]

    def unit(self, idxs: list[int], *, merged: bool) -> None:
        """Answer ``idxs`` from one read, or (rollups) by smaller reads, or one by one."""
        storeless = [i for i in idxs if not self.plans[i].selectors]
        if storeless:  # vector(1), time(): nothing to read, nothing a failed read can spoil
            self.evaluate(storeless, self.engine)
            idxs = [i for i in idxs if self.plans[i].selectors]
            if not idxs:
                return
        plans = [self.plans[i] for i in idxs]
        start = self.at_ms - max(p.back_ms for p in plans)
        end = self.at_ms + max(p.ahead_ms for p in plans)
        store = self.engine.store
        matchers, keep = _name_matchers([s for p in plans for s in p.selectors])
        try:
            got = _read(store, matchers, keep, start, end)
        except Exception as e:  # the store itself fails: every query of the read does
            for i in idxs:
                self.out[i] = e
            return
        if all(sp.resolution == 0 for sp in got):
            # Raw for the widest window, so raw for every narrower one: the copy answers
            # exactly what the store would.
            pre = PrefetchedStore(
                got, since_ms=start, until_ms=end, fallback=store, fallback_matchers=matchers
            )
            self.evaluate(idxs, self._engine_over(pre), pre)
            return
        by_back: dict[int, list[int]] = defaultdict(list)
        for i in idxs:
            by_back[self.plans[i].back_ms].append(i)
        if merged and len(by_back) > 1:
            for _, group in sorted(by_back.items()):
                self.unit(group, merged=False)
            return
        self.evaluate(idxs, self.engine)  # rollups: each query reads exactly as it would alone

    def _engine_over(self, store: MetricReader) -> Engine:
        e = self.engine
        return Engine(
            store,
            lookback_ms=e.lookback_ms,
            max_points=e.max_points,
            coarsest_resolution_s=e.coarsest_resolution_s,
        )

    def evaluate(
        self, idxs: list[int], engine: Engine, shared: PrefetchedStore | None = None
    ) -> None:
        """Answer ``idxs`` with ``engine``; with ``shared`` (the read's raw points), queries
        of one shape first share one evaluation (see :mod:`signalbox.query.shapes`)."""
        first: dict[str, int] = {}
        for i in idxs:
            first.setdefault(self.keys[i], i)
        done: dict[str, QueryResult | Exception] = {}
        if shared is not None:
            done.update(self._shared(first, shared))
        for key, i in first.items():
            if key not in done:
                try:
                    done[key] = engine.instant(self.plans[i].expr, self.at_ms)
                except Exception as e:  # one query's failure is that query's answer
                    done[key] = e
        for i in idxs:
            self.out[i] = done[self.keys[i]]

    def _shared(self, first: Mapping[str, int], points: PrefetchedStore) -> dict[str, QueryResult]:
        """Answers of the queries that share their shape with others: the widened query
        runs once over the series its members select, and each member takes its part.

        A member whose part is empty, or whose group failed, is left for its own evaluation.
        """
        groups: dict[str, list[tuple[str, Widened]]] = defaultdict(list)
        for key, i in first.items():
            w = self.plans[i].widened
            if w is not None:
                groups[w.key].append((key, w))
        out: dict[str, QueryResult] = {}
        for members in groups.values():
            if len(members) < 2:
                continue
            own = points.subset(w.matchers for _, w in members)
            try:
                wide = members[0][1].expr
                narrower = Narrower(self._engine_over(own).instant(wide, self.at_ms))
            except Exception:  # each member then meets its own error, if any, on its own
                continue
            for key, w in members:
                part = narrower.part(w)
                if part is not None:
                    out[key] = part
        return out


def instant_many(
    engine: Engine, queries: Sequence[str | Expr], at_ms: int
) -> list[QueryResult | Exception]:
    """``[engine.instant(q, at_ms) for q in queries]``, reading ``engine.store`` once.

    A query that fails (does not parse, or its evaluation raises) has the exception in its
    place; when the shared read fails, every query of that read has its exception.
    Windows up to an hour are read together over the widest of them; a longer window is
    read on its own. A read answered with rollup buckets (the window reaches past raw
    retention) is split by window width, and a width still answered with rollups is
    evaluated query by query, so the store picks each query's resolution as it would for
    the query alone. Identical queries are evaluated once.
    """
    return _Batch(engine, queries, at_ms).run()


def query_many(
    store: MetricReader, queries: Sequence[str | Expr], at_ms: int, *, lookback_ms: int = 300_000
) -> list[QueryResult]:
    """Instant results of every query at ``at_ms``, reading the store once (see :func:`instant_many`).

    Equivalent to ``[Engine(store, lookback_ms=...).instant(q, at_ms) for q in queries]``,
    raising the first failure.
    """
    out: list[QueryResult] = []
    for r in instant_many(Engine(store, lookback_ms=lookback_ms), queries, at_ms):
        if isinstance(r, Exception):
            raise r
        out.append(r)
    return out


def latest_many(
    store: MetricReader, selectors: Sequence[str | VectorSelector]
) -> list[list[LatestRow] | Exception]:
    """``[store.latest(selector's matchers) for selector in selectors]`` with one ``latest`` read.

    Each answer keeps the store's order. A selector that does not parse, or is not a plain
    selector, has its exception in its place; a failed read is every selector's answer.
    """
    out: list[list[LatestRow] | Exception | None] = [None] * len(selectors)
    sels: dict[int, VectorSelector] = {}
    for i, s in enumerate(selectors):
        try:
            sel = _plan_text(s, 0).expr if isinstance(s, str) else s
        except Exception as e:
            out[i] = e
            continue
        if not isinstance(sel, VectorSelector):
            out[i] = ValueError(f"not a plain selector: {s}")
            continue
        sels[i] = sel
    if sels:
        matchers, keep = _name_matchers(list(sels.values()))
        try:
            rows = store.latest(matchers)
        except Exception as e:  # the store itself fails: every selector does
            for i in sels:
                out[i] = e
            return [r for r in out if r is not None]
        if keep is not None:
            rows = [r for r in rows if r[0] in keep]
        by_name: dict[str, list[LatestRow]] = defaultdict(list)
        for r in rows:
            by_name[r[0]].append(r)
        for i, sel in sels.items():
            ms = sel.all_matchers()
            name = sel.metric_name
            candidates = by_name.get(name, []) if name is not None else rows
            out[i] = [r for r in candidates if series_matches(r[0], r[1], ms)]
    return [r for r in out if r is not None]


def observations(result: QueryResult) -> dict[Labels, float]:
    """An instant result as the state machine's input: ``{series key: value}``.

    Keyed as the runner keys it (:func:`~signalbox.monitors.backtest.replay.series_key`): labels
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
    store: MetricReader,
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
