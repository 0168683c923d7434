"""``collect --once``: its plain forms start without click, and say the same as the full CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signalbox.cli.collect_once import parse_plain
from signalbox.config import load_settings
from signalbox.metrics.samples import Labels, Matcher, Sample
from signalbox.runtime import open_metric_store
from tests.cli.helpers import SIGNALBOX, StoreProject, run, store_project

__all__ = ["store_project"]


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


def setup(tmp_path: Path, project: StoreProject | None = None) -> Path:
    """A config in ``conf/`` naming a data dir beside it, with one spool file (a bad line);
    over ``project``'s store when given, else the default SQLite store in the data dir."""
    cfg = tmp_path / "conf" / "sb.toml"
    cfg.parent.mkdir()
    store = f'store = "{project.store_url}"\n' if project is not None else ""
    cfg.write_text(
        f'{store}host = "cron1"\ndata_dir = "../data"\n[collect]\nspool_dir = "../data/spool"\n[statsd]\nenabled = false\n'
    )
    spool = tmp_path / "data" / "spool"
    spool.mkdir(parents=True)
    (spool / "app.metrics").write_text("jobs_done=5\nbad line\n")
    return cfg


def test_fast_path_reports_like_the_full_cli(tmp_path: Path, store_project: StoreProject) -> None:
    cfg = setup(tmp_path, store_project)
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


