"""``signalbox monitors lint|test|backtest`` through the real command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.metrics.samples import Sample
from signalbox.runtime import open_metric_store
from tests.cli.helpers import StoreProject, run, store_project

__all__ = ["store_project"]

CONFIG = """\
[notifiers.ops]
type = "log"
"""

GOOD = """\
- name: image_processing_slow
  description: Resizes slower than users tolerate.
  query: avg_over_time(image_processing_time[5m])
  warning: "> 4"
  critical: "> 8"
  recover: "< 3"
  notify: [ops]
- name: photos_backlog
  description: Uploads wait too long.
  queue: {name: photos, high: 100, low: 10}
"""

TESTS = """\
tests:
  - name: pages on slow resizes
    input_series:
      - series: 'image_processing_time{host="web1"}'
        values: '2x4 9x10'
    expect:
      - {at: 10m, monitor: image_processing_slow, state: critical, labels: {host: web1}}
    expect_notifications:
      - {monitor: image_processing_slow, firing: 2}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "signalbox.toml").write_text(CONFIG)
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "photos.yaml").write_text(GOOD)
    return tmp_path


@pytest.fixture
def stored(store_project: StoreProject) -> Path:
    """The same project over a fresh store, on SQLite and on PostgreSQL (for backtests)."""
    store_project.configure(CONFIG)
    (store_project.root / "monitors").mkdir()
    (store_project.root / "monitors" / "photos.yaml").write_text(GOOD)
    return store_project.root


def test_lint_prints_every_error_with_file_line_monitor_key_and_exits_1(project: Path) -> None:
    bad = GOOD.replace('warning: "> 4"', 'warning: "> 9"').replace("notify: [ops]", "notify: [opz]")
    (project / "monitors" / "photos.yaml").write_text(bad)
    r = run("monitors", "lint", cwd=project)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(
        line.startswith(
            'monitors/photos.yaml:5: image_processing_slow: critical: critical "> 8" fires at'
        )
        for line in lines
    ), r.stdout
    assert (
        "monitors/photos.yaml:7: image_processing_slow: notify: unknown notifier 'opz' (did you mean 'ops'?): expected one of ops (in signalbox.toml)"
        in lines
    )
    assert lines[-1] == "2 errors (1 valid monitor in 1 file)"


