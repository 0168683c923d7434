"""``max by (instance) (queue_depth)`` over a week of rollup buckets, without lists per series.

The general path reads every series' buckets into a ``SeriesPoints`` of Python lists
(unpacking packed units to tuples, a float object per bucket), finds each step's newest
bucket per series (:func:`signalbox.query.lookback.latest_at`), then reduces each group
step by step in Python: most of a 7-day ``max by`` is that. Here a selector used only as an
instant vector in a range query (not in a range, a subquery or with ``@``) is read as bucket
columns (:meth:`~signalbox.metrics.sql.store.SQLMetricStore.bucket_columns`, the points
``select`` returns, with ``stale_markers``), each step's newest bucket of every series is
one ``searchsorted`` (:func:`instant`: one series over 8 days at 1 m steps, 11,520 points,
without a tuple each), and as the operand of ``max``/``min`` each group's answer is one
reduction over the (members x steps) grid (:func:`aggregate`).

The answers are the general path's, bit for bit, warnings included: the same window and
widening as :mod:`signalbox.query.fetch` reads, the lookback widened to a bucket for a
series whose buckets a step splits (with the same warning, :mod:`signalbox.query.exactness`),
stale markers ending a series as :func:`~signalbox.query.lookback.latest_at` has them,
Python's ``max`` kept where numpy's could differ (a group holding a zero of each sign).
Anything else (a store without bucket columns, a raw window, buckets without exact
statistics, any other use of the selector) stays with ``fetch``. A property test compares
both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np
import numpy.typing as npt

from signalbox.metrics.samples import Matcher
from signalbox.metrics.store import BucketSeriesColumns, MetricReader, SeriesPoints
from signalbox.query import rawinstant
from signalbox.query.aggregate import group_key
from signalbox.query.ast import Expr, MatrixSelector, Subquery, VectorSelector
from signalbox.query.exactness import warning
from signalbox.query.fetch import FetchKey, bucket_ms, fetch_key
from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min
from signalbox.query.lookback import latest_at
from signalbox.query.subquery import Grid
from signalbox.query.values import Metric, StepSeries

OPS = frozenset({"max", "min"})
"""Aggregations answered here (whose result does not depend on the members' order)."""

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MarkedBuckets:
    """A selector's bucket columns with the stale markers in the window ``fetch`` would
    read (``select``'s ``SeriesPoints.stale``), by series id."""

    cols: BucketSeriesColumns
    stale: dict[int, list[int]]


def read(
    store: MetricReader,
    tree: Expr,
    grid: Grid,
    lookback_ms: int,
    *,
    skip: Collection[FetchKey] = (),
) -> dict[FetchKey, MarkedBuckets]:
    """The selectors of a range query (``grid``) whose every use is as an instant vector
    outside subqueries and without ``@`` (a bare selector, an operand of any function or
    operator, of a :data:`OPS` aggregation answered by :func:`aggregate`), read as bucket
    columns where the store answers them so (else left to ``fetch``). ``skip``: selectors
    read another way already (raw columns, :mod:`signalbox.query.rawselect`)."""
    bucket_columns = getattr(store, "bucket_columns", None)
    markers = getattr(store, "stale_markers", None)
    if bucket_columns is None or markers is None or grid.step == 0 or grid.last == grid.first:
        return {}
    offsets: dict[FetchKey, tuple[tuple[Matcher, ...], set[int]]] = {}
    other: set[FetchKey] = set()
    stack: list[tuple[Expr, bool]] = [(tree, False)]  # node, inside a subquery
    while stack:
        e, inside = stack.pop()
        if isinstance(e, VectorSelector):  # an instant vector: its own, or an OPS operand
            matchers = e.all_matchers()
            if inside or e.at is not None:
                other.add(fetch_key(matchers))
            else:
                offsets.setdefault(fetch_key(matchers), (matchers, set()))[1].add(e.offset_ms)
        elif isinstance(e, MatrixSelector):
            other.add(fetch_key(e.selector.all_matchers()))
        else:
            stack.extend((c, inside or isinstance(e, Subquery)) for c in e.children())
    out: dict[FetchKey, MarkedBuckets] = {}
    for key, (matchers, offs) in offsets.items():
        if key in other or key in skip:
            continue
        # fetch's window for these uses: (first - offset - lookback, last - offset], widened
        # up front by a bucket of the level the store will read; aligned as fetch aligns
        start = min(grid.first - o - lookback_ms for o in offs)
        end = max(grid.last - o for o in offs)
        align = 0
        for o in offs:
            align = gcd(align, grid.step, grid.first - o)
        res_ms = bucket_ms(store, start, grid.step, align)
        if not res_ms:
            continue  # raw samples (or a store that does not say): fetch reads them
        start = min(start, min(grid.first - o - res_ms for o in offs))
        got: BucketSeriesColumns | None = bucket_columns(
            matchers, start, end, step_ms=grid.step, aggregates=False, align_ms=align
        )
        if got is None or got.resolution * 1000 != res_ms:
            continue  # nothing there (fetch probes further back), or another tier than foreseen
        out[key] = MarkedBuckets(got, markers(got.ids.tolist(), start, end))
    return out


def _metric(name: str, labels: tuple[tuple[str, str], ...]) -> Metric:
    return tuple(sorted((("__name__", name), *labels)))


def _split(got: BucketSeriesColumns, ends: npt.NDArray[np.int64]) -> Bools:
    """Per series: does a step fall inside one of its buckets (after its first sample,
    before its last)? :func:`signalbox.query.exactness.splits` with no width."""
    n = len(got.ids)
    res = got.resolution * 1000
    if not (ends % res).any():
        return np.zeros(n, dtype=bool)  # steps on bucket ends: a bucket is never split
    out = np.zeros(n, dtype=bool)
    starts = got.starts
    for i in range(n):
        a, b = int(starts[i]), int(starts[i + 1])
        idx = np.searchsorted(got.timestamps[a:b], ends, side="right")
        inside = idx < b - a
        firsts = got.first_ts[a:b][np.where(inside, idx, 0)]
        out[i] = bool((inside & (firsts <= ends)).any())
    return out


def _picked(
    marked: MarkedBuckets,
    sel: VectorSelector,
    ends: npt.NDArray[np.int64],
    lookback_ms: int,
    warnings: set[str],
    check: Callable[[], None],
) -> tuple[npt.NDArray[np.int64], Bools]:
    """Each series' bucket picked at each end, as (positions, present), series x steps:
    what ``lookback.latest_at`` picks, markers and split buckets as the engine has them."""
    got = marked.cols
    n = len(got.ids)
    res_ms = got.resolution * 1000
    lookback = np.full(n, lookback_ms, dtype=np.int64)
    split = _split(got, ends)
    if split.any():  # a bucket spans a step: its predecessor's last is the estimate
        lookback[split] = max(lookback_ms, res_ms)
        warnings.add(warning(SeriesPoints("", (), resolution=got.resolution), sel.selector_text()))
    check()
    safe, present = rawinstant.newest(got.timestamps, got.starts, ends, lookback)
    marks = marked.stale
    for i, sid in enumerate(got.ids.tolist()):
        if sid in marks:  # markers end a series: the scalar rule, on this row
            a, b = int(got.starts[i]), int(got.starts[i + 1])
            row = latest_at(
                got.timestamps[a:b].tolist(),
                got.values[a:b].tolist(),
                ends.tolist(),
                int(lookback[i]),
                stale=marks[sid],
            )
            present[i] = [v is not None for v in row]
    return safe, present


def instant(
    marked: MarkedBuckets,
    sel: VectorSelector,
    ends: list[int],
    lookback_ms: int,
    warnings: set[str],
    check: Callable[[], None],
    *,
    times: bool = False,
) -> list[StepSeries]:
    """``sel`` at each end (each step less its offset), or with ``times`` the picked bucket's
    time in seconds: the engine's per-series answer for every series at once, series with no
    value at any end left out."""
    got = marked.cols
    if not len(got.ids):
        return []
    safe, present = _picked(
        marked, sel, np.asarray(ends, dtype=np.int64), lookback_ms, warnings, check
    )
    picked = got.timestamps[safe] / 1000.0 if times else got.values[safe]
    out: list[StepSeries] = []
    for (name, labels), vs, hs in zip(got.keys, picked.tolist(), present.tolist(), strict=True):
        vals = [v if h else None for v, h in zip(vs, hs, strict=True)]
        if vals.count(None) != len(vals):
            out.append(StepSeries(_metric(name, labels), vals))
    return out


def aggregate(
    op: str,
    marked: MarkedBuckets,
    sel: VectorSelector,
    grouping: tuple[str, ...],
    without: bool,
    steps: list[int],
    lookback_ms: int,
    warnings: set[str],
    check: Callable[[], None],
) -> list[StepSeries]:
    """``op`` by/without ``grouping`` over ``sel``'s value at each step (``got``: its bucket
    columns from :func:`read`): what ``aggregate(op, instant selector)`` answers."""
    got = marked.cols
    n = len(got.ids)
    if not n:
        return []
    ends = np.asarray(steps, dtype=np.int64) - sel.offset_ms
    safe, present = _picked(marked, sel, ends, lookback_ms, warnings, check)
    values = got.values[safe]
    # groups, in the general path's order: series sorted by labels, groups by first member
    metrics = [_metric(name, labels) for name, labels in got.keys]
    order = sorted(range(n), key=metrics.__getitem__)
    groups: dict[Metric, list[int]] = {}
    for i in order:
        groups.setdefault(group_key(metrics[i], grouping, without), []).append(i)
    out: list[StepSeries] = []
    for key, members in groups.items():
        check()
        vals = _reduce(op, values[members], present[members])
        if vals.count(None) != len(vals):
            out.append(StepSeries(key, vals))
    return out


def _reduce(op: str, values: Floats, present: Bools) -> list[float | None]:
    """``max``/``min`` of each step's present values (NaN ignored unless all are NaN; None
    where none is present), members x steps."""
    if len(values) == 1:
        return [
            v if h else None for v, h in zip(values[0].tolist(), present[0].tolist(), strict=True)
        ]
    real = present & ~np.isnan(values)
    if ((values == 0) & present).any() and (np.signbit(values) & (values == 0) & present).any():
        return _scalar(op, values, present)  # 0.0 and -0.0: Python keeps the first of equals
    fill = -np.inf if op == "max" else np.inf
    masked = np.where(real, values, fill)
    best: Floats = masked.max(axis=0) if op == "max" else masked.min(axis=0)
    anyreal = real.any(axis=0)
    best = np.where(anyreal, best, np.nan)
    has: Any = present.any(axis=0).tolist()
    return [v if h else None for v, h in zip(best.tolist(), has, strict=True)]


def _scalar(op: str, values: Floats, present: Bools) -> list[float | None]:
    reduce: Callable[[list[float]], float] = nan_ignoring_max if op == "max" else nan_ignoring_min
    cols: Any = zip(*values.tolist(), strict=True)
    has_cols: Any = zip(*present.tolist(), strict=True)
    out: list[float | None] = []
    for col, has in zip(cols, has_cols, strict=True):
        got = [v for v, h in zip(col, has, strict=True) if h]
        out.append(reduce(got) if got else None)
    return out
