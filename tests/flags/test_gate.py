"""``gates.flag(name)`` on the real flags: a flag switched off holds its jobs in a real worker
(deferred, never failed, no retry used) until it is switched on again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.flags.cache import FlagCache
from signalbox.flags.model import FlagDecl, FlagState, parse_setting
from signalbox.flags.store import SQLFlagStore, open_flag_store
from signalbox.gates import flag
from signalbox.gates.flag import set_flag_source
from signalbox.storage import open_database
from signalbox.tasks import registry
from signalbox.tasks.registry import Registry, Task
from signalbox.tasks.sqlstore import SQLQueueStore
from signalbox.tasks.worker import Worker
from tests.stores import sqlite_url
from tests.tasks.conftest import FAST

NOW = 1_700_000_000.0


@pytest.fixture
def flag_store(tmp_path: Path) -> Iterator[SQLFlagStore]:
    s = open_flag_store(sqlite_url(tmp_path))
    yield s
    s.close()


def test_a_flag_switched_off_defers_its_jobs_until_it_is_on_again(
    tmp_path: Path, flag_store: SQLFlagStore
) -> None:
    clock = FrozenClock(NOW)
    queue = SQLQueueStore(open_database(f"sqlite:///{tmp_path / 'tasks.db'}", page_size=4096))
    registry.configure(queue, clock=clock)
    decl = FlagDecl("reprocessing", "reprocess old photos", "photos", FlagState("on"))
    cache = FlagCache(flag_store, {"reprocessing": decl}, clock=clock)
    old = set_flag_source(cache.gate_source)
    try:
        reg = Registry()
        ran: list[int] = []
        task = Task(
            ran.append, name="reprocess", gates=[flag("reprocessing", interval=0)], registry=reg
        )
        worker = Worker(queue, registry=reg, settings=FAST, clock=clock, name="w1")
        flag_store.set("reprocessing", parse_setting("off"), by="ops", reason="db3 hot", now_ms=0)
        assert cache.refresh()
        jid = task.enqueue(7).id
        for _ in range(3):
            assert worker.work_batch() == 1
            job = queue.get(jid)
            assert job is not None and ran == []
            assert (job.status, job.failures, job.attempts) == ("ready", 0, 0)
            assert (job.gate, job.gate_reason) == ("flag:reprocessing", "flag reprocessing is off")
            clock.set(job.due_ms / 1000)
        assert queue.get(jid).defers == 3  # type: ignore[union-attr]
        flag_store.set("reprocessing", parse_setting("on"), by="ops", reason="db3 ok", now_ms=1)
        assert cache.refresh()
        clock.advance(1)
        assert worker.work_batch() == 1
        assert ran == [7] and queue.get(jid) is None
    finally:
        set_flag_source(old)
        registry.reset()
        queue.close()
