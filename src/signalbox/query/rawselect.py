"""Which selectors of a range query are read as raw columns, and reading them.

A selector whose every use is the range argument of a function with a vector kernel
(``rate(x[5m])``, ``avg_over_time(x[1h] offset 1d)``, ...; :mod:`signalbox.query.vectorkernels`),
outside subqueries and without ``@``, needs no ``SeriesPoints``: the store hands over its
raw samples as arrays (:meth:`~signalbox.metrics.sql.store.SQLMetricStore.raw_columns`)
and the kernels read them as they are. Any other use of the same selector (a scalar
kernel, a subquery, ``@``) leaves it to ``fetch``, as does a store without that method or a
window past raw retention (rollups answer, through ``select``).

An instant selector (``max by (instance) (queue_depth)``) is read so too when the engine
gives its lookback: the columns over ``fetch``'s window for the selector, with the stale
markers ``select`` would attach (:class:`MarkedColumns`), and the newest sample per step
found for all series at once (:mod:`signalbox.query.rawinstant`), not a ``SeriesPoints``
of lists per series searched step by step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import gcd

import numpy as np

from signalbox.durations import format_duration
from signalbox.metrics.samples import Matcher
from signalbox.metrics.store import (
    BucketSeriesColumns,
    MetricReader,
    RawSeriesColumns,
    SeriesPoints,
)
from signalbox.query import rawinstant, vectorkernels
from signalbox.query.ast import Call, Expr, MatrixSelector, Subquery, VectorSelector
from signalbox.query.exactness import warning
from signalbox.query.fetch import FetchKey, bucket_ms, fetch_key
from signalbox.query.functions import FUNCTIONS, STATISTICS_READ
from signalbox.query.subquery import Grid
from signalbox.query.values import StepSeries
from signalbox.query.vectorkernels import BUCKET_KERNELS, KERNELS, OVER_TIME_BUCKETS, RawColumns

MIN_STEPS = 2
"""Instant queries (one step) keep the general path: monitors' small windows gain nothing."""


@dataclass(frozen=True, slots=True)
class MarkedColumns(RawSeriesColumns):
    """Raw columns of a selector also used as an instant selector: with the stale markers
    in the window ``fetch`` would read (``select``'s ``SeriesPoints.stale``), by series id."""

    stale: dict[int, list[int]]


def read(
    store: MetricReader, tree: Expr, grid: Grid, *, lookback_ms: int = 0
) -> dict[FetchKey, RawSeriesColumns | BucketSeriesColumns]:
    """The selectors of ``tree`` read as raw columns (possibly none), over the union of the
    windows their uses read: ``(step - offset - range, step - offset]`` for every step.
    ``lookback_ms``: instant selectors (outside subqueries, without ``@``) are read too,
    as :class:`MarkedColumns` over ``fetch``'s window (0: left to ``fetch``)."""
    raw_columns = getattr(store, "raw_columns", None)
    if raw_columns is None or grid.step == 0:
        return {}
    if (grid.last - grid.first) // grid.step + 1 < MIN_STEPS:
        return {}
    markers = getattr(store, "stale_markers", None)
    spans: dict[FetchKey, tuple[tuple[Matcher, ...], int, int]] = {}
    uses: dict[FetchKey, list[tuple[str, int, int]]] = {}  # (function, offset, range)
    other: set[FetchKey] = set()
    instant: set[FetchKey] = set()
    widest: dict[FetchKey, int] = {}  # fetch's start: the first step - offset - width
    stack: list[tuple[Expr, bool]] = [(tree, False)]  # node, inside a subquery
    while stack:
        e, inside = stack.pop()
        if isinstance(e, Call) and e.func in KERNELS and len(e.args) == 1:
            arg = e.args[0]
            if isinstance(arg, MatrixSelector) and not inside and arg.selector.at is None:
                sel = arg.selector
                matchers = sel.all_matchers()
                key = fetch_key(matchers)
                start = grid.first - sel.offset_ms - arg.range_ms + 1
                end = grid.last - sel.offset_ms
                _, s0, e0 = spans.get(key, (matchers, start, end))
                spans[key] = (matchers, min(s0, start), max(e0, end))
                uses.setdefault(key, []).append((e.func, sel.offset_ms, arg.range_ms))
                widest[key] = min(widest.get(key, start - 1), start - 1)
                continue
        if isinstance(e, VectorSelector):
            key = fetch_key(e.all_matchers())
            if inside or e.at is not None or not lookback_ms or markers is None:
                other.add(key)
                continue
            start = grid.first - e.offset_ms - lookback_ms
            end = grid.last - e.offset_ms
            _, s0, e0 = spans.get(key, (e.all_matchers(), start, end))
            spans[key] = (e.all_matchers(), min(s0, start), max(e0, end))
            widest[key] = min(widest.get(key, start), start)
            instant.add(key)
        elif isinstance(e, MatrixSelector):
            other.add(fetch_key(e.selector.all_matchers()))
        else:
            stack.extend((c, inside or isinstance(e, Subquery)) for c in e.children())
    out: dict[FetchKey, RawSeriesColumns | BucketSeriesColumns] = {}
    for key, (matchers, start, end) in spans.items():
        if key in other:
            continue
        if key in instant:
            assert markers is not None
            start = widest[key]  # the samples and markers select would read
            cols: RawSeriesColumns | None = raw_columns(matchers, start, end, grid.step)
            if cols is not None:  # else fetch reads it (and probes further back)
                stale: dict[int, list[int]] = markers(cols.ids.tolist(), start, end)
                out[key] = MarkedColumns(
                    cols.ids, cols.starts, cols.timestamps, cols.values, cols.keys, stale
                )
            continue
        got: RawSeriesColumns | BucketSeriesColumns | None = raw_columns(
            matchers, start, end, grid.step
        )
        if got is None:
            got = _buckets(store, matchers, uses[key], grid)
        if got is not None:
            out[key] = got
    return out


