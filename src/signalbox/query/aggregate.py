"""Aggregation operators (``sum``, ``avg``, ``min``, ``max``, ``count``, ``topk``, ``bottomk``)
over step-aligned series, grouped ``by``/``without`` labels like Prometheus."""

from __future__ import annotations

import math
from collections.abc import Callable

from signalbox.exceptions import QueryError
from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min
from signalbox.query.kahan import kahan_mean, kahan_sum
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


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "sum": kahan_sum,  # compensated, as Prometheus: 1e100 + 10 - 1e100 is 10
    "avg": kahan_mean,  # and finite near the float limit
    "count": _count,
    "min": nan_ignoring_min,
    "max": nan_ignoring_max,
}


def aggregate(
    op: str,
    series: list[StepSeries],
    grouping: tuple[str, ...],
    without: bool,
    param: list[float] | None,
    pos: int,
) -> list[StepSeries]:
    groups: dict[Metric, list[StepSeries]] = {}
    for s in series:
        groups.setdefault(group_key(s.metric, grouping, without), []).append(s)
    if op in ("topk", "bottomk"):
        assert param is not None
        return _top(op, groups, param, pos)
    reduce = _REDUCERS[op]
    out: list[StepSeries] = []
    for key, members in groups.items():
        if len(members) == 1:
            only = members[0].values
            if op == "count":
                out.append(StepSeries(key, [None if v is None else 1.0 for v in only]))
            else:  # sum/avg/min/max of one value is that value
                out.append(StepSeries(key, list(only)))
            continue
        vals: Values = []
        for col in zip(*(m.values for m in members), strict=True):
            present = [v for v in col if v is not None]
            vals.append(reduce(present) if present else None)
        out.append(StepSeries(key, vals))
    return out


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
