"""Reading MySQL/MariaDB answers without a server: status rows and replica status rows."""

from __future__ import annotations

from typing import Any

import pytest

from signalbox.gates.dsn import parse_mysql_dsn, shown_dsn
from signalbox.gates.mysql_rows import channels, from_peer, replication_problems, status_values

MARIADB_ROW: dict[str, Any] = {
    "Connection_name": "",
    "Master_Host": "127.0.0.1",
    "Master_Port": 3307,
    "Master_Server_Id": 2,
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Seconds_Behind_Master": 0,
    "Last_IO_Error": "",
    "Last_SQL_Error": "",
}

MYSQL8_ROW: dict[str, Any] = {
    "Channel_Name": "",
    "Source_Host": "db-b",
    "Source_Port": 3306,
    "Source_Server_Id": 12,
    "Replica_IO_Running": "Connecting",
    "Replica_SQL_Running": "Yes",
    "Seconds_Behind_Source": None,
    "Last_IO_Error": "error connecting to master 'repl@db-b:3306' - retry-time: 60 retries: 3",
    "Last_SQL_Error": "",
}


def test_status_values_are_numbers_by_lowercase_name() -> None:
    rows = [("Threads_running", "3"), (b"Threads_connected", b"17"), ("Ssl_cipher", "")]
    assert status_values(rows) == {"threads_running": 3.0, "threads_connected": 17.0}


def test_mariadb_and_mysql8_columns_read_alike() -> None:
    m, y = channels([MARIADB_ROW, MYSQL8_ROW])
    assert (m.source, m.source_server_id, m.io_running, m.sql_running, m.lag_s) == (
        "127.0.0.1:3307",
        2,
        "Yes",
        "Yes",
        0.0,
    )
    assert (y.source, y.source_server_id, y.io_running, y.lag_s) == (
        "db-b:3306",
        12,
        "Connecting",
        None,
    )


def test_a_healthy_channel_has_no_problems() -> None:
    chans = channels([MARIADB_ROW])
    chan = from_peer(chans, 2, "127.0.0.1", 3307)
    assert chan is not None
    assert replication_problems("127.0.0.1:3306", chans, "127.0.0.1:3307", chan) == []


def test_stopped_threads_are_named_with_the_server_error() -> None:
    chans = channels(
        [MYSQL8_ROW | {"Replica_SQL_Running": "No", "Last_SQL_Error": "Duplicate entry '7'"}]
    )
    chan = from_peer(chans, 12, "db-b", 3306)
    assert replication_problems("db-a:3306", chans, "db-b:3306", chan) == [
        "db-a:3306: replication IO thread from db-b:3306 is Connecting: error connecting to "
        "master 'repl@db-b:3306' - retry-time: 60 retries: 3",
        "db-a:3306: replication SQL thread from db-b:3306 is No: Duplicate entry '7'",
    ]


def test_not_a_replica_and_replicating_from_someone_else() -> None:
    assert replication_problems("a:1", [], "b:2", None) == [
        "a:1 is not a replica (no replication configured), so it does not copy b:2"
    ]
    chans = channels([MARIADB_ROW | {"Master_Host": "10.0.0.9", "Master_Server_Id": 9}])
    assert from_peer(chans, 2, "127.0.0.1", 3307) is None
    assert replication_problems("a:1", chans, "127.0.0.1:3307", None) == [
        "a:1 does not replicate from 127.0.0.1:3307 (it replicates from 10.0.0.9:3307)"
    ]


def test_peer_found_by_host_and_port_before_it_ever_connected() -> None:
    never = MARIADB_ROW | {
        "Master_Server_Id": 0,
        "Master_Host": "localhost",
        "Slave_IO_Running": "Connecting",
    }
    chans = channels([never, MARIADB_ROW | {"Master_Port": 9999, "Master_Server_Id": 5}])
    chan = from_peer(chans, None, "127.0.0.1", 3307)
    assert chan is not None and chan.source == "localhost:3307"


def test_multi_source_channel_is_named() -> None:
    chans = channels([MARIADB_ROW | {"Connection_name": "shard7", "Slave_IO_Running": "No"}])
    chan = from_peer(chans, 2, "127.0.0.1", 3307)
    problems = replication_problems("a:1", chans, "127.0.0.1:3307", chan)
    assert problems == ["a:1 channel 'shard7': replication IO thread from 127.0.0.1:3307 is No"]


def test_null_lag_with_running_threads_is_a_problem() -> None:
    chans = channels([MARIADB_ROW | {"Seconds_Behind_Master": None}])
    problems = replication_problems("a:1", chans, "b:2", chans[0])
    assert problems == ["a:1: lag behind b:2 unknown (Seconds_Behind_Master NULL)"]


def test_dsn_parsing_and_showing_without_password() -> None:
    d = parse_mysql_dsn("mysql://monitor:p%40ss@db7:3307/shard7")
    assert (d.host, d.port, d.user, d.password, d.database, d.label) == (
        "db7",
        3307,
        "monitor",
        "p@ss",
        "shard7",
        "db7:3307",
    )
    assert "p@ss" not in repr(d)
    assert parse_mysql_dsn("mysql://root@127.0.0.1/").port == 3306
    assert shown_dsn("mysql://monitor:pw@db7:3307/x") == "mysql://monitor:***@db7:3307/x"
    assert shown_dsn("mysql://root@db7/x") == "mysql://root@db7/x"
    with pytest.raises(ValueError) as e:
        parse_mysql_dsn("postgresql://u:topsecret@h/db")
    assert "topsecret" not in str(e.value)
    with pytest.raises(ValueError, match="no host"):
        parse_mysql_dsn("mysql:///db")
