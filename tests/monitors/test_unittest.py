"""Monitor unit tests (``monitors test``): the runner, its verdicts, and file:line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

from signalbox.monitors.testing.file import find_test_files, load_test_file
from signalbox.monitors.testing.runner import FileReport, format_report, run_test_file

MONITORS = """\
- name: image_processing_slow
  description: Resizes slower than users tolerate.
  query: avg_over_time(image_processing_time[1m])
  warning: "> 4"
  critical: "> 8"
  for: 3m
  recover: "< 3"
  no_data: ok
- name: photos_backlog
  description: Uploads wait too long to be resized.
  queue: {name: photos, high: 100, low: 10}
  repeat: 10m
- name: disk
  description: Disk fills.
  command: [check_disk, -w, "10%"]
"""

PASSING = """\
monitor_files: [photos.yaml]
interval: 1m
tests:
  - name: slow resizes page after 3m and recover below 3
    input_series:
      - series: 'image_processing_time{host="web1"}'
        values: '2 2 9x6 2.5x4 _ 1'
    expect:
      - {at: 3m, monitor: image_processing_slow, state: critical, pending: true}
      - {at: 3m, monitor: image_processing_slow, state: ok}
      - at: 5m
        monitor: image_processing_slow
        state: critical
        labels: {host: web1}
      - {at: 5m, monitor: image_processing_slow, state: critical, pending: false}
      - {at: 9m, monitor: image_processing_slow, state: ok}
    expect_notifications:
      - {monitor: image_processing_slow, firing: 1, resolved: 1}
  - name: backlog repeats every 10m until it drains below the low mark
    input_series:
      - series: 'signalbox_queue_depth{queue="photos"}'
        values: '150x25 50 5'
    expect:
      - {at: 26m, monitor: photos_backlog, state: critical, labels: {queue: photos}}
      - {at: 27m, monitor: photos_backlog, state: ok}
    expect_notifications:
      - {monitor: photos_backlog, labels: {queue: photos}, firing: 1, repeat: 2, resolved: 1}
