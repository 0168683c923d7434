"""Why ``rate``/``increase`` differ from Prometheus 2.x where a counter starts: both orders of
Prometheus' extrapolation, computed from the raw samples of the bench's data file.

``extrapolatedRate`` (``promql/functions.go``) limits the extrapolation to a window's start
two ways: to half a sample gap when the first sample is more than 1.1 gaps from the start,
and to the counter's zero point. 3.x (and signalbox) apply the 1.1-gap rule first, then the
zero point; 2.x takes the zero point first and compares *it* with 1.1 gaps, so where a
counter starts inside a window (the data's first hour) 2.x extrapolates further. 2.x windows
are also closed on the left (``[t - r, t]``). :func:`explains` says whether, at every point
where the two servers differ, Prometheus' answer is the 2.x order's and signalbox's the 3.x
order's, both from the raw samples -- so the difference is the peer's version, not an
estimate signalbox failed to warn of.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

Samples = list[tuple[float, float]]  # (seconds, value), ascending

_LINE = re.compile(r"^(\w+)\{(.*)\} (\S+) (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_QUERY = re.compile(r"^sum(?: by \((\w+)\))? ?\((rate|increase)\((\w+)\[(\d+)([mh])\]\)\)$")


def counters(om: Path, metric: str) -> dict[tuple[tuple[str, str], ...], Samples]:
    """Every series of ``metric`` in the OpenMetrics file: labels -> samples."""
    out: dict[tuple[tuple[str, str], ...], Samples] = defaultdict(list)
    prefix = metric + "{"
    with om.open() as f:
        for line in f:
            if not line.startswith(prefix):
                continue
            m = _LINE.match(line.rstrip("\n"))
            if m is None:
                continue
            labels = tuple(sorted(_LABEL.findall(m.group(2))))
            out[labels].append((float(m.group(4)), float(m.group(3))))
    return out


def extrapolated(
    samples: Samples, t: float, range_s: float, *, v2: bool, per_second: bool
) -> float | None:
    """``rate``/``increase`` of one counter at ``t``, in 2.x's order or 3.x's."""
    lo = t - range_s
    w = [(ts, v) for ts, v in samples if (ts >= lo if v2 else ts > lo) and ts <= t]
    if len(w) < 2:
        return None
    result = w[-1][1] - w[0][1]
    for (_, a), (_, b) in pairwise(w):
        if b < a:
            result += a
    to_start, to_end = w[0][0] - lo, t - w[-1][0]
    sampled = w[-1][0] - w[0][0]
    gap = sampled / (len(w) - 1)
    threshold = gap * 1.1
    zero = sampled * (w[0][1] / result) if result > 0 and w[0][1] >= 0 else math.inf
    if v2:
        to_start = min(to_start, zero)
        to_start = to_start if to_start < threshold else gap / 2
    else:
        to_start = to_start if to_start < threshold else gap / 2
        to_start = min(to_start, zero)
    to_end = to_end if to_end < threshold else gap / 2
    value = result * (sampled + to_start + to_end) / sampled
    return value / range_s if per_second else value


def explains(
    om: Path,
    expr: str,
    differing: list[tuple[tuple[tuple[str, str], ...], float, float, float]],
) -> bool | None:
    """Whether every differing point ``(labels, t, ours, Prometheus')`` of ``expr`` is
    signalbox at 3.x's order and Prometheus at 2.x's; None for an expression this does not
    model (``sum [by (label)] (rate|increase(metric[N m|h]))`` only)."""
    m = _QUERY.match(expr)
    if m is None:
        return None
    by, func, metric, n, unit = m.groups()
    range_s = int(n) * (60 if unit == "m" else 3600)
    series = counters(om, metric)
    for labels, t, ours, theirs in differing:
        want = dict(labels)
        sums = {True: 0.0, False: 0.0}
        for key, samples in series.items():
            if by is not None and dict(key).get(by) != want.get(by):
                continue
            for v2 in (True, False):
                got = extrapolated(samples, t, range_s, v2=v2, per_second=func == "rate")
                sums[v2] += got or 0.0
        if not (
            math.isclose(sums[True], theirs, rel_tol=1e-9)
            and math.isclose(sums[False], ours, rel_tol=1e-9)
        ):
            return False
    return True
