"""Flags in memory: what :func:`signalbox.flags.enabled` answers from.

:meth:`FlagCache.enabled` is a dict lookup and one precompiled decision (a constant for
flags fully on or off, ``crc32`` of the actor continued from the flag name's own ``crc32``
for a plain rollout): no I/O, no lock, never an exception. A background thread
(:meth:`FlagCache.start`) re-reads the store every ``refresh_s`` and swaps the decisions in;
the same pass adds the evaluation counts to the store, so ``flags list --stale`` sees which
flags nobody evaluates in any process.

A second thread listens to the store's change notifications (LISTEN/NOTIFY on PostgreSQL,
the event table on SQLite: :meth:`~signalbox.flags.store.SQLFlagStore.listener`) and
re-reads as soon as a change commits, so a kill switch reaches every process at once
instead of within ``refresh_s``. Polling goes on beside it: a lost listener (the server
restarted, its connection was killed) is only a slower path, logged once, retried with
backoff (:func:`~signalbox.storage.backoff.backoff_s`) and re-read when it is back, since
what changed meanwhile was not announced; ``signalbox_flags_listening`` says which it is.

When the store cannot be read the cache keeps answering from the last state it read (from
the declared defaults if it never read one), logs the outage once and its end once, and says
so in :meth:`FlagCache.samples` (``signalbox_flags_store_up`` 0,
``signalbox_flags_state_age_seconds`` growing). A flag declared nowhere is off, reported
once per process (log, and ``signalbox_flags_undeclared_total``).

Counting is one attribute increment per evaluation, without a lock: two threads may now and
then count one evaluation instead of two. The counts exist to tell a used flag from an
unused one, which that never changes.
"""

from __future__ import annotations

import logging
import random
import threading
import zlib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from signalbox.clock import Clock, SystemClock
from signalbox.flags.context import _request
from signalbox.flags.declarations import declared_in_code
from signalbox.flags.evaluate import evaluate
from signalbox.flags.model import BUCKETS, FlagDecl, FlagState, StoredFlag
from signalbox.flags.store import FlagStore
from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.storage.backoff import backoff_s

__all__ = ["DarkStats", "FlagCache", "Resolution"]

log = logging.getLogger("signalbox.flags")

Decide = Callable[[object], bool]

METAS = (
    MetricMeta("signalbox_flags_store_up", "gauge", "1 while the flag store can be read."),
    MetricMeta(
        "signalbox_flags_state_age_seconds",
        "gauge",
        "Since the flag state in memory was last read from the store.",
    ),
    MetricMeta("signalbox_flags_refresh_failures_total", "counter", "Failed store reads."),
    MetricMeta(
        "signalbox_flags_listening",
        "gauge",
        "1 while flag changes are pushed to this process (else it polls only).",
    ),
    MetricMeta(
        "signalbox_flags_listen_failures_total",
        "counter",
        "Change listeners lost or refused (each retried with backoff).",
    ),
    MetricMeta("signalbox_flag_evaluations_total", "counter", "Evaluations per flag."),
    MetricMeta(
        "signalbox_flags_undeclared_total", "counter", "Flags evaluated but declared nowhere."
    ),
    MetricMeta("signalbox_flag_dark_runs_total", "counter", "Dark-launch runs by outcome."),
)


def _never(actor: object) -> bool:
    return False


def _always(actor: object) -> bool:
    return True


_OFF, _ON, _SHARE, _GENERAL = 0, 1, 2, 3
_MAX_UNDECLARED = 1000  # names remembered (and reported) at most: a name built from input
_LISTEN_WAIT_S = 0.25  # one wait for notices: how soon the listening thread sees stop()


class _Entry:
    """One declared flag: how to decide (swapped whole on refresh) and how often it was
    asked. ``kind`` picks the inlined decision: off, on, a plain percentage of actors
    (``share`` of the buckets, ``prefix`` the crc32 of ``name + ":"``), or ``decide``."""

    __slots__ = ("count", "decide", "decl", "kind", "prefix", "share", "state")

    def __init__(
        self, decl: FlagDecl, state: FlagState, kind: int, decide: Decide, count: int = 0
    ) -> None:
        self.decl, self.state, self.kind, self.decide, self.count = (
            decl,
            state,
            kind,
            decide,
            count,
        )
        self.share = state.actors_share
        self.prefix = zlib.crc32(f"{decl.name}:".encode())


