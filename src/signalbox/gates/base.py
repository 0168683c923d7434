"""The gate contract: a cached, shared, fail-closed yes/no on "may heavy work run now?".

A gate is asked once per job (or per checkpoint) by every worker thread, so asking must be
cheap: :meth:`Gate.check` answers from a cache for the gate's probe interval, and when the
cache is stale exactly one caller runs :meth:`Gate.probe` while the others wait for and share
its answer (a thousand jobs cost one probe). A probe that raises closes the gate with the
error as the reason -- a database we cannot ask is a database we must not load (fail closed,
as gh-ost does) -- and :meth:`Gate.check` itself never raises.

A worker attaches its gates to the store it shares with the other workers
(:meth:`Gate.share_through`, :mod:`signalbox.gates.shared`): the cache stays in front, and
when it is stale the process reads the cluster's shared decision instead of probing, so a
gate is probed once per interval across the cluster, not once per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from signalbox.clock import Clock

if TYPE_CHECKING:
    from signalbox.gates.shared import SharedDecisions

__all__ = [
    "DEFAULT_DELAY_S",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_PROBE_BUDGET_S",
    "CallableGate",
    "Decision",
    "Gate",
    "as_gate",
    "describe_error",
]

DEFAULT_INTERVAL_S = 2.0
"""How long a probe's answer is reused: short enough to react, long enough to cost nothing."""
DEFAULT_DELAY_S = 10.0
"""Suggested wait before asking again when closed (the queue doubles it while closed)."""
DEFAULT_PROBE_BUDGET_S = 4.0
"""The longest a probe without timeouts of its own is expected to take (a file, a flag)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One gate's answer: open or closed, why, and what it saw.

    ``delay_s`` is the suggested delay before retrying when closed (0 when open);
    ``reading`` holds the values the decision was made on (status variables, lag, the
    metric's value), JSON-friendly and free of secrets.
    """

    open: bool
    gate: str
    reason: str
    delay_s: float = 0.0
    reading: dict[str, Any] = field(default_factory=dict)


class _MonotonicClock:
    def now(self) -> float:
        return time.monotonic()