def _buckets(
    store: MetricReader,
    matchers: tuple[Matcher, ...],
    uses: list[tuple[str, int, int]],
    grid: Grid,
) -> BucketSeriesColumns | None:
    """Rollup buckets as columns where every use has a bucket kernel: the points ``fetch``
    would select for these uses (same window, statistics, alignment and widening for
    buckets coarser than a window), or None to leave the selector to it."""
    bucket_columns = getattr(store, "bucket_columns", None)
    if bucket_columns is None or any(
        f not in BUCKET_KERNELS and f not in OVER_TIME_BUCKETS for f, _, _ in uses
    ):
        return None
    start = min(grid.first - offset - width for _, offset, width in uses)
    end = max(grid.last - offset for _, offset, _ in uses)
    stats = frozenset().union(*(STATISTICS_READ.get(f, frozenset()) for f, _, _ in uses))
    align = 0
    for _, offset, width in uses:
        align = gcd(align, grid.step, grid.first - offset, width)
    agg: bool | frozenset[str] = stats if stats else False

    def select(start_ms: int) -> BucketSeriesColumns | None:
        got: BucketSeriesColumns | None = bucket_columns(
            matchers, start_ms, end, step_ms=grid.step, aggregates=agg, align_ms=align
        )
        return got

    res_ms = bucket_ms(store, start, grid.step, align)
    if res_ms:  # widened up front: one read (see fetch.bucket_ms)
        start = min(
            start,
            min(
                grid.first - offset - max(width, FUNCTIONS[f].rollup_buckets * res_ms)
                for f, offset, width in uses
            ),
        )
    got = select(start)
    if got is None:
        return None
    res_ms = got.resolution * 1000
    need = min(
        grid.first - offset - max(width, FUNCTIONS[f].rollup_buckets * res_ms)
        for f, offset, width in uses
    )
    if need < start:
        got = select(need)
    return got


def instant(
    got: MarkedColumns,
    ends: list[int],
    lookback_ms: int,
    *,
    times: bool = False,
) -> list[StepSeries]:
    """An instant selector at each end (``lookback.latest_at``'s answer for every series,
    markers honoured), or with ``times`` each picked sample's time in seconds; series with
    no value at any end left out, as the engine's per-series path leaves them."""
    ids = got.ids.tolist()
    rows = rawinstant.rows(
        got.timestamps, got.values, got.starts, ids, got.stale, ends, lookback_ms, times=times
    )
    out: list[StepSeries] = []
    for (name, labels), vals in zip(got.keys, rows, strict=True):
        if vals.count(None) != len(vals):
            out.append(StepSeries(tuple(sorted((("__name__", name), *labels))), vals))
    return out


def evaluate(
    func: str,
    got: RawSeriesColumns | BucketSeriesColumns,
    ends: list[int],
    range_ms: int,
    warnings: set[str],
    check: Callable[[], None],
) -> list[list[float | None]]:
    """``func`` over each series of ``got`` at each window ending at ``ends``; over buckets,
    with the engine's exactness rules (:mod:`signalbox.query.exactness`): a window
    narrower than a bucket is widened to ``rollup_buckets`` of them, and either that or a
    window that splits a bucket adds the estimate's warning."""
    if isinstance(got, RawSeriesColumns):
        return vectorkernels.evaluate_columns(func, columns(got), ends, range_ms, check)
    cols = bucket_columns(got, func)
    res_ms = got.resolution * 1000
    width = range_ms
    sample = SeriesPoints("", (), resolution=got.resolution)  # what a warning names
    if width < res_ms:
        width = FUNCTIONS[func].rollup_buckets * res_ms
        warnings.add(warning(sample, f"{func}(...[{format_duration(width / 1000)}])"))
    elif splits(cols, ends, width, res_ms):
        warnings.add(warning(sample, f"{func}()"))
    return vectorkernels.evaluate_columns(func, cols, ends, range_ms, check, width_ms=width)


def splits(cols: RawColumns, ends: list[int], width_ms: int, res_ms: int) -> bool:
    """:func:`signalbox.query.exactness.splits` over every series at once: does an edge
    of a window ``(end - width_ms, end]`` fall inside a bucket (after its first sample,
    before its last)?"""
    e = np.asarray(ends, dtype=np.int64)
    if width_ms % res_ms == 0 and not (e % res_ms).any():
        return False  # edges on bucket ends: a bucket (e - res, e] is never split
    assert cols.buckets is not None
    g = vectorkernels.grid(cols, ends, width_ms, width_ms)
    ends_of = np.broadcast_to(cols.starts[1:, None], g.hi.shape)
    for idx, edge in ((g.lo, e - width_ms), (g.hi, e)) if width_ms else ((g.hi, e),):
        inside = idx < ends_of  # the first bucket ending after the edge, of this series
        first = cols.buckets.first_ts[np.where(inside, idx, 0)]
        if (inside & (first <= np.broadcast_to(edge, idx.shape))).any():
            return True
    return False


def columns(got: RawSeriesColumns) -> RawColumns:
    """The kernels' view of a store's raw columns."""
    return RawColumns(got.timestamps, got.values, got.starts)


def bucket_columns(got: BucketSeriesColumns, func: str) -> RawColumns:
    """The kernels' view of a store's bucket columns, with what ``func`` combines (see
    :func:`~signalbox.query.vectorkernels.bucket_view`)."""
    return vectorkernels.bucket_view(
        func, got.timestamps, got.values, got.starts, got.first_ts, got.stats
    )
