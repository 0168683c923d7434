"""A stored collection pass as the forwarders read it, and the tap that hands it over.

The tap sits between the collector and its store (:class:`TappedStore`): each write the
store took is handed, as it was written, to the sinks (a forwarder's queue, the agent's
``/metrics``), which read it on their own threads; a write the store refused is not. So a
forwarder sends what was stored -- the pass's spool values, StatsD flushes and
self-metrics, and the passes a store outage held, when they are stored at their own times.

The collector stores a spool file whose shape the store already knows as a *frame*: its
values alone, in the order of a layout the store keeps (see
:class:`~signalbox.metrics.store.Frame`). A forwarder needs each value's series, so the tap
remembers, per layout, the samples that named its series when this process saw the file
the long way, and the store it wraps answers ``known_layouts`` with only those
(:meth:`PassTap.usable`): after a start, the first pass reads every file the long way once
(the store registers a known layout again as a no-op), and from then on frames are named
from memory. Layouts no write uses any more are forgotten after each write.

Nothing here copies a pass's samples: the sinks get the lists the write used. A file of a new
shape may come as columns (:class:`~signalbox.metrics.store.NewLayout`'s ``columns``, not
among the write's samples): the tap makes its samples once, to hand over and to name the
file's later frames; a process without forwarders nor ``/metrics`` has no tap, and its
first pass stays column-wise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from signalbox.metrics.samples import Labels, Matcher, MetricMeta, Sample, merge_labels
from signalbox.metrics.store import (
    DuplicateSeries,
    Ended,
    Frame,
    MetricStore,
    NewLayout,
    SeriesPoints,
    SpoolFileState,
    WriteResult,
)

if TYPE_CHECKING:
    from signalbox.metrics.buffer import HeldPass

log = logging.getLogger("signalbox.forward")

__all__ = ["CollectedPass", "PassSink", "PassTap", "TappedStore"]


@dataclass(frozen=True, slots=True)
class CollectedPass:
    """One stored write: its samples (labels as written, ``add_labels`` added on reading,
    as the store adds them) and its frames, each a file's series (named by samples of an
    earlier pass, or made from the columns of a new layout) with this pass's values in the
    same order."""

    ts_ms: int
    add_labels: Labels
    samples: Sequence[Sample]
    frames: Sequence[tuple[Sequence[Sample], Sequence[float]]] = ()

    @property
    def size(self) -> int:
        return len(self.samples) + sum(len(values) for _, values in self.frames)

    def series(self) -> Iterator[tuple[str, Labels, float, int]]:
        """``(name, full labels, value, timestamp_ms)`` of every sample of the pass."""
        extra, ts = self.add_labels, self.ts_ms
        seen: dict[Labels, Labels] = {}  # label sets repeat across a file's series
        for name, labels, value, stamp in self.samples:
            full = seen.get(labels)
            if full is None:
                full = seen[labels] = merge_labels(labels, extra)
            yield name, full, value, ts if stamp is None else stamp
        for keys, values in self.frames:
            for s, value in zip(keys, values, strict=True):
                full = seen.get(s.labels)
                if full is None:
                    full = seen[s.labels] = merge_labels(s.labels, extra)
                yield s.name, full, value, ts


class PassSink(Protocol):
    """What the tap hands passes to: quick, never blocking (queue and return)."""

    def submit(self, p: CollectedPass) -> None: ...

    def describe(self, metas: Iterable[MetricMeta]) -> None: ...


class PassTap:
    """Hands each stored write to ``sinks``, once the pass has written its metadata (or
    the next write came), and every write, stored or refused, to ``live`` sinks at once
    (the agent's ``/metrics``: what the agent collects, the store up or not); names frames
    by the layouts it has seen.

    A layout is remembered while one of the last two writes with frames or new layouts
    used it (two: a write of passes held through a store outage may come between a pass
    and the next), so files that change shape do not grow it.
    """

    def __init__(
        self, sinks: Sequence[PassSink], live: Sequence[PassSink] = (), add_labels: Labels = ()
    ) -> None:
        self.sinks = list(sinks)
        self.live = list(live)
        self.add_labels = add_labels
        """The collector's (its ``host``), for the passes it holds without a write."""
        self._layouts: dict[bytes, Sequence[Sample]] = {}
        self._before: dict[bytes, Sequence[Sample]] = {}
        self._pending: CollectedPass | None = None

    def usable(self, known: frozenset[bytes]) -> frozenset[bytes]:
        """The layouts of ``known`` a pass may send as frames: those this tap can name."""
        return known.intersection(self._layouts.keys() | self._before.keys())

    def _named(
        self, samples: Sequence[Sample], frames: Sequence[Frame], new_layouts: Sequence[NewLayout]
    ) -> tuple[list[tuple[Sequence[Sample], Sequence[float]]], dict[bytes, Sequence[Sample]]]:
        """Each frame with the samples naming its series, a new layout's columns among
        them (its series are not among the write's samples); the layouts the write used.

        Columns become samples here, for the sinks: only a process with a tap pays for
        them, so a first pass without forwarders stays column-wise."""
        now, before = self._layouts, self._before
        used: dict[bytes, Sequence[Sample]] = {}
        named: list[tuple[Sequence[Sample], Sequence[float]]] = []
        for nl in new_layouts:
            if nl.columns is None:
                used[nl.layout] = samples[nl.start : nl.start + nl.length]
            else:
                made = used[nl.layout] = nl.columns.samples()
                named.append((made, nl.columns.values))
        for f in frames:
            keys = used.get(f.layout) or now.get(f.layout) or before.get(f.layout)
            if keys is None or len(keys) != len(f.values):  # never: usable() said it knew
                continue
            used[f.layout] = keys
            named.append((keys, f.values))
        return named, used

    def collected(
        self,
        samples: Sequence[Sample],
        ts_ms: int,
        add_labels: Labels,
        frames: Sequence[Frame],
        new_layouts: Sequence[NewLayout],
    ) -> None:
        """A write the store took, as the collector made it (see ``MetricWriter.write``)."""
        named, used = self._named(samples, frames, new_layouts)
        if frames or new_layouts:
            self._before, self._layouts = self._layouts, used
        p = CollectedPass(ts_ms, add_labels, samples, named)
        for sink in self.live:
            sink.submit(p)
        self._hand_over()  # an earlier write whose pass wrote no metadata
        self._pending = p

    def refused(
        self,
        samples: Sequence[Sample],
        ts_ms: int,
        add_labels: Labels,
        frames: Sequence[Frame],
        new_layouts: Sequence[NewLayout],
    ) -> None:
        """A write the store refused: for the live sinks only (the others get it if and
        when the collector stores it later)."""
        if self.live:
            p = CollectedPass(
                ts_ms, add_labels, samples, self._named(samples, frames, new_layouts)[0]
            )
            for sink in self.live:
                sink.submit(p)

    def held(self, p: HeldPass) -> None:
        """A pass the collector holds without handing it to the store (it is down): for
        the live sinks; the others get it once it is stored (see ``Collector.on_held``).
        Never raises into the collector, whose holding of the pass comes first."""
        try:
            self.refused(p.samples, p.ts_ms, self.add_labels, p.frames, p.layouts)
        except Exception:
            log.exception("the pass held at %d could not be shown on /metrics", p.ts_ms)

    def described(self, metas: Iterable[MetricMeta]) -> None:
        """The metadata the pass wrote (types, help, units), for sinks that use it; then
        the pass's write is handed over, so a sink knows a metric's type before its first
        value (gmond keeps the first metadata it gets)."""
        metas = list(metas)
        for sink in (*self.sinks, *self.live):
            sink.describe(metas)
        self._hand_over()

    def _hand_over(self) -> None:
        p, self._pending = self._pending, None
        if p is not None:
            for sink in self.sinks:
                sink.submit(p)


class TappedStore:
    """``store`` for a collector, handing each write it takes to ``tap`` (see the module
    docstring); everything else is the store's."""

    def __init__(self, store: MetricStore, tap: PassTap) -> None:
        self.inner = store
        self.tap = tap

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
        try:
            result = self.inner.write(
                samples,
                default_ts_ms,
                add_labels=add_labels,
                frames=frames,
                layouts=layouts,
                ended=ended,
                spool_files=spool_files,
            )
        except DuplicateSeries:  # nothing refused: the collector reads the pass again
            raise
        except Exception:
            _tell(self.tap.refused, samples, default_ts_ms, add_labels, frames, layouts)
            raise
        _tell(self.tap.collected, samples, default_ts_ms, add_labels, frames, layouts)
        return result

    def known_layouts(self, add_labels: Labels = ()) -> frozenset[bytes]:
        return self.tap.usable(self.inner.known_layouts(add_labels))

    def write_metadata(self, metas: Iterable[MetricMeta]) -> None:
        metas = list(metas)
        self.inner.write_metadata(metas)
        _tell(self.tap.described, metas)

    def spool_files(self, add_labels: Labels = ()) -> dict[str, SpoolFileState]:
        return self.inner.spool_files(add_labels)

    def compact(self, now_ms: int) -> None:
        self.inner.compact(now_ms)

    def metadata(self) -> dict[str, MetricMeta]:
        return self.inner.metadata()

    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        return self.inner.series(matchers)

    def names(self) -> list[str]:
        return self.inner.names()

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
        return self.inner.select(
            matchers, start_ms, end_ms, step_ms=step_ms, aggregates=aggregates, align_ms=align_ms
        )

    def latest(
        self, matchers: Sequence[Matcher] = (), *, since_ms: int | None = None
    ) -> list[tuple[str, Labels, int, float]]:
        return self.inner.latest(matchers, since_ms=since_ms)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        """Whatever else a collector reads of its store (``db``, ``clock``)."""
        return getattr(self.inner, name)


def _tell(fn: Callable[..., None], *args: Any) -> None:
    """Hand over to the tap; a bug there is logged, never the store's write's failure."""
    try:
        fn(*args)
    except Exception:
        log.exception("could not hand a collection pass to the forwarders")