class Gate:
    """Base class: subclasses set ``name`` and implement :meth:`probe`.

    Args:
        name: what the gate is called in decisions, logs and metrics.
        interval: seconds a probe's answer is cached (and shared by every caller).
        delay: suggested delay (seconds) put on closed decisions that do not set one.
        clock: time source for the cache (monotonic by default; tests pass a FrozenClock).
        shared: False keeps this gate's probes in this process even under a worker whose
            store is shared (None or True: shared when the worker's store is).
    """

    name: str

    def __init__(
        self,
        name: str,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        delay: float = DEFAULT_DELAY_S,
        clock: Clock | None = None,
        shared: bool | None = None,
    ) -> None:
        if interval < 0:
            raise ValueError(f"gate {name!r}: interval must be >= 0, got {interval!r}")
        if delay < 0:
            raise ValueError(f"gate {name!r}: delay must be >= 0, got {delay!r}")
        self.name = name
        self.interval = float(interval)
        self.delay = float(delay)
        self._clock: Clock = clock or _MonotonicClock()
        self.shared = shared
        self._lock = threading.Lock()
        self._cached: Decision | None = None
        self._cached_until = 0.0
        self._secrets: tuple[str, ...] = ()
        self._sharing: SharedDecisions | None = None
        self.probes = 0
        """How many probes ran in this process (tests and benchmarks count them)."""

    # -- for subclasses -------------------------------------------------------------------

    def probe(self) -> Decision:
        """Ask the system now. May raise: :meth:`check` turns the error into a closed decision."""
        raise NotImplementedError(f"{type(self).__name__} must implement probe()")

    def opened(self, reason: str = "", reading: dict[str, Any] | None = None) -> Decision:
        """An open decision from this gate."""
        return Decision(True, self.name, reason or "open", 0.0, dict(reading or {}))

    def closed(self, reason: str, reading: dict[str, Any] | None = None) -> Decision:
        """A closed decision from this gate, with its suggested delay."""
        return Decision(False, self.name, reason, self.delay, dict(reading or {}))

    def probe_budget_s(self) -> float:
        """The longest one probe may take: its connect and read timeouts, per server. How
        long another process waits before taking the probe over from one that died."""
        timeout = getattr(self, "timeout", None) or getattr(self, "_timeout", None)
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            return DEFAULT_PROBE_BUDGET_S
        servers = getattr(self, "targets", None)
        return 2 * float(timeout) * (len(servers) if isinstance(servers, list) else 1)

    def probe_state(self) -> list[str]:
        """What one probe hands the next: the marks hysteresis holds tripped (a gate with
        marks keeps them in ``_tripped``). Shared with the decision, so the next probe, in
        whichever process, reopens only below the low marks."""
        return sorted(getattr(self, "_tripped", ()))

    def restore_probe_state(self, state: list[str]) -> None:
        """Continue from another process's :meth:`probe_state`."""
        if hasattr(self, "_tripped"):
            self._tripped = frozenset(state)

    def hide(self, secrets: Iterable[str | None]) -> None:
        """Strings (passwords) that must never appear in a reason: replaced by ``***``."""
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced."""
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    # -- for callers ----------------------------------------------------------------------

    def check(self) -> Decision:
        """The gate's current decision: cached for ``interval`` seconds, never raises.

        Stale, it is probed here -- or, when the gate is shared, read from the cluster's
        record (probed by whichever process's turn it is), cached until that turns stale."""
        cached = self._cached
        if cached is not None and self._clock.now() < self._cached_until:
            return cached
        with self._lock:
            # Another caller may have probed while this one waited for the lock: share it.
            if self._cached is not None and self._clock.now() < self._cached_until:
                return self._cached
            sharing = self._sharing
            if sharing is None:
                decision, ttl = self._probe_safely(), self.interval
            else:
                decision, ttl = sharing.decide(self)
            self._cached, self._cached_until = decision, self._clock.now() + ttl
            return decision

    def share_through(self, sharing: SharedDecisions | None) -> bool:
        """Take decisions from ``sharing``'s records from now on (None: probe here again).
        False, and nothing changes, for a gate kept local: ``shared=False``, or an interval
        of 0 (every check probes: there is nothing to share)."""
        if sharing is not None and (self.shared is False or self.interval <= 0):
            return False
        if self._sharing is not sharing:
            with self._lock:
                self._sharing = sharing
        return True

    @property
    def sharing(self) -> SharedDecisions | None:
        """Where this gate's decisions are shared (None: probed in this process)."""
        return self._sharing

    def reset(self) -> None:
        """Forget the cached decision, so the next :meth:`check` probes."""
        with self._lock:
            self._cached = None

    def _probe_safely(self) -> Decision:
        self.probes += 1
        try:
            d = self.probe()
        except Exception as e:  # fail closed: any error is a reason not to load the system
            return self.closed(self.redact(f"probe failed: {describe_error(e)}"), {"error": True})
        if not isinstance(d, Decision):
            return self.closed(f"probe returned {type(d).__name__}, not a Decision")
        if d.reason != self.redact(d.reason):
            d = replace(d, reason=self.redact(d.reason))
        if not d.open and d.delay_s <= 0:
            d = replace(d, delay_s=self.delay)
        if d.open and d.delay_s:
            d = replace(d, delay_s=0.0)
        return d

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def describe_error(e: BaseException) -> str:
    """``Type: message`` (the type alone when the message is empty)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class CallableGate(Gate):
    """A gate around a callable returning ``bool`` (open?) or a :class:`Decision`."""

    def __init__(
        self,
        fn: Callable[[], bool | Decision],
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name or _callable_name(fn), **kwargs)
        self.fn = fn

    def probe(self) -> Decision:
        result = self.fn()
        if isinstance(result, Decision):
            return replace(result, gate=self.name) if not result.gate else result
        if isinstance(result, bool):
            return self.opened() if result else self.closed(f"{self.name}() returned False")
        raise TypeError(f"{self.name}() returned {type(result).__name__}, not bool or Decision")


def _callable_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


def as_gate(obj: Gate | Callable[[], bool | Decision]) -> Gate:
    """A :class:`Gate` as is; a callable returning ``bool`` or :class:`Decision` wrapped,
    named after the callable (so ``gates=[lambda: ...]`` and plain functions just work)."""
    if isinstance(obj, Gate):
        return obj
    if callable(obj):
        return CallableGate(obj)
    raise TypeError(f"not a gate: {obj!r} (expected a Gate or a callable returning bool)")
