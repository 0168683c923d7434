"""Gates probed once per interval across the cluster, not once per worker.

Forty workers on ten hosts asking one MySQL gate used to run forty ``SHOW GLOBAL STATUS`` per
interval against the very database the gate protects. Workers already share a store (the
task queue's database, SQLite or PostgreSQL), so the probe is shared through it: one record
per gate -- keyed by its name *and* the fingerprint of its configuration
(:mod:`signalbox.gates.fingerprint`), so two different gates with one name never answer for
each other -- holding the last decision (open, reason, delay, reading), when it was probed
and by whom, and the hysteresis marks the probe left tripped.

A process whose own cache (:meth:`Gate.check`, shared by its threads) is stale reads the
record:

* younger than the gate's interval: used as is (cached locally until it turns stale);
* stale: exactly one process takes the right to probe with a conditional UPDATE that only
  succeeds on a record that is due (:func:`~signalbox.storage.claim.claim_one`: the record's
  ``due_ms`` is the end of the interval, and while a probe runs, the end of the prober's
  lease), probes, and writes the decision. A prober that dies mid-probe holds nothing once
  its lease ends: the next process to look takes over;
* the others use the last decision until the new one lands, as long as it is younger than
  ``3 x interval + lease`` (a prober that died costs at most one lease); past that, they
  wait a moment (an interval) for the prober and then fail closed: a cluster that cannot
  probe must not run heavy work on a stale "open". With no decision at all yet (workers
  starting together) they wait for the first one as long as its prober's lease, as a
  process's threads wait for its probe, and take over if it never lands.

The lease is the probe's worst case -- its connect and read timeouts per server
(:meth:`Gate.probe_budget_s`) -- and a second, at least 2 s: a MySQL gate with the default
2 s timeout holds it 5 s. Every decision says where it came from in
``reading["shared"]``: ``prober`` and ``age_s``, and ``probing`` when closed for being too
old.

The store being unreachable (or failing) makes the process probe locally, as a lone process
always did, fail closed as ever, and say so in the decision's reading (``shared.store``).
A gate with an interval of 0 probes at every check and is never shared.

Hosts sharing a store must keep their clocks within a small fraction of the interval of each
other (NTP does), as for every lease in :mod:`signalbox.storage`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import msgspec

from signalbox.clock import Clock, SystemClock
from signalbox.gates.base import Decision, describe_error
from signalbox.gates.fingerprint import fingerprint
from signalbox.storage.claim import ClaimTable, claim_one
from signalbox.storage.database import Database, Migration
from signalbox.storage.lease import default_holder

if TYPE_CHECKING:
    from signalbox.gates.base import Gate

__all__ = [
    "MIGRATIONS",
    "Record",
    "SharedDecisions",
    "assess",
    "lease_s",
    "max_age_s",
    "shared_decisions",
]

log = logging.getLogger("signalbox.gates.shared")

MIGRATIONS: list[Migration] = [
    (
        1,
        "gate decisions shared by every process of a store",
        [
            # is_open/probed_ms NULL: never probed. due_ms: when the next probe may be claimed
            # (the end of the interval; while a probe runs, the end of its prober's lease)
            "CREATE TABLE gate_decisions (gate_key TEXT PRIMARY KEY, gate TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, is_open INTEGER, reason TEXT NOT NULL DEFAULT '', "
            "delay_s DOUBLE PRECISION NOT NULL DEFAULT 0, reading TEXT NOT NULL DEFAULT '{{}}', "
            "state TEXT NOT NULL DEFAULT '[]', probed_ms BIGINT, prober TEXT, "
            "due_ms BIGINT NOT NULL DEFAULT 0, claimed_by TEXT, "
            "attempts BIGINT NOT NULL DEFAULT 0, probes BIGINT NOT NULL DEFAULT 0)",
        ],
    ),
]

_TABLE = ClaimTable(
    "gate_decisions",
    key="gate_key",
    due="due_ms",
    ready="TRUE",
    attempts="attempts",
    claimed_by="claimed_by",
)
_COLS = "is_open, reason, delay_s, reading, state, probed_ms, prober, due_ms, claimed_by, probes"

MIN_LEASE_S = 2.0
"""The shortest right to probe: a file or flag probe takes milliseconds, but a loaded host
may pause a process for a second."""
STALE_INTERVALS = 3
"""A last decision stays usable for this many intervals (plus one lease) while another
process probes; older, it closes the gate."""
FRESH, USABLE, TOO_OLD, NONE = "fresh", "usable", "too old", "none"


# -- the rules, without I/O --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One gate's row: the last decision (``is_open`` None: never probed) and the claim."""

    is_open: bool | None
    reason: str = ""
    delay_s: float = 0.0
    reading: dict[str, Any] | None = None
    state: tuple[str, ...] = ()
    probed_ms: int | None = None
    prober: str | None = None
    due_ms: int = 0
    claimed_by: str | None = None
    probes: int = 0

    def age_ms(self, now_ms: int) -> int | None:
        return None if self.probed_ms is None else max(0, now_ms - self.probed_ms)


