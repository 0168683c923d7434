"""The queue store contract, on every backend: memory, SQLite and PostgreSQL (a real server).

What the worker and the operator rely on: claims take due jobs by priority then due time,
never a job another worker holds, never a paused queue's; a lease that runs out makes a job
claimable again (at-least-once); finishing records outcomes only for the claim that holds
the job; unique jobs, schedules and the scheduler lease are compare-and-swap safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.tasks.jobs import Dead, Deferred, Done, Held, NewJob, Released, Retry
from tests.stores import pg_schema_url, sqlite_url

T0 = 1_700_000_000_000
LEASE = 30_000


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def qs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        from signalbox.tasks.memstore import MemoryQueueStore

        yield MemoryQueueStore()
        return
    from signalbox.storage import open_database
    from signalbox.tasks.sqlstore import SQLQueueStore

    if request.param == "sqlite":
        s = SQLQueueStore(open_database(sqlite_url(tmp_path), page_size=4096))
        yield s
        s.close()
    else:
        with pg_schema_url() as url:
            s = SQLQueueStore(open_database(url))
            yield s
            s.close()


def job(
    task: str = "t", *, queue: str = "q", due: int = T0, prio: int = 0, args: str = "[[1]]"
) -> NewJob:
    return NewJob(queue, task, args, due, T0, prio)


def test_enqueue_then_claim_hands_the_job_over_once(qs: Any) -> None:
    e = qs.enqueue(job(args='[[1],{"k":"v"}]'))
    assert e.created
    [c] = qs.claim(worker="w1", now_ms=T0, lease_ms=LEASE, limit=10)
    assert (c.id, c.queue, c.task, c.args, c.attempts, c.failures) == (
        e.id, "q", "t", '[[1],{"k":"v"}]', 1, 0,
    )  # fmt: skip
    assert qs.claim(worker="w2", now_ms=T0, lease_ms=LEASE, limit=10) == []
    [s] = qs.stats(T0)
    assert (s.ready, s.running, s.scheduled) == (0, 1, 0)


def test_claims_go_by_priority_then_due_time_and_skip_later_jobs(qs: Any) -> None:
    late = qs.enqueue(job(due=T0 + 1000)).id
    old = qs.enqueue(job(due=T0 - 500)).id
    new = qs.enqueue(job(due=T0 - 100)).id
    urgent = qs.enqueue(job(due=T0, prio=5)).id
    got = [c.id for c in qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=10)]
    assert got == [urgent, old, new]
    assert [c.id for c in qs.claim(worker="w", now_ms=T0 + 1000, lease_ms=LEASE, limit=10)] == [
        late
    ]


def test_limit_and_queues_bound_a_claim(qs: Any) -> None:
    for i in range(5):
        qs.enqueue(job(queue="a", due=T0 + i))
    qs.enqueue(job(queue="b"))
    assert len(qs.claim(worker="w", now_ms=T0 + 10, lease_ms=LEASE, limit=2, queues=["a"])) == 2
    [b] = qs.claim(worker="w", now_ms=T0 + 10, lease_ms=LEASE, limit=10, queues=["b"])
    assert b.queue == "b"


def test_a_lease_that_runs_out_makes_the_job_claimable_again(qs: Any) -> None:
    jid = qs.enqueue(job()).id
    qs.claim(worker="dead-worker", now_ms=T0, lease_ms=LEASE, limit=1)
    assert qs.claim(worker="w2", now_ms=T0 + LEASE - 1, lease_ms=LEASE, limit=1) == []
    [again] = qs.claim(worker="w2", now_ms=T0 + LEASE, lease_ms=LEASE, limit=1)
    assert (again.id, again.attempts) == (jid, 2)
    # the first worker's late finish no longer touches it
    qs.finish([Done(jid, "q")], worker="dead-worker", now_ms=T0 + LEASE + 1)
    assert qs.get(jid) is not None
    qs.finish([Done(jid, "q")], worker="w2", now_ms=T0 + LEASE + 1)
    assert qs.get(jid) is None
    assert qs.stats(T0)[0].outcomes["done"] == 1


def test_renew_keeps_the_lease_and_reports_a_lost_one(qs: Any) -> None:
    a, b = qs.enqueue(job()).id, qs.enqueue(job()).id
    qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=2)
    kept = qs.renew(
        [a], worker="w", now_ms=T0 + 20_000, lease_ms=LEASE, checkpoints={a: '{"at":3}'}
    )
    assert kept == {a}
    # b's lease ran out and another worker took it; a is still w's
    [c] = qs.claim(worker="x", now_ms=T0 + LEASE, lease_ms=LEASE, limit=5)
    assert c.id == b
    assert qs.renew([a, b], worker="w", now_ms=T0 + LEASE, lease_ms=LEASE) == {a}
    assert qs.get(a).checkpoint == '{"at":3}'


def test_finish_records_every_outcome_in_one_go(qs: Any) -> None:
    ids = [qs.enqueue(job()).id for _ in range(6)]
    qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=6)
    qs.finish(
        [
            Done(ids[0], "q"),
            Retry(ids[1], "q", T0 + 5000, "Traceback: boom"),
            Dead(ids[2], "q", "out of retries"),
            Deferred(ids[3], "q", T0 + 10_000, "mysql_load", "Threads_running 80 >= 50", '{"n":1}'),
            Held(ids[4], "q", T0 + 60_000, "task 't' is not known"),
            Released(ids[5], "q"),
        ],
        worker="w",
        now_ms=T0 + 1,
    )
    assert qs.get(ids[0]) is None
    r = qs.get(ids[1])
    assert (r.failures, r.last_error, r.due_ms, r.claimed_by, r.attempts) == (
        1,
        "Traceback: boom",
        T0 + 5000,
        None,
        1,
    )
    d = qs.get(ids[2])
    assert (d.status, d.failures, d.last_error, d.finished_ms) == (
        "dead",
        1,
        "out of retries",
        T0 + 1,
    )
    f = qs.get(ids[3])
    # a deferral uses no attempt and no retry; it counts itself
    assert (f.attempts, f.failures, f.defers, f.gate, f.gate_reason, f.checkpoint) == (
        0, 0, 1, "mysql_load", "Threads_running 80 >= 50", '{"n":1}',
    )  # fmt: skip
    h = qs.get(ids[4])
    assert (h.attempts, h.failures, h.due_ms, h.last_error) == (
        0,
        0,
        T0 + 60_000,
        "task 't' is not known",
    )
    rel = qs.get(ids[5])
    assert (rel.attempts, rel.due_ms, rel.claimed_by) == (0, T0 + 1, None)
    [s] = qs.stats(T0 + 2)
    assert s.outcomes == {"done": 1, "failed": 2, "dead": 1, "deferred": 1}
    assert (s.ready, s.scheduled, s.running, s.dead) == (1, 3, 0, 1)
    assert s.holding == (("mysql_load", "Threads_running 80 >= 50", 1),)
    assert qs.gate_closures() == {"mysql_load": 1}
    assert [j.id for j in qs.jobs(status="dead")] == [ids[2]]


def test_retry_brings_dead_jobs_back_and_only_dead_ones(qs: Any) -> None:
    ids = [qs.enqueue(job(queue="a")).id for _ in range(3)]
    qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=3)
    qs.finish([Dead(i, "a", "boom") for i in ids[:2]], worker="w", now_ms=T0)
    assert not qs.retry(ids[2], now_ms=T0, by="alice")  # running, not dead
    assert qs.retry(ids[0], now_ms=T0 + 5, by="alice")
    j = qs.get(ids[0])
    assert (j.status, j.failures, j.due_ms) == ("ready", 0, T0 + 5)
    assert qs.retry_dead("a", now_ms=T0 + 6, by="alice") == 1
    assert qs.jobs(status="dead") == []
    assert not qs.retry(999_999, now_ms=T0, by="alice")


def test_pages_of_jobs_start_after_an_id_and_are_not_shifted_by_retries(qs: Any) -> None:
    ids = [qs.enqueue(job(queue="a" if i % 2 else "b")).id for i in range(6)]
    qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=6)
    qs.finish(
        [Dead(i, "a" if n % 2 else "b", "x") for n, i in enumerate(ids)], worker="w", now_ms=T0
    )
    first = qs.jobs(status="dead", limit=2)
    assert [j.id for j in first] == ids[:2]
    # the page's retry button: the next page is unshifted
    assert qs.retry(ids[0], now_ms=T0, by="alice")
    second = qs.jobs(status="dead", limit=2, after_id=first[-1].id)
    assert [j.id for j in second] == ids[2:4]
    assert [j.id for j in qs.jobs(queue="a", status="dead", after_id=ids[1])] == [ids[3], ids[5]]
    assert qs.jobs(status="dead", after_id=ids[-1]) == []


def test_a_paused_queue_is_not_claimed_but_its_running_jobs_keep_their_lease(qs: Any) -> None:
    running = qs.enqueue(job(queue="a")).id
    qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=1)
    waiting = qs.enqueue(job(queue="a")).id
    other = qs.enqueue(job(queue="b")).id
    qs.pause("a", by="alice", reason="db maintenance", now_ms=T0)
    assert qs.paused() == {"a"}
    assert [c.id for c in qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=10)] == [other]
    assert qs.renew([running], worker="w", now_ms=T0 + 1, lease_ms=LEASE) == {running}
    a = next(s for s in qs.stats(T0) if s.queue == "a")
    assert (a.paused, a.paused_by, a.paused_reason) == (True, "alice", "db maintenance")
    assert qs.resume("a", now_ms=T0, by="bob") and not qs.resume("a", now_ms=T0, by="bob")
    assert [c.id for c in qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=10)] == [waiting]


def test_every_operator_action_is_audited_with_who_why_and_how_many_refusals_not(
    qs: Any,
) -> None:
    ids = [qs.enqueue(job(queue="a")).id for _ in range(4)]
    qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=4)
    qs.finish([Dead(i, "a", "boom") for i in ids[:3]], worker="w", now_ms=T0)
    assert qs.audit() == []
    assert not qs.retry(ids[3], now_ms=T0 + 1, by="alice (dashboard)")  # running: refused
    assert not qs.retry(999_999, now_ms=T0 + 1, by="alice (dashboard)")  # missing: refused
    assert qs.retry(ids[0], now_ms=T0 + 2, by="alice (dashboard)", reason="disk freed")
    assert qs.retry_dead("a", now_ms=T0 + 3, by="ci-bot (token #3)") == 2
    assert qs.retry_dead("a", now_ms=T0 + 4, by="ci-bot (token #3)") == 0
    qs.pause("b", by="cli (ops@db1)", reason="db3 rebuild", now_ms=T0 + 5)
    qs.pause("b", by="cli (ops@db1)", reason="longer", now_ms=T0 + 6)  # already paused
    assert qs.resume("b", now_ms=T0 + 7, by="bob (dashboard)", reason="done")
    assert not qs.resume("b", now_ms=T0 + 8, by="bob (dashboard)")  # not paused

    rows = [(e.at_ms, e.by, e.action, e.queue, e.job_id, e.reason, e.count) for e in qs.audit()]
    assert rows == [
        (T0 + 8, "bob (dashboard)", "resume", "b", None, "", 0),
        (T0 + 7, "bob (dashboard)", "resume", "b", None, "done", 1),
        (T0 + 6, "cli (ops@db1)", "pause", "b", None, "longer", 0),
        (T0 + 5, "cli (ops@db1)", "pause", "b", None, "db3 rebuild", 1),
        (T0 + 4, "ci-bot (token #3)", "retry_dead", "a", None, "", 0),
        (T0 + 3, "ci-bot (token #3)", "retry_dead", "a", None, "", 2),
        (T0 + 2, "alice (dashboard)", "retry", "a", ids[0], "disk freed", 1),
    ]
    # newest first, a page at a time by id, per queue
    every = qs.audit()
    assert len({e.id for e in every}) == 7
    first = qs.audit(limit=3)
    assert first == every[:3]
    assert qs.audit(limit=3, before_id=first[-1].id) == every[3:6]
    assert qs.audit(before_id=every[-1].id) == []
    assert [e.action for e in qs.audit(queue="a")] == ["retry_dead", "retry_dead", "retry"]
    assert qs.audit(queue="nope") == []
    assert every[-1].describe() == (
        f"job {ids[0]} of queue a retried by alice (dashboard): disk freed"
    )
    assert every[0].describe() == "queue b resumed (was not paused) by bob (dashboard)"


def test_held_back_work_is_one_row_per_gate_with_its_latest_reading(qs: Any) -> None:
    ids = [qs.enqueue(job()).id for _ in range(4)]
    qs.claim(worker="w", now_ms=T0, lease_ms=LEASE, limit=4)
    # three readings of one gate, deferred one after another (doubling delays: the latest
    # deferral is not the one due last), and another gate
    qs.finish(
        [Deferred(ids[0], "q", T0 + 300_000, "mysql_load", "Threads_running 90 >= 50")],
        worker="w",
        now_ms=T0,
    )
    qs.finish(
        [Deferred(ids[1], "q", T0 + 20_000, "mysql_load", "Threads_running 70 >= 50"),
         Deferred(ids[2], "q", T0 + 20_000, "replication", "lag 40s > 10s")],
        worker="w",
        now_ms=T0 + 10_000,
    )  # fmt: skip
    qs.finish(
        [Deferred(ids[3], "q", T0 + 30_000, "mysql_load", "Threads_running 55 >= 50")],
        worker="w",
        now_ms=T0 + 20_000,
    )
    [s] = qs.stats(T0 + 20_000)
    assert s.holding == (
        ("mysql_load", "Threads_running 55 >= 50", 3),
        ("replication", "lag 40s > 10s", 1),
    )


def test_a_unique_job_is_enqueued_once_while_it_waits_or_runs_within_its_window(qs: Any) -> None:
    def u(at: int) -> NewJob:
        return NewJob("q", "t", "[[1]]", at, at, 0, "key1", at + 60_000)

    first = qs.enqueue(u(T0))
    assert first.created
    assert qs.enqueue(u(T0 + 10)) == (first.id, False)
    qs.claim(worker="w", now_ms=T0 + 20, lease_ms=LEASE, limit=1)
    assert qs.enqueue(u(T0 + 30)) == (first.id, False)  # running still counts
    qs.finish([Done(first.id, "q")], worker="w", now_ms=T0 + 40)
    second = qs.enqueue(u(T0 + 50))  # done: the next call is a new job
    assert second.created
    third = qs.enqueue(u(T0 + 50 + 60_000))  # the window passed while it waited
    assert third.created


def test_advance_schedule_is_a_compare_and_swap(qs: Any) -> None:
    assert qs.schedule("p") is None
    assert qs.advance_schedule("p", expected_ms=None, next_ms=T0, job=None)
    assert not qs.advance_schedule("p", expected_ms=None, next_ms=T0, job=None)
    tick = job("p")
    assert qs.advance_schedule("p", expected_ms=T0, next_ms=T0 + 300_000, job=tick)
    assert not qs.advance_schedule("p", expected_ms=T0, next_ms=T0 + 300_000, job=tick)
    assert qs.schedule("p") == T0 + 300_000
    assert len(qs.jobs()) == 1


def test_one_leader_at_a_time_until_its_lease_runs_out(qs: Any) -> None:
    a, b = qs.leader("tasks:scheduler", 10, "a"), qs.leader("tasks:scheduler", 10, "b")
    assert a.acquire(T0) and not b.acquire(T0 + 5000)
    assert a.acquire(T0 + 9000)  # renewed
    assert not b.acquire(T0 + 15_000)
    assert b.acquire(T0 + 19_000)
    b.release()
    assert a.acquire(T0 + 19_001)


def test_concurrent_claimers_never_share_a_job(qs: Any) -> None:
    for i in range(300):
        qs.enqueue(job(due=T0 + i % 7))
    got: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            batch = qs.claim(worker=name, now_ms=T0 + 10, lease_ms=LEASE, limit=7)
            if not batch:
                return
            with lock:
                got.extend(c.id for c in batch)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 300 and len(set(got)) == 300


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def test_a_queue_made_before_the_audit_trail_is_migrated_with_its_jobs(
    backend: str, tmp_path: Path
) -> None:
    from contextlib import ExitStack

    from signalbox.storage import open_database
    from signalbox.tasks.sqlstore import MIGRATIONS, SQLQueueStore

    with ExitStack() as stack:
        url = sqlite_url(tmp_path) if backend == "sqlite" else stack.enter_context(pg_schema_url())
        old = open_database(url)
        old.migrate("tasks", MIGRATIONS[:1])  # the schema version 1 wrote
        old.execute(
            "INSERT INTO task_jobs (queue, task, args, due_ms, enqueued_ms, gate, gate_reason) "
            "VALUES ('q', 't', '[[1]]', ?, ?, 'mysql_load', 'Threads_running 80 >= 50')",
            (T0 + 60_000, T0),
        )
        old.close()
        qs = SQLQueueStore(open_database(url))
        stack.callback(qs.close)
        assert qs.db.schema_version("tasks") == 2
        [s] = qs.stats(T0)
        assert s.holding == (("mysql_load", "Threads_running 80 >= 50", 1),)
        qs.pause("q", by="alice", reason="after the upgrade", now_ms=T0)
        assert [(e.action, e.by, e.count) for e in qs.audit()] == [("pause", "alice", 1)]
