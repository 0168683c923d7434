"""Electing one ``serve`` instance (storage/leader.py) and what leads with it: terms that end
on time, fences that roll back a stale leader's writes, the leader-only loops and metrics.

Clocks are injected (the lease's wall clock and each instance's monotonic clock), so no
test sleeps to let a lease expire; every backend is real (SQLite, PostgreSQL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import load_settings
from signalbox.exceptions import ConfigError
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify.notification import Notification
from signalbox.monitors.outbox.store import Outbox
from signalbox.server.leadership import LeaderMetrics, LeaderSeen, every_leading
from signalbox.server.loops import LoopHealth
from signalbox.storage import Database, open_database
from signalbox.storage.leader import (
    LeaseLeadership,
    LostLeadership,
    SingleHost,
    instance_of,
    leadership_for,
)
from tests.storage.helpers import Worker

TTL = 3.0


class Mono:
    """One instance's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


Connect = Callable[[], Database]


@pytest.fixture
def connect(store_url: str) -> Iterator[Connect]:
    """Opens databases of the test's store: a candidate each, as each instance has its own
    sessions (the advisory locks that say a leader is alive are a session's)."""
    opened: list[Database] = []

    def new() -> Database:
        opened.append(open_database(store_url))
        return opened[-1]

    yield new
    for d in opened:
        d.close()


@pytest.fixture
def db(connect: Connect) -> Database:
    """The test's own connection to the store (overrides the suite's: one store per test)."""
    return connect()


def candidate(connect: Connect, name: str, clock: FrozenClock) -> tuple[LeaseLeadership, Mono]:
    mono = Mono()
    return LeaseLeadership(connect(), name, TTL, clock=clock, monotonic=mono), mono


def advance(clock: FrozenClock, s: float, *monos: Mono) -> None:
    clock.advance(s)
    for m in monos:
        m.t += s


def test_one_candidate_leads_the_other_names_it(
    connect: Connect, db: Database, clock: FrozenClock
) -> None:
    a, ma = candidate(connect, "web1:8910", clock)
    b, mb = candidate(connect, "web2:8910", clock)
    assert a.attempt() and not b.attempt()
    assert a.leading() and not b.leading()
    assert a.leader() == b.leader() == "web1:8910"
    term = a.term()
    assert term is not None and instance_of(term) == "web1:8910"
    advance(clock, 1.0, ma, mb)  # renewals keep the same term
    assert a.attempt() and a.term() == term and not b.attempt()
    assert a.deposed() is None and b.deposed() is None


def test_a_leader_that_stops_renewing_stops_acting_before_another_can_take_over(
    connect: Connect, db: Database, clock: FrozenClock
) -> None:
    a, ma = candidate(connect, "web1:8910", clock)
    b, mb = candidate(connect, "web2:8910", clock)
    assert a.attempt()
    advance(clock, TTL * 0.8, ma, mb)  # a stalls: no renewal
    assert not a.leading() and a.term() is None  # its own view ends first...
    assert not b.attempt()  # ...while the lease has a fifth of its TTL to run
    advance(clock, TTL * 0.2, ma, mb)
    assert b.attempt() and b.leading()  # expired: taken over
    assert b.deposed() == "web1:8910"
    assert not a.attempt()  # a wakes: its renewal fails, and the lease is b's
    assert a.leader() == "web2:8910" and not a.leading()


def test_a_stale_pass_is_rolled_back_by_its_fence(
    connect: Connect, db: Database, clock: FrozenClock
) -> None:
    db.execute("CREATE TABLE pass_writes (n INTEGER)")
    a, ma = candidate(connect, "web1:8910", clock)
    b, mb = candidate(connect, "web2:8910", clock)
    assert a.attempt()
    fence = a.fence(db, a.term())  # a pass begins in a's term
    with db.transaction():
        fence()
        db.execute("INSERT INTO pass_writes VALUES (1)")
    advance(clock, TTL + 0.1, ma, mb)  # a stalls past its lease; b takes over
    assert b.attempt()
    with pytest.raises(LostLeadership), db.transaction():  # a's next pass: rolled back
        db.execute("INSERT INTO pass_writes VALUES (2)")
        a.fence(db, a.term())()
    with pytest.raises(LostLeadership), db.transaction():
        fence()  # the pass begun in the old term, too
    assert db.query("SELECT n FROM pass_writes") == [(1,)]


