"""What one query may cost: a deadline, a number of samples, a place in the heavy lane.

Prometheus bounds a query by time (``--query.timeout``) and by the samples it holds
(``--query.max-samples``) and checks both while it works; so does this. A :class:`Budget` is
made per query and made *current* (a context variable) for its evaluation, so the layers
that do the work charge it as they go without passing it through every call: the store per
partition it reads (:func:`charge`), the engine per series it computes. Past a limit the
work stops with a :class:`~signalbox.exceptions.QueryLimitError` naming the limit.

Heavy queries also take turns: a query starts in the light lane, and once it has charged
``heavy_samples`` it must take one of ``heavy_concurrency`` heavy slots (waiting for one,
within its deadline) before it goes on. A few heavy queries then run at a time however many
are sent, and a cheap query never queues behind them: only what turned out heavy waits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from signalbox.exceptions import QueryLimitError

__all__ = [
    "Budget",
    "HeavyLane",
    "QueryLimits",
    "ahead",
    "charge",
    "check_deadline",
    "current",
    "expired",
    "running",
]


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """The ``[query]`` limits of signalbox.toml (see :mod:`signalbox.query.settings`).

    Args:
        timeout_s: a query stops (503, ``timeout``) after this long, queue wait included.
        max_samples: a query stops (422) once it has loaded and computed this many samples.
        max_concurrency: queries evaluated at once over HTTP; more wait in a queue.
        heavy_samples: past this many samples a query is heavy and needs a heavy slot.
        heavy_concurrency: heavy queries running at once; the rest wait for a slot.
    """

    timeout_s: float = 120.0
    max_samples: int = 50_000_000
    max_concurrency: int = 20
    heavy_samples: int = 1_000_000
    heavy_concurrency: int = 2


class HeavyLane:
    """The heavy slots one server shares between its queries, and how many wait for one."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.waiting = 0

    def acquire(self, timeout_s: float) -> bool:
        with self._lock:
            self.waiting += 1
        try:
            return self._sem.acquire(timeout=max(0.0, timeout_s))
        finally:
            with self._lock:
                self.waiting -= 1

    def release(self) -> None:
        self._sem.release()


class Budget:
    """One query's account: samples charged so far, its deadline, its heavy slot if any."""

    __slots__ = (
        "_heavy_taken",
        "cancelled",
        "deadline",
        "lane",
        "limits",
        "on_heavy",
        "samples",
        "started",
        "where",
    )

    def __init__(
        self,
        limits: QueryLimits,
        *,
        lane: HeavyLane | None = None,
        started: float | None = None,
        where: str = "signalbox.toml [query]",
    ) -> None:
        self.limits = limits
        self.lane = lane
        self.started = time.monotonic() if started is None else started
        self.deadline = self.started + limits.timeout_s
        self.samples = 0
        self.where = where
        self._heavy_taken = False
        self.cancelled: str | None = None
        """Why the query was cancelled (its client went away), once it was."""
        self.on_heavy: Callable[[], None] | None = None
        """Called once when the query turns heavy, before it waits for a heavy slot (the
        HTTP gate gives back the query's place among the ``max_concurrency`` then)."""

    def charge(self, n: int) -> None:
        """Count ``n`` more samples held (negative: an estimate settled); stop the query
        past a limit (or its deadline)."""
        self.samples += n
        if self.samples > self.limits.max_samples:
            raise QueryLimitError(
                "samples",
                "query processing would load too many samples into memory in query execution: "
                f"more than {self.limits.max_samples:,} (query.max_samples in {self.where}); "
                "narrow the selectors, shorten the range or raise the step",
            )
        self.check_deadline("expression evaluation")
        if (
            self.lane is not None
            and not self._heavy_taken
            and self.samples > self.limits.heavy_samples
        ):
            self._take_heavy_slot()

    def check_deadline(self, stage: str = "expression evaluation") -> None:
        if time.monotonic() > self.deadline:
            raise self.timeout(stage)

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def cancel(self, why: str) -> None:
        """Stop the query at its next check, from any thread: its deadline is moved to the
        past, so every place that checks the deadline (the engine per series, the store per
        partition, SQLite's progress handler mid-statement, a wait for a heavy slot) stops
        it, with a ``cancelled`` error instead of a timeout."""
        self.cancelled = why
        self.deadline = -math.inf

    def timeout(self, stage: str) -> QueryLimitError:
        if self.cancelled is not None:
            return QueryLimitError("cancelled", f"query cancelled in {stage}: {self.cancelled}")
        return QueryLimitError(
            "timeout",
            f"query timed out in {stage}: it ran longer than {self.limits.timeout_s:g}s "
            f"(query.timeout in {self.where})",
        )

    def _take_heavy_slot(self) -> None:
        assert self.lane is not None
        if self.on_heavy is not None:
            self.on_heavy()
        if not self.lane.acquire(self.deadline - time.monotonic()):
            raise self.timeout("the heavy query queue")
        self._heavy_taken = True

    def release(self) -> None:
        """Give back the heavy slot, if this query took one (always call when done)."""
        if self._heavy_taken and self.lane is not None:
            self._heavy_taken = False
            self.lane.release()


_current: ContextVar[Budget | None] = ContextVar("signalbox_query_budget", default=None)


def current() -> Budget | None:
    """The budget of the query being evaluated in this context, if any."""
    return _current.get()


@contextmanager
def running(budget: Budget | None) -> Iterator[Budget | None]:
    """Make ``budget`` current for the block and release its heavy slot after."""
    if budget is None:
        yield None
        return
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
        budget.release()


def charge(n: int) -> None:
    """Charge ``n`` samples to the current query, if one is being limited (else free)."""
    b = _current.get()
    if b is not None:
        b.charge(n)


def ahead(estimate: int) -> int:
    """Charge an estimate of what a read will hold *before* the read, up to just past the
    heavy threshold (so a heavy query waits its turn before it works, but an estimate never
    refuses a query on its own); returns what was charged, to settle with the real count
    (``charge(actual - charged)``, which may give some back)."""
    b = _current.get()
    if b is None:
        return 0
    n = max(0, min(estimate, b.limits.heavy_samples + 1))
    b.charge(n)
    return n


def check_deadline(stage: str = "expression evaluation") -> None:
    b = _current.get()
    if b is not None:
        b.check_deadline(stage)


def expired() -> Callable[[], int] | None:
    """A SQLite progress handler that interrupts a statement once the current query is past
    its deadline (nonzero = stop), or None when no query is being limited."""
    b = _current.get()
    if b is None:
        return None

    def handler() -> int:  # reads the deadline each time: a cancel moves it
        return 1 if time.monotonic() > b.deadline else 0

    return handler
