"""Which selectors of a range query are read as raw columns, and reading them.

A selector whose every use is the range argument of a function with a vector kernel
(``rate(x[5m])``, ``avg_over_time(x[1h] offset 1d)``, ...; :mod:`signalbox.query.vectorkernels`),
outside subqueries and without ``@``, needs no ``SeriesPoints``: the store hands over its
raw samples as arrays (:meth:`~signalbox.metrics.sql.store.SQLMetricStore.raw_columns`)
and the kernels read them as they are. Any other use of the same selector (an instant
selector, a scalar kernel, a subquery) leaves it to ``fetch``, as does a store without
that method or a window past raw retention (rollups answer, through ``select``).
"""

from __future__ import annotations

from signalbox.metrics.samples import Matcher
from signalbox.metrics.store import MetricReader, RawSeriesColumns
from signalbox.query.ast import Call, Expr, MatrixSelector, Subquery, VectorSelector
from signalbox.query.fetch import FetchKey, fetch_key
from signalbox.query.subquery import Grid
from signalbox.query.vectorkernels import KERNELS, RawColumns

MIN_STEPS = 2
"""Instant queries (one step) keep the general path: monitors' small windows gain nothing."""


def read(store: MetricReader, tree: Expr, grid: Grid) -> dict[FetchKey, RawSeriesColumns]:
    """The selectors of ``tree`` read as raw columns (possibly none), over the union of the
    windows their uses read: ``(step - offset - range, step - offset]`` for every step."""
    raw_columns = getattr(store, "raw_columns", None)
    if raw_columns is None or grid.step == 0:
        return {}
    if (grid.last - grid.first) // grid.step + 1 < MIN_STEPS:
        return {}
    spans: dict[FetchKey, tuple[tuple[Matcher, ...], int, int]] = {}
    other: set[FetchKey] = set()
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
                continue
        if isinstance(e, VectorSelector):
            other.add(fetch_key(e.all_matchers()))
        elif isinstance(e, MatrixSelector):
            other.add(fetch_key(e.selector.all_matchers()))
        else:
            stack.extend((c, inside or isinstance(e, Subquery)) for c in e.children())
    out: dict[FetchKey, RawSeriesColumns] = {}
    for key, (matchers, start, end) in spans.items():
        if key in other:
            continue
        got = raw_columns(matchers, start, end, grid.step)
        if got is not None:
            out[key] = got
    return out


def columns(got: RawSeriesColumns) -> RawColumns:
    """The kernels' view of a store's raw columns."""
    return RawColumns(got.timestamps, got.values, got.starts)
