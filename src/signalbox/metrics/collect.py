"""One collection pass: spool files + StatsD buffer + self-metrics → the store.

The same pass serves ``collect --once`` (cron), ``agent`` and ``serve``. It never raises on
bad input: problems are logged once per file version and counted in
``signalbox_spool_errors_total{file}``.

A pass the store refuses (the database went away, a full disk:
:class:`~signalbox.exceptions.DiskFullError`) raises, and loses nothing: its write is rolled
back whole and held, with the spool values and StatsD flushes of that moment, in a bounded
:class:`~signalbox.metrics.buffer.PassBuffer`; the next pass that can write stores the held
passes first, oldest first, each at its own time (the module says why that is exact).

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
from signalbox.exceptions import StoreError
from signalbox.gcpause import gc_paused
from signalbox.metrics.buffer import DEFAULT_MAX_SAMPLES, Drop, HeldPass, PassBuffer, Span, utc
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

MAX_HELD_SAMPLES = DEFAULT_MAX_SAMPLES
"""Most samples of refused passes held for the next pass that can write (``[collect]
buffer_max_samples``). Past it the oldest passes are dropped, and the log says how many
samples of which times: what is lost then is those passes' points (spool values, timer
quantiles, set counts), never a counter's increments, which every later flush carries."""

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
    MetricMeta(
        "signalbox_agent_buffer_samples",
        "gauge",
        "Samples of passes the store refused, held to be stored at their own times.",
    ),
    MetricMeta("signalbox_agent_buffer_passes", "gauge", "Passes the store refused, held."),
    MetricMeta(
        "signalbox_agent_buffer_max_samples",
        "gauge",
        "Most samples held ([collect] buffer_max_samples).",
    ),
    MetricMeta(
        "signalbox_agent_buffer_oldest_age_seconds",
        "gauge",
        "Age of the oldest held pass: how long the store has refused writes (0: none held).",
    ),
    MetricMeta(
        "signalbox_agent_dropped_samples_total",
        "counter",
        "Samples of held passes dropped: past buffer_max_samples or raw retention.",
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


@dataclass(slots=True)
class _Pass:
    """A pass's write and what the collector keeps of it once stored or held: the spool
    error totals and the scan whose files the next pass compares with (None: unknown)."""

    write: HeldPass
    totals: dict[str, float] | None
    scan: SpoolScan | None


def with_host(labels: Labels, host: str) -> Labels:
    """Add ``host`` unless the writer set it (a file may speak for another machine)."""
    for k, _ in labels:
        if k == "host":
            return labels
    if not labels:
        return (("host", host),)
    return tuple(sorted((*labels, ("host", host))))


STALE_LOGGED = 10
"""Newly stale spool files a pass names in the log; the rest are counted in one line."""


def _problem_key(p: SpoolProblem) -> tuple[str, int, str]:
    """What makes a problem the same as last pass's: a stale file's age is left out."""
    return (p.file, p.line, "stale" if p.kind == "stale" else p.reason)


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
        buffer: PassBuffer | None = None,
        hold: bool = True,
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
        self.hold = hold
        """Hold refused passes for later ones (``serve``, ``agent``); ``collect --once``
        does not: it exits, and the next run reads the spool files again."""
        self.buffer = PassBuffer(MAX_HELD_SAMPLES) if buffer is None else buffer
        """Passes the store refused, to be written by the next pass that can."""
        self.on_held: Callable[[HeldPass], None] | None = None
        """Told of each pass held (the agent's ``/metrics`` shows it: what it collects)."""
        self._attempt: _Pass | None = None  # the write this pass is trying
        self._layouts: frozenset[bytes] | None = None
        """The shapes the store knew at the last pass that asked: a pass held without
        asking sends frames of those (~40 bytes a value held, not ~270; written ~6x
        faster), unless a series in two files made the last pass read carefully."""
        self._careful = False
        self._files: dict[str, bytes | FileSeries] | None = None
        """What each file stored at the last stored pass (see SpoolScan.files); None until
        read from the store."""
        self._listed: frozenset[str] = frozenset()
        """Files whose age the last stored pass reported."""

    @property
    def held_samples(self) -> int:
        """Samples of refused passes waiting for a pass that can store them."""
        return self.buffer.samples

    @property
    def max_held_samples(self) -> int:
        return self.buffer.max_samples

    @max_held_samples.setter
    def max_held_samples(self, n: int) -> None:
        self.buffer.max_samples = n

    def _log_problem(self, p: SpoolProblem) -> None:
        level = logging.INFO if p.kind == "ignored" else logging.WARNING
        log.log(level, "spool %s", p)

    def _report(self, problems: list[SpoolProblem]) -> None:
        """Report each problem once per distinct (file, line, reason) until it goes away.

        A stale file's reason gives its age, which grows every pass: it is the same problem
        until the file is collected again (it was reported every pass). Logged by default,
        at most :data:`STALE_LOGGED` newly stale files a pass are named and the rest counted
        in one line: a serve started on 2,000 old spool files wrote 2,000 warnings."""
        current = {_problem_key(p) for p in problems}
        new = [p for p in problems if _problem_key(p) not in self._seen]
        self._seen = current
        more: set[int] = set()
        if self.on_problem == self._log_problem:
            stale = [p for p in new if p.kind == "stale"]
            more = {id(p) for p in stale[STALE_LOGGED:]}
        for p in new:
            if id(p) not in more:
                self.on_problem(p)
        if more:
            log.warning(
                "spool: %d more files are stale (not updated within their stale_after); "
                "their values are not collected",
                len(more),
            )

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

    def _scan(
        self,
        now_ms: int,
        *,
        frames: bool,
        careful: bool = False,
        layouts: frozenset[bytes] | None = None,
    ) -> SpoolScan:
        """``frames``: the shapes the store knows, asked now (``layouts``: as known)."""
        if frames:
            layouts = self._layouts = self.store.known_layouts((("host", self.host),))
        return scan_spool(
            self.spool_dir,
            now_ms=now_ms,
            max_file_bytes=self.max_file_bytes,
            stale_after_s=self.stale_after_s,
            layouts=layouts,
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
        self._attempt = None
        try:
            backlog = self._store_held(now_ms)
            scan = self._scan(now_ms, frames=True)
            try:
                result = self._store(scan, extra, extra_metas, now_ms, started)
                self._careful = False
            except DuplicateSeries:  # a series in two files, one of them a frame or layout
                self._attempt = None  # nothing written: not to be held
                self._careful = True
                scan = self._scan(now_ms, frames=True, careful=True)  # parse every file
                try:
                    result = self._store(scan, extra, extra_metas, now_ms, started)
                except DuplicateSeries:  # a spool series a source sent too: no frames
                    self._attempt = None
                    scan = self._scan(now_ms, frames=False)
                    result = self._store(scan, extra, extra_metas, now_ms, started)
        except BaseException:
            if self.hold:
                try:
                    self._hold_pass(now_ms, extra, extra_metas, started)
                except Exception:  # the pass's own error is the one to raise
                    log.exception("could not hold the pass at %s: it is lost", utc(now_ms))
            raise
        assert self._attempt is not None
        self._accept(self._attempt)
        self._attempt = None
        self.store.write_metadata([*SELF_METRICS, *scan.metas, *backlog, *extra_metas])
        self._report(scan.problems)
        return PassReport(
            result.written, result.new_series, scan.problems, time.perf_counter() - started
        )

    def _hold_pass(
        self,
        now_ms: int,
        extra: list[Sample],
        extra_metas: list[MetricMeta],
        started: float,
    ) -> None:
        """Keep the pass the store refused: the write it attempted (it may have reached the
        database: written again, it replaces itself), else one built from a scan that asks
        the store nothing. Said once per episode; drops past the bound once too."""
        attempt, self._attempt = self._attempt, None
        if attempt is None:
            known = None if self._careful else self._layouts
            scan = self._scan(now_ms, frames=False, layouts=known)
            attempt = self._build(scan, extra, extra_metas, now_ms, started, known=False)
            self._report(scan.problems)
        first = not self.buffer
        self._accept(attempt)
        held = attempt.write
        if self.on_held is not None:
            self.on_held(held)
        drop = self.buffer.hold(held)
        if first:  # the loop logs the error itself
            log.warning(
                "holding the collection passes the store refuses in memory from %s, to store "
                "them at their own times once it can (at most %d samples)",
                utc(held.ts_ms),
                self.buffer.max_samples,
            )
        if drop is not None and not self.buffer.bound_said:
            self.buffer.bound_said = True
            log.error(
                "held passes passed buffer_max_samples (%d): dropped the oldest, %s; "
                "older ones are dropped as newer come, counted in "
                "signalbox_agent_dropped_samples_total and summed up when the store returns",
                self.buffer.max_samples,
                drop.span,
            )

    def _store_held(self, now_ms: int) -> list[MetricMeta]:
        """Write the passes earlier passes could not, oldest first, each at its own time in
        a transaction of its own; return their metadata. Raises at the first refused."""
        buf = self.buffer
        if not buf:
            return []
        metas: list[MetricMeta] = []
        drop = buf.expire(now_ms)
        if drop is not None:
            log.error("dropped %s: older than raw retention", drop.span)
        host = (("host", self.host),)
        known = self.store.known_layouts(host) if any(p.frames for p in buf.passes) else None
        while buf:
            p = buf.passes[0]
            if known is not None and not {f.layout for f in p.frames} <= known:
                # its file shapes left the store (retention dropped them): never writable
                e = StoreError("its frames name file shapes the store no longer has")
                self._said_refused(buf.refuse_oldest(), e)
                continue
            try:
                self.store.write(
                    p.samples,
                    p.ts_ms,
                    add_labels=(("host", self.host),),
                    frames=p.frames,
                    layouts=p.layouts,
                    ended=p.ended,
                    spool_files=p.spool_files or None,
                )
            except DuplicateSeries as e:  # nothing written, and never will be: let it go
                self._said_refused(buf.refuse_oldest(), e)
                continue
            metas.extend(buf.stored_oldest().metas)
            if known is not None:  # shapes this pass registered
                known = known | {nl.layout for nl in p.layouts}
        _, stored, dropped = buf.end_episode()
        log.warning(
            "the store takes writes again: stored %s it had refused, each at its own time%s",
            stored if stored.passes else "none of the passes",
            f"; dropped {dropped}" if dropped.passes else "",
        )
        return metas

    def close(self) -> None:
        """Say what the store never took: held passes are in memory only (see
        :mod:`signalbox.metrics.buffer` for why), so a process stopping now loses them."""
        if self.buffer:
            held = Span()
            for p in self.buffer.passes:
                held = held.add(p)
            log.error("stopping with %s the store refused: not stored", held)

    @staticmethod
    def _said_refused(drop: Drop, e: Exception) -> None:
        log.error("dropped %s: the store refuses that write (%s)", drop.span, e)

    def _build(
        self,
        scan: SpoolScan,
        extra: list[Sample],
        extra_metas: list[MetricMeta],
        now_ms: int,
        started: float,
        *,
        known: bool = True,
    ) -> _Pass:
        """The scan, the sources' samples and the self-metrics as one write. ``known``: the
        store may be asked what the last stored pass left (else what it does not know
        from this process is left out: error totals, series ended)."""
        host = self.host
        out = scan.samples + extra  # the store adds host= (once per distinct label set)
        stored = scan.sample_count + len(extra)
        totals = dict(self._totals()) if known or self._error_totals is not None else None
        if totals is not None:
            for f, n in scan.bad_lines.items():
                totals[f] = totals.get(f, 0.0) + n
            for f in scan.ages:
                totals.setdefault(f, 0.0)
            for f, v in totals.items():
                out.append(
                    Sample("signalbox_spool_errors_total", with_host((("file", f),), host), v)
                )
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
        h = (("host", host),)
        buf = self.buffer
        oldest = buf.oldest_ms
        out.append(Sample("signalbox_spool_files", h, float(scan.files_read)))
        out.append(Sample("signalbox_collect_samples", h, float(stored)))
        if self.hold:
            out.append(Sample("signalbox_agent_buffer_samples", h, float(buf.samples)))
            out.append(Sample("signalbox_agent_buffer_passes", h, float(len(buf))))
            out.append(Sample("signalbox_agent_buffer_max_samples", h, float(buf.max_samples)))
            age = 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000)
            out.append(Sample("signalbox_agent_buffer_oldest_age_seconds", h, age))
            dropped = float(buf.dropped_samples_total)
            out.append(Sample("signalbox_agent_dropped_samples_total", h, dropped))
        elapsed = time.perf_counter() - started
        out.append(Sample("signalbox_collect_duration_seconds", h, round(elapsed, 6)))
        if known or self._files is not None:
            ended, changes = self._ended(scan)
        else:
            ended, changes = None, {}
        write = HeldPass(
            now_ms,
            out,
            list(scan.frames),
            list(scan.new_layouts),
            ended,
            dict(changes),
            [*SELF_METRICS, *scan.metas, *extra_metas],
        )
        return _Pass(write, totals, scan if known or self._files is not None else None)

    def _accept(self, p: _Pass) -> None:
        """``p`` was stored or held: later passes are told apart from it."""
        if p.totals is not None:
            self._error_totals = p.totals
        if p.scan is not None:
            self._files = p.scan.files
            self._listed = frozenset(p.scan.ages) | frozenset(p.scan.stale_after)

    def _store(
        self,
        scan: SpoolScan,
        extra: list[Sample],
        extra_metas: list[MetricMeta],
        now_ms: int,
        started: float,
    ) -> WriteResult:
        """The scan, the sources' samples and the self-metrics, in one write."""
        self._attempt = self._build(scan, extra, extra_metas, now_ms, started)
        p = self._attempt.write
        return self.store.write(
            p.samples,
            now_ms,
            add_labels=(("host", self.host),),
            frames=p.frames,
            layouts=p.layouts,
            ended=p.ended,
            spool_files=p.spool_files or None,
        )

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
