"""Backtests over a real SQLite store: incidents, firing time, notifications, old vs new, and
the library call :func:`signalbox.monitors.backtest.run` that the CLI and dashboard share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import Settings, load_settings
from signalbox.durations import Tier
from signalbox.exceptions import UsageError
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors import backtest as bt
from signalbox.monitors.backtest.report import (
    MonitorBacktest,
    backtest,
    default_step_s,
    dropped_note,
    format_backtest,
    format_comparison,
    summary,
    to_json,
)
from signalbox.monitors.definitions.model import Monitor, State, ThresholdCheck
from signalbox.monitors.definitions.threshold import parse_threshold
from signalbox.query import Engine
from signalbox.storage import open_database
from tests.stores import sqlite_url

MIN = 60_000
HOUR = 60 * MIN
NOW = 1_700_002_800_000  # a whole hour
START = NOW - 12 * HOUR
WEB1 = (("host", "web1"),)

# (start minute, length in minutes, value): two critical spikes and two warning-level bumps
SPIKES = [(60, 30, 9.5), (200, 20, 6.0), (400, 30, 9.5), (600, 20, 6.0)]


def monitor(warning: str, critical: str, **kw: Any) -> Monitor:
    check = ThresholdCheck(
        "avg_over_time(image_processing_time[5m])",
        parse_threshold(warning),
        parse_threshold(critical),
        parse_threshold("< 3"),
    )
    return Monitor(
        "image_processing_slow", "Resizes too slow.", check, file="photos.yaml", line=1, **kw
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLMetricStore:
    s = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=FrozenClock(NOW / 1000))
    samples = []
    for minute in range(12 * 60 + 1):
        value = 2.0
        for at, length, v in SPIKES:
            if at <= minute < at + length:
                value = v
        samples.append(Sample("image_processing_time", WEB1, value, START + minute * MIN))
        samples.append(
            Sample("image_processing_time", (("host", "web2"),), 1.0, START + minute * MIN)
        )
    s.write(samples, NOW)
    s.compact(NOW)
    return s


def run(
    store: SQLMetricStore, *monitors: Monitor, repeat_s: float = 4 * 3600
) -> list[MonitorBacktest]:
    return backtest(list(monitors), Engine(store), START, NOW, MIN, default_repeat_s=repeat_s)


def test_reports_each_incident_with_its_peak_and_severity(store: SQLMetricStore) -> None:
    [b] = run(store, monitor("> 4", "> 8"))
    got = [((iv.start_ms - START) // MIN, iv.state, iv.peak, iv.labels) for iv in b.intervals]
    assert [(s, st, p) for s, st, p, _ in got] == [
        (61, State.CRITICAL, 9.5),  # the 5m average passes 4 at the 2nd sample, 8 at the 5th
        (202, State.WARNING, 6.0),
        (401, State.CRITICAL, 9.5),
        (602, State.WARNING, 6.0),
    ]
    assert {labels for *_, labels in got} == {WEB1}
    assert b.firing_ms == sum(iv.duration_ms(NOW) for iv in b.intervals) and b.unknown_ms == 0
    web1 = [t for t in b.result.transitions if t.event == "state" and t.labels == WEB1]
    assert b.notifications.total == len(web1)  # every change of web1 is one notification
    assert summary(b).startswith("4 incidents, ")


def test_a_looser_threshold_shows_fewer_incidents_side_by_side(store: SQLMetricStore) -> None:
    old = run(store, monitor("> 4", "> 8"))
    new = run(store, monitor("> 7", "> 9"))
    assert len(old[0].intervals) == 4 and len(new[0].intervals) == 2
    assert new[0].firing_ms < old[0].firing_ms
    assert new[0].notifications.total < old[0].notifications.total
    lines = format_comparison(new, old, "photos.new.yaml", "photos.yaml")
    assert lines[0] == "image_processing_slow"
    assert lines[1].startswith("  old (photos.yaml): 4 incidents, ")
    assert lines[2].startswith("  new (photos.new.yaml): 2 incidents, ")
    assert "  old incidents:" in lines and "  new incidents:" in lines


def test_a_monitor_only_in_one_file_is_shown_as_not_defined(store: SQLMetricStore) -> None:
    new = run(store, monitor("> 4", "> 8"))
    lines = format_comparison(new, [], "new.yaml", "old.yaml")
    assert lines[1] == "  old (old.yaml): not defined"


def test_repeats_follow_the_monitors_repeat_or_the_default(store: SQLMetricStore) -> None:
    [default] = run(store, monitor("> 4", "> 8"), repeat_s=600)
    [own] = run(store, monitor("> 4", "> 8", repeat_seconds=3600.0), repeat_s=600)
    assert default.notifications.repeat > 0 and own.notifications.repeat == 0
    assert default.repeat_ms == 600_000 and own.repeat_ms == 3_600_000


def test_an_incident_open_at_the_end_has_no_end(store: SQLMetricStore) -> None:
    engine = Engine(store)
    end = START + 75 * MIN  # in the middle of the first spike
    [b] = backtest([monitor("> 4", "> 8")], engine, START, end, MIN, default_repeat_s=3600)
    [iv] = b.intervals
    assert iv.end_ms is None and iv.duration_ms(end) == 14 * MIN
    text = "\n".join(format_backtest(b))
    assert "(still at end)" in text and "14m" in text and "photos.yaml:1" in text


def test_warm_up_judges_the_first_minutes_like_a_running_system(store: SQLMetricStore) -> None:
    start = START + 80 * MIN  # 17 minutes into the first critical spike
    [b] = backtest(
        [monitor("> 4", "> 8", for_seconds=600.0)],
        Engine(store),
        start,
        NOW,
        MIN,
        default_repeat_s=3600,
    )
    first = b.intervals[0]
    assert first.start_ms == start and first.state is State.CRITICAL


def test_json_has_incidents_totals_and_notifications(store: SQLMetricStore) -> None:
    [b] = run(store, monitor("> 4", "> 8"))
    doc = json.loads(json.dumps(to_json(b)))
    assert doc["name"] == "image_processing_slow" and doc["file"] == "photos.yaml"
    first = doc["incidents"][0]
    assert first["labels"] == {"host": "web1"} and first["severity"] == "CRITICAL"
    assert first["start"].endswith("Z") and first["peak"] == 9.5
    assert doc["notifications"]["total"] == sum(
        doc["notifications"][k] for k in ("firing", "repeat", "resolved")
    )
    assert doc["firing_s"] == b.firing_ms / 1000


def test_default_step_is_the_finest_resolution_the_window_can_have() -> None:
    tiers = (Tier(60, 8 * 86400), Tier(300, 35 * 86400), Tier(3600, 400 * 86400))

    def step(since_s: float, evaluation_s: float = 30.0) -> float:
        return default_step_s(
            since_s, raw_retention_s=86400, tiers=tiers, evaluation_s=evaluation_s
        )

    assert step(3600) == 30.0  # within raw retention: as the runner evaluates
    assert step(7 * 86400) == 60.0  # beyond raw: the 1m tier
    assert step(30 * 86400) == 300.0
    assert step(1000 * 86400) == 3600.0
    assert step(7 * 86400, evaluation_s=120.0) == 120.0


def test_series_colliding_without_their_names_are_reported(store: SQLMetricStore) -> None:
    store.write([Sample("image_processing_time_copy", WEB1, 1.0, NOW - MIN)], NOW)
    check = ThresholdCheck('{__name__=~"image_processing_time.*"}', parse_threshold("> 4"))
    m = Monitor("both", "d", check, file="x.yaml", line=3)
    [b] = run(store, m)
    note = dropped_note(b)
    assert note is not None and note.startswith(
        'x.yaml:3: both: several series of the query share the labels {host="web1"}'
    )
    assert to_json(b)["dropped_series"] == [{"host": "web1"}]
    [clean] = run(store, monitor("> 4", "> 8"))
    assert dropped_note(clean) is None


# -- run(): the library call behind `monitors backtest` -------------------------------------

PHOTOS = """\
- name: image_processing_slow
  description: Resizes slower than users tolerate.
  query: avg_over_time(image_processing_time[5m])
  warning: "> 4"
  critical: "> 8"
  recover: "< 3"
