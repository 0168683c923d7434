"""The metric store protocols: what collectors write to (:class:`MetricWriter`) and the query
engine, ``/metrics`` and monitors read from (:class:`MetricReader`); :class:`MetricStore` is
both. Consumers depend on the narrowest one they use.

Implementations: :class:`signalbox.metrics.sql.store.SQLMetricStore` (SQLite now,
PostgreSQL through the same SQL with a different dialect) and
:class:`signalbox.metrics.memstore.MemoryMetricStore` for tests and for users' own tests.
Every implementation passes ``tests/contracts/test_metric_store.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import Labels, Matcher, MetricMeta, Sample


@dataclass(slots=True)
class SeriesPoints:
    """Points of one series over a window, oldest first.

    From raw storage only ``timestamps``/``values`` are set. From a rollup tier each point
    is one bucket stamped with the last millisecond it covers (its end - 1 ms); ``values`` holds the bucket's last value
    (right for counters and for "current value" reads) and ``mins``/``maxs``/``sums``/
    ``counts`` let ``*_over_time`` functions stay exact across the bucket.
    """

    name: str
    labels: Labels
    timestamps: list[int] = field(default_factory=list)  # milliseconds since the epoch
    values: list[float] = field(default_factory=list)
    resolution: int = 0  # seconds; 0 = raw samples
    mins: list[float] | None = None
    maxs: list[float] | None = None
    sums: list[float] | None = None
    counts: list[float] | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: int
    new_series: int


class Frame(NamedTuple):
    """One spool file's values of one pass, in the order of a layout the store already has
    (see :meth:`MetricStore.known_layouts`)."""

    layout: bytes
    values: list[float]


class NewLayout(NamedTuple):
    """``samples[start:start + length]`` of a write (all without a timestamp) are one spool
    file's series in line order: remember them as the layout ``layout`` (a digest of the
    file's shape), so the next pass can send a :class:`Frame` instead."""

    layout: bytes
    start: int
    length: int


class DuplicateSeries(StoreError):
    """A write named one series twice through frames or layouts; nothing was written.
    (The collector then redoes the pass without frames, which reports the duplicate.)"""


class MetricReader(Protocol):
    """What the query engine, ``/metrics``, the dashboard and monitors' observations use:
    reads only, so they run on any store (the memory store included)."""

    def metadata(self) -> dict[str, MetricMeta]:
        """Type/help/unit per metric name."""
        ...

    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        """Every known series whose name and labels satisfy all matchers."""
        ...

    def select(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool = True,
        align_ms: int = 0,
    ) -> list[SeriesPoints]:
        """Points in ``[start_ms, end_ms]`` of every matching series that has any.

        ``step_ms`` lets the store pick the resolution: raw while the window is within raw
        retention and the step is finer than the first rollup tier, else the finest tier that
        still covers ``start_ms`` (with raw points newer than that tier's last rollup appended,
        so recent data never goes missing). ``aggregates=False`` says the caller only needs
        ``values`` (no ``*_over_time`` over buckets): a store may then leave ``mins``/``maxs``/
        ``sums``/``counts`` as None and read less. ``align_ms`` (0: unknown): every window
        the caller will read is ``(a, b]`` with ``a`` and ``b`` multiples of it, so a tier
        whose bucket length divides it answers each window exactly from whole buckets; the
        store prefers such a tier to a coarser one that does not.
        """
        ...

    def latest(
        self, matchers: Sequence[Matcher] = (), *, since_ms: int | None = None
    ) -> list[tuple[str, Labels, int, float]]:
        """``(name, labels, timestamp_ms, value)`` of the newest sample of each series
        (only those newer than ``since_ms``, if given)."""
        ...


class MetricWriter(Protocol):
    """What collectors and the monitor runner use to store samples."""

    def write(
        self,
        samples: Sequence[Sample],
        default_ts_ms: int,
        *,
        add_labels: Labels = (),
        frames: Sequence[Frame] = (),
        layouts: Sequence[NewLayout] = (),
    ) -> WriteResult:
        """Store samples in one transaction; samples without a timestamp get ``default_ts_ms``.

        A sample for a (series, timestamp) already stored replaces it. ``add_labels`` are
        added to every sample that does not set that label itself (the collector's
        ``host``), without the caller building a new sample for each. ``frames`` are more
        samples at ``default_ts_ms``, by layout; ``layouts`` registers new layouts. If a
        series of a frame or layout appears twice in the write, :class:`DuplicateSeries`.
        """
        ...

    def known_layouts(self, add_labels: Labels = ()) -> frozenset[bytes]:
        """Digests of the layouts a write with these ``add_labels`` may send frames for."""
        ...

    def write_metadata(self, metas: Iterable[MetricMeta]) -> None:
        """Remember type/help/unit per metric name (last write wins)."""
        ...

    def compact(self, now_ms: int) -> None:
        """Build rollups for closed buckets and drop data past retention."""
        ...


class MetricStore(MetricReader, MetricWriter, Protocol):
    """A store that is both: what ``serve``, ``agent`` and ``collect`` open."""

    def close(self) -> None: ...
