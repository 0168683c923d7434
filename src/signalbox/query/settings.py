"""The query area's settings: ``[query]``, the limits every query over HTTP runs under.

Prometheus' flags, as one table: ``timeout`` is ``--query.timeout``, ``max_samples`` is
``--query.max-samples``, ``max_concurrency`` is ``--query.max-concurrency``. Two more are our
own: heavy queries (past ``heavy_samples``) run at most ``heavy_concurrency`` at a time, so
cheap queries and health checks stay fast while they run (see :mod:`signalbox.limits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from signalbox.limits import QueryLimits
from signalbox.section import Source, table

__all__ = ["TABLES", "query_settings"]

TABLES = ("query",)


class QueryTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    timeout: str = "2m"
    max_samples: int = 50_000_000
    max_concurrency: int = 20
    heavy_samples: int = 1_000_000
    heavy_concurrency: int = 2


def query_settings(src: Source, raw: Mapping[str, Any]) -> QueryLimits:
    """``[query]`` of the file's top-level table ``raw``, checked."""
    q = table(src, "query", raw.get("query"), QueryTable)
    timeout_s = src.duration("query.timeout", q.timeout)
    if timeout_s <= 0:
        raise src.error("query.timeout", q.timeout, "a positive duration like 30s or 2m")
    for key, value in (
        ("max_samples", q.max_samples),
        ("max_concurrency", q.max_concurrency),
        ("heavy_samples", q.heavy_samples),
        ("heavy_concurrency", q.heavy_concurrency),
    ):
        if value < 1:
            raise src.error(f"query.{key}", value, "a whole number of at least 1")
    if q.heavy_concurrency > q.max_concurrency:
        raise src.error(
            "query.heavy_concurrency",
            q.heavy_concurrency,
            f"at most query.max_concurrency ({q.max_concurrency})",
        )
    return QueryLimits(
        timeout_s=timeout_s,
        max_samples=q.max_samples,
        max_concurrency=q.max_concurrency,
        heavy_samples=q.heavy_samples,
        heavy_concurrency=q.heavy_concurrency,
    )
