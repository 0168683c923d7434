"""Which ``serve`` instance leads: the one that evaluates monitors, sends notifications,
compacts and purges, while the others serve queries and collect.

On PostgreSQL any number of instances share one store; they elect a leader through the
``serve:leader`` :class:`~signalbox.storage.lease.Lease`. Each candidate runs a thread that
renews the lease (if it holds it) or tries to take it (if it is free or expired) every third
of its TTL; one that stops cleanly releases it and is replaced at the next attempt.

**A dead leader is replaced at once.** Each term also holds a session-level advisory lock
named after its token, taken before the lease, on the election thread's connection. A
candidate that finds the lease held tries that lock: if it gets it, the holder's session is
gone (the process died, its host or its connection was lost: PostgreSQL ends the session),
and the candidate takes the lease over at once, compare-and-swap on that holder, instead of
waiting out the TTL (it lets go of the lock it only probed with). A holder that is merely
paused keeps its session and its lock, so it is replaced when its lease expires: the TTL
plus a third of it at most. Either way the fences below keep two terms from interleaving.

**Terms and fencing.** Each continuous period of leadership is a *term* with a holder token
of its own (``INSTANCE/pid.random``): once a term ends (the lease lost, or not renewed in
time) the instance competes again under a fresh token, so nothing begun in an old term can
pass for the new one. Two guards keep a leader that stalls (paused, its connection gone)
from acting after its lease ran out:

* locally, a term counts as lost once its last renewal is :attr:`LeaseLeadership.valid_s`
  old (monotonic clock, a fifth of the TTL short of the lease's expiry), so an instance
  waking from a pause stops before it does anything;
* in the database, :meth:`LeaseLeadership.fence` renews the lease *inside* the caller's
  transaction (a monitor pass's, an outbox claim's), as its last statement: if the term is
  over the renewal matches no row and the transaction is rolled back; if it is not, the
  lease row stays locked until the commit, so a rival's takeover waits for it and then
  finds the lease renewed. Either way writes of two terms never interleave. Last, because
  the lock it takes holds off every takeover: a leader paused inside a transaction holds it
  only if paused between its fence and its commit.

Hosts sharing a store must keep their clocks within a fifth of the TTL of each other (NTP
does). On SQLite (one host by design) :class:`SingleHost` always leads and nothing changes.

Time is injected: the lease's wall clock (``clock``) and the local monotonic clock
(``monotonic``), so tests drive terms without sleeping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from signalbox.clock import Clock, SystemClock
from signalbox.storage.database import Database
from signalbox.storage.lease import Lease

__all__ = [
    "LEASE_NAME",
    "Leadership",
    "LeaseLeadership",
    "LostLeadership",
    "SingleHost",
    "instance_of",
    "leadership_for",
]

log = logging.getLogger("signalbox.leader")

_NO_TERM = float("-inf")
_LIVE_CLASS = 0x51B0
"""The class id of the terms' advisory locks (the object id: the hash of the term's token)."""

LEASE_NAME = "serve:leader"
"""The lease the ``serve`` instances of one store compete for."""


class LostLeadership(Exception):
    """Raised by a fence when this instance's term is over: roll the work back."""


def instance_of(holder: str) -> str:
    """The instance name in a lease holder token (``INSTANCE/pid.random``)."""
    return holder.rsplit("/", 1)[0]


