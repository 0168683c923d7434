"""Collection passes the store refused, held until it can write them: pure, no I/O.

When a pass's write fails (the database went away, a full disk, a lock held too long) the
collector keeps the *whole write* it made or would have made -- spool values, StatsD
flushes, self-metrics, the series it ended and the spool file states -- stamped with the
pass's time. When the store answers again the held passes are written first, oldest first,
each in a transaction of its own at its own time, then the current pass: a spool value read
at 12:01 is stored at 12:01, not at reconnect.

Written twice, a pass changes nothing: the store replaces a sample of a (series, timestamp)
it already has (rows and frames alike), stale markers and spool file states are upserts, and
a write that fails half-way is rolled back whole. A held write is replayed exactly as it was
attempted (frames stay frames), so a pass whose commit reached the database but whose
answer did not is written again over itself, never beside itself. StatsD counters are
cumulative: each flush carries the total so far, so none is counted twice and a dropped
flush loses only its own point, never the increments (the next flush's total has them).

Bounded by samples (``[collect] buffer_max_samples``): past it the *oldest* passes are
dropped, because the newest are what monitors and dashboards look at first, and each later
pass carries the counters' totals (dropping the newest would leave a hole at the end and
keep stale values). The newest pass is always kept, even alone over the bound (it is in
memory anyway for the pass). A dropped pass's stale markers and spool file states are
merged into the next held pass, so the store's view of the spool is never left behind.
Passes older than raw retention are dropped at replay: they would be deleted at once.

Held in memory, not in a spill file under the data dir: the outage that stops a SQLite
store is a full disk, the data dir's disk; the spool files are on disk already (their
latest values survive a restart); and StatsD's aggregates live in memory whatever we do (a
restart is a counter reset). What a restart during an outage loses is the intermediate
points, and the collector says how many when it stops.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.metrics.store import Ended, Frame, NewLayout, SpoolFileState

__all__ = ["DEFAULT_MAX_SAMPLES", "Drop", "HeldPass", "PassBuffer", "Span", "utc"]

DEFAULT_MAX_SAMPLES = 250_000
"""At most ~70 MB: a pass held as rows costs ~270 bytes a sample (measured with tracemalloc:
10k-20k labelled spool samples), as frames ~35. Spool files whose shape the store knew at
the last pass that reached it are held as frames (``bench/agent_catchup.py``); rows are
what a collector that never reached the store holds, and StatsD's samples."""


@dataclass(slots=True)
class HeldPass:
    """One pass's write, as :meth:`~signalbox.metrics.store.MetricWriter.write` takes it."""

    ts_ms: int
    samples: list[Sample]
    frames: list[Frame] = field(default_factory=list)
    layouts: list[NewLayout] = field(default_factory=list)
    ended: Ended | None = None
    spool_files: dict[str, SpoolFileState | None] = field(default_factory=dict)
    metas: list[MetricMeta] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Samples it stores: rows, frame values and new layouts' columns."""
        columns = sum(nl.size for nl in self.layouts if nl.columns is not None)
        return len(self.samples) + sum(len(f.values) for f in self.frames) + columns

    def absorb(self, older: HeldPass) -> None:
        """Take over what a dropped older pass changed besides samples: its stale markers
        (now at this pass's time) and spool file states (this pass's win), its metadata."""
        merged = {**older.spool_files, **self.spool_files}
        self.spool_files = merged
        if older.ended is not None:
            mine = self.ended or Ended()
            self.ended = Ended(
                [*older.ended.layouts, *mine.layouts], [*older.ended.series, *mine.series]
            )
        self.metas = [*older.metas, *self.metas]


