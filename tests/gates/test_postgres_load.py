"""``postgres_load`` against the PostgreSQL on 127.0.0.1:5432 (trust auth, database test)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from signalbox.gates import Decision, postgres_load
from signalbox.gates.postgres import PostgresLoadGate

# the gate reads the server's count of connections and active statements: the other xdist
# worker's tests must not come and go meanwhile
pytestmark = [pytest.mark.service("postgresql"), pytest.mark.serial]

DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _clients() -> int:
    with psycopg.connect(DSN, autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()
        assert row is not None
        return int(row[0]) - 1


def _until(
    gate: PostgresLoadGate, ok: Callable[[Decision], bool], timeout_s: float = 10.0
) -> Decision:
    deadline = time.monotonic() + timeout_s
    while True:
        d = gate.check()
        if ok(d) or time.monotonic() > deadline:
            return d
        time.sleep(0.05)


def test_connections_close_the_gate_and_it_reopens_below_the_low_mark() -> None:
    base = _clients()
    high, low = base + 12, base + 5
    gate = postgres_load(DSN, max_connections=(high, low), interval=0)
    assert gate.check().open
    conns = [psycopg.connect(DSN) for _ in range(16)]
    try:
        d = _until(gate, lambda d: not d.open)
        assert not d.open, d.reason
        assert d.reason.startswith("127.0.0.1:5432: connections ")
        assert f">= {high} (reopens below {low})" in d.reason
        assert d.reading["server_max_connections"] > 0
        for c in conns[:8]:
            c.close()
        d = _until(gate, lambda d: d.reading["connections"] <= base + 9)
        assert low <= d.reading["connections"] < high and not d.open  # between the marks
    finally:
        for c in conns:
            c.close()
    d = _until(gate, lambda d: d.open)
    assert d.open, d.reason
    gate.close()


def test_active_statements_close_a_max_active_gate() -> None:
    gate = postgres_load(DSN, max_active=4, interval=0)
    assert gate.check().open

    connected = threading.Barrier(7)  # the 6 sleepers and this test: the window starts when
    # all are connected (on a loaded box the connects alone can outlast it)

    def busy() -> None:
        with psycopg.connect(DSN, autocommit=True) as c:
            connected.wait(timeout=30)
            c.execute("SELECT pg_sleep(1.5)")

    threads = [threading.Thread(target=busy) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        connected.wait(timeout=30)
        d = _until(gate, lambda d: not d.open, timeout_s=1.2)
        assert not d.open and "active" in d.reason, d.reason
    finally:
        for t in threads:
            t.join()
    assert _until(gate, lambda d: d.open).open
    gate.close()


def test_unknown_role_closes_the_gate_without_showing_the_password() -> None:
    gate = postgres_load(
        "postgresql://no_such_role:Sup3rSecret@127.0.0.1:5432/test", max_connections=50
    )
    d = gate.check()
    assert not d.open
    assert d.reason.startswith("cannot probe 127.0.0.1:5432: ") and "no_such_role" in d.reason
    assert "Sup3rSecret" not in d.reason + json.dumps(d.reading) + repr(gate) + gate.dsn


def test_a_server_that_accepts_and_never_answers_times_out(hanging_port: int) -> None:
    gate = postgres_load(
        f"postgresql://u:Sup3rSecret@127.0.0.1:{hanging_port}/test", max_connections=5, timeout=1
    )
    t0 = time.perf_counter()
    d = gate.check()
    took = time.perf_counter() - t0
    assert not d.open
    assert took < 3.5, took  # libpq's connect_timeout: whole seconds, at least 2
    assert "timeout" in d.reason and "no answer within 2 s" in d.reason
    assert "Sup3rSecret" not in d.reason


def test_not_a_postgresql_url_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        postgres_load("mysql://root@127.0.0.1/", max_connections=5)
    with pytest.raises(ValueError, match="max_connections"):
        postgres_load(DSN)
