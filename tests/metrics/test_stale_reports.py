"""A stale spool file is reported once, not every pass; many at once are counted, not listed.

Its reason names its age, which grows each pass: keyed on the text, the same stale file was
warned about every interval, forever, and a serve started on 2,000 old files wrote 2,000
warnings a minute.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import STALE_LOGGED, Collector
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.spool import SpoolProblem

NOW = 1_700_000_000.0


def put(path: Path, text: str, age_s: float) -> None:
    path.write_text(text)
    os.utime(path, (NOW - age_s, NOW - age_s))


def test_a_stale_file_is_reported_once_until_it_is_collected_again(tmp_path: Path) -> None:
    put(tmp_path / "a.metrics", "x=1\n", age_s=1000)
    put(tmp_path / "b.metrics", "y=1\n", age_s=0)
    clock, got = FrozenClock(NOW), list[SpoolProblem]()
    c = Collector(
        MemoryMetricStore(), spool_dir=tmp_path, host="h", clock=clock, on_problem=got.append
    )
    for _ in range(3):
        c.run_once()
        clock.advance(60)
    assert [(p.file, p.kind) for p in got] == [("a.metrics", "stale")]
    assert "not updated for 1000s" in got[0].reason
    put(tmp_path / "a.metrics", "x=2\n", age_s=-clock.now() + NOW)  # written now: fresh
    c.run_once()
    assert len(got) == 1
    clock.advance(400)  # b.metrics (and a.metrics again) past the 300 s default
    c.run_once()
    assert sorted((p.file, p.kind) for p in got[1:]) == [
        ("a.metrics", "stale"),
        ("b.metrics", "stale"),
    ]


def test_many_newly_stale_files_are_counted_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = STALE_LOGGED + 15
    for i in range(n):
        put(tmp_path / f"f{i:03d}.metrics", f"m{i}=1\n", age_s=1000)
    put(tmp_path / "fresh.metrics", "ok=1\n", age_s=0)
    (tmp_path / "notes.txt").write_text("not a spool file\n")
    clock = FrozenClock(NOW)
    c = Collector(MemoryMetricStore(), spool_dir=tmp_path, host="h", clock=clock)
    with caplog.at_level(logging.INFO, logger="signalbox"):
        report = c.run_once()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    named = [m for m in warned if ": stale: not updated for" in m]
    assert len(named) == STALE_LOGGED
    assert warned[-1] == (
        "spool: 15 more files are stale (not updated within their stale_after); "
        "their values are not collected"
    )
    assert len(warned) == STALE_LOGGED + 1
    # other kinds are never folded into the count
    assert any("notes.txt: ignored" in r.getMessage() for r in caplog.records)
    assert report is not None
    caplog.clear()
    clock.advance(60)
    with caplog.at_level(logging.INFO, logger="signalbox"):
        c.run_once()
    assert [
        r for r in caplog.records if r.levelno >= logging.INFO and "spool" in r.getMessage()
    ] == []
