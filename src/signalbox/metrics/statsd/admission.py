"""Which StatsD lines may create state, and the account of the ones refused: pure, no I/O.

One misbehaving client (a request id in a metric name, a tag per user) must not cost every
other client its new metrics for the life of the process. Three pieces serve that:

* :class:`NewSeriesBudget` caps the series created per flush interval, in all and per
  sending address, so a flood is bounded *per interval*: existing series keep updating, and
  once the flood stops the next interval accepts new names again.
* :class:`SourceLabels` maps sending addresses to the ``source`` label of
  ``signalbox_statsd_refused_total``: the first ``max_sources`` addresses get their own
  value, later ones share ``"other"``, so the metric that reports a cardinality flood cannot
  become one (spoofed UDP source addresses cost nothing).
* :class:`Refusals` counts refused lines per (source, reason) cumulatively, for the metric,
  and per interval, so the log gets one line per source and reason per interval with the
  count, not one line per packet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from signalbox.metrics.parse.lex import LineError

__all__ = [
    "OTHER",
    "REASONS",
    "NewSeriesBudget",
    "Reason",
    "Refusals",
    "SourceLabels",
]

Reason = Literal["invalid", "new_series_budget", "max_series", "max_set_members"]
REASONS: Final[tuple[Reason, ...]] = (
    "invalid",
    "new_series_budget",
    "max_series",
    "max_set_members",
)
OTHER: Final = "other"


class NewSeriesBudget:
    """New series still allowed in the current flush interval, in all and per sender.

    Only admitted senders take an entry, so the bookkeeping is bounded by ``per_interval``
    whatever the number of addresses a flood comes from.
    """

    def __init__(self, per_interval: int, per_source: int) -> None:
        if not 0 < per_source <= per_interval:
            raise ValueError(f"need 0 < per_source ({per_source}) <= per_interval ({per_interval})")
        self.per_interval = per_interval
        self.per_source = per_source
        self.spent = 0
        self._by_source: dict[str, int] = {}

    def admit(self, sender: str) -> bool:
        """Take one new series from the budget for ``sender``; False when it is spent."""
        if self.spent >= self.per_interval:
            return False
        n = self._by_source.get(sender, 0)
        if n >= self.per_source:
            return False
        self._by_source[sender] = n + 1
        self.spent += 1
        return True

    def reset(self) -> None:
        """A new interval: the whole budget is available again."""
        self.spent = 0
        self._by_source.clear()


class SourceLabels:
    """Sender address → ``source`` label value, with at most ``max_sources`` distinct values.

    A label once given is kept for the life of the process: the counters it names are
    cumulative and must not change series.
    """

    def __init__(self, max_sources: int) -> None:
        self.max_sources = max_sources
        self._labels: dict[str, str] = {}

    def __call__(self, sender: str) -> str:
        label = self._labels.get(sender)
        if label is None:
            if len(self._labels) >= self.max_sources:
                return OTHER
            label = self._labels[sender] = sender
        return label


@dataclass(slots=True)
class _Pending:
    """Refusals of one (source, reason) within the current interval."""

    count: int
    first: str  # the first refused line's excerpt, to show what the flood looks like


class Refusals:
    """Refused lines by (source label, reason): cumulative totals and this interval's."""

    def __init__(self, labels: SourceLabels) -> None:
        self.labels = labels
        self.totals: dict[tuple[str, Reason], int] = {}
        self._interval: dict[tuple[str, Reason], _Pending] = {}

    def count(self, sender: str, reason: Reason, describe: Callable[[], str]) -> None:
        """One refused line from ``sender``; ``describe()`` gives its excerpt, asked for only
        once per source and reason per interval (a flood is refused by the thousand)."""
        key = (self.labels(sender), reason)
        self.totals[key] = self.totals.get(key, 0) + 1
        pending = self._interval.get(key)
        if pending is None:
            self._interval[key] = _Pending(1, describe())
        else:
            pending.count += 1

    def end_interval(self, explain: dict[Reason, str]) -> list[LineError]:
        """One summary per (source, reason) refused this interval, for the reasons in
        ``explain`` (the others are reported line by line elsewhere); starts a new interval."""
        out = []
        for (source, reason), pending in self._interval.items():
            why = explain.get(reason)
            if why is None:
                continue
            lines = "line" if pending.count == 1 else "lines"
            out.append(
                LineError(
                    f"statsd {source}",
                    0,
                    f"{pending.count} {lines} refused this interval ({reason}): {why}",
                    f"first: {pending.first}",
                )
            )
        self._interval.clear()
        return out