def test_no_compact_leaves_rollups_to_the_compact_command(
    tmp_path: Path, store_project: StoreProject
) -> None:
    """History two hours old (so closed buckets exist whatever the clock says now)."""
    cfg = setup(tmp_path, store_project)
    write_history(cfg)
    assert (
        run("--config", str(cfg), "collect", "--once", "--no-compact", cwd=tmp_path).returncode == 1
    )
    assert rollup_tiers(store_project) == []
    r = run("--config", str(cfg), "compact", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("compacted in "), r.stderr
    assert rollup_tiers(store_project) == [60, 300, 3600]


def write_history(cfg: Path, name: str = "history") -> None:
    """Thirty one-minute samples starting two hours ago, written through the library."""
    past_ms = (int(time.time()) - 7200) * 1000
    store = open_metric_store(load_settings(str(cfg), environ={}))
    store.write([Sample(name, (), float(i), past_ms + 60_000 * i) for i in range(30)], 0)
    store.close()


def rollup_tiers(project: StoreProject) -> list[int]:
    """The tiers whose rollups have been built (their watermark is recorded)."""
    db = project.database()
    try:
        return [r[0] for r in db.query("SELECT tier FROM metric_rollups ORDER BY tier")]
    finally:
        db.close()


def stored(cfg: Path, name_regex: str) -> dict[tuple[str, Labels], float]:
    """The latest value of every stored series whose name matches."""
    store = open_metric_store(load_settings(str(cfg), environ={}))
    try:
        return {
            (n, labels): v
            for n, labels, _, v in store.latest([Matcher("__name__", "=~", name_regex)])
        }
    finally:
        store.close()


def spool_of(tmp_path: Path) -> Path:
    spool = tmp_path / "data" / "spool"
    (spool / "app.metrics").unlink()  # setup()'s bad line: these tests want clean passes
    return spool


def start(cfg: Path, *args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    return subprocess.Popen(
        [SIGNALBOX, "--config", str(cfg), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_collect_once_at_the_same_time_both_succeed_and_store_everything(
    tmp_path: Path, store_project: StoreProject
) -> None:
    """Two cron jobs (or two hosts) passing over one store at once: no lost write, no error,
    and the series both create are created once."""
    cfg = setup(tmp_path, store_project)
    spool = spool_of(tmp_path)
    for f in range(8):
        lines = [f'job_seconds{{file="{f}",step="{i}"}}={f * 1000 + i}' for i in range(250)]
        (spool / f"job{f}.metrics").write_text("\n".join(lines) + "\n")
    procs = [start(cfg, "collect", "--once", "--json", cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        report = json.loads(out)
        assert report["problems"] == [] and report["stored"] >= 2000, report
    got = stored(cfg, "job_seconds")
    assert len(got) == 2000
    assert got[("job_seconds", (("file", "7"), ("host", "cron1"), ("step", "249")))] == 7249.0
    db = store_project.database()
    try:
        [(n,)] = db.query("SELECT COUNT(*) FROM series")
        [(distinct,)] = db.query("SELECT COUNT(DISTINCT name || labels) FROM series")
    finally:
        db.close()
    assert n == distinct  # no series row was created twice by the racing passes


def test_a_series_in_two_files_is_reported_and_the_rest_is_stored(
    tmp_path: Path, store_project: StoreProject
) -> None:
    """The first file (by name) keeps the series; the second is reported with both names. On
    a second pass the first file is a known frame, and a duplicate appearing then takes the
    collector's slow path: still reported, still everything else stored."""
    cfg = setup(tmp_path, store_project)
    spool = spool_of(tmp_path)
    (spool / "a.metrics").write_text("dup=1\nonly_a=1\n")
    (spool / "b.metrics").write_text("only_b=2\n")
    r = run("--config", str(cfg), "collect", "--once", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (spool / "b.metrics").write_text("only_b=3\ndup=5\n")
    for _ in range(2):  # b's shape is new, then known: both passes say the same
        r = run("--config", str(cfg), "collect", "--once", "--json", cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        [problem] = json.loads(r.stdout)["problems"]
        assert problem["file"] == "b.metrics" and problem["kind"] == "duplicate"
        assert problem["reason"] == "duplicate series dup: also in a.metrics, whose value is kept"
    host = (("host", "cron1"),)
    assert stored(cfg, "dup|only_a|only_b") == {
        ("dup", host): 1.0,
        ("only_a", host): 1.0,
        ("only_b", host): 3.0,
    }
    errors = stored(cfg, "signalbox_spool_errors_total")
    assert errors[("signalbox_spool_errors_total", (("file", "b.metrics"), *host))] == 2.0


def test_compact_racing_collect_once_both_succeed(
    tmp_path: Path, store_project: StoreProject
) -> None:
    """Where hosts share a store one of them compacts while others collect: neither may fail
    or lose the other's work."""
    cfg = setup(tmp_path, store_project)
    spool = spool_of(tmp_path)
    lines = [f'queue_depth{{queue="q{i}"}}={i}' for i in range(200)]
    (spool / "queues.metrics").write_text("\n".join(lines) + "\n")
    write_history(cfg)
    compact = start(cfg, "compact", cwd=tmp_path)
    collect = start(cfg, "collect", "--once", "--no-compact", cwd=tmp_path)
    c_out, c_err = compact.communicate(timeout=120)
    _, k_err = collect.communicate(timeout=120)
    assert compact.returncode == 0 and c_out.startswith("compacted in "), c_err
    assert collect.returncode == 0, k_err
    assert rollup_tiers(store_project) == [60, 300, 3600]
    assert len(stored(cfg, "queue_depth")) == 200
    assert stored(cfg, "history") == {("history", ()): 29.0}


def click_path(cfg: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The full click CLI in a real process (the ``signalbox`` executable takes the plain
    ``collect --once`` forms past click)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    code = "from signalbox.cli.base import cli; cli(prog_name='signalbox')"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(cfg), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("path", ["fast", "click"])
@pytest.mark.parametrize("flags", [(), ("-v",), ("--json",)])
def test_each_problem_is_printed_once_on_stderr_as_file_line_reason(
    tmp_path: Path, path: str, flags: tuple[str, ...]
) -> None:
    """A bad line, a series two files give and a binary file: one stderr line each (the
    collector's own logging of problems is for serve/agent), also with -v and --json."""
    cfg = setup(tmp_path)  # app.metrics: a bad line on line 2
    spool = tmp_path / "data" / "spool"
    (spool / "dup.metrics").write_text("jobs_done=6\n")  # app.metrics has it first
    (spool / "core.metrics").write_bytes(b"\x7fELF\x00\x00")
    verbose = [f for f in flags if f == "-v"]
    rest = [f for f in flags if f != "-v"]
    args = [*verbose, "collect", "--once", *rest]
    if path == "fast":
        r = run("--config", str(cfg), *args, cwd=tmp_path)
    else:
        r = click_path(cfg, *args, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    shown = load_settings(str(cfg), environ={}).metrics.spool_dir  # as the config spells it
    assert [line for line in r.stderr.splitlines() if "metrics" in line] == [
        f"{shown / 'app.metrics'}:2: expected NAME=VALUE: bad line",
        f"{shown / 'core.metrics'}: refused: binary content (NUL byte); expected text",
        f"{shown / 'dup.metrics'}: duplicate series jobs_done: also in app.metrics, whose value is kept",
    ], r.stderr
    for e in ("bad line", "binary content", "duplicate series"):
        assert r.stderr.count(e) == 1, r.stderr
    if "--json" in flags:
        problems = json.loads(r.stdout)["problems"]
        assert sorted((p["file"], p["line"], p["kind"]) for p in problems) == [
            ("app.metrics", 2, "line"),
            ("core.metrics", 0, "refused"),
            ("dup.metrics", 0, "duplicate"),
        ]
    else:
        assert r.stdout.startswith("stored "), r.stdout
