"""Gates probed once per interval across the cluster (issue 14): the shared decision record.

Each "process" here is what a worker process holds: its own connection to the store (its
own :class:`Database`), its own :class:`SharedDecisions` (its identity) and its own gate
object of the same configuration. Time is a FrozenClock shared by the gate caches and the
records, so every step is exact. Real processes (SIGKILL, the worker CLI, MariaDB) are in
test_shared_processes.py.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import settings_from_dict
from signalbox.exceptions import ConfigError
from signalbox.gates import Decision, Gate, file, mysql_load, mysql_replication
from signalbox.gates.base import CallableGate
from signalbox.gates.fingerprint import describe, fingerprint
from signalbox.gates.hysteresis import judge, max_limit
from signalbox.gates.settings import build_gates, sharing_enabled
from signalbox.gates.shared import (
    FRESH,
    NONE,
    TOO_OLD,
    USABLE,
    Record,
    SharedDecisions,
    assess,
    lease_s,
    shared_decisions,
)
from signalbox.storage import open_database
from signalbox.storage.claim import claim_one
from signalbox.tasks.memstore import MemoryQueueStore
from signalbox.tasks.registry import Registry, Task
from signalbox.tasks.sqlstore import SQLQueueStore
from signalbox.tasks.worker import Worker
from tests.server.tcpproxy import TcpProxy
from tests.stores import pg_schema_url, sqlite_url

T0 = 1_700_000_000.0


class Load(Gate):
    """A gate over a shared "server load" with hysteresis (close at 40, reopen below 32),
    counting its probes; its state is private, so equal gates have equal fingerprints."""

    def __init__(self, server: dict[str, float], clock: FrozenClock, **kw: Any) -> None:
        super().__init__("db", interval=2.0, clock=clock, **kw)
        self.marks = [max_limit("Threads_running", 40, 0.8)]
        self._server = server
        self._tripped: frozenset[str] = frozenset()

    def probe(self) -> Decision:
        if self._server.get("down"):
            raise ConnectionError("server gone")
        value = self._server["running"]
        v = judge([("Threads_running", self.marks[0], value)], self._tripped)
        self._tripped = v.tripped
        reading = {"status": {"Threads_running": value}}
        return (
            self.opened("within marks", reading)
            if v.open
            else self.closed("; ".join(v.reasons), reading)
        )


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with pg_schema_url() as u:
            yield u


class Process:
    """One worker process's view: its connection, its identity, its gate."""

    def __init__(
        self, url: str, name: str, server: dict[str, float], clock: FrozenClock, **kw: Any
    ) -> None:
        self.db = open_database(url)
        self.shared = SharedDecisions(
            self.db, holder=name, clock=clock, sleep=lambda s: clock.advance(s), **kw
        )
        self.gate = Load(server, clock)
        assert self.shared.attach(self.gate)

    def check(self) -> Decision:
        return self.gate.check()


@pytest.fixture
def cluster(url: str) -> Iterator[tuple[list[Process], dict[str, float], FrozenClock]]:
    clock = FrozenClock(T0)
    server = {"running": 10.0}
    procs = [Process(url, f"host{i}:{100 + i}", server, clock) for i in range(4)]
    yield procs, server, clock
    for p in procs:
        p.db.close()


def _record(p: Process) -> Record:
    rec = p.shared.read(p.shared.key_of(p.gate)[0])
    assert rec is not None
    return rec


def test_four_processes_probe_once_per_interval_not_once_each(cluster: Any) -> None:
    procs, _server, clock = cluster
    for _ in range(10):  # 10 intervals, every process asking 4 times in each
        for _ in range(4):
            for p in procs:
                assert p.check().open
            clock.advance(0.5)
    probes = [p.gate.probes for p in procs]
    assert sum(probes) == 10, probes
    rec = _record(procs[0])
    assert rec.probes == 10 and rec.is_open is True and rec.claimed_by is None
    assert rec.reading == {"status": {"Threads_running": 10.0}}


def test_a_decision_from_another_process_says_who_probed_it_and_how_old_it_is(
    cluster: Any,
) -> None:
    procs, _server, clock = cluster
    first = procs[0].check()
    assert first.reading["shared"] == {"prober": "host0:100", "age_s": 0.0}
    clock.advance(0.75)
    other = procs[1].check()
    assert procs[1].gate.probes == 0
    assert other.open and other.gate == "db" and other.reason == "within marks"
    assert other.reading == {
        "status": {"Threads_running": 10.0},
        "shared": {"prober": "host0:100", "age_s": 0.75},
    }
    # cached locally until the shared decision turns stale, not for a whole interval more
    clock.advance(1.0)
    assert procs[1].check() is other
    clock.advance(0.3)
    assert procs[1].check().reading["shared"]["prober"] == "host1:101"
    assert procs[1].gate.probes == 1


