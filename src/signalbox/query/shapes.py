"""Queries of one shape: evaluate the shape once for all of them, hand each its part.

Ten thousand monitors are usually a few queries written once per host, shard or queue:
``avg_over_time(cpu_load{host="h00042"}[5m])``. When every step of a query maps one input
series to at most one output series with the same labels (selectors, ``*_over_time``,
``rate``, element-wise math, arithmetic and comparisons with scalars), the answer for
``cpu_load{host="h00042"}`` is exactly the part of the answer for ``cpu_load`` whose
labels that selector matches, whatever other series ``cpu_load`` is given. :func:`widen`
finds that metric-wide query; the caller evaluates it once over the raw points of the
series all the queries of one shape select, and :class:`Narrower` hands each its part.

One difference remains: a selector whose own window is empty makes the engine probe
further back (for coarse rollups), which the metric-wide query may not. A part that
comes out empty is therefore not an answer: the caller evaluates that query on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from signalbox.metrics.samples import Labels, Matcher, series_matches
from signalbox.query import (
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    QueryResult,
    UnaryExpr,
    VectorSample,
    VectorSelector,
)

# Functions that map each series on its own and keep its labels (the name aside). Named
# one by one: a function added to the engine shares nothing until it is judged to qualify.
_PER_SERIES = frozenset(
    {
        *("avg_over_time", "min_over_time", "max_over_time", "sum_over_time"),
        *("count_over_time", "last_over_time", "quantile_over_time"),
        *("rate", "increase", "delta", "irate", "deriv"),
        *("abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn"),
        *("round", "clamp", "clamp_min", "clamp_max"),
    }
)


@dataclass(frozen=True, slots=True)
class Widened:
    """A query with its one selector widened to every series of ``name``.

    ``matchers`` are the original selector's (the name included): the original query's
    answer is the widened answer's series they match.
    """

    expr: Expr
    name: str
    matchers: tuple[Matcher, ...]
    key: str  # ``str(expr)``: queries with equal keys share one evaluation


def _scalar_only(e: Expr) -> bool:
    return e.type == "scalar" and not e.selectors()


def _per_series(e: Expr) -> bool:
    """Does every step below ``e`` keep series apart and their labels (name aside) as they are?"""
    if isinstance(e, VectorSelector | MatrixSelector | NumberLiteral):
        return True
    if isinstance(e, UnaryExpr):
        return _per_series(e.expr)
    if isinstance(e, BinaryExpr):
        if e.matching is not None:
            return False
        if _scalar_only(e.lhs) and e.rhs.type == "vector":
            return _per_series(e.rhs)
        if _scalar_only(e.rhs) and e.lhs.type == "vector":
            return _per_series(e.lhs)
        return False
    if isinstance(e, Call) and e.func in _PER_SERIES:
        series = [a for a in e.args if a.type in ("vector", "matrix")]
        rest = [a for a in e.args if a.type not in ("vector", "matrix")]
        return len(series) == 1 and all(map(_scalar_only, rest)) and _per_series(series[0])
    return False  # aggregations, vector/vector operators, subqueries, absent(), vector(), ...


def _swap(e: Expr, new: VectorSelector) -> Expr:
    """``e`` with its (only) vector selector replaced by ``new``."""
    if isinstance(e, VectorSelector):
        return new
    if isinstance(e, MatrixSelector):
        return replace(e, selector=new)
    if isinstance(e, UnaryExpr):
        return replace(e, expr=_swap(e.expr, new))
    if isinstance(e, BinaryExpr):
        lhs = _swap(e.lhs, new) if e.lhs.selectors() else e.lhs
        rhs = _swap(e.rhs, new) if e.rhs.selectors() else e.rhs
        return replace(e, lhs=lhs, rhs=rhs)
    if isinstance(e, Call):
        return replace(e, args=tuple(_swap(a, new) if a.selectors() else a for a in e.args))
    return e


def widen(expr: Expr) -> Widened | None:
    """The metric-wide form of ``expr``, or None when ``expr`` is not of a shape that allows it.

    It must return an instant vector, read exactly one selector naming its metric with
    ``=``, and only map series one to one (see the module docstring).
    """
    if expr.type != "vector":
        return None
    sels = expr.selectors()
    if len(sels) != 1:
        return None
    sel = sels[0]
    name = sel.metric_name
    if name is None or not _per_series(expr):
        return None
    wide = _swap(expr, VectorSelector(name, (), sel.offset_ms, sel.at))
    return Widened(wide, name, sel.all_matchers(), str(wide))


class Narrower:
    """One widened answer, indexed to hand each original query its series quickly."""

    def __init__(self, result: QueryResult) -> None:
        self.result = result
        self.labels: list[Labels] = [
            tuple(sorted((k, v) for k, v in s.metric.items() if k != "__name__"))
            for s in result.vector
        ]
        self._index: dict[str, dict[str, list[int]]] = {}

    def _by(self, label: str, value: str) -> list[int]:
        index = self._index.get(label)
        if index is None:
            index = self._index[label] = {}
            for i, labels in enumerate(self.labels):
                index.setdefault(dict(labels).get(label, ""), []).append(i)
        return index.get(value, [])

    def part(self, w: Widened) -> QueryResult | None:
        """The answer of the query ``w`` was widened from; None when it would be empty."""
        if self.result.result_type != "vector":
            return None
        candidates: range | list[int] = range(len(self.labels))
        for m in w.matchers:
            if m.op == "=" and m.label != "__name__" and m.value:
                candidates = self._by(m.label, m.value)
                break
        vector = self.result.vector
        picked = [
            VectorSample(dict(vector[i].metric), vector[i].value)
            for i in candidates
            if series_matches(w.name, self.labels[i], w.matchers)
        ]
        if not picked:
            return None
        return QueryResult("vector", vector=picked, at_ms=self.result.at_ms)
