"""``mysql_replication`` against a real master-master pair (two private ``mariadbd``)."""

from __future__ import annotations

import json
import time

import pytest

from signalbox.gates import Decision
from signalbox.gates.replication import MySQLReplicationGate, mysql_replication
from tests.gates.mariadb_pair import REPL_PASSWORD, MariaDBPair

pytestmark = pytest.mark.peer("mariadbd")


def _gate(pair: MariaDBPair, max_lag: float = 10) -> MySQLReplicationGate:
    a, b = pair.servers
    return mysql_replication([a.monitor_dsn, b.monitor_dsn], max_lag=max_lag, interval=0)


def _wait(gate: MySQLReplicationGate, *, open: bool, timeout_s: float = 20.0) -> Decision:
    deadline = time.monotonic() + timeout_s
    while True:
        d = gate.check()
        if d.open is open or time.monotonic() > deadline:
            return d
        time.sleep(0.1)


def _no_secret(d: Decision) -> None:
    assert REPL_PASSWORD not in d.reason
    assert REPL_PASSWORD not in json.dumps(d.reading, default=str)


def test_open_while_each_server_replicates_the_other(mariadb_pair: MariaDBPair) -> None:
    a, b = mariadb_pair.servers
    a.execute(
        "CREATE DATABASE IF NOT EXISTS sbx",
        "CREATE TABLE IF NOT EXISTS sbx.t (id INT AUTO_INCREMENT PRIMARY KEY, src INT)",
    )
    a.execute("INSERT INTO sbx.t (src) VALUES (1)")
    mariadb_pair.wait_row(b, "SELECT * FROM sbx.t WHERE src = 1")
    b.execute("INSERT INTO sbx.t (src) VALUES (2)")
    mariadb_pair.wait_row(a, "SELECT * FROM sbx.t WHERE src = 2")  # both directions carry data
    gate = _gate(mariadb_pair)
    d = gate.check()
    assert d.open, d.reason
    assert d.delay_s == 0
    servers = {s["server"]: s for s in d.reading["servers"]}
    assert servers[a.label]["replicating"][b.label]["io_running"] == "Yes"
    assert servers[b.label]["replicating"][a.label]["sql_running"] == "Yes"
    assert servers[a.label]["server_id"] == 1 and servers[b.label]["server_id"] == 2
    _no_secret(d)


def test_closed_after_stop_slave_on_one_and_open_after_start(mariadb_pair: MariaDBPair) -> None:
    a, b = mariadb_pair.servers
    gate = _gate(mariadb_pair)
    assert gate.check().open
    b.execute("STOP SLAVE")
    try:
        d = gate.check()
        assert not d.open
        assert d.delay_s > 0
        assert f"{b.label}: replication IO thread from {a.label} is No" in d.reason
        assert f"{b.label}: replication SQL thread from {a.label} is No" in d.reason
        assert a.label + ":" not in d.reason.replace(f"from {a.label}", "")  # a itself is fine
        _no_secret(d)
    finally:
        mariadb_pair.repair(b)
    d = _wait(gate, open=True)
    assert d.open, d.reason


def test_closed_while_one_server_is_killed_and_open_after_repair(mariadb_pair: MariaDBPair) -> None:
    a, b = mariadb_pair.servers
    gate = _gate(mariadb_pair)
    assert gate.check().open
    a.kill()
    try:
        t0 = time.perf_counter()
        d = gate.check()
        probe_s = time.perf_counter() - t0
        assert not d.open
        assert f"{a.label} unreachable" in d.reason
        assert probe_s < 3.0  # refused at once: no waiting out a timeout
        # b notices its source is gone: its IO thread is reconnecting, not running.
        d = gate.check()
        deadline = time.monotonic() + 15
        while f"{b.label}: replication IO thread from {a.label}" not in d.reason:
            assert time.monotonic() < deadline, d.reason
            time.sleep(0.1)
            d = gate.check()
        assert "Connecting" in d.reason or "is No" in d.reason
        _no_secret(d)
    finally:
        mariadb_pair.repair(a)
    d = _wait(gate, open=True)
    assert d.open, d.reason
    a.execute("INSERT INTO sbx.t (src) VALUES (3)")  # and data flows again after the repair
    mariadb_pair.wait_row(b, "SELECT * FROM sbx.t WHERE src = 3")


def test_restarted_server_without_start_slave_keeps_it_closed(mariadb_pair: MariaDBPair) -> None:
    a, b = mariadb_pair.servers
    gate = _gate(mariadb_pair)
    b.stop()
    try:
        b.start()  # --skip-slave-start: up, but not replicating until someone starts it
        d = gate.check()
        assert not d.open
        assert f"{b.label}: replication IO thread from {a.label} is No" in d.reason
    finally:
        mariadb_pair.repair(b)
    assert _wait(gate, open=True).open


def test_lag_over_the_bound_closes(mariadb_pair: MariaDBPair) -> None:
    """A replica whose SQL thread is held behind (``MASTER_DELAY``) lags; the gate says how much."""
    a, b = mariadb_pair.servers
    b.execute("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 5", "START SLAVE")
    try:
        a.execute("INSERT INTO sbx.t (src) VALUES (4)")
        gate = _gate(mariadb_pair, max_lag=1)
        d = _wait(gate, open=False, timeout_s=10)
        assert not d.open
        assert f"{b.label} lag behind {a.label}" in d.reason, d.reason
        assert "reopens below 0.8 s" in d.reason
    finally:
        b.execute("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 0", "START SLAVE")
        mariadb_pair.repair(b)
    assert _wait(gate, open=True).open