def test_a_closed_decision_and_its_hysteresis_carry_across_processes(cluster: Any) -> None:
    procs, server, clock = cluster
    server["running"] = 45
    d = procs[0].check()
    assert not d.open and "Threads_running 45 >= 40" in d.reason and d.delay_s == 10.0
    clock.advance(0.5)
    d1 = procs[1].check()
    assert not d1.open and d1.reason == d.reason and d1.delay_s == 10.0
    assert _record(procs[0]).state == ("Threads_running",)
    # between the marks: process 2 probes next and, continuing process 0's trip, stays closed
    server["running"] = 35
    clock.advance(2.0)
    assert not procs[2].check().open and procs[2].gate.probes == 1
    server["running"] = 30
    clock.advance(2.0)
    assert procs[3].check().open and procs[3].gate.probes == 1
    assert _record(procs[0]).state == ()


def test_the_same_name_with_another_configuration_is_another_record(url: str) -> None:
    clock = FrozenClock(T0)
    db = open_database(url)
    try:
        shared = SharedDecisions(db, holder="h:1", clock=clock)
        a = file("/run/hold-a", name="hold", interval=5)
        b = file("/run/hold-b", name="hold", interval=5)
        for g in (a, b):
            shared.attach(g)
            assert g.check().open
        assert (a.probes, b.probes) == (1, 1)
        assert sorted(r.reading["path"] for r in shared.records().values() if r.reading) == [
            "/run/hold-a",
            "/run/hold-b",
        ]
    finally:
        db.close()


def test_others_use_the_last_decision_while_one_probes_then_fail_closed_when_too_old(
    cluster: Any,
) -> None:
    procs, _server, clock = cluster
    assert procs[0].check().open
    key = procs[0].shared.key_of(procs[0].gate)[0]
    clock.advance(2.0)
    # host0 takes the right to probe and hangs (its lease: the budget of a probe and 1 s)
    lease = lease_s(procs[0].gate)
    assert lease == 5.0
    now = round(clock.now() * 1000)
    assert claim_one(
        procs[0].db, _table(), key, worker="host0:100", now_ms=now, lease_ms=round(lease * 1000)
    )
    d = procs[1].check()  # the last decision, 2 s old, while the probe runs
    assert d.open and d.reading["shared"]["age_s"] == 2.0 and procs[1].gate.probes == 0
    # the hung prober's lease ends at +5 s: the next process to look takes over
    clock.advance(4.9)
    assert procs[2].check().open and procs[2].gate.probes == 0
    clock.advance(0.3)  # (its cache of the last decision is a quarter second long)
    assert procs[2].check().reading["shared"] == {"prober": "host2:102", "age_s": 0.0}
    # now one that hangs too long: no decision younger than 3 intervals + the lease (11 s)
    clock.advance(2.0)
    now = round(clock.now() * 1000)
    assert claim_one(procs[0].db, _table(), key, worker="host3:103", now_ms=now, lease_ms=60_000)
    clock.advance(9.1)
    d = procs[1].check()  # after waiting an interval for host3's decision
    assert not d.open and d.delay_s == 10.0 and procs[1].gate.probes == 0
    assert "no shared decision younger than 11s (last: 13.1s old, from host2:102)" in d.reason
    assert "host3:103 is probing" in d.reason
    assert d.reading["shared"]["probing"] == "host3:103"


def test_a_first_decision_is_waited_for_not_refused(cluster: Any) -> None:
    """Workers starting together: one probes, the others wait a moment for its decision
    (a few polls) instead of deferring their first jobs on "no decision yet"."""
    procs, server, clock = cluster
    key = procs[0].shared.key_of(procs[0].gate)[0]
    procs[0].shared.records()  # migrates
    procs[0].db.execute(
        "INSERT INTO gate_decisions (gate_key, gate, fingerprint, due_ms, claimed_by) "
        "VALUES (?, 'db', 'x', ?, 'host0:100')",
        (key, round(clock.now() * 1000) + 5000),
    )
    polls: list[float] = []

    def land(s: float) -> None:  # the prober's decision lands during the third poll
        polls.append(s)
        clock.advance(s)
        if len(polls) == 3:
            procs[0].db.execute(
                "UPDATE gate_decisions SET is_open = 1, reason = 'ok', probed_ms = ?, "
                "prober = 'host0:100', due_ms = ?, claimed_by = NULL WHERE gate_key = ?",
                (round(clock.now() * 1000), round(clock.now() * 1000) + 2000, key),
            )

    procs[1].shared._sleep = land
    d = procs[1].check()
    assert d.open and d.reason == "ok" and len(polls) == 3 and procs[1].gate.probes == 0
    # a first decision that never lands: waited for until its prober's lease ends, then
    # taken over (as a process's threads wait for its own probe, bounded by its timeouts)
    other = Load(server, clock, shared=True)
    other.marks = [max_limit("Threads_running", 50, 0.8)]  # another configuration: a new record
    procs[3].shared.attach(other)
    key3 = procs[3].shared.key_of(other)[0]
    procs[0].db.execute(
        "INSERT INTO gate_decisions (gate_key, gate, fingerprint, due_ms, claimed_by) "
        "VALUES (?, 'db', 'y', ?, 'host0:100')",
        (key3, round(clock.now() * 1000) + 5000),
    )
    started = clock.now()
    d = other.check()
    assert d.open and d.reading["shared"]["prober"] == "host3:103" and other.probes == 1
    assert 4.95 <= clock.now() - started <= 5.1
    # nobody landing one: closed after waiting about an interval
    procs[2].shared._sleep = lambda s: clock.advance(s)
    clock.advance(20)
    assert claim_one(
        procs[0].db,
        _table(),
        key,
        worker="host0:100",
        now_ms=round(clock.now() * 1000),
        lease_ms=60_000,
    )
    started = clock.now()
    d = procs[2].check()
    assert not d.open and "host0:100 is probing" in d.reason
    assert 1.95 <= clock.now() - started <= 2.1


