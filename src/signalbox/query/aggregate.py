"""Aggregation operators (``sum``, ``avg``, ``min``, ``max``, ``count``, ``group``, ``stddev``,
``stdvar``, ``quantile``, ``topk``, ``bottomk``, ``count_values``) over step-aligned series,
grouped ``by``/``without`` labels like Prometheus."""

from __future__ import annotations

import math
from collections.abc import Callable

from signalbox.exceptions import QueryError
from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min, quantile
from signalbox.query.kahan import kahan_mean, kahan_sum, step_sums
from signalbox.query.promjson import format_value
from signalbox.query.stepextremes import step_extremes
from signalbox.query.values import Metric, StepSeries

Values = list[float | None]


def group_key(metric: Metric, grouping: tuple[str, ...], without: bool) -> Metric:
    """The labels a series is grouped under (``without`` always drops ``__name__``)."""
    names = set(grouping)
    if without:
        return tuple(p for p in metric if p[0] not in names and p[0] != "__name__")
    return tuple(p for p in metric if p[0] in names)


def _count(vals: list[float]) -> float:
    return float(len(vals))


def _group(vals: list[float]) -> float:
    return 1.0


def stdvar(vals: list[float]) -> float:
    """Population variance by Welford's running mean, in the same order and with the same
    rounding as Prometheus (so results match it to the last bit); a NaN or Inf first
    value makes it NaN, as there."""
    first = vals[0]
    mean, acc = first, (NAN if math.isnan(first) or math.isinf(first) else 0.0)
    n = 1.0
    for f in vals[1:]:
        n += 1.0
        delta = f - mean
        mean += delta / n
        acc += delta * (f - mean)
    return acc / n


def stddev(vals: list[float]) -> float:
    return math.sqrt(stdvar(vals))


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "sum": kahan_sum,  # compensated, as Prometheus: 1e100 + 10 - 1e100 is 10
    "avg": kahan_mean,  # and finite near the float limit
    "count": _count,
    "min": nan_ignoring_min,
    "max": nan_ignoring_max,
    "group": _group,
    "stddev": stddev,
    "stdvar": stdvar,
}
NAN = math.nan


def aggregate(
    op: str,
    series: list[StepSeries],
    grouping: tuple[str, ...],
    without: bool,
    param: list[float] | str | None,
    pos: int,
) -> list[StepSeries]:
    """``op`` over ``series`` grouped by/without ``grouping``; ``param`` is the per-step
    scalar of topk/bottomk/quantile or count_values' label name."""
    if op == "count_values":
        assert isinstance(param, str)
        return count_values(param, series, grouping, without)
    groups: dict[Metric, list[StepSeries]] = {}
    for s in sorted(series, key=lambda s: s.metric):  # Welford's rounding depends on order
        groups.setdefault(group_key(s.metric, grouping, without), []).append(s)
    if op in ("topk", "bottomk"):
        assert isinstance(param, list)
        return _top(op, groups, param, pos)
    if op == "quantile":
        assert isinstance(param, list)
        return _per_step(groups, lambda i, present: quantile(param[i], present))
    reduce = _REDUCERS[op]
    single = _SINGLE.get(op)
    out: list[StepSeries] = []
    for key, members in groups.items():
        if len(members) == 1 and single is not None:
            out.append(
                StepSeries(key, [None if v is None else single(v) for v in members[0].values])
            )
        elif op == "sum":  # every step at once (kahan.step_sums: fsum mapped over the steps)
            out.append(StepSeries(key, step_sums([m.values for m in members])))
        elif (
            op in ("max", "min")
            and (picked := step_extremes([m.values for m in members], op == "max")) is not None
        ):  # every step at once where no series has a gap (query/stepextremes)
            out.append(StepSeries(key, picked))
        else:
            out.extend(_per_step({key: members}, lambda _i, present: reduce(present)))
    return out


_SINGLE: dict[str, Callable[[float], float]] = {
    "count": lambda _v: 1.0,
    "group": lambda _v: 1.0,
    "sum": lambda v: v,  # sum/avg/min/max of one value is that value
    "avg": lambda v: v,
    "min": lambda v: v,
    "max": lambda v: v,
}


def _per_step(
    groups: dict[Metric, list[StepSeries]], reduce: Callable[[int, list[float]], float]
) -> list[StepSeries]:
    """One series per group: ``reduce(step index, present values)`` where any is present."""
    out: list[StepSeries] = []
    for key, members in groups.items():
        vals: Values = []
        for i, col in enumerate(zip(*(m.values for m in members), strict=True)):
            present = [v for v in col if v is not None]
            vals.append(reduce(i, present) if present else None)
        out.append(StepSeries(key, vals))
    return out


def count_values(
    label: str, series: list[StepSeries], grouping: tuple[str, ...], without: bool
) -> list[StepSeries]:
    """How many series hold each value, per group and step: the value (formatted as
    Prometheus' ``FormatFloat(v, 'f', -1, 64)``) becomes label ``label``, replacing one of
    that name. With ``by`` the label joins the grouping; with ``without`` it is kept unless
    listed."""
    keys = tuple(grouping) if without else (*grouping, label)
    steps = len(series[0].values) if series else 0
    counts: dict[Metric, list[float | None]] = {}
    for s in sorted(series, key=lambda s: s.metric):
        base = tuple(p for p in s.metric if p[0] != label)
        for i, v in enumerate(s.values):
            if v is None:
                continue
            metric = tuple(sorted((*base, (label, format_value(v)))))
            key = group_key(metric, keys, without)
            row = counts.get(key)
            if row is None:
                row = counts[key] = [None] * steps
            row[i] = (row[i] or 0.0) + 1.0
    return [StepSeries(k, v) for k, v in counts.items()]


def _top(
    op: str, groups: dict[Metric, list[StepSeries]], ks: list[float], pos: int
) -> list[StepSeries]:
    """Keep, per group and step, the k largest (topk) or smallest (bottomk) samples.

    NaN ranks last either way; ties go to the series whose labels sort first. The kept
    series keep all their labels, ``__name__`` included.
    """
    top = op == "topk"
    out: list[StepSeries] = []
    for members in groups.values():
        members = sorted(members, key=lambda s: s.metric)
        kept: list[Values] = [[None] * len(ks) for _ in members]
        for i, k_raw in enumerate(ks):
            if k_raw != k_raw:
                raise QueryError(f"{op} parameter must be a number, got NaN", pos, "aggregation")
            k = int(min(k_raw, len(members))) if k_raw >= 1 else 0
            if k == 0:
                continue
            present = [(v, j) for j, m in enumerate(members) if (v := m.values[i]) is not None]
            if top:
                present.sort(key=lambda p: (-p[0] if p[0] == p[0] else math.inf, p[1]))
            else:
                present.sort(key=lambda p: (p[0] if p[0] == p[0] else math.inf, p[1]))
            for v, j in present[:k]:
                kept[j][i] = v
        for m, vals in zip(members, kept, strict=True):
            if vals.count(None) != len(vals):
                out.append(StepSeries(m.metric, vals))
    return out