def test_a_new_term_of_the_same_instance_does_not_revive_the_old_one(
    connect: Connect, db: Database, clock: FrozenClock
) -> None:
    a, ma = candidate(connect, "web1:8910", clock)
    b, mb = candidate(connect, "web2:8910", clock)
    assert a.attempt()
    old = a.term()
    old_fence = a.fence(db, old)
    advance(clock, TTL + 0.1, ma, mb)
    assert b.attempt()
    b.stop()  # b leads for a while, then leaves
    assert a.attempt()  # a leads again, in a term of its own
    assert a.term() not in (None, old)
    with pytest.raises(LostLeadership), db.transaction():
        old_fence()  # work begun before b led cannot commit now
    with db.transaction():
        a.fence(db)()  # the current term's fence lets work through


def test_stop_releases_the_lease_for_the_next_attempt(
    connect: Connect, db: Database, clock: FrozenClock
) -> None:
    a, _ = candidate(connect, "web1:8910", clock)
    b, _ = candidate(connect, "web2:8910", clock)
    assert a.attempt() and not b.attempt()
    a.stop()
    assert not a.leading()
    assert b.attempt() and b.deposed() is None  # released, not expired: nobody was deposed


def test_a_failing_store_ends_the_term_once_its_validity_passes(
    connect: Connect, db: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    a, ma = candidate(connect, "web1:8910", clock)
    told: list[bool] = []
    a.subscribe(told.append)
    assert a.attempt() and told == [True]
    advance(clock, TTL * 0.8, ma)
    with caplog.at_level(logging.WARNING, "signalbox.leader"):
        a._lapse()  # what the election thread does after an attempt that raised
    assert told == [True, False] and not a.leading()
    assert a.leader() is None  # not known until the store answers again
    assert "not renewed within 2.4s" in caplog.text


@pytest.mark.service("postgresql")
def test_a_takeover_waits_for_the_leaders_open_transaction(clock: FrozenClock) -> None:
    """The fence's renewal locks the lease row until the pass commits: a rival whose clock
    says the lease expired meanwhile waits, then finds it renewed."""
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        dbs = [open_database(url) for _ in range(3)]
        db = dbs[0]
        try:
            a, ma = candidate(lambda: dbs[1], "web1:8910", clock)
            b, mb = candidate(lambda: dbs[2], "web2:8910", clock)
            assert a.attempt()  # until T0 + 3 s
            advance(clock, 2.0, ma, mb)
            entered, finish = threading.Event(), threading.Event()

            def a_pass() -> None:
                with db.transaction():
                    a.fence(db)()
                    entered.set()
                    finish.wait(10)

            pass_thread = Worker(a_pass)
            pass_thread.start()
            assert entered.wait(10)
            advance(clock, 1.1, mb)  # b's clocks: past the lease a took at first
            rival = Worker(b.attempt)
            rival.start()
            rival.join(0.5)
            assert rival.is_alive()  # waiting on the row a's pass holds
            finish.set()
            pass_thread.outcome()
            assert rival.outcome() is False  # a's pass renewed it before committing
            assert b.leader() == "web1:8910"
        finally:
            for d in dbs:
                d.close()


@pytest.mark.service("postgresql")
def test_a_leader_paused_inside_its_fenced_transaction_is_replaced(clock: FrozenClock) -> None:
    """A leader paused (SIGSTOP) between its fence's renewal and its commit holds the lease
    row: PostgreSQL ends its session once it has sat idle in that transaction for the TTL,
    the rival takes over, and the woken pass cannot commit (a full run of the two-serve test
    once waited 10 s for a takeover that never came)."""
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        dbs = [open_database(url) for _ in range(3)]
        db = dbs[0]
        try:
            a, _ = candidate(lambda: dbs[1], "web1:8910", clock)
            b, mb = candidate(lambda: dbs[2], "web2:8910", clock)
            assert a.attempt()
            entered, wake = threading.Event(), threading.Event()

            def a_pass() -> None:
                with db.transaction():
                    a.fence(db)()
                    db.execute("SELECT 1")
                    entered.set()
                    wake.wait(30)  # paused: no statement, no commit
                    db.execute("SELECT 1")

            pass_thread = Worker(a_pass)
            pass_thread.start()
            assert entered.wait(10)
            advance(clock, TTL + 0.1, mb)  # b's clocks: a's lease has expired
            started = time.monotonic()
            rival = Worker(b.attempt)
            rival.start()
            rival.join(TTL + 10)
            assert not rival.is_alive(), "the rival still waits on the paused leader's row"
            assert rival.outcome() is True
            assert time.monotonic() - started < TTL + 5
            assert b.leading()
            wake.set()
            import psycopg

            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                pass_thread.outcome()  # its session is gone: nothing of it commits
        finally:
            for d in dbs:
                d.close()


@pytest.mark.service("postgresql")
def test_a_leader_whose_session_is_gone_is_replaced_at_once(
    clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Its lease has most of its TTL to run, but its advisory lock went with its session
    (the process died): the next attempt takes over, and the dead term's fence fails."""
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        dbs = [open_database(url) for _ in range(3)]
        try:
            a, _ = candidate(lambda: dbs[0], "web1:8910", clock)
            b, _ = candidate(lambda: dbs[1], "web2:8910", clock)
            c, _ = candidate(lambda: dbs[2], "web3:8910", clock)
            assert a.attempt()
            dead = a.term()
            assert not b.attempt() and not c.attempt()  # a's session holds its lock: alive
            dbs[0].close()  # a dies: PostgreSQL ends its session, and its lock with it
            with caplog.at_level(logging.WARNING, "signalbox.leader"):
                # no clock moves: the lease has its whole TTL to run; the server ends the
                # closed session's backend a moment after the close
                deadline = time.monotonic() + 10
                while not b.attempt():
                    assert time.monotonic() < deadline, "a's session outlived its close"
                    time.sleep(0.05)
            assert b.deposed() == "web1:8910" and not c.attempt()  # b's own lock: alive
            assert "taking over from web1:8910 (its session is gone)" in caplog.text
            check = open_database(url)
            try:
                with pytest.raises(LostLeadership), check.transaction():
                    a.fence(check, dead)()  # what the dead term began cannot commit
            finally:
                check.close()
        finally:
            for d in dbs[1:]:
                d.close()


@pytest.mark.service("postgresql")
def test_a_leader_whose_session_lost_its_lock_takes_it_again_at_its_next_renewal(
    clock: FrozenClock,
) -> None:
    """Its connection was replaced (an error), so its lock went: the next renewal takes it
    again, and a candidate does not take this live leader for dead."""
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        dbs = [open_database(url) for _ in range(2)]
        try:
            a, ma = candidate(lambda: dbs[0], "web1:8910", clock)
            b, mb = candidate(lambda: dbs[1], "web2:8910", clock)
            assert a.attempt()
            dbs[0].query("SELECT pg_advisory_unlock_all()")  # as a new session would be
            advance(clock, 1.0, ma, mb)
            assert a.attempt()  # renewed, and its lock taken again
            assert not b.attempt() and b.leader() == "web1:8910"
        finally:
            for d in dbs:
                d.close()


def test_sqlite_and_memory_stores_have_one_instance_that_always_leads(
    db: Database, clock: FrozenClock
) -> None:
    got = leadership_for(db, "web1:8910", TTL)
    if db.dialect.name == "postgresql":
        assert isinstance(got, LeaseLeadership)
        return
    assert isinstance(got, SingleHost)
    assert got.leading() and got.leader() == "web1:8910" and got.term() == "web1:8910"
    got.fence(db)()  # nothing to check, nothing raised


def test_the_leader_metric_names_this_instance_and_zeroes_the_deposed_once(
    connect: Connect, db: Database, clock: FrozenClock
) -> None:
    a, ma = candidate(connect, "web1:8910", clock)
    b, mb = candidate(connect, "web2:8911", clock)
    assert a.attempt() and not b.attempt()
    ours, theirs = LeaderMetrics(a), LeaderMetrics(b)
    assert [(s.labels, s.value) for s in ours.flush(0)[0]] == [((("server", "web1:8910"),), 1.0)]
    assert [(s.labels, s.value) for s in theirs.flush(0)[0]] == [((("server", "web2:8911"),), 0.0)]
    advance(clock, TTL + 0.1, ma, mb)
    assert b.attempt()
    first, meta = theirs.flush(1)
    assert [(s.labels, s.value) for s in first] == [
        ((("server", "web2:8911"),), 1.0),
        ((("host", "web1"), ("server", "web1:8910")), 0.0),  # as web1 wrote it, now 0
    ]
    assert meta[0].name == "signalbox_leader" and meta[0].type == "gauge"
    assert [(s.labels, s.value) for s in theirs.flush(2)[0]] == [((("server", "web2:8911"),), 1.0)]


def test_an_agent_says_which_instance_leads_and_logs_each_change(
    connect: Connect, db: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen = LeaderSeen(db)

    def now() -> int:
        return round(clock.now() * 1000)

    with caplog.at_level(logging.WARNING, "signalbox.leader"):
        assert seen.flush(now())[0] == []  # nobody leads yet
        a, _ = candidate(connect, "web1:8910", clock)
        assert a.attempt()
        for _ in range(2):
            samples, metas = seen.flush(now())
            assert [(s.name, s.labels, s.value) for s in samples] == [
                ("signalbox_leader_info", (("leader", "web1:8910"),), 1.0)
            ]
        a.stop()
        assert seen.flush(now())[0] == []
    said = [r.getMessage() for r in caplog.records if r.name == "signalbox.leader"]
    # nobody leading at the first look is no warning (nobody may have led yet)
    assert [m for m in said if "serve instance" in m] == [
        "serve instance web1:8910 leads",
        "no serve instance leads now (its lease expired or was released)",
    ]
    assert metas[0].name == "signalbox_leader_info"


def test_a_restarted_instance_takes_over_from_its_crashed_self_without_zeroing_itself(
    connect: Connect, clock: FrozenClock
) -> None:
    old, mo = candidate(connect, "web1:8910", clock)
    assert old.attempt()
    advance(clock, TTL + 0.1, mo)  # it crashed; restarted on the same host and port
    new, _ = candidate(connect, "web1:8910", clock)
    assert new.attempt() and new.deposed() == "web1:8910"  # its claims are released too
    samples, _ = LeaderMetrics(new).flush(0)
    assert [(s.labels, s.value) for s in samples] == [((("server", "web1:8910"),), 1.0)]


class Switch:
    """A Leadership whose terms a test starts and ends."""

    def __init__(self) -> None:
        self.instance = "web1:8910"
        self.current: str | None = None

    def term(self) -> str | None:
        return self.current


def test_leader_only_loops_run_at_once_in_each_new_term_and_not_between(
    clock: FrozenClock,
) -> None:
    lead = Switch()
    ran: list[str | None] = []
    stop, tick = threading.Event(), threading.Semaphore(0)

    def job() -> None:
        ran.append(lead.current)
        tick.release()

    t = every_leading(3600, stop, job, "compact", LoopHealth(), lead)  # type: ignore[arg-type]
    try:
        assert not tick.acquire(timeout=0.6)  # nobody leads: nothing runs
        lead.current = "t1"
        assert tick.acquire(timeout=5)  # a term starts: at once, not after the hour
        assert not tick.acquire(timeout=0.6)
        lead.current = None
        assert not tick.acquire(timeout=0.6)
        lead.current = "t2"
        assert tick.acquire(timeout=5)
        assert ran == ["t1", "t2"]
    finally:
        stop.set()
        t.join(5)


def entry(outbox: Outbox, n: int, now_ms: int) -> str:
    note = Notification(
        monitor="m",
        state=State.CRITICAL,
        previous_state=State.OK,
        kind="firing",
        summary=f"#{n}",
        started_at=now_ms / 1000,
        created_at=now_ms / 1000,
        labels=(("n", str(n)),),
    )
    return outbox.enqueue("hook", note, now_ms, series=(("n", str(n)),)).id


def test_a_new_leader_makes_its_predecessors_claims_due_at_once(db: Database) -> None:
    outbox = Outbox(db, lease_s=120)
    t0 = 1_700_000_000_000
    sending, waiting, fresh = (entry(outbox, n, t0) for n in range(3))
    for key in (sending, waiting):  # the dead leader claimed these two
        assert outbox._claim(outbox.get(key), t0)  # type: ignore[arg-type]
    assert outbox.release_claims(t0 + 5_000) == 2
    for key in (sending, waiting):
        e = outbox.get(key)
        assert e is not None and e.next_attempt_ms == t0 + 5_000 and e.attempts == 1
    e = outbox.get(fresh)
    assert e is not None and (e.next_attempt_ms, e.attempts) == (t0, 0)
    assert outbox.release_claims(t0 + 6_000) == 0


def test_a_stale_senders_failure_leaves_a_row_the_new_leader_sent_as_sent(db: Database) -> None:
    stale, new = Outbox(db), Outbox(db)
    t0 = 1_700_000_000_000
    key = entry(stale, 1, t0)
    claimed = stale.get(key)
    assert claimed is not None and stale._claim(claimed, t0)  # then it stalls mid-send
    assert new.release_claims(t0 + 5_000) == 1  # the new leader takes over and sends it
    report = new.deliver_due(t0 + 5_000, {"hook": Accepting()})
    assert report.sent == 1
    stale._dead(claimed, 1, t0 + 9_000, "HTTP 400")  # the stale send's answer, at last
    stale._failed(claimed, 1, t0 + 9_000, "timed out")
    e = new.get(key)
    assert e is not None and (e.status, e.attempts, e.last_error) == ("sent", 2, "")


class Accepting:
    """A notifier whose receiver takes everything."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, n: Notification) -> None:
        self.sent.append(n)


def test_a_fenced_outbox_claims_nothing_once_the_fence_refuses(db: Database) -> None:
    refused = False

    def fence() -> None:
        if refused:
            raise LostLeadership("another instance leads")

    outbox = Outbox(db, fence=fence)
    t0 = 1_700_000_000_000
    first, second = entry(outbox, 1, t0), entry(outbox, 2, t0)
    assert outbox._claim(outbox.get(first), t0)  # type: ignore[arg-type]
    refused = True
    with pytest.raises(LostLeadership):
        outbox._claim(outbox.get(second), t0)  # type: ignore[arg-type]
    e = outbox.get(second)
    assert e is not None and e.attempts == 0  # untouched: the claim rolled back


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"0s"', "a duration from 1s to 1h"),
        ('"2d"', "a duration from 1s to 1h"),
        ('"soon"', "a duration like 15s"),
        ("10", "a string"),
    ],
)
def test_leader_ttl_is_checked_naming_file_and_key(
    tmp_path: Path, value: str, expected: str
) -> None:
    config = tmp_path / "signalbox.toml"
    config.write_text(f"[server]\nleader_ttl = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(str(config), environ={})
    said = str(e.value)
    assert "server.leader_ttl" in said and str(config) in said and expected in said, said


def test_leader_ttl_is_read(tmp_path: Path) -> None:
    config = tmp_path / "signalbox.toml"
    config.write_text('[server]\nleader_ttl = "3s"\n')
    assert load_settings(str(config), environ={}).server.leader_ttl_s == 3.0
    config.write_text("")
    assert load_settings(str(config), environ={}).server.leader_ttl_s == 10.0


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.name == "signalbox-leader"]
    assert left == [], left


@pytest.mark.service("postgresql")
def test_an_agent_on_postgresql_says_who_leads_in_its_ready_answer_and_metrics(
    tmp_path: Path,
) -> None:
    from signalbox.server.loops import Background
    from signalbox.storage import open_database
    from tests.serving import fetch, wait_for
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        config = tmp_path / "signalbox.toml"
        config.write_text(
            f'store = "{url}"\nhost = "web3"\n[collect]\ninterval = "1s"\n'
            "[statsd]\nenabled = false\n"
        )
        settings = load_settings(str(config), environ={})
        db = open_database(url)
        bg = Background(settings, listen=("127.0.0.1", 0))
        try:
            serve = LeaseLeadership(db, "web1:8910", 30.0)
            assert serve.attempt()
            bg.start()
            assert bg.scrape_address is not None
            base = "http://{}:{}".format(*bg.scrape_address)

            def page(path: str, needle: str) -> tuple[int, str] | None:
                got = fetch(base + path)
                return got if needle in got[1] else None

            ready = wait_for(lambda: page("/-/ready", "leader:"))
            assert ready == (200, "signalbox agent is ready\nleader: web1:8910\n")
            _, exposition = wait_for(lambda: page("/metrics", "signalbox_leader_info"))
            assert 'signalbox_leader_info{host="web3",leader="web1:8910"} 1' in exposition
            serve.stop()  # released: nobody leads until another serve takes it
            wait_for(lambda: page("/-/ready", "leader: none (an election is under way)"))
        finally:
            bg.close()
            db.close()
