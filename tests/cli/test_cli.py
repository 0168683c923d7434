"""init / send / collect / query / import through the real command line (the commands that
touch a store on SQLite and on PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tests.cli.helpers import StoreProject, run, store_project

__all__ = ["store_project"]


def test_init_scaffolds_and_running_it_twice_changes_nothing(tmp_path: Path) -> None:
    r = run("init", str(tmp_path / "proj"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    proj = tmp_path / "proj"
    for rel in (
        "signalbox.toml",
        "monitors/example.yaml",
        "monitors/example_test.yaml",
        "flags/example.yaml",
        ".signalbox/spool",
    ):
        assert (proj / rel).exists(), rel
    before = {p: p.read_bytes() for p in proj.rglob("*") if p.is_file()}
    (proj / "signalbox.toml").write_text((proj / "signalbox.toml").read_text() + "# mine\n")
    r2 = run("init", str(proj), cwd=tmp_path)
    assert r2.returncode == 0 and "created" not in r2.stdout
    assert (proj / "signalbox.toml").read_text().endswith("# mine\n")
    assert {p for p in proj.rglob("*") if p.is_file()} == set(before)


def test_scaffolded_config_loads_and_matches_defaults(tmp_path: Path) -> None:
    run("init", ".", cwd=tmp_path)
    from signalbox.config import load_settings

    s = load_settings(str(tmp_path / "signalbox.toml"), environ={})
    d = load_settings(None, environ={}, cwd=tmp_path / ".signalbox")
    import dataclasses

    # every metrics setting (statsd limits included) but the spool dir, which is relative
    mine = dataclasses.replace(s.metrics, spool_dir=d.metrics.spool_dir)
    assert (mine, s.server, s.query) == (d.metrics, d.server, d.query)
    assert s.monitors.interval_s == d.monitors.interval_s
    assert (s.monitors.retry_delay_s, s.monitors.retry_max_delay_s) == (
        d.monitors.retry_delay_s,
        d.monitors.retry_max_delay_s,
    )


def test_send_collect_query_round_trip(store_project: StoreProject) -> None:
    tmp_path = store_project.root
    env = {"SIGNALBOX_HOST": "web1"}
    assert run("init", ".", cwd=tmp_path).returncode == 0
    r = run("send", "image_processed=30", 'lag{shard="7"}=0.5', cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    r = run("send", "image_processing_time=5", cwd=tmp_path, env=env)  # merged into the same file
    spool_text = (tmp_path / ".signalbox/spool/send.metrics").read_text()
    assert "image_processed=30.0" in spool_text and "image_processing_time=5.0" in spool_text
    r = run("collect", "--once", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "stored" in r.stdout
    r = run("query", "image_processed", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["resultType"] == "vector"
    [item] = data["result"]
    assert (
        item["metric"] == {"__name__": "image_processed", "host": "web1"}
        and item["value"][1] == "30"
    )
    r = run("query", "sum by (shard) (lag)", cwd=tmp_path, env=env)
    assert r.returncode == 0 and '{shard="7"} 0.5' in r.stdout


def test_send_refuses_a_bad_pair_and_writes_nothing(tmp_path: Path) -> None:
    r = run("send", "good=1", "bad-value=abc", cwd=tmp_path)
    assert r.returncode == 2
    assert "argument 2" in r.stderr and "abc" in r.stderr
    assert not (tmp_path / ".signalbox/spool/send.metrics").exists()


def test_collect_reports_bad_lines_with_path_and_exits_1(store_project: StoreProject) -> None:
    tmp_path = store_project.root
    spool = tmp_path / ".signalbox/spool"
    spool.mkdir(parents=True)
    (spool / "app.metrics").write_text("ok=1\nbroken line\n")
    r = run("collect", "--once", cwd=tmp_path)
    assert r.returncode == 1
    assert f"{spool / 'app.metrics'}:2:" in r.stderr
    assert run("query", "ok", cwd=tmp_path).stdout.strip().endswith(" 1")


def test_config_error_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text("[server]\nport = 'eighty'\n")
    r = run("collect", "--once", cwd=tmp_path)
    assert r.returncode == 2
    assert "signalbox.toml: server.port: expected an integer, got 'eighty'" in r.stderr


def test_unsupported_promql_is_refused_naming_the_construct(tmp_path: Path) -> None:
    r = run("query", "holt_winters(x[5m], 0.5, 0.5)", cwd=tmp_path)
    assert r.returncode == 2 and "'holt_winters' is not supported" in r.stderr


def test_bad_cli_durations_exit_2(tmp_path: Path) -> None:
    r = run("query", "x", "--since", "yesterday", cwd=tmp_path)
    assert r.returncode == 2 and "--since 'yesterday'" in r.stderr


def test_import_openmetrics_history_then_query_it(store_project: StoreProject) -> None:
    tmp_path = store_project.root
    now = int(time.time())
    lines = ["# TYPE jobs_total counter"]
    # a sample a minute from 62 minutes ago to 3 minutes ahead: every window the query reads
    # (the last 50 minutes, whenever the query runs under load) has samples beyond both its
    # edges, so increase() extrapolates exactly (the data used to end a minute before the
    # test started: a query a few seconds later met a gap and got less than 100)
    for i in range(66):
        lines.append(f'jobs_total{{queue="photos"}} {i * 10} {now - 3720 + i * 60}')
    lines.append("not a valid line")
    lines.append("# EOF")
    f = tmp_path / "history.om"
    f.write_text("\n".join(lines) + "\n")
    r = run("import", str(f), cwd=tmp_path)
    assert r.returncode == 1  # one bad line: reported, the rest imported
    assert "imported 66 samples" in r.stdout
    assert f"{f}:68:" in r.stderr
    r = run(
        "query",
        "increase(jobs_total[10m])",
        "--since",
        "50m",
        "--step",
        "10m",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    [series] = data["result"]
    assert series["metric"] == {"queue": "photos"}
    values = [float(v) for _, v in series["values"]]
    assert len(values) == 6
    assert all(abs(v - 100.0) < 1e-6 for v in values)  # 10 a minute, exactly (raw data, no rollup)


def test_help_for_every_command(tmp_path: Path) -> None:
    for cmd in ("init", "serve", "agent", "collect", "send", "query", "import"):
        r = run(cmd, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "Usage:" in r.stdout, cmd


def test_scaffolded_monitors_lint_clean_and_their_unit_tests_pass(tmp_path: Path) -> None:
    assert run("init", ".", cwd=tmp_path).returncode == 0
    lint = run("monitors", "lint", cwd=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    test = run("monitors", "test", cwd=tmp_path)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed, 0 failed" in test.stdout


def test_import_json_reports_counts_range_and_bad_lines(store_project: StoreProject) -> None:
    tmp_path = store_project.root
    now = int(time.time())
    f = tmp_path / "h.om"
    f.write_text(f"a 1 {now - 120}\na 2 {now - 60}\nnot valid\n# EOF\n")
    r = run("import", str(f), "--json", cwd=tmp_path)
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["samples"] == 2
    assert (data["first_ms"], data["last_ms"]) == ((now - 120) * 1000, (now - 60) * 1000)
    assert [(e["line"], e["text"]) for e in data["errors"]] == [(3, "not valid")]


def test_monitors_test_json_lists_each_test(tmp_path: Path) -> None:
    assert run("init", ".", cwd=tmp_path).returncode == 0
    r = run("monitors", "test", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["passed"], data["failed"]) == (1, 0)
    [f] = data["files"]
    assert f["path"].endswith("example_test.yaml") and f["tests"][0]["passed"] is True


def test_query_runs_under_the_query_limits(tmp_path: Path) -> None:
    """`signalbox query` is held to [query] as the HTTP API is: past max_samples, exit 2 and
    one line naming the setting, no traceback; within it, the answer."""
    assert run("init", ".", cwd=tmp_path).returncode == 0
    (tmp_path / ".signalbox/spool/a.metrics").write_text(
        "".join(f'load{{i="{i}"}}={i}\n' for i in range(20))
    )
    assert run("collect", "--once", cwd=tmp_path).returncode == 0
    assert run("query", "load", cwd=tmp_path).returncode == 0
    config = tmp_path / "signalbox.toml"
    config.write_text(config.read_text().replace("max_samples = 50000000", "max_samples = 5"))
    r = run("query", "load", cwd=tmp_path)
    assert r.returncode == 2
    assert "query.max_samples" in r.stderr and "Traceback" not in r.stderr


def test_import_of_old_history_gives_back_the_space_of_dropped_raw_partitions(
    tmp_path: Path,
) -> None:
    """Two days imported: the older day's raw partitions are dropped by retention once its
    rollups are built, and the SQLite file does not keep their pages."""
    now = int(time.time())
    lines = ["# TYPE jobs_total counter"]
    for k in range(20):
        for i in range(2 * 1440):
            lines.append(f'jobs_total{{k="{k}"}} {i} {now - 2 * 86400 + i * 60}')
    lines.append("# EOF")
    f = tmp_path / "history.om"
    f.write_text("\n".join(lines) + "\n")
    r = run("import", str(f), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "reclaimed" in r.stderr
    db = sqlite3.connect(tmp_path / ".signalbox" / "signalbox.db")
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.close()
    assert free < pages * 0.05, (free, pages)
    r = run("query", "count(jobs_total)", cwd=tmp_path)  # and the recent day still answers
    assert r.returncode == 0 and r.stdout.split()[-1] == "20", r.stdout + r.stderr