"""


def write(
    tmp_path: Path, test: str, monitors: str = MONITORS, name: str = "photos_test.yaml"
) -> Path:
    (tmp_path / "photos.yaml").write_text(monitors)
    path = tmp_path / name
    path.write_text(textwrap.dedent(test))
    return path


def run(path: Path, **kw: object) -> tuple[FileReport, str]:
    report = run_test_file(path, **kw)  # type: ignore[arg-type]
    return report, format_report(report)


def test_a_passing_file_reports_every_test_passed(tmp_path: Path) -> None:
    report, text = run(write(tmp_path, PASSING))
    assert report.ok, text
    assert [o.name for o in report.outcomes] == [
        "slow resizes page after 3m and recover below 3",
        "backlog repeats every 10m until it drains below the low mark",
    ]
    assert text.count("PASSED:") == 2 and "FAILED" not in text


def test_a_failing_expectation_shows_file_line_time_monitor_expected_and_got(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """\
        tests:
          - name: too eager
            input_series:
              - series: 'image_processing_time{host="web1"}'
                values: '9x10'
              - series: 'image_processing_time{host="web2"}'
                values: '1x10'
            expect:
              - at: 2m
                monitor: image_processing_slow
                state: critical
                labels: {host: web1}
              - {at: 2m, monitor: image_processing_slow, state: critical, labels: {host: web3}}
              - {at: 4m, monitor: image_processing_slow, state: warning}
            expect_notifications:
              - {monitor: image_processing_slow, firing: 2}
        """,
    )
    report, text = run(path)
    assert not report.ok and not report.errors
    [outcome] = report.outcomes
    assert not outcome.passed
    assert f'{path}:9: at 2m, monitor image_processing_slow{{host="web1"}}:' in text
    assert "exp: CRITICAL\n" in text and "got: OK (pending CRITICAL since 0s)" in text
    assert "got: OK (no such series)" in text  # web3
    assert f"{path}:14: at 4m, monitor image_processing_slow (worst of its series):" in text
    assert "exp: WARNING" in text and "got: CRITICAL" in text
    assert 'series: {host="web1"} CRITICAL, {host="web2"} OK' in text
    assert f"{path}:16: notifications of image_processing_slow until 10m (repeat every 4h):" in text
    assert "exp: firing 2" in text and "got: firing 1, repeat 0, resolved 0" in text


def test_default_monitor_files_are_the_ones_beside_the_test(tmp_path: Path) -> None:
    path = write(tmp_path, PASSING.replace("monitor_files: [photos.yaml]\n", ""))
    (tmp_path / "other_test.yaml").write_text("not: [a monitor file")  # another test file: skipped
    report, text = run(path)
    assert report.ok, text


def test_every_yaml_problem_is_reported_with_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        monitor_files: [photos.yaml, missing.yaml]
        interval: 1 minute
        tests:
          - name: good one
            input_series:
              - series: 'image_processing_time{host="web1"}'
                values: '1x5'
            expect:
              - {at: 2m, monitor: image_processing_slow, state: ok}
          - name: bad one
            input_seris: []
            input_series:
              - series: 'image_processing_time{host=~"web1"}'
                values: '1 2 3x'
              - series: 'x'
            expect:
              - {at: soon, monitor: image_processing_slow, state: critcal}
              - {at: 1m, monitor: image_processing_slow, state: ok, pending: true}
              - {at: 1m, monitor: image_processing_slow, state: warning, labels: [web1]}
          - name: checks nothing
            input_series: []
          - name: good one
            expect: [{at: 0, monitor: image_processing_slow, state: ok}]
          - name: duplicate series
            input_series:
              - {series: 'y{a="1"}', values: '1'}
              - {series: 'y{a="1"}', values: '2'}
            expect: [{at: 0, monitor: image_processing_slow, state: ok}]
        """,
    )
    _, text = run(path)
    f = str(path)
    expected = [
        f"{f}:1: monitor_files: no such file: {tmp_path / 'missing.yaml'}",
        f"{f}:2: interval: bad duration '1 minute'",
        f"{f}:11: bad one: input_seris: unknown key 'input_seris' in a test (did you mean 'input_series'?)",
        f"{f}:13: bad one: series: bad series 'image_processing_time{{host=~\"web1\"}}': label host uses '=~'",
        f"{f}:14: bad one: values: bad value '3x' (position 5): expected a repeat count after 'x'",
        f"{f}:15: bad one: values: missing 'values' in input series",
        f"{f}:17: bad one: at: bad duration 'soon'",
        f"{f}:17: bad one: state: expected one of ok, warning, critical, unknown, got 'critcal'",
        f"{f}:18: bad one: pending: only warning or critical can be pending",
        f"{f}:19: bad one: labels: expected a mapping of label names to values, got a list",
        f"{f}:20: checks nothing: expect: the test checks nothing: add 'expect' or 'expect_notifications'",
        f"{f}:22: good one: name: test name 'good one' is used twice (first on line 4)",
        f'{f}:27: duplicate series: input_series: series y{{a="1"}} is given twice (first on line 26)',
    ]
    for line in expected:
        assert line in text, f"missing: {line}\n---\n{text}"
    assert "PASSED: good one" in text  # the good test still ran
    for name, line in (
        ("bad one", 10),
        ("checks nothing", 20),
        ("good one", 22),
        ("duplicate series", 24),
    ):
        assert f"FAILED: {name}\n    {f}:{line}: not run: fix the errors above" in text


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "tests:\n  - name: x\n    expect: [\n")
    report, text = run(path)
    assert not report.ok and f"{path}:4: YAML syntax error" in text


def test_broken_monitor_files_are_reported_and_tests_naming_them_fail(tmp_path: Path) -> None:
    broken = MONITORS.replace('warning: "> 4"', "warning: 4")
    path = write(tmp_path, PASSING, monitors=broken)
    report, text = run(path)
    assert (
        f"ERROR: {tmp_path / 'photos.yaml'}:4: image_processing_slow: warning: bad threshold"
        in text
    )
    assert "monitor 'image_processing_slow' did not load (see its errors above)" in text
    assert "PASSED: backlog repeats every 10m" in text  # the other monitor still tested
    assert not report.ok