def _make_enabled(
    entries: Mapping[str, _Entry], missing: Callable[[str, object], bool]
) -> Callable[[str, object], bool]:
    """The hot path over ``entries`` (a dict changed in place, never replaced): one lookup,
    a count, the decision inlined for the common kinds, one context-variable read."""
    crc, get_request = zlib.crc32, _request.get

    def enabled(name: str, actor: object = None) -> bool:
        """Whether ``name`` is on for ``actor``; from memory, never raises."""
        try:
            e = entries[name]
        except KeyError:
            return missing(name, actor)
        e.count += 1
        kind = e.kind
        if kind == _SHARE and type(actor) is str:
            answer = crc(actor.encode(), e.prefix) % BUCKETS < e.share
        elif kind == _OFF:
            answer = False
        elif kind == _ON:
            answer = True
        else:
            try:
                answer = e.decide(actor)
            except Exception:  # a group predicate's bug must not break the caller
                answer = False
        req = get_request()
        if req is not None:
            if req.active and name in req.overrides:
                answer = req.overrides[name]
            req.seen.append((name, answer))
        return answer

    return enabled


class Resolution(NamedTuple):
    """An answer with why: ``reason`` is the gate (see :mod:`signalbox.flags.evaluate`),
    ``override`` (staff), ``undeclared`` or ``error``; ``values`` the declared
    ``(on, off)`` values of a flag that selects one."""

    value: bool
    reason: str
    declared: bool
    values: tuple[str | int | float, str | int | float] | None = None


@dataclass(slots=True)
class DarkStats:
    """One dark launch's runs: matches and mismatches when a control result was given."""

    runs: int = 0
    errors: int = 0
    matches: int = 0
    mismatches: int = 0


_UNSET: Any = object()