def test_a_probe_that_fails_is_shared_closed(cluster: Any) -> None:
    procs, server, clock = cluster
    server["down"] = 1
    d = procs[0].check()
    assert not d.open and d.reason == "probe failed: ConnectionError: server gone"
    clock.advance(0.1)
    assert procs[1].check().reason == d.reason and procs[1].gate.probes == 0


def _table() -> Any:
    from signalbox.gates.shared import _TABLE

    return _TABLE


def test_secrets_stay_out_of_the_record(url: str) -> None:
    clock = FrozenClock(T0)
    db = open_database(url)
    try:
        shared = SharedDecisions(db, holder="h:1", clock=clock)
        g = CallableGate(
            lambda: Decision(False, "", "login s3cr3t-pw refused", 0, {"said": "s3cr3t-pw"}),
            name="secretive",
            interval=5,
        )
        g.hide(["s3cr3t-pw"])
        shared.attach(g)
        assert "s3cr3t-pw" not in g.check().reason
        row = db.query("SELECT reason, reading FROM gate_decisions")
        assert row and all("s3cr3t-pw" not in str(c) for c in row[0]), row
    finally:
        db.close()


# -- the store going away ------------------------------------------------------------------


@pytest.mark.service("postgresql")
def test_an_unreachable_store_means_local_probes_until_it_is_back() -> None:
    clock = FrozenClock(T0)
    server = {"running": 10.0}
    with pg_schema_url() as u:
        proxy = TcpProxy(("127.0.0.1", 5432))
        via = u.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        db = open_database(via)
        try:
            shared = SharedDecisions(db, holder="h:1", clock=clock)
            gate = Load(server, clock)
            shared.attach(gate)
            assert gate.check().reading["shared"] == {"prober": "h:1", "age_s": 0.0}
            proxy.stop()
            for n in (2, 3):
                clock.advance(2.0)
                d = gate.check()  # probed here, fail closed as ever when the server is busy
                assert d.open and gate.probes == n
                assert d.reading["shared"]["store"].startswith("failed, probed locally: ")
            server["running"] = 50
            clock.advance(2.0)
            d = gate.check()
            assert not d.open and "Threads_running 50 >= 40" in d.reason
            proxy = TcpProxy(("127.0.0.1", 5432), port=proxy.port)
            clock.advance(2.0)
            d = gate.check()
            assert "store" not in d.reading["shared"] and not d.open
            rec = shared.read(shared.key_of(gate)[0])
            assert rec is not None and rec.probes == 2 and rec.reason == d.reason
        finally:
            proxy.stop()
            db.close()


# -- the rules ------------------------------------------------------------------------------


def test_assess() -> None:
    rec = Record(True, probed_ms=10_000)
    assert assess(None, 10_000, 2000, 11_000) == NONE
    assert assess(Record(None), 10_000, 2000, 11_000) == NONE
    assert assess(rec, 11_999, 2000, 11_000) == FRESH
    assert assess(rec, 12_000, 2000, 11_000) == USABLE
    assert assess(rec, 21_000, 2000, 11_000) == USABLE
    assert assess(rec, 21_001, 2000, 11_000) == TOO_OLD


def test_lease_follows_the_probes_timeouts() -> None:
    assert lease_s(mysql_load("mysql://m@db7/", max_running=4, timeout=2)) == 5.0
    assert lease_s(mysql_load("mysql://m@db7/", max_running=4, timeout=10)) == 21.0
    pair = mysql_replication(["mysql://m@a/", "mysql://m@b/"], timeout=3)
    assert lease_s(pair) == 13.0
    assert lease_s(CallableGate(lambda: True, name="x")) == 5.0