- name: photos_backlog
  description: Uploads wait too long.
  queue: {name: photos, high: 100, low: 10}
"""
LOOSER = PHOTOS.replace('"> 4"', '"> 7"').replace('"> 8"', '"> 9"')
HALF_DAY = 12 * 3600.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A project whose configured monitors are ``monitors/photos.yaml``."""
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "photos.yaml").write_text(PHOTOS)
    (tmp_path / "signalbox.toml").write_text('[monitors]\npaths = ["monitors"]\n')
    return load_settings(str(tmp_path / "signalbox.toml"), environ={})


def test_run_replays_one_file_over_the_window_up_to_the_stores_now(
    store: SQLMetricStore, settings: Settings, tmp_path: Path
) -> None:
    photos = tmp_path / "monitors" / "photos.yaml"
    req = bt.BacktestRequest(photos, since_s=HALF_DAY, step_s=60)
    report = bt.run(req, settings, store=store)
    assert report.ok and report.notes() == [] and report.old == ()
    assert (report.window.start_ms, report.window.end_ms, report.window.step_ms) == (
        START,
        NOW,
        MIN,
    )
    slow, backlog = report.new
    assert slow.monitor.name == "image_processing_slow" and len(slow.intervals) == 4
    assert backlog.intervals == [] and backlog.unknown_ms == 12 * HOUR  # no queue metric
    lines = report.text_lines()
    assert lines[0] == "backtest 2023-11-14 11:00:00 -> 2023-11-14 23:00:00 UTC, step 1m"
    assert lines[1] == f"image_processing_slow ({photos}:1)"
    assert lines[2].startswith("  4 incidents, ")
    doc = json.loads(json.dumps(report.to_json()))
    assert (doc["start"], doc["end"], doc["step_s"], doc["file"]) == (
        START / 1000,
        NOW / 1000,
        60,
        str(photos),
    )
    assert "against" not in doc and [m["name"] for m in doc["monitors"]] == [
        "image_processing_slow",
        "photos_backlog",
    ]