@dataclass(frozen=True, slots=True)
class Span:
    """Some passes: how many, their samples, their first and last times."""

    passes: int = 0
    samples: int = 0
    first_ms: int = 0
    last_ms: int = 0

    def add(self, p: HeldPass) -> Span:
        if not self.passes:
            return Span(1, p.size, p.ts_ms, p.ts_ms)
        return Span(
            self.passes + 1,
            self.samples + p.size,
            min(self.first_ms, p.ts_ms),
            max(self.last_ms, p.ts_ms),
        )

    def __str__(self) -> str:
        times = utc(self.first_ms)
        if self.last_ms != self.first_ms:
            times += f" to {utc(self.last_ms)}"
        return f"{self.samples} samples of {self.passes} pass(es) at {times}"


@dataclass(frozen=True, slots=True)
class Drop:
    """Passes the buffer let go, and why: ``"bound"`` (buffer_max_samples), ``"age"``
    (older than raw retention) or ``"refused"`` (the store refuses that write itself)."""

    span: Span
    reason: str


def utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


class PassBuffer:
    """Held passes, oldest first, within ``max_samples`` (see the module docstring).

    It also keeps the tallies of the current *episode* (from the first held pass until the
    buffer is empty again), so the log can say what happened once per episode, and the
    totals since start for the ``signalbox_agent_*`` metrics.
    """

    def __init__(self, max_samples: int = DEFAULT_MAX_SAMPLES, max_age_ms: int = 0) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples: at least 1, not {max_samples}")
        self.max_samples = max_samples
        self.max_age_ms = max_age_ms  # 0: no age limit
        self.passes: deque[HeldPass] = deque()
        self.samples = 0
        self.dropped_samples_total = 0
        self.dropped_passes_total = 0
        self.held: Span = Span()  # this episode: every pass held
        self.stored: Span = Span()  # this episode: held passes written since
        self.dropped: Span = Span()  # this episode: held passes dropped
        self.bound_said = False  # this episode: the log said the bound was hit

    def __len__(self) -> int:
        return len(self.passes)

    @property
    def oldest_ms(self) -> int | None:
        return self.passes[0].ts_ms if self.passes else None

    def hold(self, p: HeldPass) -> Drop | None:
        """Keep ``p`` (the newest); drop the oldest passes past the bound."""
        self.passes.append(p)
        self.samples += p.size
        self.held = self.held.add(p)
        gone = Span()
        while self.samples > self.max_samples and len(self.passes) > 1:
            old = self.passes.popleft()
            self.passes[0].absorb(old)
            gone = self._forget(old, gone)
        return Drop(gone, "bound") if gone.passes else None

    def expire(self, now_ms: int) -> Drop | None:
        """Drop the passes older than ``max_age_ms`` (kept: their changes of state)."""
        gone = Span()
        while (
            self.max_age_ms
            and len(self.passes) > 1
            and self.passes[0].ts_ms < now_ms - self.max_age_ms
        ):
            old = self.passes.popleft()
            self.passes[0].absorb(old)
            gone = self._forget(old, gone)
        return Drop(gone, "age") if gone.passes else None

    def refuse_oldest(self) -> Drop:
        """Drop the oldest pass: the store refuses its write as such (it can never go in)."""
        old = self.passes.popleft()
        if self.passes:
            self.passes[0].absorb(old)
        return Drop(self._forget(old, Span()), "refused")

    def stored_oldest(self) -> HeldPass:
        """The oldest pass was written: let it go."""
        p = self.passes.popleft()
        self.samples -= p.size
        self.stored = self.stored.add(p)
        return p

    def end_episode(self) -> tuple[Span, Span, Span]:
        """(held, stored, dropped) of the episode that just ended (the buffer is empty)."""
        out = (self.held, self.stored, self.dropped)
        self.held, self.stored, self.dropped = Span(), Span(), Span()
        self.bound_said = False
        return out

    def _forget(self, old: HeldPass, gone: Span) -> Span:
        self.samples -= old.size
        self.dropped_samples_total += old.size
        self.dropped_passes_total += 1
        self.dropped = self.dropped.add(old)
        return gone.add(old)
