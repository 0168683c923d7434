"""Backtests over a real SQLite store: incidents, firing time, notifications, old vs new."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
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


def monitor(warning: str, critical: str, **kw: object) -> Monitor:
    check = ThresholdCheck(
        "avg_over_time(image_processing_time[5m])",
        parse_threshold(warning),
        parse_threshold(critical),
        parse_threshold("< 3"),
    )
    return Monitor(
        "image_processing_slow", "Resizes too slow.", check, file="photos.yaml", line=1, **kw
    )  # type: ignore[arg-type]


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
    kw = {"raw_retention_s": 86400, "tiers": tiers, "evaluation_s": 30.0}
    assert default_step_s(3600, **kw) == 30.0  # within raw retention: as the runner evaluates
    assert default_step_s(7 * 86400, **kw) == 60.0  # beyond raw: the 1m tier
    assert default_step_s(30 * 86400, **kw) == 300.0
    assert default_step_s(1000 * 86400, **kw) == 3600.0
    assert default_step_s(7 * 86400, **{**kw, "evaluation_s": 120.0}) == 120.0  # type: ignore[arg-type]


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