def test_run_against_another_file_compares_the_same_names(
    store: SQLMetricStore, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "new.yaml").write_text(LOOSER)
    old = tmp_path / "monitors" / "photos.yaml"
    req = bt.BacktestRequest(tmp_path / "new.yaml", since_s=HALF_DAY, against=old, step_s=60)
    report = bt.run(req, settings, store=store)
    doc = report.to_json()
    assert doc["against"] == str(old)
    slow = doc["monitors"][0]
    assert slow["name"] == "image_processing_slow"
    assert len(slow["old"]["incidents"]) == 4 and len(slow["new"]["incidents"]) == 2
    lines = report.text_lines()
    assert lines[2].startswith(f"  old ({old}): 4 incidents, ")
    assert lines[3].startswith(f"  new ({tmp_path / 'new.yaml'}): 2 incidents, ")


def test_run_keeps_only_the_named_monitors_and_refuses_unknown_names(
    store: SQLMetricStore, settings: Settings, tmp_path: Path
) -> None:
    photos = tmp_path / "monitors" / "photos.yaml"
    req = bt.BacktestRequest(photos, since_s=HALF_DAY, step_s=60, names=("photos_backlog",))
    assert [b.monitor.name for b in bt.run(req, settings, store=store).new] == ["photos_backlog"]
    bad = bt.BacktestRequest(photos, since_s=HALF_DAY, names=("nope", "photos_backlog", "x"))
    with pytest.raises(bt.UnknownMonitors) as e:
        bt.run(bad, settings, store=store)
    assert (e.value.names, e.value.known) == (
        ("nope", "x"),
        ("image_processing_slow", "photos_backlog"),
    )
    assert str(e.value) == (
        f"monitor nope, x: not defined in {photos} "
        "(monitors: image_processing_slow, photos_backlog)"
    )


