"""Query results in the Prometheus HTTP API shape, so Grafana's Prometheus datasource and
other Prometheus clients read our ``/api/v1/query`` and ``/api/v1/query_range`` unchanged.

Values are strings formatted like Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` (shortest
exact decimal, never exponent notation; ``NaN``, ``+Inf``, ``-Inf``) and timestamps are
seconds as a number, as Prometheus writes them.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalbox.query.values import QueryResult


def format_value(v: float) -> str:
    """A sample value as Prometheus prints it in JSON."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    text = repr(v)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def format_time(ms: int) -> int | float:
    """Milliseconds as the seconds number Prometheus puts in ``[time, "value"]`` pairs."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def result_to_prometheus(result: QueryResult) -> dict[str, Any]:
    """``{"resultType": ..., "result": ...}`` for one :class:`QueryResult`."""
    if result.result_type == "scalar":
        assert result.scalar is not None and result.at_ms is not None
        return {
            "resultType": "scalar",
            "result": [format_time(result.at_ms), format_value(result.scalar)],
        }
    if result.result_type == "string":
        assert result.string is not None and result.at_ms is not None
        return {"resultType": "string", "result": [format_time(result.at_ms), result.string]}
    if result.result_type == "vector":
        at = format_time(result.at_ms or 0)
        return {
            "resultType": "vector",
            "result": [
                {"metric": s.metric, "value": [at, format_value(s.value)]} for s in result.vector
            ],
        }
    return {
        "resultType": "matrix",
        "result": [
            {"metric": s.metric, "values": [[format_time(t), format_value(v)] for t, v in s.points]}
            for s in result.matrix
        ],
    }
