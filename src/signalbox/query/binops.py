"""Binary operators over step-aligned values, with Prometheus' matching rules.

Vector/vector operators match on the label set without ``__name__`` (or on the ``on(...)``
labels, or without the ``ignoring(...)`` labels): one-to-one, or many-to-one/one-to-many
with ``group_left``/``group_right``. Anything Prometheus would reject as many-to-many, or
as needing ``group_left``, is rejected here too — at the step where it happens — rather
than silently picking one side. ``and``/``or``/``unless`` filter by the same signatures.
"""

from __future__ import annotations

from signalbox.exceptions import QueryError
from signalbox.query.ast import SET_OPERATORS, Matching
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


def _result_metric(
    many: Metric, one: Metric, op: str, matching: Matching | None, return_bool: bool
) -> Metric:
    """Prometheus' ``resultMetric``: the "many" side's labels (the left side's in a
    one-to-one match), cut to the matching labels one-to-one, with the ``group_x``
    labels copied from the "one" side (or removed where it lacks them)."""
    metric = many
    if op in ARITHMETIC or return_bool:
        metric = drop_name(metric)
    if matching is None:
        return metric
    labels = set(matching.labels)
    if matching.card == "one-to-one":
        if matching.on:
            metric = tuple(p for p in metric if p[0] in labels)
        else:
            metric = tuple(p for p in metric if p[0] not in labels)
    if matching.include:
        include = set(matching.include)
        copied = {k: v for k, v in one if k in include and v}
        metric = tuple(sorted((*(p for p in metric if p[0] not in include), *copied.items())))
    return metric


def _present(series: list[StepSeries], n: int) -> list[bool]:
    """Per step: does any of ``series`` have a value?"""
    out = [False] * n
    for s in series:
        out = [a or v is not None for a, v in zip(out, s.values, strict=True)]
    return out


def vector_vector(
    op: str,
    lhs: list[StepSeries],
    rhs: list[StepSeries],
    *,
    return_bool: bool,
    matching: Matching | None,
    pos: int,
) -> list[StepSeries]:
    """Vector/vector matching per step, as Prometheus' ``VectorBinop``: one-to-one, or
    many-to-one/one-to-many with ``group_left``/``group_right``; ``and``/``or``/``unless``
    go to :func:`set_operation`."""
    if op in SET_OPERATORS:
        return set_operation(op, lhs, rhs, matching)
    if not lhs or not rhs:
        return []
    n = len(lhs[0].values)
    card = "one-to-one" if matching is None else matching.card
    # Prometheus swaps the sides of a one-to-many match so "one" is always on the right
    many, one = (rhs, lhs) if card == "one-to-many" else (lhs, rhs)
    ones: dict[Metric, list[StepSeries]] = {}
    for s in one:
        ones.setdefault(_signature(s.metric, matching), []).append(s)
    active: list[bool] | None = None
    for sig, group in ones.items():
        if len(group) > 1:
            if active is None:  # where a side is empty at a step, nothing there is an error
                active = [a and b for a, b in zip(_present(lhs, n), _present(rhs, n), strict=True)]
            _check_unique_one_side(sig, group, active, card, pos)

    # per step: which signature (one-to-one) or (signature, result) (grouped) matched
    taken: dict[Metric | tuple[Metric, Metric], list[bool]] = {}
    out: list[StepSeries] = []
    for s in many:
        sig = _signature(s.metric, matching)
        for o in ones.get(sig, ()):
            lv, rv = (o.values, s.values) if card == "one-to-many" else (s.values, o.values)
            # a match counts where both sides have a sample, even where a comparison then
            # filters it out: Prometheus checks for duplicate matches before filtering
            hit = [a is not None and b is not None for a, b in zip(lv, rv, strict=True)]
            if not any(hit):
                continue
            vals = _combine(op, lv, rv, return_bool)
            metric = _result_metric(s.metric, o.metric, op, matching, return_bool)
            key: Metric | tuple[Metric, Metric] = sig if card == "one-to-one" else (sig, metric)
            seen = taken.get(key)
            if seen is not None:
                if any(x and y for x, y in zip(seen, hit, strict=True)):
                    raise QueryError(
                        "multiple matches for labels: many-to-one matching must be explicit "
                        "(group_left/group_right)"
                        if card == "one-to-one"
                        else "multiple matches for labels: grouping labels must ensure unique "
                        "matches",
                        pos,
                        "vector matching",
                    )
                hit = [x or y for x, y in zip(seen, hit, strict=True)]
            taken[key] = hit
            if vals.count(None) != n:
                out.append(StepSeries(metric, vals))
    return out


def _check_unique_one_side(
    sig: Metric, group: list[StepSeries], active: list[bool], card: str, pos: int
) -> None:
    """Two series of the "one" side with one signature at a step is many-to-many."""
    for i, on in enumerate(active):
        if not on:
            continue
        present = [s for s in group if s.values[i] is not None]
        if len(present) > 1:
            side = "left" if card == "one-to-many" else "right"
            raise QueryError(
                f"found duplicate series for the match group {format_metric(sig)} on the "
                f"{side} hand-side of the operation: [{format_metric(present[0].metric)}, "
                f"{format_metric(present[1].metric)}];many-to-many matching not allowed: "
                "matching labels must be unique on one side",
                pos,
                "vector matching",
            )


def set_operation(
    op: str, lhs: list[StepSeries], rhs: list[StepSeries], matching: Matching | None
) -> list[StepSeries]:
    """``and``, ``or``, ``unless``, per step, on the signature of ``on``/``ignoring`` (all
    labels but the name by default); every series keeps its own labels, name included.

    - ``a and b``: ``a``'s samples whose signature ``b`` has at that step;
    - ``a or b``: all of ``a``, and ``b``'s samples whose signature ``a`` lacks there;
    - ``a unless b``: ``a``'s samples whose signature ``b`` lacks there.
    """
    if not lhs and op != "or":
        return []
    n = len((lhs or rhs)[0].values) if (lhs or rhs) else 0
    other, keep = (lhs, rhs) if op == "or" else (rhs, lhs)
    has: dict[Metric, list[bool]] = {}
    for s in other:
        sig = _signature(s.metric, matching)
        seen = has.get(sig, [False] * n)
        has[sig] = [a or v is not None for a, v in zip(seen, s.values, strict=True)]
    out: list[StepSeries] = list(lhs) if op == "or" else []
    none = [False] * n
    for s in keep:
        there = has.get(_signature(s.metric, matching), none)
        if op == "and":
            vals = [v if h else None for v, h in zip(s.values, there, strict=True)]
        else:  # "unless", and the right side of "or": kept where the other side lacks it
            vals = [None if h else v for v, h in zip(s.values, there, strict=True)]
        if vals.count(None) != n:
            out.append(StepSeries(s.metric, vals))
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
