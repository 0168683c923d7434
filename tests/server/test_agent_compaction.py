"""Agents on a PostgreSQL store without ``serve``: one of them compacts (rollups and
retention are not left undone in an agents-only install), and only one; while a ``serve``
instance leads, no agent compacts. Real ``signalbox agent`` processes on a fresh schema
holding an hour of old samples, whose closed buckets the first compaction rolls up.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path

import pytest

from signalbox.metrics.samples import Sample
from signalbox.metrics.sql import rollup
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.server.compactor import COMPACTOR_LEASE
from signalbox.storage import open_database
from signalbox.storage.leader import LeaseLeadership
from signalbox.storage.lease import Lease
from tests.metrics.test_agent_outage import agent
from tests.serving import wait_for
from tests.stores import pg_schema_url

pytestmark = pytest.mark.service("postgresql")

MINUTE = 60_000
HOUR_AGO = (int(time.time() * 1000) - 2 * 3_600_000) // MINUTE * MINUTE


def old_samples(store: SQLMetricStore) -> None:
    """Two series, one sample every 15 s for an hour, two hours ago: 61 closed buckets."""
    for i in range(240):
        ts = HOUR_AGO + i * 15_000
        store.write(
            [Sample("jobs", (("q", "a"),), float(i), ts), Sample("jobs", (("q", "b"),), 1.0, ts)],
            ts,
        )


def buckets(store: SQLMetricStore) -> list[tuple[int, int, int]]:
    """``(series, bucket end, samples in it)`` of the 1-minute tier over the old hour."""
    tier = store.levels[1]
    assert tier.tier == 60
    tables = {tier.table(tier.partition_start(t)) for t in (HOUR_AGO, HOUR_AGO + 3_600_000)}
    ids = [int(i) for (i,) in store.db.query("SELECT id FROM series")]
    rows = []
    for table in sorted(tables & store.db.table_names()):  # none before a compaction
        # the row buckets, closed units packed by a later compaction included (rowsealed)
        rows += store._partitions.rows_for(table, "count", ids, 0, 2**62)
    end = HOUR_AGO + 3_600_000  # not the agents' own metrics, of now
    return sorted((int(s), int(t), int(c)) for s, t, c, *_ in rows if int(t) <= end)


def test_one_of_two_agents_compacts_each_bucket_once_when_no_serve_leads(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url())
        store = SQLMetricStore(open_database(url))
        stack.callback(store.close)
        old_samples(store)
        assert rollup.watermark(store.db, 60) is None
        first = stack.enter_context(agent(tmp_path, "a1", url))
        second = stack.enter_context(agent(tmp_path, "a2", url))
        wait_for(lambda: rollup.watermark(store.db, 60))
        built = buckets(store)
        holder = Lease(store.db, COMPACTOR_LEASE, 1.0, holder="(the test)").holder_now()
        assert holder is not None
        compactor, other = (first, second) if holder.startswith("a1/") else (second, first)
        wait_for(lambda: other.lines("compaction is left to agent"))
    # the two series, each bucket of the hour once, with its samples: (end - 1m, end]
    series = sorted({s for s, _, _ in built})
    assert len(series) == 2
    expected = Counter(-(-(HOUR_AGO + i * 15_000) // MINUTE) * MINUTE for i in range(240))
    for sid in series:
        assert {t: c for s, t, c in built if s == sid} == dict(expected)
    assert len(built) == len({(s, t) for s, t, _ in built})
    said = f"this agent ({compactor.host}) compacts this store: no serve instance leads"
    assert len(compactor.lines(said)) == 1
    assert other.lines(f"compaction is left to agent {compactor.host}: no serve instance leads")
    assert not other.lines("compacts this store")
    assert not compactor.lines("compaction is left to")


def test_no_agent_compacts_while_a_serve_instance_leads(tmp_path: Path) -> None:
    """The live leader is the election ``serve`` runs, held by the test (which compacts
    nothing): the agent's compaction turn, at its start, leaves the buckets unbuilt."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url())
        store = SQLMetricStore(open_database(url))
        stack.callback(store.close)
        old_samples(store)
        leader = LeaseLeadership(store.db, "web9:8080", 30.0)
        leader.start()
        stack.callback(leader.stop)
        assert leader.leading()
        a = stack.enter_context(agent(tmp_path, "a1", url))
        wait_for(lambda: a.lines("compaction is left to serve instance web9:8080, which leads"))
        assert leader.leading()
        assert rollup.watermark(store.db, 60) is None and buckets(store) == []
        assert Lease(store.db, COMPACTOR_LEASE, 1.0, holder="(the test)").holder_now() is None
