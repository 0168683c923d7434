"""Where a subquery's inner steps fall, and its result as points a range kernel reads.

``expr[range:step]`` evaluates ``expr`` at every multiple of ``step`` in absolute time
(Prometheus aligns the inner steps to the epoch, not to the query's start, so the same
subquery gives the same points whichever query or step it sits in) from the first such
multiple at or after ``first - offset - range`` through ``last - offset``; the outer
function then reads, at each of its own steps ``t``, the inner points in
``(t - offset - range, t - offset]``. The fetch (:mod:`signalbox.query.fetch`) and the
engine both call :func:`inner_grid`, so the data read is the data evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalbox.metrics.store import SeriesPoints
from signalbox.query.ast import At, Subquery
from signalbox.query.values import Metric, StepSeries

DEFAULT_STEP_MS = 60_000
"""The step of ``expr[range:]``. Prometheus uses its global ``evaluation_interval`` here
(1m unless configured), for instant and range queries alike: not the query's own step.
signalbox has no evaluation interval of its own, so it uses Prometheus' default, 1m."""


@dataclass(frozen=True, slots=True)
class Grid:
    """The step times an expression is evaluated at: ``first``, ``first + step``, ...
    through ``last`` (``step`` 0: the one time ``first``), in a query over
    ``[start_ms, end_ms]`` (what ``@ start()`` and ``@ end()`` name)."""

    first: int
    last: int
    step: int
    start_ms: int
    end_ms: int

    def steps(self) -> list[int]:
        if self.step <= 0:
            return [self.first]
        return list(range(self.first, self.last + 1, self.step))

    def pinned(self, at: At | None) -> Grid:
        """The grid under an ``@``: the one time it names (unchanged without one)."""
        if at is None:
            return self
        t = at.resolve(self.start_ms, self.end_ms)
        return Grid(t, t, 0, self.start_ms, self.end_ms)


def inner_grid(sq: Subquery, outer: Grid) -> Grid | None:
    """The inner steps of ``sq`` read from ``outer``'s steps; None when there are none
    (a range shorter than the step can fall between two multiples of it)."""
    grid = outer.pinned(sq.at)
    step = sq.step_ms or DEFAULT_STEP_MS
    lo = grid.first - sq.offset_ms - sq.range_ms
    first = -(-lo // step) * step  # the first multiple of step at or after lo
    last = grid.last - sq.offset_ms
    if first > last:
        return None
    return Grid(first, last - (last - first) % step, step, outer.start_ms, outer.end_ms)


def as_points(metric: Metric, steps: list[int], values: list[float | None]) -> SeriesPoints:
    """One inner result series as raw points (resolution 0) at the inner steps where it has
    a value: what :mod:`signalbox.query.rangefuncs` kernels take."""
    name = next((v for k, v in metric if k == "__name__"), "")
    labels = tuple(p for p in metric if p[0] != "__name__")
    ts = [t for t, v in zip(steps, values, strict=True) if v is not None]
    vs = [v for v in values if v is not None]
    return SeriesPoints(name, labels, ts, vs)


def inner_series(series: list[StepSeries], steps: list[int]) -> list[tuple[Metric, SeriesPoints]]:
    """Every inner result series that has a value somewhere, with its labels."""
    return [
        (s.metric, as_points(s.metric, steps, s.values))
        for s in series
        if s.values.count(None) != len(s.values)
    ]
