"""``metric``: closed while a PromQL query over signalbox's own metric store is past a bound.

Any series the collectors store can hold work back: ``metric("rate(http_requests_total[1m])",
below=500)`` defers the batch jobs while live traffic is high (the seed's "current live
traffic being high"), ``metric("avg(disk_free_ratio)", above=0.1)`` while a disk fills.

- ``below=X``: open while every value of the result is below ``X``; closes when one
  reaches ``X`` and reopens once all are below the low mark (``X * low``, or give
  ``below=(X, LOW)``).
- ``above=X``: open while every value is above ``X``; closes when one falls to ``X`` and
  reopens once all are above ``X / low`` (or give ``above=(X, REOPEN)``).
- **No data closes the gate** (``no_data="closed"``, the default): a query that returns
  nothing is as likely a collector that stopped, a renamed metric or a typo as a quiet
  system, and a gate fails closed. Pass ``no_data="open"`` for a metric that is absent
  when all is well (an error counter that only exists once something failed).

The query runs through the same engine as monitors and ``signalbox query``, evaluated at
the current time with the engine's lookback (5 minutes, as Prometheus).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from signalbox.gates.base import Decision, Gate
from signalbox.gates.hysteresis import DEFAULT_LOW_RATIO, Limit, fmt, judge, max_limit, min_limit
from signalbox.metrics.samples import format_series

if TYPE_CHECKING:
    from signalbox.config import Settings
    from signalbox.query import Engine

__all__ = ["MetricGate", "metric"]

Mark = float | tuple[float, float] | list[float]


class MetricGate(Gate):
    """See :func:`metric`."""

    def __init__(
        self,
        query: str,
        limits: list[Limit],
        *,
        no_data: Literal["closed", "open"] = "closed",
        engine: Engine | None = None,
        settings: Settings | None = None,
        now: Callable[[], float] = time.time,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        from signalbox.query import parse_expr

        parse_expr(query)  # a query we cannot run is refused now, not at every probe
        if no_data not in ("closed", "open"):
            raise ValueError(f"no_data must be 'closed' or 'open', got {no_data!r}")
        super().__init__(name or f"metric:{query}", **kwargs)
        self.query = query
        self.limits = limits
        self.no_data = no_data
        self._engine = engine
        self._settings = settings
        self._now = now
        self._tripped: frozenset[str] = frozenset()

    def _get_engine(self) -> Engine:
        if self._engine is None:  # first probe: the store of the signalbox.toml in use
            from signalbox.config import load_settings
            from signalbox.runtime import open_metric_store, query_engine

            settings = self._settings or load_settings()
            self._engine = query_engine(open_metric_store(settings))
        return self._engine

    def probe(self) -> Decision:
        result = self._get_engine().instant(self.query, int(self._now() * 1000))
        values: dict[str, float] = {}
        if result.result_type == "scalar" and result.scalar is not None:
            values[self.query] = result.scalar
        elif result.result_type == "vector":
            for s in result.vector:
                labels = dict(s.metric)
                metric_name = labels.pop("__name__", "")
                key = format_series(metric_name, tuple(sorted(labels.items())))
                values[key or self.query] = s.value
        else:
            raise ValueError(
                f"query returns a {result.result_type}, not a number or an instant vector"
            )
        reading: dict[str, Any] = {"query": self.query, "values": values}
        if not values:
            if self.no_data == "open":
                return self.opened("query returned no data (no_data = open)", reading)
            return self.closed(
                f"{self.query} returned no data (a gate fails closed; no_data='open' to allow)",
                reading,
            )
        many = len(self.limits) > 1  # keys must tell a series' two limits apart
        checks = [
            (f"{key} ({lim.name})" if many else key, lim, v)
            for key, v in values.items()
            for lim in self.limits
        ]
        verdict = judge(checks, self._tripped)
        self._tripped = verdict.tripped
        if verdict.open:
            return self.opened(_describe(self.limits), reading)
        return self.closed("; ".join(verdict.reasons), reading)


def _describe(limits: list[Limit]) -> str:
    parts = [
        f"below {fmt(lim.close_at)}" if lim.kind == "max" else f"above {fmt(lim.close_at)}"
        for lim in limits
    ]
    return "every value " + " and ".join(parts)


def metric(
    query: str,
    *,
    below: Mark | None = None,
    above: Mark | None = None,
    low: float = DEFAULT_LOW_RATIO,
    no_data: Literal["closed", "open"] = "closed",
    engine: Engine | None = None,
    settings: Settings | None = None,
    now: Callable[[], float] = time.time,
    name: str | None = None,
    interval: float | None = None,
    delay: float | None = None,
) -> MetricGate:
    """A gate open while ``query``'s every value is below ``below`` (and/or above ``above``).

    Args:
        query: PromQL (the subset :mod:`signalbox.query` supports); refused at once when
            it does not parse.
        below: the ceiling: closes when a value reaches it; number or ``(high, low)``.
        above: the floor: closes when a value falls to it; number or ``(floor, reopen)``.
        low: the low mark as a fraction (``below * low``; ``above / low``).
        no_data: ``"closed"`` (default) or ``"open"`` when the query returns nothing.
        engine: the query engine to use; default: the store of the ``signalbox.toml``
            in use (``settings``, else found as the CLI finds it), opened at the first probe.
        now: wall-clock time source for the evaluation time (tests pass a frozen clock).
    """
    limits: list[Limit] = []
    if below is not None:
        limits.append(max_limit("below", below, low))
    if above is not None:
        if isinstance(above, (tuple, list)):
            if len(above) != 2:
                raise ValueError(f"above: expected a number or [floor, reopen], got {above!r}")
            limits.append(min_limit("above", float(above[0]), float(above[1])))
        else:
            floor = float(above)
            limits.append(min_limit("above", floor, floor / low if floor > 0 else floor))
    if not limits:
        raise ValueError("metric() needs below= or above=")
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return MetricGate(
        query,
        limits,
        no_data=no_data,
        engine=engine,
        settings=settings,
        now=now,
        name=name,
        **kwargs,
    )
