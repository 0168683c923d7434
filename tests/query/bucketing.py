"""A plain-Python reference for rollup buckets: what every field of
:class:`~signalbox.metrics.store.SeriesPoints` must hold for a tier, computed straight from the
samples (:func:`bucketize`) and from a finer tier (:func:`merge`, the way a 5m tier is built
from the 1m tier). The kernels' property tests read buckets from here, and the SQL store's
rollups are checked against the same two functions, so "exact" means one thing everywhere.

Conventions beyond the store's contract: a bucket of one sample has ``prev_ts`` 0 and
``prevs`` 0.0; ``counts`` are floats; NaN compares false as in Go (a drop ``b < a`` never
involves a NaN).
"""

from __future__ import annotations

import math
from itertools import groupby, pairwise

from signalbox.metrics.store import POINT_COLUMNS, SeriesPoints
from signalbox.query.kahan import kahan_sum

_STAT_COLUMNS = tuple(c for c in POINT_COLUMNS if c not in ("timestamps", "values"))


def _end(ts_ms: int, res_ms: int) -> int:
    """The end ``E`` (a multiple of ``res_ms``) of the bucket ``(E - res, E]`` holding ``ts_ms``."""
    return -(-ts_ms // res_ms) * res_ms


def _nan_min(xs: list[float]) -> float:
    real = [x for x in xs if x == x]
    return min(real) if real else math.nan


def _nan_max(xs: list[float]) -> float:
    real = [x for x in xs if x == x]
    return max(real) if real else math.nan


def _changed(a: float, b: float) -> bool:
    return b != a and not (a != a and b != b)


def _empty(like: SeriesPoints, resolution_s: int) -> SeriesPoints:
    out = SeriesPoints(like.name, like.labels, resolution=resolution_s)
    for n in _STAT_COLUMNS:
        setattr(out, n, [])
    return out


def _append(out: SeriesPoints, **row: float) -> None:
    for n, v in row.items():
        getattr(out, n).append(v)


def bucketize(raw: SeriesPoints, resolution_s: int) -> SeriesPoints:
    """Raw samples (``resolution == 0``) grouped into buckets ``(E - res, E]``, every
    statistic computed from the bucket's own samples."""
    assert raw.resolution == 0, "bucketize reads raw samples"
    res_ms = resolution_s * 1000
    out = _empty(raw, resolution_s)
    points = list(zip(raw.timestamps, raw.values, strict=True))
    for _, group in groupby(points, key=lambda p: _end(p[0], res_ms)):
        ts, vs = map(list, zip(*group, strict=True))
        n = len(vs)
        pairs = list(pairwise(vs))
        xs = [(t - ts[0]) / 1000.0 for t in ts]
        total = kahan_sum(vs)
        mean = total / n
        m2 = math.fsum((v - mean) ** 2 for v in vs) if math.isfinite(mean) else math.nan
        _append(
            out,
            timestamps=ts[-1],
            values=vs[-1],
            first_ts=ts[0],
            firsts=vs[0],
            prev_ts=ts[-2] if n > 1 else 0,
            prevs=vs[-2] if n > 1 else 0.0,
            mins=_nan_min(vs),
            maxs=_nan_max(vs),
            sums=total,
            counts=float(n),
            drops=math.fsum(a for a, b in pairs if b < a),
            resets=sum(1 for a, b in pairs if b < a),
            changes=sum(1 for a, b in pairs if _changed(a, b)),
            sx=math.fsum(xs),
            sxx=math.fsum(x * x for x in xs),
            sxy=kahan_sum([x * v for x, v in zip(xs, vs, strict=True)]),
            m2=m2,
        )
    return out


def merge(buckets: SeriesPoints, resolution_s: int) -> SeriesPoints:
    """Coarser buckets from finer ones: regression sums shifted to each coarse bucket's first
    sample, ``m2`` by Chan's combination, and the pairs across fine buckets (last of one,
    first of the next) added to drops, resets and changes."""
    assert buckets.resolution and resolution_s % buckets.resolution == 0
    res_ms = resolution_s * 1000
    out = _empty(buckets, resolution_s)
    cols = {n: getattr(buckets, n) for n in ("timestamps", "values", *_STAT_COLUMNS)}
    for _, group in groupby(
        range(len(buckets.timestamps)), key=lambda i: _end(cols["timestamps"][i], res_ms)
    ):
        ix = list(group)
        c = {n: [col[i] for i in ix] for n, col in cols.items()}
        first, last = ix[0], ix[-1]
        n = math.fsum(c["counts"])
        # the pairs across fine buckets: (last of j - 1, first of j)
        cross = list(zip(c["values"][:-1], c["firsts"][1:], strict=True))
        shifts = [(t - cols["first_ts"][first]) / 1000.0 for t in c["first_ts"]]
        total = kahan_sum(c["sums"])
        mean = total / n
        if cols["counts"][last] > 1:
            prev_ts, prev = cols["prev_ts"][last], cols["prevs"][last]
        elif len(ix) > 1:
            prev_ts, prev = c["timestamps"][-2], c["values"][-2]
        else:
            prev_ts, prev = 0, 0.0
        spread = [k * (s / k - mean) ** 2 for s, k in zip(c["sums"], c["counts"], strict=True)]
        _append(
            out,
            timestamps=cols["timestamps"][last],
            values=cols["values"][last],
            first_ts=cols["first_ts"][first],
            firsts=cols["firsts"][first],
            prev_ts=prev_ts,
            prevs=prev,
            mins=_nan_min(c["mins"]),
            maxs=_nan_max(c["maxs"]),
            sums=total,
            counts=n,
            drops=math.fsum([*c["drops"], *(a for a, b in cross if b < a)]),
            resets=sum(c["resets"]) + sum(1 for a, b in cross if b < a),
            changes=sum(c["changes"]) + sum(1 for a, b in cross if _changed(a, b)),
            sx=math.fsum(sx + k * d for sx, k, d in zip(c["sx"], c["counts"], shifts, strict=True)),
            sxx=math.fsum(
                sxx + 2 * d * sx + k * d * d
                for sxx, sx, k, d in zip(c["sxx"], c["sx"], c["counts"], shifts, strict=True)
            ),
            sxy=kahan_sum(
                [sxy + d * s for sxy, s, d in zip(c["sxy"], c["sums"], shifts, strict=True)]
            ),
            m2=kahan_sum([*c["m2"], *spread]) if math.isfinite(mean) else math.nan,
        )
    return out
