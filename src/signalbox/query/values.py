"""What the engine computes with, and what it hands back.

Inside the engine a vector is evaluated for *all* steps of a query at once: each series
carries one value slot per step (None where it has no sample), so a range query over
11,520 steps is a handful of list comprehensions rather than 11,520 tree walks. Callers
only ever see :class:`QueryResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from signalbox.query.promjson import result_to_prometheus

Metric = tuple[tuple[str, str], ...]
"""Label pairs sorted by name, ``__name__`` included while the metric name is kept."""

ResultType = Literal["vector", "scalar", "matrix", "string"]


@dataclass(slots=True)
class StepSeries:
    """One series of an instant vector across every evaluation step."""

    metric: Metric
    values: list[float | None]


def drop_name(metric: Metric) -> Metric:
    return tuple(p for p in metric if p[0] != "__name__")


def format_metric(metric: Metric) -> str:
    """``name{a="1"}`` for messages."""
    name = ""
    inner: list[str] = []
    for k, v in metric:
        if k == "__name__":
            name = v
        else:
            inner.append(f'{k}="{v}"')
    return f"{name}{{{', '.join(inner)}}}"


class VectorSample(NamedTuple):
    """One element of an instant vector: labels (``__name__`` when kept) and value."""

    metric: dict[str, str]
    value: float


class MatrixSeries(NamedTuple):
    """One series of a range query result: labels and ``(timestamp_ms, value)`` points."""

    metric: dict[str, str]
    points: list[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The result of :meth:`Engine.instant` or :meth:`Engine.range`.

    Exactly one of ``vector`` / ``matrix`` / ``scalar`` / ``string`` carries data, per
    ``result_type`` ("string": an instant query that is a string literal, as Prometheus).
    ``at_ms`` is the evaluation time of an instant query (None for range queries).
    Series are sorted by their labels so output is stable. ``warnings`` say where the answer
    is an estimate (read from rollup buckets that do not answer it exactly), as
    Prometheus' API ``warnings`` do: nothing approximate is silent.
    """

    result_type: ResultType
    vector: list[VectorSample] = field(default_factory=list)
    matrix: list[MatrixSeries] = field(default_factory=list)
    scalar: float | None = None
    string: str | None = None
    at_ms: int | None = None
    warnings: tuple[str, ...] = ()

    def to_prometheus(self) -> dict[str, Any]:
        """The ``data`` object of the Prometheus HTTP API (what Grafana reads)."""
        return result_to_prometheus(self)
