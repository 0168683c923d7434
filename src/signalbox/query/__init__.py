"""PromQL, the subset users need most, over signalbox's metric store.

One engine serves the CLI (``signalbox query``), the HTTP API (``/api/v1/query`` and
``/api/v1/query_range`` in Prometheus' response shape), monitors and the dashboard::

    from signalbox.query import Engine, parse_expr

    expr = parse_expr("sum by (shard) (rate(http_requests_total[5m]))")  # QueryError if not
    engine = Engine(store, lookback_ms=300_000)
    engine.instant(expr, at_ms).vector            # [(metric, value), ...]
    engine.range(expr, start_ms, end_ms, step_ms).to_prometheus()

Anything outside the subset raises :class:`~signalbox.exceptions.QueryError` naming the
construct and its position, never a silently different reading.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalbox.query.ast import (
        Aggregation,
        BinaryExpr,
        Call,
        Expr,
        Matching,
        MatrixSelector,
        NumberLiteral,
        UnaryExpr,
        VectorSelector,
        selectors,
    )
    from signalbox.query.engine import Engine
    from signalbox.query.parse import parse_expr
    from signalbox.query.promjson import format_value
    from signalbox.query.values import MatrixSeries, QueryResult, VectorSample

# Imported on first use (PEP 562): ``collect --once`` from cron reads ``[query]`` through
# signalbox.query.settings and must not pay for the parser and engine it never runs.
_HOME = {
    **dict.fromkeys(
        (
            "Aggregation",
            "BinaryExpr",
            "Call",
            "Expr",
            "Matching",
            "MatrixSelector",
            "NumberLiteral",
            "UnaryExpr",
            "VectorSelector",
            "selectors",
        ),
        "signalbox.query.ast",
    ),
    "Engine": "signalbox.query.engine",
    "parse_expr": "signalbox.query.parse",
    "format_value": "signalbox.query.promjson",
    "MatrixSeries": "signalbox.query.values",
    "QueryResult": "signalbox.query.values",
    "VectorSample": "signalbox.query.values",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'signalbox.query' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "Aggregation",
    "BinaryExpr",
    "Call",
    "Engine",
    "Expr",
    "Matching",
    "MatrixSelector",
    "MatrixSeries",
    "NumberLiteral",
    "QueryResult",
    "UnaryExpr",
    "VectorSample",
    "VectorSelector",
    "format_value",
    "parse_expr",
    "selectors",
]
