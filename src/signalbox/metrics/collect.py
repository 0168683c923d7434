"""One collection pass: spool files + StatsD buffer + self-metrics → the store.

The same pass serves ``collect --once`` (cron), ``agent`` and ``serve``. It never raises on
bad input: problems are logged once per file version and counted in
``signalbox_spool_errors_total{file}``.

A pass the store refuses (a full disk: :class:`~signalbox.exceptions.DiskFullError`) raises,
and loses nothing: its write is rolled back whole, spool files are snapshots the next pass
reads again, and what the sources (StatsD) handed over is held, stamped with the time it was
flushed, and stored by the next pass that can write (up to :data:`MAX_HELD_SAMPLES`).

Staleness: a spool file's series end at the pass where the file went stale (past its
stale_after), was removed or refused, or lost lines -- the pass's write records a stale
marker for each (see :class:`~signalbox.metrics.store.Ended`), as Prometheus does for a
series a target stops exposing, so queries and ``/metrics`` drop them at once instead of
for the lookback window. Between passes the collector keeps, per file, only the layout
digest of a file read as a frame (the store knows the layout's series) or, for a file
parsed the long way, a fingerprint of its series keys and its text, parsed again only when
the keys changed (see :class:`~signalbox.metrics.spool.FileSeries`); each series is ended
once. The store keeps these states too,
changed in each pass's transaction, so a fresh process (``collect --once`` from cron) ends
what went away since the last one; it parses each long-way file's previous text once. StatsD series are out of scope: a StatsD metric that is not
sent simply ages out through the lookback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from signalbox.clock import Clock, SystemClock
from signalbox.gcpause import gc_paused
from signalbox.metrics.samples import Labels, Matcher, MetricMeta, Sample, SeriesKey
from signalbox.metrics.spool import FileSeries, SpoolProblem, SpoolScan, scan_spool, series_keys
from signalbox.metrics.store import (
    DuplicateSeries,
    Ended,
    MetricStore,
    SpoolFileState,
    WriteResult,
)

log = logging.getLogger("signalbox.collect")

MAX_HELD_SAMPLES = 250_000
"""Most source samples held for the next pass while the store refuses writes (about 250 bytes
each: ~60 MB). Past it the oldest flushes are dropped, and the log says how many samples of
which times: what is lost then is those intervals' timer quantiles and set counts, since
counters and gauges are carried whole by every later flush."""

SELF_METRICS = [
    MetricMeta(
        "signalbox_spool_errors_total",
        "counter",
        "Bad lines and refused files seen in the spool dir, per file.",
    ),
    MetricMeta(
        "signalbox_spool_file_age_seconds",
        "gauge",
        "Seconds since each spool file was last written; a stale file is a monitorable event.",
    ),
    MetricMeta(
        "signalbox_spool_file_stale_after_seconds",
        "gauge",
        "Age past which each spool file is stale: its # stale_after line, else collect.stale_after.",
    ),
    MetricMeta("signalbox_spool_files", "gauge", "Spool files read in the last collection pass."),
    MetricMeta("signalbox_collect_samples", "gauge", "Samples stored by the last collection pass."),
    MetricMeta(
        "signalbox_collect_duration_seconds", "gauge", "Wall time of the last collection pass."
    ),
]


class SampleSource(Protocol):
    """Anything that hands buffered samples to a pass (the StatsD aggregator)."""

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]: ...


@dataclass
class PassReport:
    stored: int
    new_series: int
    problems: list[SpoolProblem] = field(default_factory=list)
    duration_s: float = 0.0


def with_host(labels: Labels, host: str) -> Labels:
    """Add ``host`` unless the writer set it (a file may speak for another machine)."""
    for k, _ in labels:
        if k == "host":
            return labels
    if not labels:
        return (("host", host),)
    return tuple(sorted((*labels, ("host", host))))


class Collector:
    def __init__(
        self,
        store: MetricStore,
        *,
        spool_dir: Path,
        host: str,
        max_file_bytes: int = 4 * 1024 * 1024,
        stale_after_s: float = 300.0,
        sources: list[SampleSource] | None = None,
        clock: Clock | None = None,
        on_problem: Callable[[SpoolProblem], None] | None = None,
    ) -> None:
        self.store = store
        self.spool_dir = spool_dir
        self.host = host
        self.max_file_bytes = max_file_bytes
        self.stale_after_s = stale_after_s
        self.sources = sources or []
        self.clock = clock or SystemClock()
        self.on_problem = on_problem or self._log_problem
        self._seen: set[tuple[str, int, str]] = set()
        self._error_totals: dict[str, float] | None = None
        self.max_held_samples = MAX_HELD_SAMPLES
        self._held: list[tuple[list[Sample], list[MetricMeta]]] = []
        """Flushes of the sources that no pass could store yet, oldest first."""
        self._files: dict[str, bytes | FileSeries] | None = None
        """What each file stored at the last stored pass (see SpoolScan.files); None until
        read from the store."""
        self._listed: frozenset[str] = frozenset()
        """Files whose age the last stored pass reported."""

    @property
    def held_samples(self) -> int:
        """Source samples waiting for a pass that can store them."""
        return sum(len(samples) for samples, _ in self._held)

    def _log_problem(self, p: SpoolProblem) -> None:
        level = logging.INFO if p.kind == "ignored" else logging.WARNING
        log.log(level, "spool %s", p)

    def _report(self, problems: list[SpoolProblem]) -> None:
        """Log each problem once per distinct (file, line, reason) until it goes away."""
        current = {(p.file, p.line, p.reason) for p in problems}
        for p in problems:
            k = (p.file, p.line, p.reason)
            if k not in self._seen:
                self.on_problem(p)
        self._seen = current

    def _totals(self) -> dict[str, float]:
        """Error counters continue across runs (``collect --once`` is a new process each time)."""
        if self._error_totals is None:
            rows = self.store.latest([Matcher("__name__", "=", "signalbox_spool_errors_total")])
            self._error_totals = {}
            for _, labels, _, value in rows:
                d = dict(labels)
                if d.get("host") == self.host and value == value:
                    self._error_totals[d.get("file", "")] = value
        return self._error_totals

    def run_once(self) -> PassReport:
        with gc_paused():  # ~10 objects per sample, no cycles: see signalbox.gcpause
            return self._run_once()

    def _scan(self, now_ms: int, *, frames: bool, careful: bool = False) -> SpoolScan:
        return scan_spool(
            self.spool_dir,
            now_ms=now_ms,
            max_file_bytes=self.max_file_bytes,
            stale_after_s=self.stale_after_s,
            layouts=self.store.known_layouts((("host", self.host),)) if frames else None,
            careful=careful,
        )

    def _run_once(self) -> PassReport:
        started = time.perf_counter()
        now_ms = int(self.clock.now() * 1000)
        extra: list[Sample] = []
        extra_metas: list[MetricMeta] = []
        for src in self.sources:
            got, got_meta = src.flush(now_ms)
            extra.extend(got)
            extra_metas.extend(got_meta)
            take_errors = getattr(src, "take_errors", None)
            if take_errors is not None:
                for e in take_errors():  # bad StatsD lines: counted by the source, logged here
                    log.warning("%s%s", e, f": {e.text}" if e.text else "")  # line 0: no ":0"
        try:
            backlog = self._store_held(now_ms)
            scan = self._scan(now_ms, frames=True)
            try:
                result = self._store(scan, extra, now_ms, started)
            except DuplicateSeries:  # a series in two files, one of them a frame or layout
                scan = self._scan(now_ms, frames=True, careful=True)  # parse every file
                try:
                    result = self._store(scan, extra, now_ms, started)
                except DuplicateSeries:  # a spool series a source sent too: no frames
                    scan = self._scan(now_ms, frames=False)
                    result = self._store(scan, extra, now_ms, started)
        except BaseException:
            if extra:  # the flush is gone from its source: keep it for the next pass
                self._hold(extra, extra_metas)
            raise
        self.store.write_metadata([*SELF_METRICS, *scan.metas, *backlog, *extra_metas])
        self._report(scan.problems)
        return PassReport(
            result.written, result.new_series, scan.problems, time.perf_counter() - started
        )

    def _hold(self, samples: list[Sample], metas: list[MetricMeta]) -> None:
        """Keep a flush the store refused, within :attr:`max_held_samples` (oldest dropped,
        and said so: nothing goes silently)."""
        self._held.append((samples, metas))
        held = self.held_samples
        while held > self.max_held_samples and len(self._held) > 1:
            dropped, _ = self._held.pop(0)
            held -= len(dropped)
            stamps = sorted({s[3] for s in dropped if s[3] is not None})
            log.error(
                "the store has refused writes for %d passes: dropped %d StatsD samples flushed "
                "at %s to keep at most %d held in memory",
                len(self._held) + 1,
                len(dropped),
                ", ".join(map(str, stamps[:3])) or "?",
                self.max_held_samples,
            )

    def _store_held(self, now_ms: int) -> list[MetricMeta]:
        """Store the flushes earlier passes could not, each at the time it was flushed, in
        a write of their own (the same series at several times); return their metadata."""
        if not self._held:
            return []
        samples = [s for batch, _ in self._held for s in batch]
        self.store.write(samples, now_ms, add_labels=(("host", self.host),))
        metas = [m for _, batch in self._held for m in batch]
        log.warning(
            "stored %d StatsD samples held from %d pass(es) the store refused",
            len(samples),
            len(self._held),
        )
        self._held = []
        return metas

    def _store(
        self, scan: SpoolScan, extra: list[Sample], now_ms: int, started: float
    ) -> WriteResult:
        """The scan, the sources' samples and the self-metrics, in one write."""
        host = self.host
        out = scan.samples + extra  # the store adds host= (once per distinct label set)
        stored = scan.sample_count + len(extra)
        totals = dict(self._totals())
        for f, n in scan.bad_lines.items():
            totals[f] = totals.get(f, 0.0) + n
        for f in scan.ages:
            totals.setdefault(f, 0.0)
        for f, v in totals.items():
            out.append(Sample("signalbox_spool_errors_total", with_host((("file", f),), host), v))
        for f, age in scan.ages.items():
            out.append(
                Sample(
                    "signalbox_spool_file_age_seconds",
                    with_host((("file", f),), host),
                    round(age, 3),
                )
            )
        for f, limit in scan.stale_after.items():
            out.append(
                Sample(
                    "signalbox_spool_file_stale_after_seconds",
                    with_host((("file", f),), host),
                    limit,
                )
            )
        out.append(Sample("signalbox_spool_files", (("host", host),), float(scan.files_read)))
        out.append(Sample("signalbox_collect_samples", (("host", host),), float(stored)))
        elapsed = time.perf_counter() - started
        out.append(
            Sample("signalbox_collect_duration_seconds", (("host", host),), round(elapsed, 6))
        )
        ended, changes = self._ended(scan)
        result = self.store.write(
            out,
            now_ms,
            add_labels=(("host", host),),
            frames=scan.frames,
            layouts=scan.new_layouts,
            ended=ended,
            spool_files=changes or None,
        )
        self._error_totals = totals
        self._files = scan.files
        self._listed = frozenset(scan.ages) | frozenset(scan.stale_after)
        return result

    def _previous(self) -> dict[str, bytes | FileSeries]:
        """The file states of the last stored pass: this collector's, or on its first pass
        those the store kept from the last process (their key fingerprints unknown)."""
        if self._files is None:
            kept = self.store.spool_files((("host", self.host),))
            self._files = {
                n: st if isinstance(st, bytes) else FileSeries(None, st) for n, st in kept.items()
            }
            self._listed = frozenset(kept)
        return self._files

    def _ended(self, scan: SpoolScan) -> tuple[Ended | None, dict[str, SpoolFileState | None]]:
        """The series the last pass stored that this one's files no longer report: every
        series of a file gone, stale or refused, the lost lines of one that changed (the
        store keeps those this write stores), and the per-file self-metrics of a file no
        longer in the spool dir; and the file states the store must change."""
        before_all = self._previous()
        layouts: list[bytes] = []
        keys: list[SeriesKey] = []
        changes: dict[str, SpoolFileState | None] = {}
        for name, before in before_all.items():
            now = scan.files.get(name)
            if now is None:
                changes[name] = None
            if isinstance(before, bytes):
                if now != before:
                    layouts.append(before)  # the store leaves out what this write stores
                continue
            if isinstance(now, FileSeries) and now.fingerprint == before.fingerprint:
                continue
            old = series_keys(name, before.text)
            new = scan.keys.get(name, frozenset())
            keys.extend(old - new)
            if isinstance(now, FileSeries) and old == new:  # a new process, the same series
                before_all[name] = FileSeries(now.fingerprint, before.text)
        for name, now in scan.files.items():
            was = before_all.get(name)
            if isinstance(now, bytes):
                if now != was:
                    changes[name] = now
            elif not (isinstance(was, FileSeries) and was.fingerprint == now.fingerprint):
                changes[name] = now.text
        listed = frozenset(scan.ages) | frozenset(scan.stale_after)
        for name in self._listed - listed:
            labels = with_host((("file", name),), self.host)
            keys.append(("signalbox_spool_file_age_seconds", labels))
            keys.append(("signalbox_spool_file_stale_after_seconds", labels))
        return (Ended(layouts, keys) if layouts or keys else None), changes
