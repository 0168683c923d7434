"""``mysql_load`` against the MariaDB on 127.0.0.1:3306: real connections, real status.

The server is shared (other tests and tools may hold connections), so marks are set
relative to a baseline read just before, with room for a few strangers either way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pytest

from signalbox.gates import Decision, mysql_load
from signalbox.gates.mysql import MySQLLoadGate

# the counts these read are the server's: under xdist (--dist loadfile) one worker runs this
# module's tests one after another, and no other test of the suite connects to this MariaDB
pytestmark = pytest.mark.service("mariadb")

DSN = "mysql://root@127.0.0.1:3306/test"


def _connect() -> Any:
    return pymysql.connect(
        host="127.0.0.1", port=3306, user="root", database="test", connect_timeout=2
    )


@contextmanager
def idle_connections(n: int) -> Iterator[list[Any]]:
    conns = [_connect() for _ in range(n)]
    try:
        yield conns
    finally:
        for c in conns:
            if c.open:
                c.close()


def _status(name: str) -> int:
    c = _connect()
    try:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cur.fetchone()
            assert row is not None
            return int(row[1]) - 1  # not counting this connection
    finally:
        c.close()


def _until(
    gate: MySQLLoadGate, ok: Callable[[Decision], bool], timeout_s: float = 10.0
) -> Decision:
    deadline = time.monotonic() + timeout_s
    while True:
        d = gate.check()
        if ok(d) or time.monotonic() > deadline:
            return d
        time.sleep(0.05)


def test_idle_connections_close_the_gate_and_it_reopens_only_past_the_low_mark() -> None:
    base = _status("Threads_connected")
    high, low = base + 16, base + 6  # the probe's own connection counts too: base + 1 idle
    gate = mysql_load(DSN, max_connected=(high, low), interval=0)
    assert gate.check().open
    with idle_connections(24) as conns:
        d = _until(gate, lambda d: not d.open)
        assert not d.open, d.reason
        assert d.reason.startswith(
            f"127.0.0.1:3306: Threads_connected {d.reading['status']['Threads_connected']} >= {high}"
        )
        assert d.reading["status"]["Threads_connected"] >= high
        assert d.delay_s > 0
        for c in conns[:14]:  # down to about base + 11: under the high mark, over the low
            c.close()
        d = _until(gate, lambda d: d.reading["status"]["Threads_connected"] <= base + 12)
        value = d.reading["status"]["Threads_connected"]
        assert low <= value < high
        assert not d.open, "between the marks a closed gate stays closed"
        assert f"reopens below {low}" in d.reason
        fresh = mysql_load(DSN, max_connected=(high, low), interval=0)
        assert fresh.check().open  # same reading, never tripped: open -- hysteresis holds the first
        fresh.close()
        for c in conns[14:]:
            c.close()
        d = _until(gate, lambda d: d.open)
        assert d.open, d.reason
        assert d.reading["status"]["Threads_connected"] < low
    gate.close()


def test_running_queries_close_a_max_running_gate() -> None:
    base = _status("Threads_running")
    gate = mysql_load(DSN, max_running=base + 5, interval=0)
    assert gate.check().open

    connected = threading.Barrier(9)  # the 8 sleepers and this test: the window starts when
    # all are connected (on a loaded box the connects alone can outlast it)

    def sleeper() -> None:
        c = _connect()
        try:
            connected.wait(timeout=30)
            with c.cursor() as cur:
                cur.execute("SELECT SLEEP(1.5)")
        finally:
            c.close()

    threads = [threading.Thread(target=sleeper) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        connected.wait(timeout=30)
        d = _until(gate, lambda d: not d.open, timeout_s=1.2)
        assert not d.open, d.reason
        assert "Threads_running" in d.reason
    finally:
        for t in threads:
            t.join()
    assert _until(gate, lambda d: d.open).open
    gate.close()


def test_any_status_variable_can_be_a_mark_and_an_unknown_one_closes() -> None:
    ok = mysql_load(DSN, Uptime=(1e12, 1e11), interval=0)
    d = ok.check()
    assert d.open and d.reading["status"]["Uptime"] > 0
    bad = mysql_load(DSN, No_such_variable=5, interval=0)
    d = bad.check()
    assert not d.open and "No_such_variable: no value" in d.reason
    ok.close()
    bad.close()


def test_a_thousand_checks_from_many_threads_cost_one_probe() -> None:
    gate = mysql_load(DSN, max_running=1000, interval=30)
    results: list[bool] = []

    def worker() -> None:
        for _ in range(125):
            results.append(gate.check().open)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1000 and all(results)
    assert gate.probes == 1
    gate.close()


def test_unreachable_server_closes_at_once_with_the_reason_and_no_password() -> None:
    from tests.gates.mariadb_pair import free_port

    gate = mysql_load(f"mysql://monitor:Sup3rSecret@127.0.0.1:{free_port()}/", max_running=40)
    t0 = time.perf_counter()
    d = gate.check()
    assert time.perf_counter() - t0 < 1.0
    assert not d.open
    assert "Connection refused" in d.reason and d.reason.startswith("cannot probe 127.0.0.1:")
    assert "Sup3rSecret" not in d.reason + json.dumps(d.reading) + repr(gate) + gate.dsn


def test_a_server_that_accepts_and_never_answers_times_out_quickly(hanging_port: int) -> None:
    gate = mysql_load(
        f"mysql://monitor:Sup3rSecret@127.0.0.1:{hanging_port}/", max_running=40, timeout=0.5
    )
    t0 = time.perf_counter()
    d = gate.check()
    took = time.perf_counter() - t0
    assert not d.open
    assert 0.4 < took < 2.0, took
    assert "timed out" in d.reason and "no answer within 0.5 s" in d.reason
    assert "Sup3rSecret" not in d.reason + json.dumps(d.reading)


def test_wrong_password_is_a_closed_gate_not_an_exception() -> None:
    gate = mysql_load("mysql://nobody_here:Sup3rSecret@127.0.0.1:3306/", max_running=40)
    d = gate.check()
    assert not d.open and "Access denied" in d.reason and "Sup3rSecret" not in d.reason


def test_a_dropped_connection_is_reopened_without_closing_the_gate() -> None:
    """The server's wait_timeout (or a restart) kills the kept connection: the next probe
    reconnects instead of reporting the stale connection's error."""
    gate = mysql_load(DSN, max_running=1000, interval=0)
    assert gate.check().open
    conn_id = gate._conn.run(
        lambda cur: (cur.execute("SELECT CONNECTION_ID() AS id"), cur.fetchone())[1]["id"]
    )
    killer = _connect()
    try:
        with killer.cursor() as cur:
            cur.execute(f"KILL {int(conn_id)}")
    finally:
        killer.close()
    d = gate.check()
    assert d.open, d.reason
    gate.close()
