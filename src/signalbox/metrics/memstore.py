"""A metric store in memory: raw samples only, for tests and for users' own tests.

It implements :class:`~signalbox.metrics.store.MetricStore` with the same observable
behaviour as the SQL store for raw data (same-timestamp writes replace, select is
inclusive, results sorted, stale markers), so code tested against it behaves the same in
production. Series keep their points in two parallel sorted lists, so ``select`` is two
bisects and two slices; stale markers are a sorted list per series that has any.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence

from signalbox import limits
from signalbox.exceptions import StoreError
from signalbox.metrics.samples import (
    Labels,
    Matcher,
    MetricMeta,
    Sample,
    SeriesKey,
    merge_labels,
    series_matches,
)
from signalbox.metrics.store import (
    DuplicateSeries,
    Ended,
    Frame,
    NewLayout,
    SeriesPoints,
    SpoolFileState,
    WriteResult,
    inline_columns,
)


class _Points:
    __slots__ = ("timestamps", "values")

    def __init__(self) -> None:
        self.timestamps: list[int] = []
        self.values: list[float] = []

    def put(self, ts: int, value: float) -> None:
        tss = self.timestamps
        if not tss or ts > tss[-1]:  # the common case: newer than everything stored
            tss.append(ts)
            self.values.append(value)
            return
        i = bisect_left(tss, ts)
        if tss[i] == ts:
            self.values[i] = value
        else:
            tss.insert(i, ts)
            self.values.insert(i, value)


class MemoryMetricStore:
    """In-memory :class:`~signalbox.metrics.store.MetricStore` (thread-safe).

    Args:
        raw_retention_s: ``compact(now_ms)`` drops samples older than this many seconds
            (and series left with none). None keeps everything.
    """

    def __init__(self, *, raw_retention_s: float | None = None) -> None:
        if raw_retention_s is not None and raw_retention_s <= 0:
            raise StoreError(f"raw_retention_s must be positive, got {raw_retention_s!r}")
        self.raw_retention_s = raw_retention_s
        self._series: dict[str, dict[Labels, _Points]] = {}
        self._meta: dict[str, MetricMeta] = {}
        self._lock = threading.Lock()
        self._layouts: dict[tuple[bytes, Labels], list[tuple[str, Labels]]] = {}
        self._stale: dict[SeriesKey, list[int]] = {}  # marker times, ascending
        self._spool: dict[Labels, dict[str, SpoolFileState]] = {}

    def known_layouts(self, add_labels: Labels = ()) -> frozenset[bytes]:
        with self._lock:
            return frozenset(d for d, extra in self._layouts if extra == add_labels)

    def _expand(
        self,
        samples: list[Sample],
        add_labels: Labels,
        frames: Sequence[Frame],
        layouts: Sequence[NewLayout],
    ) -> list[Sample]:
        """Frames as samples (this store keeps no frames), after the same checks as SQL's."""
        extra: list[Sample] = []
        for f in frames:
            keys = self._layouts.get((f.layout, add_labels))
            if keys is None:
                raise StoreError("a frame names a layout this store does not have")
            if len(keys) != len(f.values):
                raise StoreError(
                    f"a frame has {len(f.values)} values for a layout of {len(keys)} series"
                )
            extra.extend(Sample(n, ls, v) for (n, ls), v in zip(keys, f.values, strict=True))
        everything = samples + extra
        keys_all = [(s.name, s.labels) for s in everything]
        if len(set(keys_all)) != len(keys_all):
            raise DuplicateSeries("one series appears twice in a write with frames")
        for nl in layouts:
            part = samples[nl.start : nl.start + nl.length]
            if all(s.timestamp_ms is None for s in part):
                self._layouts.setdefault(
                    (nl.layout, add_labels), [(s.name, s.labels) for s in part]
                )
        return everything

    def write(
        self,
        samples: Sequence[Sample],
        default_ts_ms: int,
        *,
        add_labels: Labels = (),
        frames: Sequence[Frame] = (),
        layouts: Sequence[NewLayout] = (),
        ended: Ended | None = None,
        spool_files: Mapping[str, SpoolFileState | None] | None = None,
    ) -> WriteResult:
        """Store samples; one without a timestamp gets ``default_ts_ms``; same time replaces.
        ``ended`` series get a stale marker at ``default_ts_ms``."""
        new = 0
        samples, layouts = inline_columns(samples, layouts)  # this store keeps samples
        if add_labels:
            samples = [s._replace(labels=merge_labels(s.labels, add_labels)) for s in samples]
        with self._lock:
            if frames or layouts:
                samples = self._expand(list(samples), add_labels, frames, layouts)
            if ended is not None:
                self._end(ended, samples, add_labels, default_ts_ms)
            if spool_files:
                states = self._spool.setdefault(add_labels, {})
                for name, state in spool_files.items():
                    if state is None:
                        states.pop(name, None)
                    else:
                        states[name] = state
            for s in samples:
                by_labels = self._series.get(s.name)
                if by_labels is None:
                    by_labels = self._series[s.name] = {}
                points = by_labels.get(s.labels)
                if points is None:
                    points = by_labels[s.labels] = _Points()
                    new += 1
                ts = default_ts_ms if s.timestamp_ms is None else s.timestamp_ms
                points.put(int(ts), float(s.value))
        return WriteResult(written=len(samples), new_series=new)

    def _end(self, ended: Ended, written: Sequence[Sample], add_labels: Labels, ts: int) -> None:
        """Markers for the ended series this write does not store, and that exist."""
        keys: list[SeriesKey] = []
        for digest in ended.layouts:
            keys.extend(self._layouts.get((digest, add_labels), ()))
        keys.extend((n, merge_labels(ls, add_labels)) for n, ls in ended.series)
        stored = {(s.name, s.labels) for s in written}
        for key in dict.fromkeys(keys):
            if key in stored or key[1] not in self._series.get(key[0], {}):
                continue
            marks = self._stale.setdefault(key, [])
            i = bisect_left(marks, ts)
            if i == len(marks) or marks[i] != ts:
                marks.insert(i, ts)

    def spool_files(self, add_labels: Labels = ()) -> dict[str, SpoolFileState]:
        with self._lock:
            return dict(self._spool.get(add_labels, {}))

    def _ended(self, name: str, labels: Labels, p: _Points) -> bool:
        """Is the series' newest marker at or after its newest sample? Caller holds the lock."""
        marks = self._stale.get((name, labels))
        return marks is not None and bool(marks) and marks[-1] >= p.timestamps[-1]

    def write_metadata(self, metas: Iterable[MetricMeta]) -> None:
        with self._lock:
            for m in metas:
                self._meta[m.name] = m

    def metadata(self) -> dict[str, MetricMeta]:
        with self._lock:
            return dict(self._meta)

    def _matching(self, matchers: Sequence[Matcher]) -> list[tuple[str, Labels, _Points]]:
        """Matching series sorted by name then labels; caller holds the lock."""
        matchers = tuple(matchers)
        names: Iterable[str] = self._series
        for m in matchers:
            if m.label == "__name__" and m.op == "=":
                names = [m.value] if m.value in self._series else []
                break
        out: list[tuple[str, Labels, _Points]] = []
        for name in sorted(names):
            for labels, points in self._series[name].items():
                if series_matches(name, labels, matchers):
                    out.append((name, labels, points))
        out.sort(key=lambda t: (t[0], t[1]))
        return out

    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        with self._lock:
            return [(name, labels) for name, labels, _ in self._matching(matchers)]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(n for n, by_labels in self._series.items() if by_labels)

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
        """Raw points in ``[start_ms, end_ms]`` of each matching series that has any."""
        out: list[SeriesPoints] = []
        with self._lock:
            for name, labels, p in self._matching(matchers):
                lo = bisect_left(p.timestamps, start_ms)
                hi = bisect_right(p.timestamps, end_ms)
                if hi > lo:
                    limits.charge(hi - lo)
                    sp = SeriesPoints(name, labels, p.timestamps[lo:hi], p.values[lo:hi])
                    marks = self._stale.get((name, labels))
                    if marks:
                        got = marks[bisect_left(marks, start_ms) : bisect_right(marks, end_ms)]
                        sp.stale = got or None
                    out.append(sp)
        return out

    def latest(
        self, matchers: Sequence[Matcher] = (), *, since_ms: int | None = None
    ) -> list[tuple[str, Labels, int, float]]:
        oldest = -(2**63) if since_ms is None else since_ms
        with self._lock:
            return [
                (name, labels, p.timestamps[-1], p.values[-1])
                for name, labels, p in self._matching(matchers)
                if p.timestamps and p.timestamps[-1] >= oldest and not self._ended(name, labels, p)
            ]

    def compact(self, now_ms: int) -> None:
        """Drop samples and stale markers older than the raw retention (no rollups in
        memory)."""
        if self.raw_retention_s is None:
            return
        cutoff = now_ms - int(self.raw_retention_s * 1000)
        with self._lock:
            for name in list(self._series):
                by_labels = self._series[name]
                for labels in list(by_labels):
                    p = by_labels[labels]
                    cut = bisect_left(p.timestamps, cutoff)
                    if cut:
                        del p.timestamps[:cut]
                        del p.values[:cut]
                    if not p.timestamps:
                        del by_labels[labels]
                if not by_labels:
                    del self._series[name]
            for key in list(self._stale):
                marks = self._stale[key]
                del marks[: bisect_left(marks, cutoff)]
                if not marks or key[1] not in self._series.get(key[0], {}):
                    del self._stale[key]

    def close(self) -> None:
        """Nothing to release; present for the protocol."""