def test_lint_of_clean_monitors_exits_0_with_a_summary(project: Path) -> None:
    r = run("monitors", "lint", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "2 valid monitors in 1 file: no errors"
    r = run("monitors", "lint", "monitors/photos.yaml", "--json", cwd=project)
    assert r.returncode == 0 and json.loads(r.stdout) == {"monitors": 2, "files": 1, "errors": []}


def test_lint_of_a_missing_path_is_a_usage_error(project: Path) -> None:
    r = run("monitors", "lint", "nope.yaml", cwd=project)
    assert r.returncode == 2 and "no such file or directory: nope.yaml" in r.stderr
    r = run("monitors", "lint", cwd=project / "monitors")  # no config, no ./monitors
    assert r.returncode == 2 and "no monitors at" in r.stderr


def test_test_runs_unit_tests_and_exits_0_when_all_pass(project: Path) -> None:
    (project / "monitors" / "photos_test.yaml").write_text(TESTS)
    r = run("monitors", "test", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Unit Testing: monitors/photos_test.yaml" in r.stdout
    assert "  PASSED: pages on slow resizes" in r.stdout
    assert r.stdout.splitlines()[-1] == "monitor tests: 1 passed, 0 failed (1 file)"


def test_test_exits_1_and_shows_expected_and_got_on_failure(project: Path) -> None:
    failing = TESTS.replace("state: critical", "state: warning")
    (project / "monitors" / "photos_test.yaml").write_text(failing)
    (project / "monitors" / "broken.test.yaml").write_text(
        "tests:\n  - name: x\n    expect: [{at: 1m, monitor: photos_backlog, state: fine}]\n"
    )
    r = run("monitors", "test", "monitors", cwd=project)
    assert r.returncode == 1
    out = r.stdout
    assert "FAILED: pages on slow resizes" in out
    assert 'monitors/photos_test.yaml:7: at 10m, monitor image_processing_slow{host="web1"}:' in out
    assert "exp: WARNING" in out and "got: CRITICAL" in out
    assert (
        "monitors/broken.test.yaml:3: x: state: expected one of ok, warning, critical, unknown, got 'fine'"
        in out
    )
    assert out.splitlines()[-1] == "monitor tests: 0 passed, 2 failed (2 files)"


def test_test_without_test_files_says_so(project: Path) -> None:
    r = run("monitors", "test", cwd=project)
    assert (
        r.returncode == 0
        and "no monitor test files (*_test.yaml, *.test.yaml) in monitors" in r.stderr
    )


def fill_store(project: Path) -> None:
    """Six hours of one-minute samples ending now: two critical spikes and two warning bumps."""
    store = open_metric_store(load_settings(str(project / "signalbox.toml"), environ={}))
    now = int(time.time() * 1000) // 60_000 * 60_000
    spikes = [(30, 30, 9.5), (120, 20, 6.0), (200, 30, 9.5), (280, 20, 6.0)]
    samples = []
    for minute in range(6 * 60):
        value = 2.0
        for at, length, v in spikes:
            if at <= minute < at + length:
                value = v
        t = now - (6 * 60 - minute) * 60_000
        samples.append(Sample("image_processing_time", (("host", "web1"),), value, t))
    store.write(samples, now)
    store.close()


def test_backtest_against_another_file_shows_both_side_by_side(stored: Path) -> None:
    project = stored
    fill_store(project)
    (project / "photos.new.yaml").write_text(
        GOOD.replace('"> 4"', '"> 7"').replace('"> 8"', '"> 9"')
    )
    r = run(
        "monitors",
        "backtest",
        "photos.new.yaml",
        "--against",
        "monitors/photos.yaml",
        "--since",
        "6h",
        "--monitor",
        "image_processing_slow",
        cwd=project,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("backtest ") and lines[0].endswith("UTC, step 30s")
    assert lines[1] == "image_processing_slow"
    assert lines[2].startswith("  old (monitors/photos.yaml): 4 incidents, ")
    assert lines[3].startswith("  new (photos.new.yaml): 2 incidents, ")
    r = run(
        "monitors",
        "backtest",
        "photos.new.yaml",
        "--against",
        "monitors/photos.yaml",
        "--since",
        "6h",
        "--step",
        "1m",
        "--json",
        cwd=project,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["step_s"] == 60 and doc["against"] == "monitors/photos.yaml"
    by_name = {m["name"]: m for m in doc["monitors"]}
    slow = by_name["image_processing_slow"]
    assert len(slow["old"]["incidents"]) == 4 and len(slow["new"]["incidents"]) == 2
    assert slow["new"]["notifications"]["total"] < slow["old"]["notifications"]["total"]
    backlog = by_name["photos_backlog"]["old"]  # no queue metric at all: no data, never fired
    assert backlog["incidents"] == [] and backlog["unknown_s"] == 6 * 3600


def test_backtest_of_one_file_lists_incidents(stored: Path) -> None:
    project = stored
    fill_store(project)
    r = run(
        "monitors",
        "backtest",
        "monitors/photos.yaml",
        "--since",
        "6h",
        "--monitor",
        "image_processing_slow",
        cwd=project,
    )
    assert r.returncode == 0, r.stderr
    assert "image_processing_slow (monitors/photos.yaml:1)" in r.stdout
    assert "  4 incidents, " in r.stdout and "CRITICAL" in r.stdout and "9.5" in r.stdout


def test_backtest_input_errors_exit_2_and_lint_errors_exit_1(stored: Path) -> None:
    project = stored
    r = run("monitors", "backtest", "missing.yaml", cwd=project)
    assert r.returncode == 2 and "missing.yaml: no such file" in r.stderr
    r = run("monitors", "backtest", "monitors/photos.yaml", "--monitor", "nope", cwd=project)
    assert r.returncode == 2 and "--monitor nope: not defined in monitors/photos.yaml" in r.stderr
    r = run("monitors", "backtest", "monitors/photos.yaml", "--since", "a week", cwd=project)
    assert r.returncode == 2 and "--since 'a week'" in r.stderr
    broken = GOOD + "- name: broken\n  description: x\n  query: up\n  warning: 4\n"
    (project / "broken.yaml").write_text(broken)
    r = run("monitors", "backtest", "broken.yaml", "--since", "1h", cwd=project)
    assert r.returncode == 1  # a check failed (SPEC), not a usage error
    assert "broken.yaml:14: broken: warning: bad threshold 4" in r.stderr
    assert "image_processing_slow (broken.yaml:1)" in r.stdout  # the good monitors still ran


def test_every_monitors_subcommand_has_help(project: Path) -> None:
    for cmd in ("lint", "test", "backtest"):
        r = run("monitors", cmd, "--help", cwd=project)
        assert r.returncode == 0 and "Usage:" in r.stdout, cmd