def lease_s(gate: Gate) -> float:
    """How long a prober holds the right to probe ``gate``: its probe's worst case (its
    connect and read timeouts) and a second to write the decision."""
    return max(MIN_LEASE_S, gate.probe_budget_s() + 1.0)


def max_age_s(gate: Gate, lease: float) -> float:
    """The oldest last decision others may use while a probe runs."""
    return STALE_INTERVALS * gate.interval + lease


def assess(rec: Record | None, now_ms: int, interval_ms: int, max_age_ms: int) -> str:
    """How usable ``rec``'s decision is at ``now_ms``: FRESH (younger than the interval: use
    it), USABLE (stale but within the bound: use it while another probes), TOO_OLD, NONE."""
    age = None if rec is None or rec.is_open is None else rec.age_ms(now_ms)
    if age is None:
        return NONE
    if age < interval_ms:
        return FRESH
    return USABLE if age <= max_age_ms else TOO_OLD


def _noted(d: Decision, **shared: Any) -> Decision:
    """``d`` with where it came from under ``reading["shared"]``."""
    return replace(d, reading={**d.reading, "shared": shared})


# -- the store ----------------------------------------------------------------------------


class SharedDecisions:
    """The shared decision records of the gates of every process using ``db``.

    Args:
        db: the store the workers share (the task queue's database).
        holder: who this process is in ``prober``/``claimed_by`` (default: host, pid and a
            random suffix).
        clock: wall time (probes are dated across hosts).
        lease: the right to probe, seconds (default per gate: :func:`lease_s`).
        poll_s: how often a process waiting for another's probe reads the record again.
    """

    def __init__(
        self,
        db: Database,
        *,
        holder: str | None = None,
        clock: Clock | None = None,
        lease: float | None = None,
        poll_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if lease is not None and lease <= 0:
            raise ValueError(f"shared gate decisions: lease must be positive, not {lease!r}")
        self.db = db
        self.holder = holder or default_holder()
        self.clock: Clock = clock or SystemClock()
        self.lease = lease
        self.poll_s = poll_s
        self._sleep = sleep
        self._migrated = False
        self._guard = threading.Lock()
        self._keys: weakref.WeakKeyDictionary[Gate, tuple[str, str]] = weakref.WeakKeyDictionary()
        self._down: str | None = None  # the store's last error while it stays unreachable

    def attach(self, gate: Gate) -> bool:
        """Make ``gate`` probe through these records (see :meth:`Gate.share_through`)."""
        return gate.share_through(self)

    def key_of(self, gate: Gate) -> tuple[str, str]:
        """``gate``'s record key and fingerprint (computed once per gate object)."""
        with self._guard:
            got = self._keys.get(gate)
            if got is None:
                fp = fingerprint(gate)
                got = self._keys[gate] = (f"{gate.name}#{fp}", fp)
            return got

    def _now_ms(self) -> int:
        return round(self.clock.now() * 1000)

    def _migrate(self) -> None:
        if not self._migrated:
            with self._guard:
                if not self._migrated:
                    self.db.migrate("gates", MIGRATIONS)
                    self._migrated = True

    # -- the protocol -------------------------------------------------------------------
    def decide(self, gate: Gate) -> tuple[Decision, float]:
        """``gate``'s decision and how many seconds this process may reuse it. Never raises:
        a store that fails makes this process probe locally (see the module docstring).
        Called under the gate's lock, so a process's threads share one read."""
        try:
            got = self._decide(gate)
        except Exception as e:  # the store is unreachable or failing: probe here, as alone
            why = describe_error(e)
            if self._down is None:
                log.warning(
                    "gate %s: the shared store %s failed (%s): probing locally until it "
                    "answers again",
                    gate.name,
                    self.db.url,
                    why,
                )
            self._down = why
            d = gate._probe_safely()
            return _noted(d, store=f"failed, probed locally: {why}"), gate.interval
        if self._down is not None:
            log.warning("gate %s: the shared store %s is back", gate.name, self.db.url)
            self._down = None
        return got

    def _decide(self, gate: Gate) -> tuple[Decision, float]:
        self._migrate()
        key, fp = self.key_of(gate)
        lease = self.lease if self.lease is not None else lease_s(gate)
        interval_ms, lease_ms = round(gate.interval * 1000), round(lease * 1000)
        max_age_ms = round(max_age_s(gate, lease) * 1000)
        short = min(gate.interval, 0.25)  # re-read soon: a new decision is on its way
        wait_ms = round(min(max(gate.interval, 0.5), lease) * 1000)
        give_up = self._now_ms() + lease_ms + wait_ms  # a bound on lost races, however rare
        wait_until: int | None = None
        while True:
            now = self._now_ms()
            rec = self.read(key)
            if rec is None:
                self.db.execute(
                    "INSERT INTO gate_decisions (gate_key, gate, fingerprint) VALUES (?, ?, ?) "
                    "ON CONFLICT (gate_key) DO NOTHING",
                    (key, gate.name, fp),
                )
                rec = Record(None)
            verdict = assess(rec, now, interval_ms, max_age_ms)
            if verdict == FRESH:
                age = rec.age_ms(now) or 0
                return self._decision(gate, rec, now), (interval_ms - age) / 1000
            if rec.due_ms <= now and now < give_up:
                if claim_one(
                    self.db, _TABLE, key, worker=self.holder, now_ms=now, lease_ms=lease_ms
                ):
                    return self._probe(gate, key, rec), gate.interval
                continue  # another process claimed it first: read what it holds now
            # another process is probing: its last decision while it does, or wait for it
            if verdict == USABLE:
                return self._decision(gate, rec, now), short
            if wait_until is None:  # the first decision: as long as its prober may take
                wait = lease_ms if verdict == NONE else wait_ms  # one too old: a moment
                wait_until = now + min(max(rec.due_ms - now, 0), wait)
            if now >= min(wait_until, give_up):
                return self._too_old(gate, rec, now, max_age_ms), short
            self._sleep(self.poll_s)

    def _probe(self, gate: Gate, key: str, rec: Record) -> Decision:
        """Probe as the cluster's prober, continuing from the record's hysteresis, and write
        the decision (if the right to probe is still ours: a probe that outlived its lease
        has been replaced, and the replacement's decision is the one that lands)."""
        if rec.is_open is not None:
            gate.restore_probe_state(list(rec.state))
        d = gate._probe_safely()
        now = self._now_ms()
        reading = gate.redact(msgspec.json.encode(d.reading, enc_hook=str).decode())
        try:
            with self.db.transaction():
                cur = self.db.execute(
                    "UPDATE gate_decisions SET is_open = ?, reason = ?, delay_s = ?, "
                    "reading = ?, state = ?, probed_ms = ?, prober = ?, due_ms = ?, "
                    "claimed_by = NULL, probes = probes + 1 WHERE gate_key = ? AND claimed_by = ?",
                    (
                        1 if d.open else 0,
                        d.reason,
                        float(d.delay_s),
                        reading,
                        msgspec.json.encode(gate.probe_state()).decode(),
                        now,
                        self.holder,
                        now + round(gate.interval * 1000),
                        key,
                        self.holder,
                    ),
                )
                written = cur.rowcount == 1
        except Exception as e:  # the probe ran: use it here rather than probing again
            return _noted(
                d, prober=self.holder, age_s=0.0, store=f"not shared: {describe_error(e)}"
            )
        if not written:
            log.info(
                "gate %s: this probe outlived its lease and another process took over: its "
                "decision is used here only",
                gate.name,
            )
            return _noted(d, prober=self.holder, age_s=0.0, store="not shared: lease lost")
        return _noted(d, prober=self.holder, age_s=0.0)

    def _decision(self, gate: Gate, rec: Record, now_ms: int) -> Decision:
        d = Decision(bool(rec.is_open), gate.name, rec.reason, rec.delay_s, dict(rec.reading or {}))
        return _noted(d, prober=rec.prober, age_s=round((rec.age_ms(now_ms) or 0) / 1000, 3))

    def _too_old(self, gate: Gate, rec: Record, now_ms: int, max_age_ms: int) -> Decision:
        age = rec.age_ms(now_ms) if rec.is_open is not None else None
        last = "none yet" if age is None else f"{age / 1000:.1f}s old, from {rec.prober}"
        who = rec.claimed_by or "another process"
        reason = (
            f"no shared decision younger than {max_age_ms / 1000:g}s (last: {last}); {who} "
            f"is probing, lease until {rec.due_ms - now_ms} ms from now"
        )
        return _noted(
            gate.closed(reason, {"error": True}),
            prober=rec.prober,
            age_s=None if age is None else round(age / 1000, 3),
            probing=rec.claimed_by,
        )

    # -- reading ------------------------------------------------------------------------
    def read(self, key: str) -> Record | None:
        """The record ``key`` (``name#fingerprint``), None if there is none yet."""
        rows = self.db.query(f"SELECT {_COLS} FROM gate_decisions WHERE gate_key = ?", (key,))
        if not rows:
            return None
        is_open, reason, delay, reading, state, probed, prober, due, by, probes = rows[0]
        return Record(
            None if is_open is None else bool(is_open),
            reason,
            float(delay),
            _json(reading, key, "reading", dict),
            tuple(str(s) for s in _json(state, key, "state", list)),
            None if probed is None else int(probed),
            prober,
            int(due),
            by,
            int(probes),
        )

    def records(self) -> dict[str, Record]:
        """Every gate's record by key (for tests, benchmarks and operators)."""
        self._migrate()
        rows = self.db.query("SELECT gate_key FROM gate_decisions ORDER BY gate_key")
        return {k: r for (k,) in rows if (r := self.read(k)) is not None}


def _json(text: str, key: str, field: str, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
    """``field`` of the record ``key`` decoded: a JSON object or list as ``kind`` says, or a
    ValueError naming the record, the field and what was wrong."""
    name = "object" if kind is dict else "list"
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as e:
        raise ValueError(f"gate_decisions {key!r}: {field} is not JSON ({e})") from None
    if not isinstance(value, kind):
        raise ValueError(f"gate_decisions {key!r}: {field} is not a JSON {name}")
    return value


def shared_decisions(store: object, **kwargs: Any) -> SharedDecisions | None:
    """Shared records on ``store``'s database when it has one (SQLite or PostgreSQL: shared
    by every process using it); None for a store only this process sees (in memory)."""
    db = getattr(store, "db", None)
    if not isinstance(db, Database) or db.path == ":memory:":
        return None
    return SharedDecisions(db, **kwargs)