class Leadership(Protocol):
    """What the background loops and ``/-/ready`` ask about leadership."""

    instance: str

    def term(self) -> str | None:
        """This instance's current term (its holder token) while it leads, else None."""
        ...

    def leading(self) -> bool: ...

    def leader(self) -> str | None:
        """The instance that leads, as last seen (None: nobody, or not known yet)."""
        ...

    def fence(self, db: Database, term: str | None = None) -> Callable[[], None]:
        """A check to run last inside a transaction on ``db``: it raises
        :class:`LostLeadership` unless ``term`` (default: the current one, at each call)
        still holds the lease, and keeps it held until the transaction ends."""
        ...

    def deposed(self) -> str | None:
        """The instance this term took the lease over from, expired or its session gone
        (None: the lease was free); it may be this instance's own earlier process."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class SingleHost:
    """The only instance of a SQLite store: it always leads."""

    def __init__(self, instance: str) -> None:
        self.instance = instance

    def term(self) -> str:
        return self.instance

    def leading(self) -> bool:
        return True

    def leader(self) -> str:
        return self.instance

    def fence(self, db: Database, term: str | None = None) -> Callable[[], None]:
        return _no_fence

    def deposed(self) -> None:
        return None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _no_fence() -> None:
    pass


class LeaseLeadership:
    """Leadership through the ``serve:leader`` lease on a shared PostgreSQL store.

    Args:
        db: the store (the election thread uses a connection of its own).
        instance: how this instance is named to operators (``HOST:PORT``).
        ttl_s: the lease's TTL; a paused leader is replaced within about 4/3 of it, a dead
            one at the next attempt (every third of it).
        clock: wall time for the lease's expiry (shared by every host: keep them in NTP).
        monotonic: local time for this instance's own view of its term.
    """

    def __init__(
        self,
        db: Database,
        instance: str,
        ttl_s: float,
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"leader lease: ttl_s must be positive, not {ttl_s}")
        self.db, self.instance, self.ttl_s = db, instance, ttl_s
        self.clock = clock or SystemClock()
        self.monotonic = monotonic
        self.valid_s = ttl_s * 0.8
        """How long after a renewal began this instance still counts on its term."""
        self.every_s = ttl_s / 3
        """How often the election thread renews, or tries to take, the lease."""
        self._lock = threading.Lock()
        self._holder = self._new_holder()  # this term's token, or the next term's
        self._valid_until = _NO_TERM  # monotonic; the term counts until then
        self._leader: str | None = None  # the instance seen leading by the last attempt
        self._deposed: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[bool], None]] = []
        # the election thread's (and stop's) lease; its holder is set before each use
        self._lease = Lease(db, LEASE_NAME, ttl_s, holder=self._holder, clock=self.clock)
        self._sessions = db.dialect.name == "postgresql"  # advisory locks say who is alive
        self._locked: str | None = None  # the token whose advisory lock this session holds

    def _new_holder(self) -> str:
        return f"{self.instance}/{os.getpid()}.{uuid.uuid4().hex[:8]}"

    # -- what the loops ask ------------------------------------------------------------
    def term(self) -> str | None:
        with self._lock:
            return self._holder if self.monotonic() < self._valid_until else None

    def leading(self) -> bool:
        return self.term() is not None

    def leader(self) -> str | None:
        if self.leading():
            return self.instance
        with self._lock:
            return self._leader

    def deposed(self) -> str | None:
        with self._lock:
            return self._deposed if self.monotonic() < self._valid_until else None

    def subscribe(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(leading)`` whenever this instance's leadership starts or ends (a term
        that lapses without a renewal is reported by the next attempt)."""
        self._listeners.append(fn)

    def fence(self, db: Database, term: str | None = None) -> Callable[[], None]:
        def check() -> None:
            holder = term or self.term()
            if holder is None or holder != self.term():
                raise LostLeadership(f"this instance ({self.instance}) does not lead any more")
            now_ms = round(self.clock.now() * 1000)
            with db.transaction():  # Lease.renew's statement, in the caller's transaction
                if db.dialect.name == "postgresql":
                    # the renewal locks the lease row until the caller commits: a leader
                    # paused (SIGSTOP, a VM freeze) inside that transaction would keep every
                    # rival from ever taking over. PostgreSQL ends a session idle in it for
                    # longer than the TTL (by then the lease it renewed has expired anyway),
                    # which lets the row go; the woken leader's commit then fails: fenced.
                    db.execute(
                        "SELECT set_config('idle_in_transaction_session_timeout', ?, true)",
                        (str(round(self.ttl_s * 1000)),),
                    )
                renewed = db.execute(
                    "UPDATE storage_leases SET expires_ms = ? WHERE name = ? AND holder = ? "
                    "AND expires_ms > ?",
                    (now_ms + round(self.ttl_s * 1000), LEASE_NAME, holder, now_ms),
                ).rowcount
            if renewed != 1:
                self._end_term(holder, "its lease expired and another instance took it")
                raise LostLeadership(f"this instance's ({self.instance}) lease was taken over")

        return check

    # -- the election ------------------------------------------------------------------
    def attempt(self) -> bool:
        """Renew our term's lease, or try to take the lease for a new term; True if this
        instance leads afterwards. Raises what the database raises (the term then lapses
        on its own once :attr:`valid_s` has passed since its last renewal)."""
        began = self.monotonic()
        lease = self._lease
        with self._lock:
            lease.holder, in_term = self._holder, self._valid_until != _NO_TERM
        if in_term:
            if lease.renew():  # the row is still this term's: nobody else led meanwhile
                with self._lock:
                    still = self._holder == lease.holder  # no fence ended it meanwhile
                    if still:
                        self._valid_until = began + self.valid_s
                if still:
                    self._relock_term(lease.holder)
                return still
            self._end_term(lease.holder, "its lease was taken over")
            with self._lock:
                lease.holder = self._holder
        self._lock_term(lease.holder)  # before its token can be seen in the lease
        before, expires_ms = self._lease_row()
        if before is not None and expires_ms > round(self.clock.now() * 1000):
            # held: only reads unless its holder is gone (no write, no new snapshot, for
            # every standby at every attempt)
            if self._alive(before) or not self._take_over(lease, before):
                with self._lock:
                    self._leader = instance_of(before)
                return False
            why = "its session is gone"
        elif lease.acquire():
            why = "its lease expired"
        else:  # taken between the two statements
            seen = lease.holder_now()
            with self._lock:
                self._leader = None if seen is None else instance_of(seen)
            return False
        previous = None if before is None else instance_of(before)
        with self._lock:
            self._valid_until = began + self.valid_s
            self._leader = self.instance
            self._deposed = previous
        if previous is not None and previous != self.instance:
            log.warning(
                "this instance (%s) leads now, taking over from %s (%s): it evaluates "
                "monitors, sends notifications and compacts",
                self.instance,
                previous,
                why,
            )
        else:
            log.warning(
                "this instance (%s) leads now: it evaluates monitors, sends notifications "
                "and compacts",
                self.instance,
            )
        self._tell(True)
        return True

    def _lock_term(self, token: str) -> None:
        """Hold the advisory lock of ``token`` (and no other) on this thread's session."""
        if not self._sessions or self._locked == token:
            return
        if self._locked is not None:
            self.db.query("SELECT pg_advisory_unlock(?, hashtext(?))", (_LIVE_CLASS, self._locked))
            self._locked = None
        rows = self.db.query("SELECT pg_try_advisory_lock(?, hashtext(?))", (_LIVE_CLASS, token))
        if rows[0][0]:
            self._locked = token

    def _relock_term(self, token: str) -> None:
        """Take ``token``'s lock again if this session lost it (its connection was replaced
        after an error): without it, candidates would take this live leader for dead."""
        if not self._sessions:
            return
        rows = self.db.query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid() AND classid = ?::int4::oid "
            "AND objid = hashtext(?)::oid AND objsubid = 2",
            (_LIVE_CLASS, token),
        )
        if not rows[0][0]:
            self._locked = None
            self._lock_term(token)

    def _alive(self, token: str) -> bool:
        """Whether the session that holds ``token``'s lease still holds its advisory lock."""
        if not self._sessions:
            return True
        rows = self.db.query("SELECT pg_try_advisory_lock(?, hashtext(?))", (_LIVE_CLASS, token))
        if not rows[0][0]:
            return True
        self.db.query("SELECT pg_advisory_unlock(?, hashtext(?))", (_LIVE_CLASS, token))
        return False

    def _take_over(self, lease: Lease, dead: str) -> bool:
        """Take the lease from ``dead``, whose session is gone (only if it still holds it)."""
        now_ms = round(self.clock.now() * 1000)
        with self.db.transaction():
            taken = self.db.execute(
                "UPDATE storage_leases SET holder = ?, expires_ms = ? WHERE name = ? AND holder = ?",
                (lease.holder, now_ms + round(self.ttl_s * 1000), LEASE_NAME, dead),
            ).rowcount
        return bool(taken == 1)

    def _lease_row(self) -> tuple[str | None, int]:
        """Who held the lease last, expired or not, and until when (None: nobody, or it was
        released)."""
        rows = self.db.query(
            "SELECT holder, expires_ms FROM storage_leases WHERE name = ?", (LEASE_NAME,)
        )
        return (str(rows[0][0]), int(rows[0][1])) if rows else (None, 0)

    def _end_term(self, holder: str, why: str) -> None:
        """The term of ``holder`` is over: compete again under a fresh token (anything
        still running for the old term fails its fence)."""
        with self._lock:
            if self._holder != holder or self._valid_until == _NO_TERM:
                return
            self._valid_until = _NO_TERM
            self._deposed = self._leader = None  # who leads now: the next attempt says
            self._holder = self._new_holder()
        log.warning("this instance (%s) does not lead any more: %s", self.instance, why)
        self._tell(False)

    def _lapse(self) -> None:
        """End a term whose renewals have failed for :attr:`valid_s` (store unreachable)."""
        with self._lock:
            holder = self._holder
            lapsed = _NO_TERM != self._valid_until <= self.monotonic()
        if lapsed:
            self._end_term(holder, f"its lease was not renewed within {self.valid_s:g}s")

    def _tell(self, leading: bool) -> None:
        for fn in self._listeners:
            try:
                fn(leading)
            except Exception:
                log.exception("a leadership listener failed")

    def _run(self, first: threading.Event) -> None:
        failing: str | None = None
        while True:
            try:
                self.attempt()
            except Exception as e:
                error = (str(e).strip().splitlines() or [type(e).__name__])[0]
                if error != failing:
                    log.error("leader election: cannot reach the store: %s", error)
                failing = error
            else:
                if failing is not None:
                    log.warning("leader election: the store answers again")
                failing = None
            self._lapse()
            first.set()
            if self._stop.wait(self.every_s):
                return

    def start(self) -> None:
        """Keep electing in a daemon thread (every statement on its connection, which holds
        the term's advisory lock); returns once its first attempt is over (so the first
        pass knows), or after a TTL if the store does not answer."""
        first = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(first,), name="signalbox-leader", daemon=True
        )
        self._thread.start()
        first.wait(self.ttl_s)

    def stop(self) -> None:
        """Stop electing and give the lease up (if ours), so another instance takes over at
        its next attempt instead of after the TTL. Call once the loops that act as leader
        have stopped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every_s + 5)
        holder = self.term()
        with self._lock:
            self._valid_until = _NO_TERM
        if holder is None:
            return
        self._lease.holder = holder
        try:
            self._lease.release()
        except Exception as e:
            log.warning("could not release the leader lease (it expires on its own): %s", e)
            return
        log.warning("this instance (%s) stopped leading: lease released", self.instance)


def leadership_for(db: Database, instance: str, ttl_s: float) -> Leadership:
    """An election among the store's ``serve`` instances on PostgreSQL; on SQLite (one host)
    the only instance always leads."""
    if db.dialect.name == "postgresql":
        return LeaseLeadership(db, instance, ttl_s)
    return SingleHost(instance)