def test_run_refuses_a_missing_file_and_a_bad_window(
    store: SQLMetricStore, settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=r"missing\.yaml: no such file"):
        bt.run(bt.BacktestRequest(tmp_path / "missing.yaml"), settings, store=store)
    photos = tmp_path / "monitors" / "photos.yaml"
    with pytest.raises(UsageError, match=r"against\.yaml: no such file"):
        bt.run(bt.BacktestRequest(photos, against=tmp_path / "against.yaml"), settings, store=store)
    with pytest.raises(UsageError, match="since_s: expected a positive number of seconds, got 0"):
        bt.BacktestRequest(photos, since_s=0)
    with pytest.raises(UsageError, match="step_s: expected a positive number of seconds, got nan"):
        bt.BacktestRequest(photos, step_s=float("nan"))


def test_lint_errors_fail_the_report_but_the_valid_monitors_still_run(
    store: SQLMetricStore, settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(PHOTOS + "- name: broken\n  description: x\n  query: up\n  warning: 4\n")
    report = bt.run(bt.BacktestRequest(broken, since_s=HALF_DAY), settings, store=store)
    assert not report.ok
    [err] = report.lint_errors
    assert (err.file, err.line, err.monitor, err.key) == (str(broken), 13, "broken", "warning")
    assert report.notes()[0].startswith(f"{broken}:13: broken: warning: bad threshold 4")
    assert [b.monitor.name for b in report.new] == ["image_processing_slow", "photos_backlog"]
    assert len(report.new[0].intervals) == 4


def test_plugin_monitors_are_skipped_and_said_so(
    store: SQLMetricStore, settings: Settings, tmp_path: Path
) -> None:
    f = tmp_path / "plugins.yaml"
    f.write_text("- name: disk\n  description: Disk full.\n  command: /bin/true\n")
    report = bt.run(bt.BacktestRequest(f, since_s=HALF_DAY), settings, store=store)
    assert report.ok and report.new == () and [m.name for m in report.skipped] == ["disk"]
    assert report.notes() == [
        f"{f}:1: disk: a Nagios plugin check has no stored history; not replayed"
    ]
    assert report.text_lines()[1] == f"no monitors to backtest in {f}"


def test_until_ends_the_window_and_progress_counts_every_replay(
    store: SQLMetricStore, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "new.yaml").write_text(LOOSER)
    seen: list[tuple[int, int, str]] = []
    req = bt.BacktestRequest(
        tmp_path / "new.yaml",
        since_s=3600,
        until_ms=START + 2 * HOUR + 30_000,
        against=tmp_path / "monitors" / "photos.yaml",
        step_s=60,
    )
    report = bt.run(
        req, settings, store=store, progress=lambda i, n, m: seen.append((i, n, m.name))
    )
    assert (report.window.start_ms, report.window.end_ms) == (START + HOUR, START + 2 * HOUR)
    assert seen == [
        (0, 4, "image_processing_slow"),
        (1, 4, "photos_backlog"),
        (2, 4, "image_processing_slow"),
        (3, 4, "photos_backlog"),
    ]
    # the first critical spike (minutes 60-90) lies inside: the old thresholds see it, so
    # do the new ones (9.5 > 9)
    assert [len(b.intervals) for b in report.old] == [1, 0]


def test_run_opens_and_closes_the_configured_store_when_given_none(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text(f'store = "sqlite:///{tmp_path / "h.db"}"\n')
    s = load_settings(str(tmp_path / "signalbox.toml"), environ={})
    own = SQLMetricStore(open_database(s.store_url), clock=FrozenClock(NOW / 1000))
    own.write([Sample("image_processing_time", WEB1, 9.5, NOW - m * MIN) for m in range(30)], NOW)
    own.close()
    (tmp_path / "m.yaml").write_text(PHOTOS)
    req = bt.BacktestRequest(tmp_path / "m.yaml", since_s=3600, step_s=60)
    report = bt.run(req, s, clock=FrozenClock(NOW / 1000))
    assert report.window.end_ms == NOW
    [iv] = report.new[0].intervals
    assert iv.state is State.CRITICAL and iv.end_ms is None
