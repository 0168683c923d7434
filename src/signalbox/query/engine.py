"""Evaluate parsed PromQL against a :class:`~signalbox.metrics.store.MetricReader`.

Semantics follow Prometheus 3: an instant selector takes the newest sample in
``(t - lookback, t]``; a range selector takes the samples in ``(t - range, t]``; offsets
shift both and ``@`` pins ``t`` to one time for every step; a subquery evaluates its
expression at its own inner steps (:mod:`signalbox.query.subquery`) and hands the result to
a range function as points; functions and arithmetic drop ``__name__``; a comparison
without ``bool`` filters. All steps of a query are evaluated together from data fetched
once per selector (:mod:`signalbox.query.fetch`), a subquery's inner steps included.

Rollup tiers: when the store answers with buckets (``SeriesPoints.resolution > 0``), a
window narrower than the data's resolution would see no bucket at most steps, so the
lookback is widened to one bucket, ``*_over_time`` windows to one bucket and
rate-like windows to two (``increase``/``delta`` are rescaled to the range written).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache
from itertools import compress, repeat
from operator import is_not, sub

from signalbox.durations import format_duration
from signalbox.exceptions import QueryError, UsageError
from signalbox.gcpause import gc_paused
from signalbox.limits import charge, check_deadline
from signalbox.metrics.samples import Matcher
from signalbox.metrics.store import (
    BucketSeriesColumns,
    LatestColumns,
    MetricReader,
    RawSeriesColumns,
    SeriesPoints,
)
from signalbox.query import bucketselect, columnar, rawselect, vectorkernels
from signalbox.query.aggregate import aggregate, group_key
from signalbox.query.ast import (
    Aggregation,
    At,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    StringLiteral,
    Subquery,
    UnaryExpr,
    VectorSelector,
)
from signalbox.query.binops import merge_same_metric, scalar_scalar, vector_scalar, vector_vector
from signalbox.query.datefields import DATE_FIELDS, go_seconds
from signalbox.query.exactness import NEEDS_SAMPLES, holds_many, splits, warning
from signalbox.query.fetch import FetchKey, fetch, fetch_key
from signalbox.query.functions import (
    DATE_FUNCTIONS,
    FUNCTIONS,
    KEEPS_NAME,
    NAN,
    UNARY_MATH,
    go_max,
    go_min,
    round_to,
)
from signalbox.query.histogram import histogram_quantile
from signalbox.query.kernels import KERNELS
from signalbox.query.labelfuncs import label_join, label_replace
from signalbox.query.lookback import latest_at
from signalbox.query.parse import parse_expr
from signalbox.query.rangefuncs import Kernel, windows_for
from signalbox.query.subquery import Grid, inner_grid, inner_series
from signalbox.query.values import (
    MatrixSeries,
    Metric,
    QueryResult,
    StepSeries,
    VectorSample,
    drop_name,
)


class Engine:
    """Runs instant and range queries; stateless apart from its store and settings.

    Args:
        store: where series come from.
        lookback_ms: how far back an instant selector looks for the newest sample.
        max_points: refuse range queries with more steps than this per series.
        coarsest_resolution_s: the store's coarsest rollup resolution. When a selector's
            window holds no data at all, it is fetched once more reaching back two such
            buckets, so coarse rollups just outside a narrow window are still found
            (0 disables the probe, e.g. for a raw-only store).
    """

    def __init__(
        self,
        store: MetricReader,
        *,
        lookback_ms: int = 300_000,
        max_points: int = 100_000,
        coarsest_resolution_s: int = 3600,
    ) -> None:
        if lookback_ms <= 0:
            raise UsageError(f"lookback_ms must be positive, got {lookback_ms}")
        if coarsest_resolution_s < 0:
            raise UsageError(f"coarsest_resolution_s must be >= 0, got {coarsest_resolution_s}")
        self.coarsest_resolution_s = coarsest_resolution_s
        self.store = store
        self.lookback_ms = lookback_ms
        self.max_points = max_points
        self.group_cache = columnar.GroupCache()  # series' groups, kept across queries

    def instant(self, expr: Expr | str, at_ms: int) -> QueryResult:
        """Evaluate at one time: result type "vector" or "scalar" ("matrix" for a bare ``x[5m]``,
        "string" for a string literal)."""
        tree = _parse_cached(expr) if isinstance(expr, str) else expr
        if isinstance(tree, StringLiteral):
            return QueryResult("string", string=tree.value, at_ms=at_ms)
        ev = _Evaluator.for_query(self, tree, [at_ms], 0)
        if isinstance(tree, MatrixSelector | Subquery):
            matrix = (
                ev.raw_matrix(tree) if isinstance(tree, MatrixSelector) else ev.raw_subquery(tree)
            )
            return QueryResult("matrix", matrix=matrix, at_ms=at_ms, warnings=ev.notes())
        if tree.type == "scalar":
            value = ev.scalar(tree)[0]
            return QueryResult("scalar", scalar=value, at_ms=at_ms, warnings=ev.notes())
        samples = [
            VectorSample(dict(s.metric), v)
            for s in ev.vector(tree)
            if (v := s.values[0]) is not None
        ]
        samples.sort(key=lambda s: sorted(s.metric.items()))
        if isinstance(tree, Call) and tree.func in ("sort", "sort_desc"):
            _sort_by_value(samples, descending=tree.func == "sort_desc")
        elif isinstance(tree, Aggregation) and tree.op in ("topk", "bottomk"):
            _sort_top(samples, tree)
        return QueryResult("vector", vector=samples, at_ms=at_ms, warnings=ev.notes())

    def range(self, expr: Expr | str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        """Evaluate at every ``step_ms`` from ``start_ms`` through ``end_ms``: a "matrix".

        The cyclic GC is held meanwhile: a week at 1m allocates ~50k acyclic objects, and
        the full collections they set off cost a quarter of such a query (gcpause).
        """
        with gc_paused():
            return self._range(expr, start_ms, end_ms, step_ms)

    def _range(self, expr: Expr | str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        if step_ms <= 0:
            raise UsageError(f"step must be positive, got {step_ms} ms")
        if end_ms < start_ms:
            raise UsageError(f"end ({end_ms}) is before start ({start_ms})")
        points = (end_ms - start_ms) // step_ms + 1
        if points > self.max_points:
            raise UsageError(
                f"range query would compute {points} points per series (limit {self.max_points}); use a larger step"
            )
        tree = _parse_cached(expr) if isinstance(expr, str) else expr
        if tree.type in ("matrix", "string"):
            raise QueryError(
                "a range query needs a scalar or instant vector expression, got "
                + ("a range vector" if tree.type == "matrix" else "a string"),
                tree.pos,
                "type",
            )
        steps = list(range(start_ms, end_ms + 1, step_ms))
        ev = _Evaluator.for_query(self, tree, steps, step_ms, end_ms=end_ms)
        try:
            if tree.type == "scalar":
                series = [StepSeries((), list[float | None](ev.scalar(tree)))]
            else:
                series = ev.vector(tree)
        finally:
            ev.release()
        ordered = sorted(series, key=lambda s: s.metric)
        matrix = [MatrixSeries(dict(s.metric), _points(steps, s.values)) for s in ordered]
        kept = [m for m in matrix if m.points]
        return QueryResult("matrix", matrix=kept, warnings=ev.notes())


# range functions whose value depends on the step time, not only on the window's samples
_READS_STEP_TIME = frozenset({"predict_linear"})


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Expr:
    """Monitors evaluate the same few texts over and over; trees are immutable, so share them."""
    return parse_expr(text)


def _points(steps: list[int], values: list[float | None]) -> list[tuple[int, float]]:
    """``(step, value)`` where there is a value; C-level iteration, this runs per output point."""
    if None not in values:
        return list(zip(steps, values, strict=True))  # type: ignore[arg-type]
    present = map(is_not, values, repeat(None))
    return list(compress(zip(steps, values, strict=True), present))  # type: ignore[arg-type]


def _sort_by_value(samples: list[VectorSample], *, descending: bool) -> None:
    """``sort``/``sort_desc`` of an instant query: by value, NaN last either way (as
    Prometheus); ties keep the label order they arrive in, so the output is stable."""
    if descending:
        samples.sort(key=lambda s: (s.value != s.value, -s.value if s.value == s.value else 0.0))
    else:
        samples.sort(key=lambda s: (s.value != s.value, s.value if s.value == s.value else 0.0))


def _sort_top(samples: list[VectorSample], tree: Aggregation) -> None:
    """A topk/bottomk instant query answers in Prometheus' order: group by group (in the
    order of their first series by labels), each from the top (topk: largest first;
    bottomk: smallest first), NaN last; ties keep label order. ``samples`` arrive sorted
    by labels."""
    first: dict[Metric, int] = {}
    rank: list[int] = []
    for s in samples:
        key = group_key(tuple(sorted(s.metric.items())), tree.grouping, tree.without)
        rank.append(first.setdefault(key, len(first)))
    sign = -1.0 if tree.op == "topk" else 1.0
    order = sorted(
        range(len(samples)),
        key=lambda i: (
            rank[i],
            samples[i].value != samples[i].value,
            sign * samples[i].value if samples[i].value == samples[i].value else 0.0,
        ),
    )
    samples[:] = [samples[i] for i in order]


def _columnar_input(e: Aggregation, columns: dict[FetchKey, LatestColumns]) -> LatestColumns | None:
    if not columns or e.param is not None or e.op not in columnar.OPS:
        return None
    if not isinstance(e.expr, VectorSelector):
        return None
    return columns.get(fetch_key(e.expr.all_matchers()))


def _columns(engine: Engine, tree: Expr, grid: Grid) -> dict[FetchKey, LatestColumns]:
    """The selectors of an instant query read as arrays: those used only as the direct
    operand of a parameterless aggregation (``sum by (x) (sel)``), all at one time, that
    the store answers so (:meth:`~signalbox.metrics.sql.store.SQLMetricStore.latest_columns`:
    many series, a raw window). Everything else is read by ``fetch``, as always."""
    latest = getattr(engine.store, "latest_columns", None)
    if latest is None:
        return {}
    seen: dict[FetchKey, tuple[tuple[Matcher, ...], set[int | None]]] = {}
    stack: list[tuple[Expr, bool, bool]] = [(tree, False, False)]  # node, operand, in subquery
    while stack:
        e, operand, inside = stack.pop()
        if isinstance(e, VectorSelector):
            matchers = e.all_matchers()
            end: int | None = None
            if operand and not inside:
                t = e.at.resolve(grid.start_ms, grid.end_ms) if e.at is not None else grid.first
                end = t - e.offset_ms
            seen.setdefault(fetch_key(matchers), (matchers, set()))[1].add(end)
        elif isinstance(e, MatrixSelector):
            stack.append((e.selector, False, inside))
        elif isinstance(e, Subquery):
            stack.append((e.expr, False, True))
        elif isinstance(e, Aggregation):
            eligible = e.param is None and e.op in columnar.OPS
            stack.extend((c, eligible and c is e.expr, inside) for c in e.children())
        else:
            stack.extend((c, False, inside) for c in e.children())
    out: dict[FetchKey, LatestColumns] = {}
    for key, (matchers, ends) in seen.items():
        if len(ends) != 1 or None in ends:
            continue
        (at,) = ends
        assert at is not None
        got = latest(matchers, at, engine.lookback_ms)
        if got is not None:
            out[key] = got
    return out


def _metric_of(sp: SeriesPoints) -> Metric:
    return tuple(sorted((("__name__", sp.name), *sp.labels)))


class _Evaluator:
    """One query evaluation over a fixed list of step times (a subquery's inner steps are
    evaluated by a child sharing the data fetched and the warnings)."""

    def __init__(
        self,
        grid: Grid,
        data: dict[FetchKey, list[SeriesPoints]],
        lookback_ms: int,
        max_points: int,
        warnings: set[str],
        columns: dict[FetchKey, LatestColumns] | None = None,
        group_cache: columnar.GroupCache | None = None,
        raw: dict[FetchKey, RawSeriesColumns | BucketSeriesColumns] | None = None,
        instants: dict[FetchKey, bucketselect.MarkedBuckets] | None = None,
    ) -> None:
        self.grid = grid
        self.steps = grid.steps()
        self.warnings = warnings  # where the answer is an estimate (QueryResult.warnings)
        self.lookback_ms = lookback_ms
        self.max_points = max_points
        self.data = data
        self.columns = columns or {}  # selectors read as arrays (signalbox.query.columnar)
        self.group_cache = group_cache or columnar.GroupCache()
        self.raw = raw or {}  # range functions' selectors read as arrays (rawselect)
        self.instants = instants or {}  # instant selectors read as bucket columns (bucketselect)

    @classmethod
    def for_query(
        cls, engine: Engine, tree: Expr, steps: list[int], step_ms: int, end_ms: int | None = None
    ) -> _Evaluator:
        """The evaluator of a whole query: reads everything the tree needs, once.

        ``end_ms``: the query's end (``@ end()``), which need not be a step (the last step
        is the last multiple of the step from the start at or before it)."""
        end = steps[-1] if end_ms is None else end_ms
        grid = Grid(steps[0], steps[-1], step_ms if len(steps) > 1 else 0, steps[0], end)
        columns = _columns(engine, tree, grid) if len(steps) == 1 else {}
        raw = {}
        if len(steps) > 1:
            raw = rawselect.read(engine.store, tree, grid, lookback_ms=engine.lookback_ms)
        instants = bucketselect.read(engine.store, tree, grid, engine.lookback_ms, skip=set(raw))
        data = fetch(
            engine.store,
            tree,
            steps,
            step_ms,
            lookback_ms=engine.lookback_ms,
            probe_ms=2 * engine.coarsest_resolution_s * 1000,
            end_ms=end,
            skip=frozenset(columns) | frozenset(raw) | frozenset(instants),
        )
        return cls(
            grid,
            data,
            engine.lookback_ms,
            engine.max_points,
            set(),
            columns,
            engine.group_cache,
            raw,
            instants,
        )

    def child(self, grid: Grid) -> _Evaluator:
        """An evaluator over a subquery's inner steps, sharing data and warnings."""
        return _Evaluator(
            grid, self.data, self.lookback_ms, self.max_points, self.warnings, self.columns,
            self.group_cache, self.raw, self.instants,
        )  # fmt: skip

    def _ends(self, offset_ms: int, at: At | None) -> tuple[list[int], bool]:
        """Each step's window end, and whether ``@`` pins them all to one time (then
        the one end is repeated: the caller may compute once and repeat the value)."""
        if at is not None:
            t = at.resolve(self.grid.start_ms, self.grid.end_ms)
            return [t - offset_ms] * len(self.steps), True
        if not offset_ms:
            return self.steps, False
        return list(map(sub, self.steps, repeat(offset_ms))), False

    def notes(self) -> tuple[str, ...]:
        return tuple(sorted(self.warnings))

    def release(self) -> None:
        """Free the fetched points a series at a time. Dropped at once, millions of them are
        freed in one C call holding the GIL for a few hundred ms, and ``/-/healthy`` and
        every other query of the server wait; freed in a Python loop, they take turns."""
        self.columns.clear()
        self.raw.clear()
        self.instants.clear()
        data = self.data
        while data:
            _, points = data.popitem()
            while points:
                points.pop()

    def _series(self, sel: VectorSelector) -> list[SeriesPoints]:
        return [sp for sp in self.data[fetch_key(sel.all_matchers())] if sp.timestamps]

    # --- scalars ---

    def scalar(self, e: Expr) -> list[float]:
        n = len(self.steps)
        if isinstance(e, NumberLiteral):
            return [e.value] * n
        if isinstance(e, UnaryExpr):
            return [-v for v in self.scalar(e.expr)]
        if isinstance(e, BinaryExpr):
            return scalar_scalar(e.op, self.scalar(e.lhs), self.scalar(e.rhs))
        if isinstance(e, Call) and e.func == "time":
            return [t / 1000.0 for t in self.steps]
        if isinstance(e, Call) and e.func == "pi":
            return [math.pi] * n
        if isinstance(e, Call) and e.func == "scalar":
            return self._to_scalar(self.vector(e.args[0]))
        raise QueryError(f"cannot evaluate {e} as a scalar", e.pos, "type")  # parser prevents this

    def _to_scalar(self, series: list[StepSeries]) -> list[float]:
        if not series:
            return [NAN] * len(self.steps)
        out: list[float] = []
        for col in zip(*(s.values for s in series), strict=True):
            present = [v for v in col if v is not None]
            out.append(present[0] if len(present) == 1 else NAN)
        return out

    # --- vectors ---

    def vector(self, e: Expr) -> list[StepSeries]:
        """``e``'s series at every step; each node's output is charged to the query's budget
        (:mod:`signalbox.limits`), so a limit stops the work between nodes too."""
        out = self._vector(e)
        charge(len(out) * len(self.steps))
        return out

    def _vector(self, e: Expr) -> list[StepSeries]:
        if isinstance(e, VectorSelector):
            return self._instant_selector(e)
        if isinstance(e, Call):
            return self._call(e)
        if isinstance(e, Aggregation):
            cols = _columnar_input(e, self.columns)
            if cols is not None:  # the newest values of many series, as arrays
                charge(len(cols.ids) * len(self.steps))  # what the inner vector would be
                return columnar.aggregate(e.op, cols, e.grouping, e.without, self.group_cache)
            sel = e.expr
            got = None
            if isinstance(sel, VectorSelector) and e.op in bucketselect.OPS and e.param is None:
                got = self.instants.get(fetch_key(sel.all_matchers()))
            if got is not None and isinstance(sel, VectorSelector):  # buckets as arrays
                charge(len(got.cols.ids) * len(self.steps))  # what the inner vector would be
                return bucketselect.aggregate(
                    e.op, got, sel, e.grouping, e.without, self.steps, self.lookback_ms,
                    self.warnings, check_deadline,
                )  # fmt: skip
            param: list[float] | str | None = None
            if isinstance(e.param, StringLiteral):
                param = e.param.value  # count_values' label name
            elif e.param is not None:
                param = self.scalar(e.param)
            inner = self.vector(e.expr)
            out = aggregate(e.op, inner, e.grouping, e.without, param, e.pos)
            while inner:  # freed a series at a time (see release)
                inner.pop()
            return out
        if isinstance(e, UnaryExpr):
            negated = [
                StepSeries(drop_name(s.metric), [None if v is None else -v for v in s.values])
                for s in self.vector(e.expr)
            ]
            return merge_same_metric(negated, e.pos)
        if isinstance(e, BinaryExpr):
            return self._binary(e)
        raise QueryError(
            f"cannot evaluate {e} as an instant vector", e.pos, "type"
        )  # parser prevents this

    def _instant_selector(self, sel: VectorSelector, *, times: bool = False) -> list[StepSeries]:
        """The newest sample's value at each step, or with ``times`` its timestamp in
        seconds (``timestamp(sel)``: the sample's own time, not the step's)."""
        ends, pinned = self._ends(sel.offset_ms, sel.at)
        got = self.raw.get(fetch_key(sel.all_matchers()))
        if isinstance(got, rawselect.MarkedColumns) and not pinned:  # raw columns, all at once
            check_deadline()
            return rawselect.instant(got, ends, self.lookback_ms, times=times)
        buckets = self.instants.get(fetch_key(sel.all_matchers()))
        if buckets is not None and not pinned:  # bucket columns, all at once
            return bucketselect.instant(
                buckets, sel, ends, self.lookback_ms, self.warnings, check_deadline, times=times
            )
        if pinned:
            ends = ends[:1]
        out: list[StepSeries] = []
        for sp in self._series(sel):
            check_deadline()
            ts, vs = sp.timestamps, sp.values
            if times:
                vs = [t / 1000.0 for t in ts]
            lookback = self.lookback_ms
            if sp.resolution and splits(sp, ends, 0):
                # a bucket spans a step: its samples before the step are not known one by
                # one; its predecessor's last (within a bucket's length) is the estimate
                lookback = max(lookback, sp.resolution * 1000)
                self.warnings.add(warning(sp, sel.selector_text()))
            vals = latest_at(ts, vs, ends, lookback, stale=sp.stale)  # markers end a series
            if pinned:
                vals = vals * len(self.steps)
            if vals.count(None) != len(vals):
                out.append(StepSeries(_metric_of(sp), vals))
        return out

    def raw_matrix(self, ms: MatrixSelector) -> list[MatrixSeries]:
        """The samples of a bare range selector at the (single) step, as Prometheus returns them."""
        end = self._ends(ms.selector.offset_ms, ms.selector.at)[0][0]
        out: list[MatrixSeries] = []
        for sp in self._series(ms.selector):
            ts = sp.timestamps
            lo, hi = bisect_right(ts, end - ms.range_ms), bisect_right(ts, end)
            if hi > lo:
                out.append(
                    MatrixSeries(
                        dict(_metric_of(sp)), list(zip(ts[lo:hi], sp.values[lo:hi], strict=True))
                    )
                )
        out.sort(key=lambda s: sorted(s.metric.items()))
        return out

    def raw_subquery(self, sq: Subquery) -> list[MatrixSeries]:
        """A bare subquery at the (single) step: its inner points inside the window."""
        end = self._ends(sq.offset_ms, sq.at)[0][0]
        out: list[MatrixSeries] = []
        for metric, sp in self._subquery(sq):
            ts = sp.timestamps
            lo, hi = bisect_right(ts, end - sq.range_ms), bisect_right(ts, end)
            if hi > lo:
                points = list(zip(ts[lo:hi], sp.values[lo:hi], strict=True))
                out.append(MatrixSeries(dict(metric), points))
        out.sort(key=lambda s: sorted(s.metric.items()))
        return out

    def _subquery(self, sq: Subquery) -> list[tuple[Metric, SeriesPoints]]:
        """The subquery's expression at its inner steps, each series as raw points."""
        inner = inner_grid(sq, self.grid)
        if inner is None:
            return []
        count = (inner.last - inner.first) // inner.step + 1
        if count > self.max_points:
            raise UsageError(
                f"subquery {sq} would compute {count} points per series "
                f"(limit {self.max_points}); use a larger subquery step"
            )
        child = self.child(inner)
        return inner_series(child.vector(sq.expr), child.steps)

    def _binary(self, e: BinaryExpr) -> list[StepSeries]:
        if e.lhs.type == "scalar":
            result = vector_scalar(
                e.op,
                self.vector(e.rhs),
                self.scalar(e.lhs),
                scalar_left=True,
                return_bool=e.return_bool,
            )
        elif e.rhs.type == "scalar":
            result = vector_scalar(
                e.op,
                self.vector(e.lhs),
                self.scalar(e.rhs),
                scalar_left=False,
                return_bool=e.return_bool,
            )
        else:
            result = vector_vector(
                e.op,
                self.vector(e.lhs),
                self.vector(e.rhs),
                return_bool=e.return_bool,
                matching=e.matching,
                pos=e.pos,
            )
        return merge_same_metric(result, e.pos)

    def _call(self, e: Call) -> list[StepSeries]:
        name = e.func
        if name in KERNELS:
            return self._range_function(e)
        if name in UNARY_MATH:
            f = UNARY_MATH[name]
            return self._map(e, lambda v, _i: f(v))
        if name == "round":
            to = self.scalar(e.args[1]) if len(e.args) > 1 else [1.0] * len(self.steps)
            return self._map(e, lambda v, i: round_to(v, to[i]))
        if name in ("clamp", "clamp_min", "clamp_max"):
            return self._clamp(e)
        if name == "vector":
            return [StepSeries((), list[float | None](self.scalar(e.args[0])))]
        if name in ("absent", "absent_over_time"):
            return self._absent(e)
        if name in ("sort", "sort_desc"):
            # Order is a property of an instant query's output (Engine.instant); per step
            # the series are unchanged, name included, and a range query ignores it.
            return self.vector(e.args[0])
        if name == "timestamp":
            return self._timestamp(e)
        if name in DATE_FUNCTIONS:
            return self._date(e)
        if name in ("label_replace", "label_join"):
            return self._relabel(e)
        if name == "histogram_quantile":
            phi = self.scalar(e.args[0])
            return merge_same_metric(histogram_quantile(phi, self.vector(e.args[1])), e.pos)
        raise QueryError(
            f"function '{name}' cannot be evaluated here", e.pos, "function"
        )  # parser prevents this

    def _map(self, e: Call, fn: Callable[[float, int], float]) -> list[StepSeries]:
        """Apply ``fn(value, step_index)`` to every sample of the first argument."""
        out = [
            StepSeries(
                drop_name(s.metric),
                [None if v is None else fn(v, i) for i, v in enumerate(s.values)],
            )
            for s in self.vector(e.args[0])
        ]
        return merge_same_metric(out, e.pos)

    def _relabel(self, e: Call) -> list[StepSeries]:
        """``label_replace``/``label_join``: the name is kept (it may even be the target);
        two series that end up alike at one step are the "same labelset" error."""
        strings = [a.value for a in e.args[1:] if isinstance(a, StringLiteral)]
        rewrite: Callable[[Metric], Metric]
        if e.func == "label_replace":
            dst, repl, src, regex = strings
            rewrite = lambda m: label_replace(m, dst, repl, src, regex)  # noqa: E731
        else:
            dst, sep, *srcs = strings
            rewrite = lambda m: label_join(m, dst, sep, srcs)  # noqa: E731
        out = [StepSeries(rewrite(s.metric), s.values) for s in self.vector(e.args[0])]
        return merge_same_metric(out, e.pos)

    def _timestamp(self, e: Call) -> list[StepSeries]:
        """Of a selector, each picked sample's own time; of anything else, the step time
        (Prometheus: only a selector carries sample times into a function)."""
        arg = e.args[0]
        if isinstance(arg, VectorSelector):
            picked = self._instant_selector(arg, times=True)
            return merge_same_metric(
                [StepSeries(drop_name(s.metric), s.values) for s in picked], e.pos
            )
        steps = self.steps
        return self._map(e, lambda _v, i: steps[i] / 1000.0)

    def _date(self, e: Call) -> list[StepSeries]:
        """A calendar field (UTC) of each value read as Unix seconds, or of the step time."""
        field = DATE_FIELDS[e.func]
        if not e.args:
            # Go: enh.Ts / 1000, integer division truncating toward zero.
            secs = [t // 1000 if t >= 0 else -(-t // 1000) for t in self.steps]
            return [StepSeries((), [field(s) for s in secs])]
        return self._map(e, lambda v, _i: field(go_seconds(v)))

    def _clamp(self, e: Call) -> list[StepSeries]:
        n = len(self.steps)
        lows = self.scalar(e.args[1]) if e.func in ("clamp", "clamp_min") else [float("-inf")] * n
        if e.func == "clamp":
            highs = self.scalar(e.args[2])
        elif e.func == "clamp_max":
            highs = self.scalar(e.args[1])
        else:
            highs = [float("inf")] * n
        out: list[StepSeries] = []
        for s in self.vector(e.args[0]):
            vals: list[float | None] = [
                None if v is None or hi < lo else go_max(lo, go_min(hi, v))
                for v, lo, hi in zip(s.values, lows, highs, strict=True)
            ]
            if vals.count(None) != n:
                out.append(StepSeries(drop_name(s.metric), vals))
        return merge_same_metric(out, e.pos)

    def _range_function(self, e: Call) -> list[StepSeries]:
        # the range argument is last (rate(x[5m]), quantile_over_time(0.9, x[5m])) or first
        # (predict_linear(x[1h], 3600)); the other argument, if any, is a scalar
        arg = next(a for a in e.args if a.type == "matrix")
        kernel = KERNELS[e.func]
        others = [a for a in e.args if a is not arg]
        param = self.scalar(others[0]) if others else None
        keep_name = e.func in KEEPS_NAME
        if isinstance(arg, Subquery):
            ends, pinned = self._ends(arg.offset_ms, arg.at)
            sub_out: list[StepSeries] = []
            for metric, points in self._subquery(arg):
                check_deadline()
                vals = self._apply(
                    kernel, points, ends, arg.range_ms, arg.range_ms, param, pinned, e.func
                )
                if vals.count(None) != len(vals):
                    sub_out.append(StepSeries(metric if keep_name else drop_name(metric), vals))
            return sub_out if keep_name else merge_same_metric(sub_out, e.pos)
        assert isinstance(arg, MatrixSelector)
        ms = arg
        ends, pinned = self._ends(ms.selector.offset_ms, ms.selector.at)
        out: list[StepSeries] = []
        got = self.raw.get(fetch_key(ms.selector.all_matchers()))
        if got is not None:  # raw samples or buckets as arrays: the vector kernels over them
            rows = rawselect.evaluate(e.func, got, ends, ms.range_ms, self.warnings, check_deadline)
            for (name, labels), vals in zip(got.keys, rows, strict=True):
                if vals.count(None) != len(vals):
                    metric = tuple(sorted((("__name__", name), *labels)))
                    out.append(StepSeries(metric if keep_name else drop_name(metric), vals))
            return out if keep_name else merge_same_metric(out, e.pos)
        series = self._series(ms.selector)
        if not pinned and vectorkernels.worth(e.func, series, len(ends)):
            # many windows at once (signalbox.query.vectorkernels); one resolution for all
            width = self._width(e.func, series[0], ms.range_ms, ends)
            for sp in series[1:]:
                self._width(e.func, sp, ms.range_ms, ends)  # each one's warning, if any
            rows = vectorkernels.evaluate(e.func, series, ends, width, ms.range_ms, check_deadline)
            for sp, vals in zip(series, rows, strict=True):
                if vals.count(None) != len(vals):
                    metric = _metric_of(sp)
                    out.append(StepSeries(metric if keep_name else drop_name(metric), vals))
            return out if keep_name else merge_same_metric(out, e.pos)
        for sp in series:
            check_deadline()
            width = self._width(e.func, sp, ms.range_ms, ends[:1] if pinned else ends)
            vals = self._apply(kernel, sp, ends, width, ms.range_ms, param, pinned, e.func)
            if vals.count(None) != len(vals):
                metric = _metric_of(sp)
                out.append(StepSeries(metric if keep_name else drop_name(metric), vals))
        return out if keep_name else merge_same_metric(out, e.pos)

    def _width(self, func: str, sp: SeriesPoints, range_ms: int, ends: list[int]) -> int:
        """The window width ``func`` reads ``sp`` with: the range, or over buckets coarser
        than it, ``rollup_buckets`` of them (an estimate); warns where the answer is one."""
        width = range_ms
        res_ms = sp.resolution * 1000
        if res_ms and width < res_ms:  # buckets coarser than the window: widen, estimate
            width = FUNCTIONS[func].rollup_buckets * res_ms
            self.warnings.add(warning(sp, f"{func}(...[{format_duration(width / 1000)}])"))
        elif res_ms and (splits(sp, ends, width) or (func in NEEDS_SAMPLES and holds_many(sp))):
            self.warnings.add(warning(sp, f"{func}()"))
        return width

    def _apply(
        self,
        kernel: Kernel,
        sp: SeriesPoints,
        ends: list[int],
        width_ms: int,
        range_ms: int,
        param: list[float] | None,
        pinned: bool,
        func: str,
    ) -> list[float | None]:
        """``kernel`` over each step's window; under ``@`` every window is the same one,
        computed once, unless the parameter differs between steps or the function reads
        the step time itself (``predict_linear``'s intercept: Prometheus lists it among the
        functions ``@`` does not make step-invariant)."""
        n = len(ends)
        once = func not in _READS_STEP_TIME and (param is None or param.count(param[0]) == n)
        if pinned and n > 1 and once:
            one_window = windows_for(sp, ends[:1], width_ms, range_ms, self.steps[:1])
            return kernel(sp, one_window, param and param[:1]) * n
        return kernel(sp, windows_for(sp, ends, width_ms, range_ms, self.steps), param)

    def _absent(self, e: Call) -> list[StepSeries]:
        arg = e.args[0]
        if arg.type == "matrix":
            present = self._range_function(Call("count_over_time", (arg,), pos=e.pos))
            sel: VectorSelector | None = arg.selector if isinstance(arg, MatrixSelector) else None
        else:
            present = self.vector(arg)
            sel = arg if isinstance(arg, VectorSelector) else None
        vals: list[float | None] = [1.0] * len(self.steps)
        for s in present:
            vals = [None if v is not None else a for a, v in zip(vals, s.values, strict=True)]
        if vals.count(None) == len(vals):
            return []
        return [StepSeries(_absent_labels(sel), vals)]


def _absent_labels(sel: VectorSelector | None) -> Metric:
    """Labels pinned by ``=`` matchers (Prometheus: a label matched any other way is left out)."""
    if sel is None:
        return ()
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for m in sel.matchers:
        if m.label == "__name__":
            continue
        if m.op == "=" and m.label not in seen:
            labels[m.label] = m.value
        else:
            labels.pop(m.label, None)
        seen.add(m.label)
    return tuple(sorted(labels.items()))
