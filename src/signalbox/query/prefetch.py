"""A read-only metric store over points read once: what many queries of a pass share.

See :mod:`signalbox.query.batch`. The copy must answer exactly what the real store
would, so it answers only reads inside the window it holds; the rest go to the real store.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import Labels, Matcher, MetricMeta, Sample, series_matches
from signalbox.metrics.store import Frame, MetricReader, NewLayout, SeriesPoints, WriteResult


class PrefetchedStore:
    """A read-only :class:`~signalbox.metrics.store.MetricReader` over points read once.

    ``select`` answers from memory: candidates by metric name, narrowed by an index on the
    first ``label="value"`` matcher, then sliced by time. The points cover the store from
    ``since_ms`` through ``until_ms``; a select reaching outside (the engine probing for
    coarse rollups when a window is empty) goes to ``fallback``, the real store, unless no
    series the fallback knows can match, in which case the answer is empty without a read.
    Writes are refused.
    """

    def __init__(
        self,
        points: Sequence[SeriesPoints],
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        fallback: MetricReader | None = None,
        fallback_matchers: Sequence[Matcher] = (),
    ) -> None:
        self._by_name: dict[str, list[SeriesPoints]] = defaultdict(list)
        for sp in points:
            self._by_name[sp.name].append(sp)
        self._all = list(points)
        self._eq: dict[tuple[str, str], dict[str, list[SeriesPoints]]] = {}
        self._since_ms, self._until_ms, self._fallback = since_ms, until_ms, fallback
        self._fallback_matchers = list(fallback_matchers)
        self._known: PrefetchedStore | None = None

    def _indexed(self, name: str, label: str, value: str) -> list[SeriesPoints]:
        index = self._eq.get((name, label))
        if index is None:
            index = self._eq[(name, label)] = defaultdict(list)
            for sp in self._by_name.get(name, ()):
                index[dict(sp.labels).get(label, "")].append(sp)
        return index.get(value, [])

    def _candidates(self, matchers: Sequence[Matcher]) -> list[SeriesPoints]:
        name = next((m.value for m in matchers if m.label == "__name__" and m.op == "="), None)
        if name is None:
            return self._all
        for m in matchers:
            if m.op == "=" and m.label != "__name__" and m.value:
                return self._indexed(name, m.label, m.value)
        return self._by_name.get(name, [])

    def _outside(self, start_ms: int, end_ms: int) -> bool:
        return (self._since_ms is not None and start_ms < self._since_ms) or (
            self._until_ms is not None and end_ms > self._until_ms
        )

    def _may_exist(self, fallback: MetricReader, matchers: tuple[Matcher, ...]) -> bool:
        """Could the fallback hold any series ``matchers`` select? (Its series, read once.)"""
        if self._known is None:
            known = fallback.series(self._fallback_matchers)
            self._known = PrefetchedStore([SeriesPoints(n, labels) for n, labels in known])
        return bool(self._known.series(matchers))

    def subset(self, selections: Iterable[Sequence[Matcher]]) -> PrefetchedStore:
        """The series any of ``selections`` matches (in this store's order, same window),
        without a fallback: reads outside the window find nothing."""
        picked: set[int] = set()
        for matchers in selections:
            ms = tuple(matchers)
            picked.update(
                id(sp) for sp in self._candidates(ms) if series_matches(sp.name, sp.labels, ms)
            )
        return PrefetchedStore(
            [sp for sp in self._all if id(sp) in picked],
            since_ms=self._since_ms,
            until_ms=self._until_ms,
        )

    def select(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool | frozenset[str] = True,
        align_ms: int = 0,
    ) -> list[SeriesPoints]:
        ms = tuple(matchers)
        if self._fallback is not None and self._outside(start_ms, end_ms):
            if not self._may_exist(self._fallback, ms):
                return []
            return self._fallback.select(
                matchers,
                start_ms,
                end_ms,
                step_ms=step_ms,
                aggregates=aggregates,
                align_ms=align_ms,
            )
        out: list[SeriesPoints] = []
        for sp in self._candidates(ms):
            if not series_matches(sp.name, sp.labels, ms):
                continue
            lo, hi = bisect_left(sp.timestamps, start_ms), bisect_right(sp.timestamps, end_ms)
            if hi <= lo:
                continue
            if lo == 0 and hi == len(sp.timestamps):
                out.append(sp)
                continue
            out.append(sp.slice(lo, hi))
        return out

    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        ms = tuple(matchers)
        return [
            (sp.name, sp.labels)
            for sp in self._candidates(ms)
            if series_matches(sp.name, sp.labels, ms)
        ]

    def names(self) -> list[str]:
        return sorted({name for name, _ in self.series()})

    def latest(
        self, matchers: Sequence[Matcher] = (), *, since_ms: int | None = None
    ) -> list[tuple[str, Labels, int, float]]:
        ms = tuple(matchers)
        oldest = -(2**63) if since_ms is None else since_ms
        return [
            (sp.name, sp.labels, sp.timestamps[-1], sp.values[-1])
            for sp in self._candidates(ms)
            if sp.timestamps
            and sp.timestamps[-1] >= oldest
            and not (sp.stale and sp.stale[-1] >= sp.timestamps[-1])  # ended (a stale marker)
            and series_matches(sp.name, sp.labels, ms)
        ]

    def write(
        self,
        samples: Sequence[Sample],
        default_ts_ms: int,
        *,
        add_labels: Labels = (),
        frames: Sequence[Frame] = (),
        layouts: Sequence[NewLayout] = (),
    ) -> WriteResult:
        raise StoreError("a prefetched store is read-only")

    def known_layouts(self, add_labels: Labels = ()) -> frozenset[bytes]:
        return frozenset()

    def write_metadata(self, metas: Iterable[MetricMeta]) -> None:
        raise StoreError("a prefetched store is read-only")

    def metadata(self) -> dict[str, MetricMeta]:
        return {}

    def compact(self, now_ms: int) -> None:
        """Nothing to compact."""

    def close(self) -> None:
        """Nothing to release."""
