"""``collect --once``: its plain forms start without click, and say the same as the full CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from signalbox.cli.collect_once import parse_plain
from tests.cli.helpers import run


@pytest.mark.parametrize(
    ("argv", "plain"),
    [
        (["collect", "--once"], (None, 0, False, True)),
        (["--config", "x.toml", "collect", "--once", "--json"], ("x.toml", 0, True, True)),
        (["--config=x.toml", "-v", "collect", "--json", "--once"], ("x.toml", 1, True, True)),
        (["-vv", "collect", "--once", "--no-compact"], (None, 2, False, False)),
        (["collect"], None),  # click says what is missing
        (["collect", "--once", "--bogus"], None),
        (["collect", "--help"], None),
        (["--config"], None),
        (["--version"], None),
        (["query", "up"], None),
        ([], None),
    ],
)
def test_only_plain_forms_take_the_fast_path(
    argv: list[str], plain: tuple[str | None, int, bool, bool] | None
) -> None:
    assert parse_plain(argv) == plain


def setup(tmp_path: Path) -> Path:
    cfg = tmp_path / "conf" / "sb.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        'host = "cron1"\ndata_dir = "../data"\n[collect]\nspool_dir = "../data/spool"\n[statsd]\nenabled = false\n'
    )
    spool = tmp_path / "data" / "spool"
    spool.mkdir(parents=True)
    (spool / "app.metrics").write_text("jobs_done=5\nbad line\n")
    return cfg


def test_fast_path_reports_like_the_full_cli(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    r = run("--config", str(cfg), "collect", "--once", "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # a bad line: exit 1
    report = json.loads(r.stdout)
    assert report["problems"] == [
        {
            "file": "app.metrics",
            "line": 2,
            "kind": "line",
            "reason": "expected NAME=VALUE: bad line",
        }
    ]
    r = run("--config", str(cfg), "collect", "--once", cwd=tmp_path)
    assert r.returncode == 1
    assert "app.metrics:2: expected NAME=VALUE" in r.stderr
    assert r.stdout.startswith("stored ")
    q = run("--config", str(cfg), "query", "jobs_done", "--json", cwd=tmp_path)
    assert json.loads(q.stdout)["result"][0]["value"][1] == "5", q.stdout


def test_fast_path_config_errors_exit_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[collect]\ninterval = 5\n")
    r = run("--config", str(bad), "collect", "--once", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("signalbox: ") and "bad.toml" in r.stderr and "interval" in r.stderr


def test_collect_without_once_still_gets_clicks_usage_error(tmp_path: Path) -> None:
    r = run("collect", cwd=tmp_path)
    assert r.returncode == 2 and "--once" in r.stderr


def test_plain_collect_once_does_not_import_click(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('click' in sys.modules, file=sys.stderr))\n"
        "from signalbox.cli.main import main\n"
        f"sys.argv = ['signalbox', '--config', {str(cfg)!r}, 'collect', '--once']\n"
        "main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1 and r.stderr.strip().endswith("False"), r.stderr


def test_no_compact_leaves_rollups_to_the_compact_command(tmp_path: Path) -> None:
    """History two hours old (so closed buckets exist whatever the clock says now)."""
    import sqlite3
    import time

    from signalbox.config import load_settings
    from signalbox.metrics.samples import Sample
    from signalbox.runtime import open_metric_store

    cfg = setup(tmp_path)
    past_ms = (int(time.time()) - 7200) * 1000
    store = open_metric_store(load_settings(str(cfg), environ={}))
    store.write([Sample("history", (), float(i), past_ms + 60_000 * i) for i in range(30)], 0)
    store.close()
    assert (
        run("--config", str(cfg), "collect", "--once", "--no-compact", cwd=tmp_path).returncode == 1
    )
    db = tmp_path / "data" / "signalbox.db"

    def rollups() -> list[int]:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("SELECT tier FROM metric_rollups ORDER BY tier")]

    assert rollups() == []
    r = run("--config", str(cfg), "compact", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("compacted in "), r.stderr
    assert rollups() == [60, 300, 3600]
