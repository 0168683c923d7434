"""The metric store protocols: what collectors write to (:class:`MetricWriter`) and the query
engine, ``/metrics`` and monitors read from (:class:`MetricReader`); :class:`MetricStore` is
both. Consumers depend on the narrowest one they use.

Implementations: :class:`signalbox.metrics.sql.store.SQLMetricStore` (SQLite now,
PostgreSQL through the same SQL with a different dialect) and
:class:`signalbox.metrics.memstore.MemoryMetricStore` for tests and for users' own tests.
Every implementation passes ``tests/contracts/test_metric_store.py`` (and
``test_metric_store_staleness.py``: stale markers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import (
    Labels,
    Matcher,
    MetricMeta,
    Sample,
    SeriesColumns,
    SeriesKey,
)


@dataclass(slots=True)
class SeriesPoints:
    """Points of one series over a window, oldest first.

    From raw storage only ``timestamps``/``values`` are set. From a rollup tier
    (``resolution`` > 0) each point is one *bucket*: the samples of the series in
    ``(end - resolution, end]``. A bucket keeps what makes each range function exact over
    whole buckets; raw points appended after the tier's last rollup are buckets of one
    sample. Per bucket ``i``:

    - ``timestamps[i]``/``values[i]``: its last sample's time and value; ``first_ts[i]``/
      ``firsts[i]`` its first's. A window ``(a, b]`` holds bucket ``i`` whole when
      ``first_ts[i] > a`` and ``timestamps[i] <= b``; one that splits a bucket is an estimate.
    - ``prev_ts[i]``/``prevs[i]``: the sample before the last (``prev_ts`` 0 when the bucket
      holds one sample): ``irate``/``idelta``.
    - ``mins``/``maxs``/``sums``/``counts``: over its samples (NaN left out of min and max
      unless all are NaN; a NaN makes the sum NaN).
    - ``drops[i]``: the sum, over consecutive samples ``(a, b)`` inside the bucket with
      ``b < a``, of ``a`` (Prometheus' counter-reset correction); ``resets[i]`` how many such
      pairs; ``changes[i]`` pairs with ``b != a`` (NaN after NaN is no change).
    - ``sx``/``sxx``/``sxy``: sums of ``x``, ``x*x`` and ``x*v`` with ``x`` the seconds from the
      bucket's first sample (least squares: ``deriv``, ``predict_linear``).
    - ``m2[i]``: the sum of squared deviations from the bucket's mean (variance, combined
      across buckets with Chan's formula).

    ``first_ts`` is always set for a tier; the rest only when the select asked for
    ``aggregates``. ``approximate``: some buckets were written before buckets kept these
    statistics (their first sample, resets and sums are estimated from min/max/last).

    ``stale``: the times of the series' stale markers in the selected window, ascending
    (None when it has none): the series stopped being reported then (see
    :class:`Ended`). An instant selector finds nothing where the newest thing at or before
    the step is a marker (:func:`signalbox.query.lookback.latest_at`); range functions
    ignore markers, as Prometheus drops them from range vectors, so readers that never look
    at this stay correct for those.
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
    first_ts: list[int] | None = None
    firsts: list[float] | None = None
    prev_ts: list[int] | None = None
    prevs: list[float] | None = None
    drops: list[float] | None = None
    resets: list[int] | None = None
    changes: list[int] | None = None
    sx: list[float] | None = None
    sxx: list[float] | None = None
    sxy: list[float] | None = None
    m2: list[float] | None = None
    approximate: bool = False
    stale: list[int] | None = None

    def columns(self) -> list[str]:
        """Names of the per-point lists that are set (``timestamps`` and ``values`` first)."""
        return [n for n in POINT_COLUMNS if getattr(self, n) is not None]

    def slice(self, lo: int, hi: int) -> SeriesPoints:
        """Points ``[lo, hi)``, every per-point list cut alike."""
        out = SeriesPoints(
            self.name,
            self.labels,
            resolution=self.resolution,
            approximate=self.approximate,
            stale=self.stale,  # times, not positions: they hold for any slice of the window
        )
        for n in self.columns():
            setattr(out, n, getattr(self, n)[lo:hi])
        return out


POINT_COLUMNS = (
    "timestamps",
    "values",
    "mins",
    "maxs",
    "sums",
    "counts",
    "first_ts",
    "firsts",
    "prev_ts",
    "prevs",
    "drops",
    "resets",
    "changes",
    "sx",
    "sxx",
    "sxy",
    "m2",
)
"""Every per-point list of :class:`SeriesPoints`, in one place for slicing and checks."""


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
    file's shape), so the next pass can send a :class:`Frame` instead.

    With ``columns``, the file's series and values are those instead, and are not among
    the write's samples (``start`` and ``length`` are not read): a first pass of a million
    new series makes no sample per series (see :class:`~signalbox.metrics.samples.SeriesColumns`).
    """

    layout: bytes
    start: int
    length: int
    columns: SeriesColumns | None = None

    @property
    def size(self) -> int:
        """How many series (and values) it holds."""
        return self.length if self.columns is None else len(self.columns.values)


def inline_columns(
    samples: Sequence[Sample], layouts: Sequence[NewLayout]
) -> tuple[list[Sample], list[NewLayout]]:
    """The write with every columnar layout's series appended to ``samples`` as samples,
    each layout pointing at them: for stores, and paths of a store, that take samples."""
    if not any(nl.columns is not None for nl in layouts):
        return list(samples), list(layouts)
    out, plain = list(samples), []
    for nl in layouts:
        if nl.columns is not None:
            start = len(out)
            out.extend(nl.columns.samples())
            nl = NewLayout(nl.layout, start, len(out) - start)
        plain.append(nl)
    return out, plain


class Ended(NamedTuple):
    """Series that stopped being reported: a write given this records a *stale marker* for
    each at its ``default_ts_ms``, in the same transaction, as Prometheus does when a
    target drops a series. From then on ``latest`` leaves the series out and an instant
    selector at or after the marker finds nothing, until a newer sample revives it.

    ``layouts``: every series of these layouts (registered with the write's
    ``add_labels``; unknown ones are ignored). ``series``: ``(name, labels)`` keys, labels
    as written (the write's ``add_labels`` are added the same way). A series the same write
    stores a sample for is not ended: a file that changed shape keeps the lines it kept.
    """

    layouts: Sequence[bytes] = ()
    series: Sequence[SeriesKey] = ()


SpoolFileState = bytes | str
"""What a spool file stored at a collector's last pass, kept by the store so a new process
(``collect --once`` from cron) can end what went away since: the digest of its layout, or
the text of a file read the long way (its series, parsed again when needed)."""


class DuplicateSeries(StoreError):
    """A write named one series twice through frames or layouts; nothing was written.
    (The collector then redoes the pass without frames, which reports the duplicate.)"""


@dataclass(frozen=True, slots=True)
class LatestColumns:
    """The newest sample of many series at one instant, as arrays (see
    :meth:`SQLMetricStore.latest_columns`): what an aggregation over a million series reads
    without a Python object per series. ``texts(ids)`` names those series: (name, label
    text as :func:`~signalbox.metrics.labelcodec.encode_labels` writes it) each."""

    ids: Any  # numpy int64 array: series ids, ascending
    values: Any  # numpy float64 array: their values, NaN included
    texts: Callable[[Sequence[int]], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class RawSeriesColumns:
    """The raw samples of many series over a window, as arrays (see
    :meth:`SQLMetricStore.raw_columns`): what the range functions' vector kernels read
    without a list per series. Series ``i`` (``ids[i]``, named ``keys[i]``) holds
    positions ``starts[i]`` to ``starts[i + 1]`` of ``timestamps``/``values``, oldest
    first; stale markers are left out (range functions ignore them)."""

    ids: Any  # numpy int64 array: series ids, ascending
    starts: Any  # numpy int64 array: len(ids) + 1 offsets
    timestamps: Any  # numpy int64 array, ms
    values: Any  # numpy float64 array, NaN included
    keys: list[SeriesKey]  # (name, labels) of each series


@dataclass(frozen=True, slots=True)
class BucketSeriesColumns:
    """The rollup buckets of many series over a window, as arrays (see
    :meth:`SQLMetricStore.bucket_columns`): :class:`RawSeriesColumns`' layout, each point
    a bucket of ``resolution`` seconds (raw samples newer than the tier's last rollup are
    buckets of one sample), as :class:`SeriesPoints` holds them: ``timestamps``/``values``
    each bucket's last sample, ``first_ts`` its first's time, ``stats`` the statistics asked
    for by their :class:`SeriesPoints` names (``"firsts"``, ``"counts"``, ``"drops"``, ...;
    float64 arrays, ``prev_ts`` int64). Only buckets with exact statistics are read this way
    (none written before buckets kept them)."""

    ids: Any  # numpy int64 array: series ids, ascending
    starts: Any  # numpy int64 array: len(ids) + 1 offsets
    timestamps: Any  # numpy int64 array, ms
    values: Any  # numpy float64 array, NaN included
    first_ts: Any  # numpy int64 array, ms
    stats: Mapping[str, Any]
    keys: list[SeriesKey]  # (name, labels) of each series
    resolution: int  # seconds


class MetricReader(Protocol):
    """What the query engine, ``/metrics``, the dashboard and monitors' observations use:
    reads only, so they run on any store (the memory store included)."""

    def metadata(self) -> dict[str, MetricMeta]:
        """Type/help/unit per metric name."""
        ...

    def series(self, matchers: Sequence[Matcher] = ()) -> list[tuple[str, Labels]]:
        """Every known series whose name and labels satisfy all matchers."""
        ...

    def names(self) -> list[str]:
        """Every metric name with a known series, sorted: what the dashboard lists and
        ``/api/v1/label/__name__/values`` answers, without reading a million series."""
        ...

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
        """Points in ``[start_ms, end_ms]`` of every matching series that has any.

        ``step_ms`` lets the store pick the resolution: raw while the window is within raw
        retention and the step is finer than the first rollup tier, else the finest tier that
        still covers ``start_ms`` (with raw points newer than that tier's last rollup appended,
        so recent data never goes missing). ``aggregates`` names the bucket statistics the
        caller reads (``SeriesPoints`` attributes: ``"counts"``, ``"firsts"``, ...); a store
        may leave the others None and read less. ``True``: all of them; ``False``: none
        (only ``timestamps``, ``values`` and ``first_ts``). ``align_ms`` (0: unknown): every window
        the caller will read is ``(a, b]`` with ``a`` and ``b`` multiples of it, so a tier
        whose bucket length divides it answers each window exactly from whole buckets; the
        store prefers such a tier to a coarser one that does not.
        """
        ...

    def latest(
        self, matchers: Sequence[Matcher] = (), *, since_ms: int | None = None
    ) -> list[tuple[str, Labels, int, float]]:
        """``(name, labels, timestamp_ms, value)`` of the newest sample of each series
        (only those newer than ``since_ms``, if given), leaving out every series whose
        newest stale marker is at or after its newest sample (see :class:`Ended`)."""
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
        ended: Ended | None = None,
        spool_files: Mapping[str, SpoolFileState | None] | None = None,
    ) -> WriteResult:
        """Store samples in one transaction; samples without a timestamp get ``default_ts_ms``.

        A sample for a (series, timestamp) already stored replaces it. ``add_labels`` are
        added to every sample that does not set that label itself (the collector's
        ``host``), without the caller building a new sample for each. ``frames`` are more
        samples at ``default_ts_ms``, by layout; ``layouts`` registers new layouts. If a
        series of a frame or layout appears twice in the write, :class:`DuplicateSeries`.
        ``ended``: series to mark stale at ``default_ts_ms`` (see :class:`Ended`).
        ``spool_files``: changes to the spool file states of writers with these
        ``add_labels`` (None forgets a file), read back by :meth:`spool_files`.
        """
        ...

    def known_layouts(self, add_labels: Labels = ()) -> frozenset[bytes]:
        """Digests of the layouts a write with these ``add_labels`` may send frames for."""
        ...

    def spool_files(self, add_labels: Labels = ()) -> dict[str, SpoolFileState]:
        """The spool file states the writes with these ``add_labels`` left (see
        :data:`SpoolFileState`)."""
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
