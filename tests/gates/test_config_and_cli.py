"""``[gates.NAME]`` in signalbox.toml and ``signalbox gates check``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signalbox.cli.base import cli
from signalbox.config import settings_from_dict
from signalbox.exceptions import ConfigError
from signalbox.gates.settings import build_gates
from tests.gates.mariadb_pair import free_port


def _settings(gates: dict[str, object], tmp_path: Path, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return settings_from_dict(
        {"gates": gates}, source="signalbox.toml", base_dir=tmp_path, environ=environ or {}
    )


def test_every_kind_builds_from_config(tmp_path: Path) -> None:
    s = _settings(
        {
            "db": {
                "kind": "mysql_load",
                "dsn": "mysql://m@db7/",
                "max_running": 40,
                "status": {"Innodb_row_lock_current_waits": [5, 1]},
            },
            "pair": {
                "kind": "mysql_replication",
                "dsns": ["mysql://m@a/", "mysql://m@b/"],
                "max_lag": "1m",
            },
            "pg": {"kind": "postgres_load", "dsn": "postgresql://p@h/db", "max_active": 20},
            "traffic": {
                "kind": "metric",
                "query": "sum(rate(http_requests_total[1m]))",
                "below": 500,
            },
            "photo_db": {"kind": "monitor", "max_age": "5m"},
            "reprocessing": {"kind": "flag"},
            "hold": {"kind": "file", "path": "hold", "interval": "1s", "delay": "30s"},
        },
        tmp_path,
    )
    gates = build_gates(s)
    assert list(gates) == ["db", "pair", "pg", "traffic", "photo_db", "reprocessing", "hold"]
    assert all(g.name == n for n, g in gates.items())
    assert gates["pair"].lag_limit.close_at == 60  # type: ignore[attr-defined]
    assert gates["hold"].path == tmp_path / "hold"  # type: ignore[attr-defined]
    assert (gates["hold"].interval, gates["hold"].delay) == (1.0, 30.0)
    assert gates["photo_db"].monitor_name == "photo_db" and gates["photo_db"].max_age == 300  # type: ignore[attr-defined]
    assert gates["reprocessing"]._flags_path() == tmp_path / "flags"  # type: ignore[attr-defined]


def test_a_flag_gate_without_a_path_reads_the_declarations_flags_paths_names(
    tmp_path: Path,
) -> None:
    s = settings_from_dict(
        {
            "flags": {"paths": ["ops/flags"]},
            "gates": {"reprocessing": {"kind": "flag"}, "mine": {"kind": "flag", "path": "f"}},
        },
        source="signalbox.toml",
        base_dir=tmp_path,
        environ={},
    )
    gates = build_gates(s)
    assert gates["reprocessing"]._flags_path() == tmp_path / "ops" / "flags"  # type: ignore[attr-defined]
    assert gates["mine"]._flags_path() == tmp_path / "f"  # type: ignore[attr-defined]


def test_dsn_from_the_environment_and_never_in_a_repr(tmp_path: Path) -> None:
    s = _settings(
        {"db": {"kind": "mysql_load", "dsn_env": "DB_DSN", "max_running": 4}},
        tmp_path,
        {"DB_DSN": "mysql://m:Sup3rSecret@db7/"},
    )
    assert "Sup3rSecret" not in repr(s.gates) + repr(build_gates(s)["db"])


@pytest.mark.parametrize(
    ("gates", "key", "expected"),
    [
        ({"db": {"kind": "mysqlload"}}, "gates.db.kind", "one of file, flag, metric"),
        (
            {"db": {"kind": "mysql_load", "dsn": "mysql://h/", "max_runing": 3}},
            "gates.db.max_runing",
            "a known setting in [gates.db]",
        ),
        (
            {"db": {"kind": "mysql_load", "dsn": "mysql://h/", "max_running": "x"}},
            "gates.db.max_running",
            "a number or a list of numbers",
        ),
        (
            {"db": {"kind": "mysql_load", "dsn": "mysql://h/", "max_running": [40, 50]}},
            "gates.db.max_running",
            "low mark 50 is above the high mark 40",
        ),
        ({"db": {"kind": "mysql_load", "dsn": "mysql://h/"}}, "gates.db", "at least one mark"),
        (
            {
                "db": {
                    "kind": "mysql_load",
                    "dsn": "postgresql://u:Sup3rSecret@h/",
                    "max_running": 3,
                }
            },
            "gates.db.dsn",
            "a mysql://",
        ),
        (
            {"db": {"kind": "mysql_load", "dsn_env": "NOPE", "max_running": 3}},
            "gates.db.dsn_env",
            "$NOPE is empty",
        ),
        (
            {"db": {"kind": "mysql_load", "dsn": "mysql://h/", "max_running": 3, "low": 2}},
            "gates.db.low",
            "a fraction",
        ),
        (
            {
                "db": {
                    "kind": "mysql_load",
                    "dsn": "mysql://h/",
                    "max_running": 3,
                    "timeout": "soon",
                }
            },
            "gates.db.timeout",
            "a duration",
        ),
        (
            {"p": {"kind": "mysql_replication", "dsns": ["mysql://a/"]}},
            "gates.p.dsns",
            "at least two servers",
        ),
        ({"t": {"kind": "metric", "query": "rate(x[1m]", "below": 1}}, "gates.t.query", "PromQL"),
        ({"t": {"kind": "metric", "query": "x"}}, "gates.t", "below = N or above = N"),
        (
            {"t": {"kind": "metric", "query": "x", "below": 1, "no_data": "maybe"}},
            "gates.t.no_data",
            '"closed" or "open"',
        ),
        ({"h": {"kind": "file"}}, "gates.h.path", "the path of the throttle file"),
        ({"h": "file"}, "gates.h", "a table"),
    ],
)
def test_bad_gate_config_names_file_key_and_expectation(
    tmp_path: Path, gates: dict[str, object], key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as e:
        _settings(gates, tmp_path)
    assert e.value.file == "signalbox.toml"
    assert e.value.key == key
    assert expected in e.value.expected
    assert "Sup3rSecret" not in str(e.value)


def _run(tmp_path: Path, toml: str, *args: str) -> Result:
    cfg = tmp_path / "signalbox.toml"
    cfg.write_text(toml)
    return CliRunner().invoke(cli, ["--config", str(cfg), "gates", "check", *args])


def test_cli_check_all_open_exits_0(tmp_path: Path) -> None:
    r = _run(tmp_path, '[gates.hold]\nkind = "file"\npath = "hold"\n')
    assert r.exit_code == 0, r.output
    assert r.output.startswith("hold  open    file  ")


def test_cli_check_any_closed_exits_1_with_reason_and_reading(tmp_path: Path) -> None:
    (tmp_path / "hold").write_text("migration of shard 7\n")
    port = free_port()
    toml = (
        '[gates.hold]\nkind = "file"\npath = "hold"\n'
        f'[gates.db]\nkind = "mysql_load"\ndsn = "mysql://m:Sup3rSecret@127.0.0.1:{port}/"\nmax_running = 4\n'
    )
    r = _run(tmp_path, toml, "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert [g["name"] for g in out] == ["hold", "db"]
    assert out[0]["open"] is False and out[0]["reason"].endswith("exists: migration of shard 7")
    assert out[0]["reading"]["note"] == "migration of shard 7" and out[0]["delay_s"] == 10.0
    assert out[1]["open"] is False and "Connection refused" in out[1]["reason"]
    assert "Sup3rSecret" not in r.output
    r = _run(tmp_path, toml)
    assert r.exit_code == 1
    assert "hold  CLOSED  file  throttle file" in r.output and "Sup3rSecret" not in r.output


def test_cli_check_only_named_gates_and_unknown_name_is_usage_error(tmp_path: Path) -> None:
    (tmp_path / "hold").touch()
    toml = (
        '[gates.hold]\nkind = "file"\npath = "hold"\n[gates.free]\nkind = "file"\npath = "free"\n'
    )
    assert _run(tmp_path, toml, "free").exit_code == 0
    r = _run(tmp_path, toml, "nope")
    assert r.exit_code == 2 and "no gate named nope (configured: free, hold)" in r.output


def test_cli_check_config_error_exits_2(tmp_path: Path) -> None:
    r = _run(tmp_path, '[gates.db]\nkind = "mysql_load"\n')
    assert r.exit_code == 2
    assert "gates.db.dsn" in r.output


def test_cli_check_without_gates_says_so(tmp_path: Path) -> None:
    r = _run(tmp_path, "", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    assert "no gates configured" in r.stderr