def _probe_a() -> bool:
    return True


def test_fingerprints_name_the_configuration_not_the_process() -> None:
    a = mysql_load("mysql://monitor:pw1@db7:3306/", max_running=40, name="db")
    same = mysql_load("mysql://monitor:other-pw@db7:3306/", max_running=40, name="db")
    assert fingerprint(a) == fingerprint(same)  # the password is no part of it
    assert "pw1" not in json.dumps(describe(a)) and "pw1" not in json.dumps(
        describe(pair_of("pw1"))
    )
    for other in (
        mysql_load("mysql://monitor@db8:3306/", max_running=40, name="db"),
        mysql_load("mysql://monitor@db7:3306/", max_running=50, name="db"),
        mysql_load("mysql://monitor@db7:3306/", max_running=40, name="db", interval=5),
    ):
        assert fingerprint(other) != fingerprint(a)
    one = CallableGate(lambda: True, name="f")
    two = CallableGate(lambda: False, name="f")
    assert fingerprint(one) != fingerprint(two)  # two lambdas: their lines differ
    three, four = CallableGate(lambda: 1, name="f"), CallableGate(lambda: 2, name="f")
    assert fingerprint(three) != fingerprint(four)  # and their columns
    p1 = CallableGate(functools.partial(max, 1), name="p")
    p2 = CallableGate(functools.partial(max, 2), name="p")
    assert fingerprint(p1) != fingerprint(p2)
    assert fingerprint(CallableGate(_probe_a)) == fingerprint(CallableGate(_probe_a))
    assert "0x" not in json.dumps(describe(CallableGate(_probe_a)))


def pair_of(password: str) -> Gate:
    return mysql_replication([f"mysql://m:{password}@a/", f"mysql://m:{password}@b/"])


# -- configuration and the worker --------------------------------------------------------


def test_shared_is_on_by_default_and_off_per_gate_or_for_all(tmp_path: Path) -> None:
    def settings(gates: dict[str, Any]) -> Any:
        return settings_from_dict(
            {"gates": gates}, source="signalbox.toml", base_dir=tmp_path, environ={}
        )

    hold = {"kind": "file", "path": "hold"}
    s = settings({"hold": hold, "mine": {**hold, "shared": False}})
    assert sharing_enabled(s) and list(s.gates) == ["hold", "mine"]
    gates = build_gates(s)
    assert gates["hold"].shared is None and gates["mine"].shared is False
    assert not settings({"shared": False, "hold": hold}).gates.shared
    assert not sharing_enabled(settings({"shared": False}))
    with pytest.raises(ConfigError, match=r"gates\.shared"):
        settings({"shared": "no"})
    with pytest.raises(ConfigError, match=r"gates\.hold\.shared"):
        settings({"hold": {**hold, "shared": "off"}})


def test_a_worker_shares_its_tasks_gates_through_its_store(url: str) -> None:
    reg = Registry()
    probes: list[int] = []
    gate = CallableGate(lambda: probes.append(1) is None, name="counted", interval=60)
    local = CallableGate(lambda: True, name="local", interval=60, shared=False)
    every = CallableGate(lambda: True, name="every", interval=0)
    Task(lambda: None, name="t", gates=[gate, local, every], registry=reg)
    store = SQLQueueStore(open_database(url))
    try:
        w = Worker(store, registry=reg, name="host9:1:abc")
        t = reg.get("t")
        assert t is not None
        now = int(time.time() * 1000)
        store.enqueue(t.new_job(now, (), {}, now))
        assert w.work_batch() == 1 and w.counts["done"] == 1
        assert gate.sharing is w._gate_sharing and gate.sharing is not None
        assert local.sharing is None and every.sharing is None
        [rec] = gate.sharing.records().values()
        assert rec.prober == "host9:1:abc" and rec.probes == 1
        assert Worker(store, registry=reg, share_gates=False)._gate_sharing is None
    finally:
        store.db.close()
    assert shared_decisions(MemoryQueueStore()) is None
    mem = open_database("sqlite:///:memory:")
    assert shared_decisions(SQLQueueStore(mem)) is None
    mem.close()


def test_a_gate_kept_local_or_probed_every_time_is_not_shared() -> None:
    db = open_database("sqlite:///:memory:")
    shared = SharedDecisions(db)
    assert not shared.attach(CallableGate(lambda: True, name="a", shared=False))
    assert not shared.attach(CallableGate(lambda: True, name="b", interval=0))
    g = CallableGate(lambda: True, name="c")
    assert shared.attach(g) and g.sharing is shared
    assert g.share_through(None) and g.sharing is None
    db.close()
