"""Leases with a TTL: one holder at a time, expiry, renewal, release, and racing processes."""

from __future__ import annotations

import threading

import pytest

from signalbox.clock import FrozenClock
from signalbox.storage import Database, open_database
from signalbox.storage.lease import Lease, lease
from tests.storage.helpers import started

T0 = 1_700_000_000_000


def test_one_holder_until_it_expires_then_another(db: Database) -> None:
    a, b = lease(db, "monitors", 30, holder="a"), lease(db, "monitors", 30, holder="b")
    assert a.acquire(T0)
    assert not b.acquire(T0 + 1)
    assert a.holder_now(T0 + 1) == b.holder_now(T0 + 1) == "a"
    assert a.acquire(T0 + 10_000)  # acquiring what we hold renews it
    assert not b.acquire(T0 + 39_999)
    assert b.acquire(T0 + 40_000)  # a stopped renewing: expired
    assert not a.renew(T0 + 40_001)  # a learns it lost the lease
    assert not a.acquire(T0 + 40_001)
    assert a.holder_now(T0 + 40_001) == "b"


def test_renew_extends_only_a_live_lease_of_ours(db: Database) -> None:
    a = lease(db, "l", 10, holder="a")
    assert not a.renew(T0)  # nothing to renew
    assert a.acquire(T0)
    assert a.renew(T0 + 9_000)
    assert a.holder_now(T0 + 18_999) == "a"
    assert a.holder_now(T0 + 19_000) is None
    assert not a.renew(T0 + 19_000)  # expired: acquire again instead


def test_release_frees_it_at_once_and_only_for_its_holder(db: Database) -> None:
    a, b = lease(db, "l", 60, holder="a"), lease(db, "l", 60, holder="b")
    assert a.acquire(T0)
    b.release()  # not b's: nothing happens
    assert a.holder_now(T0) == "a"
    a.release()
    assert a.holder_now(T0) is None
    assert b.acquire(T0 + 1)


def test_leases_are_independent_by_name_and_use_the_injected_clock(db: Database) -> None:
    clock = FrozenClock(T0 / 1000)
    x = lease(db, "x", 5, holder="p", clock=clock)
    y = lease(db, "y", 5, holder="q", clock=clock)
    assert x.acquire() and y.acquire()
    clock.advance(5)
    assert x.holder_now() is None
    assert lease(db, "x", 5, holder="r", clock=clock).acquire()
    assert Lease(db, "z", 1).holder != Lease(db, "z", 1).holder  # a default holder is unique
    with pytest.raises(ValueError, match="ttl_s"):
        lease(db, "bad", 0)


def test_processes_racing_for_a_lease_never_both_win(db: Database) -> None:
    rounds, n = 40, 3
    dbs = [open_database(db.url) for _ in range(n)]
    go = threading.Barrier(n, timeout=20)

    def contend(i: int) -> list[bool]:
        won = []
        for r in range(rounds):
            go.wait()
            l_ = lease(dbs[i], f"round{r}", 30, holder=f"p{i}")
            won.append(l_.acquire(T0 + r))
        return won

    workers = [started(lambda i=i: contend(i)) for i in range(n)]
    results = [w.outcome(120) for w in workers]
    for r in range(rounds):
        winners = [i for i in range(n) if results[i][r]]
        assert len(winners) == 1, f"round {r}: winners {winners}"
        assert db.query("SELECT holder FROM storage_leases WHERE name = ?", (f"round{r}",)) == [
            (f"p{winners[0]}",)
        ]
    for d in dbs:
        d.close()


def test_racing_for_an_expired_lease_has_one_winner(db: Database) -> None:
    lease(db, "e", 1, holder="old").acquire(T0)
    dbs = [open_database(db.url) for _ in range(4)]
    go = threading.Barrier(4, timeout=10)

    def take(i: int) -> bool:
        go.wait()
        return lease(dbs[i], "e", 30, holder=f"new{i}").acquire(T0 + 5_000)

    workers = [started(lambda i=i: take(i)) for i in range(4)]
    assert sum(w.outcome() for w in workers) == 1
    for d in dbs:
        d.close()