def test_unknown_monitors_are_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        tests:
          - name: typo
            expect:
              - {at: 0, monitor: image_procesing_slow, state: ok}
              - {at: 0, monitor: photos_backlog, state: unknown}
        """,
    )
    report, text = run(path)
    assert (
        f"{path}:4: unknown monitor 'image_procesing_slow' (did you mean 'image_processing_slow'?)"
        in text
    )
    assert len(report.outcomes[0].failures) == 1  # the other expectation was checked and held


def test_nagios_monitors_fail_the_test_with_a_clear_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path, "tests:\n  - name: plugin\n    expect: [{at: 0, monitor: disk, state: ok}]\n"
    )
    _, text = run(path)
    assert f"{path}:2: monitor disk: monitor 'disk'" in text and "cannot be replayed" in text


def test_stale_series_read_as_no_data_until_the_next_sample(tmp_path: Path) -> None:
    monitors = """\
- name: lag
  description: Replication lag.
  query: lag
  critical: "> 10"
  no_data: warning
"""
    path = write(
        tmp_path,
        """\
        tests:
          - name: stale marks the series gone
            input_series:
              - series: 'lag{db="a"}'
                values: '1 1 stale _ 20'
            expect:
              - {at: 1m, monitor: lag, state: ok}
              - {at: 2m, monitor: lag, state: warning}
              - {at: 3m, monitor: lag, state: warning}
              - {at: 4m, monitor: lag, state: critical, labels: {db: a}}
        """,
        monitors=monitors,
    )
    report, text = run(path)
    assert report.ok, text


def test_evaluation_interval_and_repeat_default_are_honoured(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        interval: 1m
        evaluation_interval: 30s
        tests:
          - name: firing for 20m repeats with the default repeat
            input_series:
              - series: 'image_processing_time{host="web1"}'
                values: '9x23'
            expect:
              - {at: 2m30s, monitor: image_processing_slow, state: critical, pending: true}
              - {at: 3m, monitor: image_processing_slow, state: critical}
            expect_notifications:
              - {monitor: image_processing_slow, firing: 1, repeat: 2}
        """,
    )
    report, text = run(path, default_repeat_s=600.0)
    assert report.ok, text


def test_depends_on_resolves_against_context_monitors(tmp_path: Path) -> None:
    other = tmp_path / "db"
    other.mkdir()
    (other / "db.yaml").write_text(
        "- name: photo_db_down\n  description: DB.\n  query: up\n  critical: '< 1'\n"
    )
    monitors = MONITORS.replace("  no_data: ok\n", "  no_data: ok\n  depends_on: [photo_db_down]\n")
    path = write(tmp_path, PASSING, monitors=monitors)
    alone, text = run(path)
    assert "unknown monitor 'photo_db_down'" in text and not alone.ok
    with_context, text = run(path, context=[other])
    assert with_context.ok, text


def test_finds_test_files_recursively_and_skips_hidden_ones(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / ".git").mkdir()
    for rel in ("a/x_test.yaml", "b.test.yml", ".git/y_test.yaml", "photos.yaml", "a/z.yaml"):
        (tmp_path / rel).write_text("")
    files, errors = find_test_files([tmp_path, tmp_path / "nope"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/x_test.yaml", "b.test.yml"]
    assert [str(e) for e in errors] == [f"{tmp_path / 'nope'}: no such file or directory"]


def test_loading_keeps_the_test_structure(tmp_path: Path) -> None:
    tf = load_test_file(write(tmp_path, PASSING))
    assert not tf.errors and tf.monitor_files == (tmp_path / "photos.yaml",)
    first = tf.tests[0]
    assert first.interval_ms == first.evaluation_ms == 60_000 and first.end_ms == 15 * 60_000
    assert first.series[0].values[:3] == (2.0, 2.0, 9.0) and first.series[0].values[14] is None