class FlagCache:
    """The flags one process evaluates (see the module docstring).

    Args:
        store: the store, or a function opening it (called again at each refresh until it
            works: a process may start while the store is down).
        declarations: the flags declared in files; those :func:`~signalbox.flags.declare`
            adds in code join at each refresh (a file's declaration wins).
        groups: the registered group predicates (a live mapping: registering later works).
        listen: re-read as soon as the store announces a change (when it can: see the
            module docstring); polling every ``refresh_s`` goes on either way.
        listen_poll_s: how often SQLite's event table is read by the listener.
        listen_backoff_s: (first, longest) wait before listening again after a failure.
        rng: draws the backoff's jitter.
    """

    def __init__(
        self,
        store: FlagStore | Callable[[], FlagStore],
        declarations: Mapping[str, FlagDecl],
        *,
        refresh_s: float = 2.0,
        clock: Clock | None = None,
        groups: MutableMapping[str, Callable[[object], bool]] | None = None,
        rand: Callable[[], float] = random.random,
        override: bool = False,
        override_param: str = "features",
        override_header: str = "X-Signalbox-Features",
        listen: bool = True,
        listen_poll_s: float = 0.2,
        listen_backoff_s: tuple[float, float] = (0.5, 30.0),
        rng: random.Random | None = None,
    ) -> None:
        self._store: FlagStore | None = None
        self._open: Callable[[], FlagStore] | None = None
        if callable(store) and not hasattr(store, "states"):
            self._open = store
        else:
            self._store = store  # type: ignore[assignment]
        self._files = dict(declarations)
        self.refresh_s = refresh_s
        self.clock: Clock = clock or SystemClock()
        self.groups: MutableMapping[str, Callable[[object], bool]] = (
            {} if groups is None else groups
        )
        self._rand = rand
        self.override, self.override_param, self.override_header = (
            override,
            override_param,
            override_header,
        )
        self._entries: dict[str, _Entry] = {}
        self.enabled = _make_enabled(self._entries, self._not_declared)
        """``enabled(name, actor=None) -> bool``: the hot path (see :func:`_make_enabled`)."""
        self.stored: dict[str, StoredFlag] = {}
        self._flushed: dict[str, int] = {}
        self.store_up = False
        self.last_read: float | None = None
        self.refresh_failures = 0
        self.undeclared: dict[str, int] = {}
        self.group_errors = 0
        self.dark_stats: dict[str, DarkStats] = {}
        self._lock = threading.Lock()  # refreshes, never evaluations
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listen, self.listen_poll_s, self.listen_backoff_s = (
            listen,
            listen_poll_s,
            listen_backoff_s,
        )
        self._rng = rng or random.Random()
        self._listen_thread: threading.Thread | None = None
        self._life = threading.Lock()  # start() and stop() of the threads, one at a time
        self._stopped = False
        self.listening = False
        """Whether changes are pushed to this process now (a listener is connected)."""
        self.listen_failures = 0
        self.publish: Callable[[list[Sample]], None] | None = None
        """Called with :meth:`samples` after every refresh, in the refresh thread (the
        process's client hands them to a metrics client, so they reach the store)."""
        self._install(self._declarations(), {})

    # -- the hot path -----------------------------------------------------------------

    def resolve(self, name: str, actor: object = None) -> Resolution:
        """As :meth:`enabled`, with the reason (for OpenFeature and people)."""
        e = self._entries.get(name)
        if e is None:
            if self._take_code_declaration(name):
                return self.resolve(name, actor)
            return Resolution(self._not_declared(name, actor), "undeclared", False)
        e.count += 1
        why: str
        if e.kind == _SHARE and type(actor) is str:
            value = zlib.crc32(actor.encode(), e.prefix) % BUCKETS < e.share
            why = "percentage_of_actors" if value else "no_gate"
        else:
            try:
                value, why = evaluate(
                    name,
                    e.state,
                    actor,
                    groups=self.groups,
                    draw=self._rand(),
                    on_group_error=self._group_error,
                )
            except Exception:
                value, why = False, "error"
        req = _request.get()
        if req is not None:
            if req.active and name in req.overrides:
                value, why = req.overrides[name], "override"
            req.seen.append((name, value))
        return Resolution(value, why, True, e.decl.values)

    def _take_code_declaration(self, name: str) -> bool:
        """A flag declared in code after the last refresh: take it in now."""
        decl = declared_in_code().get(name)
        if decl is None:
            return False
        with self._lock:
            if name not in self._entries:
                self._install({**self._declarations(), name: decl}, self.stored)
        return True

    def _not_declared(self, name: str, actor: object) -> bool:
        if self._take_code_declaration(name):
            return self.enabled(name, actor)
        n = self.undeclared.get(name, 0)
        if n or len(self.undeclared) < _MAX_UNDECLARED:
            self.undeclared[name] = n + 1
        if not n:
            log.warning(
                "flag %r is not declared (in flags/*.yaml or flags.declare()): it is off", name
            )
        req = _request.get()
        if req is not None:
            req.seen.append((name, False))
        return False

    def _group_error(self, group: str, exc: BaseException) -> None:
        self.group_errors += 1
        if self.group_errors == 1:
            log.warning("flag group %r raised %r: taken as not in the group", group, exc)

    # -- compiling states into decisions ----------------------------------------------

    def _entry(self, decl: FlagDecl, state: FlagState, count: int = 0) -> _Entry:
        name = decl.name
        if state.fully_off:
            return _Entry(decl, state, _OFF, _never, count)
        if state.fully_on:
            return _Entry(decl, state, _ON, _always, count)
        general = self._general(name, state)
        if not (state.actors or state.groups or state.time_share):
            return _Entry(decl, state, _SHARE, general, count)
        return _Entry(decl, state, _GENERAL, general, count)

    def _general(self, name: str, state: FlagState) -> Decide:
        groups, rand, on_error = self.groups, self._rand, self._group_error

        def decide(actor: object) -> bool:
            return evaluate(
                name, state, actor, groups=groups, draw=rand(), on_group_error=on_error
            )[0]

        return decide

    def _declarations(self) -> dict[str, FlagDecl]:
        return {**declared_in_code(), **self._files}

    def _install(self, decls: Mapping[str, FlagDecl], stored: Mapping[str, StoredFlag]) -> None:
        """Swap in the decisions for ``decls`` with ``stored`` states (declared defaults for
        the rest). The dict is changed in place, one key at a time (each store is atomic),
        and an entry is replaced whole, its count carried over, so a reader never sees half
        a decision."""
        entries = self._entries
        for name, decl in decls.items():
            s = stored.get(name)
            state = decl.default if s is None else s.state
            e = entries.get(name)
            if e is None:
                entries[name] = self._entry(decl, state)
            elif e.state != state or e.decl != decl:
                entries[name] = self._entry(decl, state, e.count)
        for name in [n for n in entries if n not in decls]:
            del entries[name]

    # -- refresh ------------------------------------------------------------------------

    def refresh(self, *, counts: bool = True) -> bool:
        """Read the store once and swap the new states in; add the evaluation counts
        (unless ``counts`` is false: a re-read on a change's notice leaves them to the
        poll, so a flip does not make every process write at once). Returns whether the
        store answered. Never raises."""
        with self._lock:
            try:
                if self._store is None:
                    assert self._open is not None
                    self._store = self._open()
                stored = self._store.states()
            except Exception as e:
                self._failed(e)
                return False
            self._install(self._declarations(), stored)
            self.stored = stored
            was_up, self.store_up = self.store_up, True
            self.last_read = self.clock.now()
            if not was_up and self.refresh_failures:
                log.warning("flag store readable again: flags follow it again")
            if counts:
                self._flush_counts()
            return True

    def _failed(self, e: BaseException) -> None:
        self.refresh_failures += 1
        was_up, self.store_up = self.store_up, False
        if was_up or self.refresh_failures == 1:
            since = "declared defaults" if self.last_read is None else "the last state read"
            log.warning(
                "flag store unreachable (%s): flags keep %s until it answers",
                (str(e).strip().splitlines() or [type(e).__name__])[0],
                since,
            )

    def _flush_counts(self) -> None:
        counts = {name: e.count for name, e in self._entries.items()}
        delta = {n: c - self._flushed.get(n, 0) for n, c in counts.items()}
        delta = {n: d for n, d in delta.items() if d > 0}
        if not delta or self._store is None:
            return
        try:
            self._store.record_evaluations(delta, int(self.clock.now() * 1000))
        except Exception as e:  # counted again next time: nothing is lost
            log.debug("could not record flag evaluations: %s", e)
            return
        self._flushed.update(counts)

    def start(self) -> FlagCache:
        """Read the store now, then every ``refresh_s`` in a daemon thread, and (``listen``)
        whenever it announces a change, in another."""
        self.refresh()
        self._publish()
        with self._life:  # a stop() from another thread sees the threads started or none
            if self._thread is None and not self._stopped:  # stopped (reset) meanwhile: no
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="signalbox-flags-refresh", daemon=True
                )
                self._thread.start()
                if self.listen:
                    self._listen_thread = threading.Thread(
                        target=self._listen_loop, name="signalbox-flags-listen", daemon=True
                    )
                    self._listen_thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()
            self._publish()

    def _listen_loop(self) -> None:
        """Refresh whenever the store announces a change; a listener that cannot be made or
        is lost is made again after a backoff, the state re-read once it is back."""
        failures = 0  # in a row: the backoff's exponent
        while not self._stop.is_set():
            store = self._store
            if store is None:  # not opened yet: the refresh thread opens it
                self._stop.wait(self.refresh_s)
                continue
            make = getattr(store, "listener", None)
            if make is None:
                return  # a store with no other process to hear from (memory): polling only
            try:
                listener = make(poll_s=self.listen_poll_s)
            except Exception as e:
                failures += 1
                self._listen_failed(e)
            else:
                try:
                    self._pushed()  # what changed while nobody listened was not announced
                    self.listening = True
                    if failures:
                        log.warning("flag changes pushed again: listening to the store")
                    failures = 0
                    while not self._stop.is_set():
                        if listener.wait(_LISTEN_WAIT_S):
                            self._pushed()
                except Exception as e:
                    failures += 1
                    self._listen_failed(e)
                finally:
                    self.listening = False
                    listener.close()
            if failures:
                base, cap = self.listen_backoff_s
                self._stop.wait(backoff_s(failures, self._rng, base_s=base, cap_s=cap))

    def _pushed(self) -> None:
        if not self._stop.is_set():  # stop() may be closing the store
            self.refresh(counts=False)
            self._publish()

    def _listen_failed(self, e: BaseException) -> None:
        self.listen_failures += 1
        if self.listen_failures == 1 or self.listening:
            log.warning(
                "flag changes not pushed (%s): polling every %gs until listening again",
                (str(e).strip().splitlines() or [type(e).__name__])[0],
                self.refresh_s,
            )

    def _publish(self) -> None:
        if self.publish is None:
            return
        try:
            self.publish(self.samples())
        except Exception as e:  # a metrics problem must never stop the refreshes
            log.debug("could not publish the flags' self-metrics: %s", e)

    def stop(self, *, close: bool | None = None) -> None:
        """Stop refreshing (counts flushed once more) and close the store when it was
        opened here (``close`` None) or when ``close`` says so."""
        with self._life:
            self._stopped = True
            self._stop.set()
            threads = (self._thread, self._listen_thread)
            self._thread = self._listen_thread = None
        for t in threads:
            if t is not None and t is not threading.current_thread():
                t.join(5)
        close_publisher = getattr(self.publish, "close", None)
        if close_publisher is not None:
            self._publish()  # the last counts, then the file is written once more
            close_publisher()
        with self._lock:
            self._flush_counts()
            if (self._open is not None if close is None else close) and self._store is not None:
                try:
                    self._store.close()
                except Exception as e:
                    log.debug("closing the flag store: %s", e)

    # -- what people and other areas read -------------------------------------------------

    def state(self, name: str) -> FlagState | None:
        e = self._entries.get(name)
        return None if e is None else e.state

    def declarations(self) -> dict[str, FlagDecl]:
        return {n: e.decl for n, e in self._entries.items()}

    def counts(self) -> dict[str, int]:
        return {n: e.count for n, e in self._entries.items()}

    def gate_source(self, name: str) -> bool | None:
        """For :func:`signalbox.gates.flag.set_flag_source`: on (for no actor), off, or
        None for a flag declared nowhere."""
        if name not in self._entries and name not in declared_in_code():
            return None
        return self.enabled(name, None)

    def dark(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        actor: object = None,
        control: Any = _UNSET,
        compare: Callable[[Any, Any], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        """Run ``fn(*args, **kwargs)`` when ``name`` is on for ``actor`` and throw its result
        away: a dark launch. With ``control`` (the live path's result), count whether the
        new result matched it (``compare(control, result)``, default ``==``). Exceptions in
        ``fn`` or ``compare`` are counted and logged at debug, never raised."""
        if not self.enabled(name, actor):
            return
        stats = self.dark_stats.get(name)
        if stats is None:
            stats = self.dark_stats.setdefault(name, DarkStats())
        stats.runs += 1
        try:
            result = fn(*args, **kwargs)
            if control is not _UNSET:
                same = compare(control, result) if compare is not None else control == result
                if same:
                    stats.matches += 1
                else:
                    stats.mismatches += 1
        except Exception:
            stats.errors += 1
            log.debug("dark launch %s raised", name, exc_info=True)

    def samples(self) -> list[Sample]:
        """Self-metrics (see :data:`METAS`): store reachability, state age, counts."""
        now = self.clock.now()
        age = 0.0 if self.last_read is None else max(0.0, now - self.last_read)
        out = [
            Sample("signalbox_flags_store_up", (), 1.0 if self.store_up else 0.0),
            Sample("signalbox_flags_state_age_seconds", (), age),
            Sample("signalbox_flags_refresh_failures_total", (), float(self.refresh_failures)),
            Sample("signalbox_flags_listening", (), 1.0 if self.listening else 0.0),
            Sample("signalbox_flags_listen_failures_total", (), float(self.listen_failures)),
            Sample(
                "signalbox_flags_undeclared_total",
                (),
                float(len(self.undeclared)),
            ),
        ]
        for n, e in sorted(self._entries.items()):
            out.append(Sample("signalbox_flag_evaluations_total", (("flag", n),), float(e.count)))
        for n, d in sorted(self.dark_stats.items()):
            for outcome, v in (
                ("run", d.runs),
                ("error", d.errors),
                ("match", d.matches),
                ("mismatch", d.mismatches),
            ):
                out.append(
                    Sample(
                        "signalbox_flag_dark_runs_total",
                        (("flag", n), ("outcome", outcome)),
                        float(v),
                    )
                )
        return out
