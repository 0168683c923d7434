"""Claims: no row goes to two workers at once, and a dead worker's rows come back."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from signalbox.storage import Database, open_database
from signalbox.storage.claim import ClaimTable, claim_due, claim_one, release_claim, renew_claim
from tests.storage.helpers import started

T0 = 1_700_000_000_000
JOBS = ClaimTable("jobs", due="due_ms", ready="status = 'queued'")
MIGRATIONS = [
    (
        1,
        "a queue",
        [
            "CREATE TABLE jobs (id {serial}, status TEXT NOT NULL, due_ms BIGINT NOT NULL, "
            "attempts INTEGER NOT NULL DEFAULT 0, claimed_by TEXT, payload TEXT)",
            "CREATE INDEX jobs_due ON jobs (status, due_ms)",
        ],
    )
]


def _queue(db: Database, n: int, due_ms: int = T0) -> None:
    db.migrate("jobs", MIGRATIONS)
    db.executemany(
        "INSERT INTO jobs (status, due_ms, payload) VALUES ('queued', ?, ?)",
        [(due_ms + i, f"job {i}") for i in range(n)],
    )


def _done(db: Database, ids: list[int]) -> None:
    db.executemany("UPDATE jobs SET status = 'done' WHERE id = ?", [(i,) for i in ids])


def test_claim_due_takes_the_oldest_due_rows_and_marks_them(db: Database) -> None:
    _queue(db, 5)
    db.execute("UPDATE jobs SET status = 'done' WHERE id = 1")
    got = claim_due(
        db,
        JOBS,
        worker="w1",
        now_ms=T0 + 3,
        lease_ms=60_000,
        limit=2,
        columns=["id", "payload", "attempts", "claimed_by", "due_ms"],
    )
    assert got == [
        (2, "job 1", 1, "w1", T0 + 60_003),
        (3, "job 2", 1, "w1", T0 + 60_003),
    ]
    # job 3 is due, job 4 is not yet
    assert claim_due(db, JOBS, worker="w2", now_ms=T0 + 3, lease_ms=60_000, limit=9) == [(4,)]
    assert claim_due(db, JOBS, worker="w2", now_ms=T0 + 3, lease_ms=60_000, limit=9) == []
    assert claim_due(db, JOBS, worker="w2", now_ms=T0 + 3, lease_ms=60_000, limit=0) == []


def test_an_expired_lease_makes_the_row_claimable_again(db: Database) -> None:
    _queue(db, 1)
    assert claim_due(db, JOBS, worker="dies", now_ms=T0, lease_ms=1000, limit=1) == [(1,)]
    assert claim_due(db, JOBS, worker="w2", now_ms=T0 + 999, lease_ms=1000, limit=1) == []
    got = claim_due(
        db, JOBS, worker="w2", now_ms=T0 + 1000, lease_ms=1000, limit=1, columns=["attempts"]
    )
    assert got == [(2,)]
    assert db.query("SELECT claimed_by FROM jobs") == [("w2",)]
    # the dead worker, back, cannot renew what it lost
    assert not renew_claim(db, JOBS, 1, worker="dies", now_ms=T0 + 1500, lease_ms=1000)
    assert renew_claim(db, JOBS, 1, worker="w2", now_ms=T0 + 1500, lease_ms=1000)
    assert claim_due(db, JOBS, worker="w3", now_ms=T0 + 2000, lease_ms=1000, limit=1) == []


def test_release_gives_the_row_back_due_when_asked(db: Database) -> None:
    _queue(db, 1)
    claim_due(db, JOBS, worker="w1", now_ms=T0, lease_ms=60_000, limit=1)
    assert not release_claim(db, JOBS, 1, worker="someone else", due_ms=T0)
    assert release_claim(db, JOBS, 1, worker="w1", due_ms=T0 + 500)  # retry after a backoff
    assert db.query("SELECT due_ms, claimed_by FROM jobs") == [(T0 + 500, None)]
    assert claim_due(db, JOBS, worker="w2", now_ms=T0 + 499, lease_ms=1, limit=1) == []
    assert claim_due(db, JOBS, worker="w2", now_ms=T0 + 500, lease_ms=1, limit=1) == [(1,)]


def test_claim_one_is_a_compare_and_swap(db: Database) -> None:
    _queue(db, 1)
    seen = {"attempts": 0, "due_ms": T0}
    assert claim_one(db, JOBS, 1, worker="a", now_ms=T0, lease_ms=1000, expect=seen)
    # a second worker that read the same row loses, even once the lease has expired
    assert not claim_one(db, JOBS, 1, worker="b", now_ms=T0 + 5000, lease_ms=1000, expect=seen)
    assert claim_one(db, JOBS, 1, worker="b", now_ms=T0 + 5000, lease_ms=1000)
    assert not claim_one(db, JOBS, 1, worker="c", now_ms=T0 + 5000, lease_ms=1000)
    _done(db, [1])
    assert not claim_one(db, JOBS, 1, worker="c", now_ms=T0 + 99_000, lease_ms=1000)
    assert db.query("SELECT attempts, claimed_by FROM jobs") == [(2, "b")]


def test_renew_and_release_need_the_claimed_by_column(db: Database) -> None:
    anonymous = ClaimTable("jobs", due="due_ms", claimed_by=None)
    with pytest.raises(ValueError, match="claimed_by"):
        renew_claim(db, anonymous, 1, worker="w", now_ms=T0, lease_ms=1)


@pytest.mark.parametrize("databases", ["one shared by threads", "one per worker"])
def test_concurrent_workers_never_get_the_same_row(db: Database, databases: str) -> None:
    n_jobs, n_workers = 300, 4
    _queue(db, n_jobs)
    dbs = [db if databases.startswith("one shared") else open_database(db.url) for _ in range(4)]
    go = threading.Barrier(n_workers, timeout=10)

    def work(i: int) -> list[int]:
        mine: list[int] = []
        go.wait()
        while True:
            got = claim_due(
                dbs[i], JOBS, worker=f"w{i}", now_ms=T0 + n_jobs, lease_ms=600_000, limit=7
            )
            if not got:
                return mine
            ids = [r[0] for r in got]
            _done(dbs[i], ids)  # finish them, as a worker would
            mine += ids

    workers = [started(lambda i=i: work(i)) for i in range(n_workers)]
    claimed = [w.outcome(60) for w in workers]
    counts = Counter(i for ids in claimed for i in ids)
    assert sorted(counts) == list(range(1, n_jobs + 1))  # every row, once
    assert set(counts.values()) == {1}
    assert db.query("SELECT count(*) FROM jobs WHERE attempts <> 1 OR status <> 'done'") == [(0,)]
    for d in dbs:
        if d is not db:
            d.close()


@pytest.mark.service("postgresql")
def test_on_postgresql_a_claim_skips_rows_another_worker_holds_instead_of_waiting() -> None:
    from tests.stores import pg_schema_url

    with pg_schema_url() as url:
        a, b = open_database(url), open_database(url)
        _queue(a, 10)
        holding, release = threading.Event(), threading.Event()

        def slow_worker() -> list[tuple[object, ...]]:
            with a.transaction():  # claimed rows stay locked until this commits
                got = claim_due(a, JOBS, worker="a", now_ms=T0 + 10, lease_ms=60_000, limit=4)
                holding.set()
                assert release.wait(10)
            return got

        w = started(slow_worker)
        assert holding.wait(10)
        with b.transaction(lock_timeout_s=2):  # would fail if it queued behind a's locks
            got_b = claim_due(b, JOBS, worker="b", now_ms=T0 + 10, lease_ms=60_000, limit=10)
        release.set()
        assert [r[0] for r in w.outcome()] == [1, 2, 3, 4]
        assert [r[0] for r in got_b] == [5, 6, 7, 8, 9, 10]
        a.close()
        b.close()
