"""Query limits through the HTTP API (issue 8): a query past ``max_samples`` is a 422, past
its ``timeout`` a 503 ``timeout``, both naming the limit; queries past ``max_concurrency``
wait in a queue (and time out there), heavy ones take turns in the heavy lane, and neither
``/-/healthy`` nor a cheap query waits behind them. On memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from signalbox.exceptions import QueryLimitError
from signalbox.limits import Budget, HeavyLane, QueryLimits, running
from signalbox.metrics.samples import Sample
from signalbox.server.querygate import QueryGate
from tests.server.conftest import NOW, open_site

START_MS = int(NOW * 1000) - 3_600_000
SERIES = 50
POINTS = 240  # an hour at 15 s


def fill(store: Any) -> None:
    """``load{i}`` for 50 series, a sample every 15 s for the hour before NOW."""
    for k in range(POINTS):
        ts = START_MS + k * 15_000
        store.write([Sample("load", (("i", str(i)),), float(i + k), ts) for i in range(SERIES)], ts)


def get(client: Any, path: str, **params: str) -> Any:
    return client.get(path, params=params)


def heavy_params() -> dict[str, str]:
    return {
        "query": "sum(rate(load[5m]))",
        "start": str(NOW - 3600),
        "end": str(NOW),
        "step": "15",
    }


def test_max_samples_is_a_422_naming_the_limit(backend: str, tmp_path: Path) -> None:
    limits = QueryLimits(max_samples=2_000)
    with open_site(backend, tmp_path, limits=limits) as site:
        fill(site.store)
        client = site.client()
        r = get(client, "/api/v1/query_range", **heavy_params())
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["status"] == "error" and body["errorType"] == "execution"
        assert "too many samples" in body["error"] and "query.max_samples" in body["error"]
        assert "2,000" in body["error"]
        # a query inside the limit still answers
        ok = get(client, "/api/v1/query", query='load{i="3"}', time=str(NOW))
        assert ok.status_code == 200 and ok.json()["data"]["result"]


def test_the_limit_stops_the_read_not_after_it(sql_backend: str, tmp_path: Path) -> None:
    """The store charges each partition as it reads it: a query over the limit stops
    before the store has read everything (the samples counted stay near the limit)."""
    with open_site(sql_backend, tmp_path) as site:
        fill(site.store)
        budget = Budget(QueryLimits(max_samples=100))
        with running(budget), pytest.raises(QueryLimitError) as e:
            site.services.engine.range("load", START_MS, int(NOW * 1000), 15_000)
        assert e.value.kind == "samples"
        # stopped inside the store's read (at its estimate, before the rows were fetched),
        # not after the engine had everything: whichever read the selector takes (rows as
        # samples, or as columns for an instant selector of a range query)
        frames = [(entry.path.parent.name, entry.name) for entry in e.traceback]
        assert ("limits.py" in str(e.traceback[-2].path)) and frames[-2][1] == "ahead", frames
        assert any(where == "sql" and name in {"_select_raw", "_samples"} for where, name in frames)
        assert budget.samples <= SERIES * POINTS


def test_timeout_is_a_503_timeout(backend: str, tmp_path: Path) -> None:
    limits = QueryLimits(timeout_s=1e-6)
    with open_site(backend, tmp_path, limits=limits) as site:
        fill(site.store)
        r = get(site.client(), "/api/v1/query_range", **heavy_params())
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["errorType"] == "timeout"
        assert "timed out" in body["error"] and "query.timeout" in body["error"]


def test_sqlite_scan_is_interrupted_at_the_deadline(tmp_path: Path) -> None:
    """One long statement is stopped mid-way by the progress handler, not after it ends."""
    with open_site("sqlite", tmp_path) as site:
        parts = site.store._partitions  # type: ignore[attr-defined]
        long_scan = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) "
            "SELECT count(*) FROM c"
        )
        budget = Budget(QueryLimits(timeout_s=0.2))
        t0 = time.monotonic()
        with running(budget), pytest.raises(QueryLimitError) as e:
            parts.read(long_scan)
        assert e.value.kind == "timeout" and "reading the store" in str(e.value)
        assert time.monotonic() - t0 < 3  # the full scan takes far longer
        # the connection is usable again, with no handler left behind
        assert parts.read("SELECT 1") == [(1,)]


@pytest.mark.service("postgresql")
def test_postgresql_statement_is_cancelled_at_the_deadline(tmp_path: Path) -> None:
    with open_site("postgresql", tmp_path) as site:
        parts = site.store._partitions  # type: ignore[attr-defined]
        budget = Budget(QueryLimits(timeout_s=0.3))
        t0 = time.monotonic()
        with running(budget), pytest.raises(QueryLimitError) as e:
            parts.read("SELECT pg_sleep(5)")
        assert e.value.kind == "timeout"
        assert time.monotonic() - t0 < 3
        # statement_timeout was reset: a later unlimited statement may run long
        assert parts.read("SELECT current_setting('statement_timeout')") == [("0",)]


def test_queue_wait_counts_against_the_timeout_and_health_never_waits(tmp_path: Path) -> None:
    """With every query slot taken, the next query waits in the queue and times out there
    (503), while /-/healthy and /-/ready answer at once."""
    limits = QueryLimits(timeout_s=0.5, max_concurrency=1, heavy_concurrency=1)
    with open_site("sqlite", tmp_path, limits=limits) as site:
        fill(site.store)
        app = site.app()
        gate: QueryGate = app.state.query_gate
        release = threading.Event()
        entered = threading.Event()

        def hold() -> None:
            entered.set()
            release.wait(10)

        with __import__("starlette.testclient").testclient.TestClient(app) as client:
            # occupy the only slot from the app's own event loop
            holder = threading.Thread(
                target=lambda: client.portal.call(gate.run, hold),  # type: ignore[union-attr]
                daemon=True,
            )
            holder.start()
            assert entered.wait(5)
            t0 = time.monotonic()
            r = get(client, "/api/v1/query", query="load", time=str(NOW))
            waited = time.monotonic() - t0
            assert r.status_code == 503 and r.json()["errorType"] == "timeout"
            assert "query queue" in r.json()["error"]
            assert 0.4 < waited < 3
            t0 = time.monotonic()
            assert client.get("/-/healthy").status_code == 200
            assert client.get("/-/ready").status_code == 200
            assert time.monotonic() - t0 < 1
            release.set()
            holder.join(5)
            # the slot is back: the next query answers
            assert get(client, "/api/v1/query", query="load", time=str(NOW)).status_code == 200


def test_heavy_lane_lets_cheap_queries_through() -> None:
    """Past heavy_samples a query needs a heavy slot; with the slot taken it waits (and
    times out within its deadline), while a query under heavy_samples never waits."""
    lane = HeavyLane(1)
    limits = QueryLimits(timeout_s=0.3, heavy_samples=100, heavy_concurrency=1)
    first = Budget(limits, lane=lane)
    first.charge(500)  # heavy: holds the only slot
    cheap = Budget(limits, lane=lane)
    t0 = time.monotonic()
    cheap.charge(50)
    assert time.monotonic() - t0 < 0.05
    second = Budget(limits, lane=lane)
    with pytest.raises(QueryLimitError) as e:
        second.charge(500)
    assert e.value.kind == "timeout" and "heavy query queue" in str(e.value)
    first.release()
    third = Budget(limits, lane=lane)
    third.charge(500)  # the slot came back
    third.release()


def test_gate_runs_at_most_max_concurrency_at_once() -> None:
    limits = QueryLimits(max_concurrency=3, heavy_concurrency=1, timeout_s=10)
    gate = QueryGate(limits)
    lock = threading.Lock()
    now = peak = 0

    def work() -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.05)
        with lock:
            now -= 1

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(gate.run, work)

    anyio.run(main)
    assert peak == 3


def test_query_section_errors_name_the_key(tmp_path: Path) -> None:
    from signalbox.config import settings_from_dict
    from signalbox.exceptions import ConfigError

    s = settings_from_dict(
        {"query": {"timeout": "30s", "max_samples": 1000}}, source="t.toml", base_dir=tmp_path
    )
    assert s.query.timeout_s == 30 and s.query.max_samples == 1000
    for bad, key in (
        ({"timeout": "soon"}, "query.timeout"),
        ({"timeout": "0s"}, "query.timeout"),
        ({"max_samples": 0}, "query.max_samples"),
        ({"max_concurrency": "many"}, "query.max_concurrency"),
        ({"heavy_concurrency": 30}, "query.heavy_concurrency"),
        ({"max_sample": 5}, "query"),
    ):
        with pytest.raises(ConfigError) as e:
            settings_from_dict({"query": bad}, source="t.toml", base_dir=tmp_path)
        assert key in str(e.value) and "t.toml" in str(e.value)


def test_queries_waiting_for_a_heavy_slot_leave_room_for_cheap_ones() -> None:
    """Heavy queries give back their place when they turn heavy: with every place once
    taken by a heavy query, a cheap query still runs at once; past max_concurrency heavy
    waiters, a heavy query is refused (503) instead of queueing without bound."""
    limits = QueryLimits(max_concurrency=2, heavy_concurrency=1, heavy_samples=10, timeout_s=5)
    gate = QueryGate(limits)
    release = threading.Event()
    outcomes: list[str] = []

    def heavy() -> None:
        from signalbox.limits import charge

        charge(100)  # turns heavy: the first takes the slot, the others wait for it
        release.wait(5)

    def cheap() -> float:
        from signalbox.limits import charge

        t0 = time.monotonic()
        charge(1)
        return time.monotonic() - t0

    async def main() -> None:
        async def run_heavy() -> None:
            try:
                await gate.run(heavy)
                outcomes.append("ok")
            except QueryLimitError as e:
                outcomes.append(e.kind)

        async with anyio.create_task_group() as tg:
            for _ in range(4):  # one runs, two wait, the fourth finds the queue full
                tg.start_soon(run_heavy)
                await anyio.sleep(0.1)
            t0 = time.monotonic()
            await gate.run(cheap)
            assert time.monotonic() - t0 < 1
            release.set()

    anyio.run(main)
    assert sorted(outcomes) == ["concurrency", "ok", "ok", "ok"]
