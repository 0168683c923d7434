"""Binary operators over step-aligned values, with Prometheus' matching rules.

Vector/vector operators match one-to-one on the label set without ``__name__`` (or on the
``on(...)`` labels, or without the ``ignoring(...)`` labels). Anything Prometheus would
reject as many-to-many or as needing ``group_left`` is rejected here too — at the step
where it happens — rather than silently picking one side.
"""

from __future__ import annotations

from signalbox.exceptions import QueryError
from signalbox.query.ast import Matching
from signalbox.query.functions import ARITHMETIC, COMPARISON
from signalbox.query.values import Metric, StepSeries, drop_name, format_metric

Values = list[float | None]


def scalar_scalar(op: str, a: list[float], b: list[float]) -> list[float]:
    """Scalar op scalar; comparisons (always ``bool`` here) give 1 or 0."""
    if op in ARITHMETIC:
        f = ARITHMETIC[op]
        return [f(x, y) for x, y in zip(a, b, strict=True)]
    c = COMPARISON[op]
    return [1.0 if c(x, y) else 0.0 for x, y in zip(a, b, strict=True)]


def vector_scalar(
    op: str, vec: list[StepSeries], sc: list[float], *, scalar_left: bool, return_bool: bool
) -> list[StepSeries]:
    """Vector op scalar (or scalar op vector when ``scalar_left``)."""
    out: list[StepSeries] = []
    if op in ARITHMETIC:
        f = ARITHMETIC[op]
        for s in vec:
            if scalar_left:
                vals: Values = [
                    None if v is None else f(k, v) for v, k in zip(s.values, sc, strict=True)
                ]
            else:
                vals = [None if v is None else f(v, k) for v, k in zip(s.values, sc, strict=True)]
            out.append(StepSeries(drop_name(s.metric), vals))
        return out
    c = COMPARISON[op]
    for s in vec:
        if return_bool:
            if scalar_left:
                vals = [
                    None if v is None else float(c(k, v)) for v, k in zip(s.values, sc, strict=True)
                ]
            else:
                vals = [
                    None if v is None else float(c(v, k)) for v, k in zip(s.values, sc, strict=True)
                ]
            out.append(StepSeries(drop_name(s.metric), vals))
            continue
        # A filter keeps the vector's own value (and name), whichever side it is on.
        if scalar_left:
            vals = [
                v if v is not None and c(k, v) else None for v, k in zip(s.values, sc, strict=True)
            ]
        else:
            vals = [
                v if v is not None and c(v, k) else None for v, k in zip(s.values, sc, strict=True)
            ]
        if vals.count(None) != len(vals):
            out.append(StepSeries(s.metric, vals))
    return out


def _signature(metric: Metric, matching: Matching | None) -> Metric:
    if matching is not None and matching.on:
        keep = set(matching.labels)
        return tuple(p for p in metric if p[0] in keep)
    drop = {"__name__", *(matching.labels if matching else ())}
    return tuple(p for p in metric if p[0] not in drop)


def _result_metric(metric: Metric, op: str, matching: Matching | None, return_bool: bool) -> Metric:
    if op in ARITHMETIC or return_bool:
        metric = drop_name(metric)
    if matching is not None:
        labels = set(matching.labels)
        if matching.on:
            metric = tuple(p for p in metric if p[0] in labels)
        else:
            metric = tuple(p for p in metric if p[0] not in labels)
    return metric


def vector_vector(
    op: str,
    lhs: list[StepSeries],
    rhs: list[StepSeries],
    *,
    return_bool: bool,
    matching: Matching | None,
    pos: int,
) -> list[StepSeries]:
    """One-to-one vector matching, per step."""
    right: dict[Metric, Values] = {}
    for s in rhs:
        sig = _signature(s.metric, matching)
        have = right.get(sig)
        if have is None:
            right[sig] = s.values
            continue
        merged: Values = []
        for a, b in zip(have, s.values, strict=True):
            if a is not None and b is not None:
                raise QueryError(
                    f"found duplicate series for the match group {format_metric(sig)} on the right hand-side "
                    "of the operation; many-to-many matching is not allowed: matching labels must be unique on one side",
                    pos,
                    "vector matching",
                )
            merged.append(b if a is None else a)
        right[sig] = merged

    taken: dict[Metric, list[bool]] = {}
    out: list[StepSeries] = []
    for s in lhs:
        sig = _signature(s.metric, matching)
        rv = right.get(sig)
        if rv is None:
            continue
        both = [a is not None and b is not None for a, b in zip(s.values, rv, strict=True)]
        seen = taken.get(sig)
        if seen is None:
            taken[sig] = both
        else:
            if any(x and y for x, y in zip(seen, both, strict=True)):
                raise QueryError(
                    f"multiple matches for labels {format_metric(sig)}: many-to-one matching must be explicit "
                    "(group_left/group_right, which are not supported)",
                    pos,
                    "vector matching",
                )
            taken[sig] = [x or y for x, y in zip(seen, both, strict=True)]
        vals = _combine(op, s.values, rv, return_bool)
        if vals.count(None) != len(vals):
            out.append(StepSeries(_result_metric(s.metric, op, matching, return_bool), vals))
    return out


def _combine(op: str, lv: Values, rv: Values, return_bool: bool) -> Values:
    if op in ARITHMETIC:
        f = ARITHMETIC[op]
        return [
            f(a, b) if a is not None and b is not None else None
            for a, b in zip(lv, rv, strict=True)
        ]
    c = COMPARISON[op]
    if return_bool:
        return [
            float(c(a, b)) if a is not None and b is not None else None
            for a, b in zip(lv, rv, strict=True)
        ]
    return [
        a if a is not None and b is not None and c(a, b) else None
        for a, b in zip(lv, rv, strict=True)
    ]


def merge_same_metric(series: list[StepSeries], pos: int) -> list[StepSeries]:
    """Join series that became identical (e.g. after dropping ``__name__``).

    They may take turns over the steps; two values for one label set at one step is the
    error Prometheus reports as "vector cannot contain metrics with the same labelset".
    """
    by_metric: dict[Metric, StepSeries] = {}
    for s in series:
        have = by_metric.get(s.metric)
        if have is None:
            by_metric[s.metric] = s
            continue
        merged: Values = []
        for a, b in zip(have.values, s.values, strict=True):
            if a is not None and b is not None:
                raise QueryError(
                    f"vector cannot contain metrics with the same labelset {format_metric(s.metric)}",
                    pos,
                    "duplicate series",
                )
            merged.append(b if a is None else a)
        by_metric[s.metric] = StepSeries(s.metric, merged)
    return list(by_metric.values())
