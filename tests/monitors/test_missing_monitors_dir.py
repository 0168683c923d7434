"""A missing *default* monitors directory is "no monitors yet" (said once at INFO), not an
error logged by every `serve`; a missing *configured* path is still a lint error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from signalbox.config import settings_from_dict
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.monitors.outbox.store import Outbox
from signalbox.storage import open_database
from tests.stores import sqlite_url

MONITOR = "- name: slow\n  description: Slow.\n  query: latency\n  critical: '> 8'\n"


def _runner(tmp_path: Path, raw: dict[str, object]) -> MonitorRunner:
    settings = settings_from_dict(raw, source="signalbox.toml", base_dir=tmp_path, environ={})
    db = open_database(sqlite_url(tmp_path))
    return MonitorRunner.from_settings(
        settings, MemoryMetricStore(), db, environ={}, outbox=Outbox(db)
    )


def test_a_missing_default_directory_is_no_monitors_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = _runner(tmp_path, {})
    caplog.set_level(logging.INFO, logger="signalbox.monitors")
    for _ in range(3):
        result = runner.load()
        assert (tuple(result.monitors), result.errors) == ((), ())
    said = [r for r in caplog.records if "no monitors yet" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
    assert str(tmp_path / "monitors") in said[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    # created later: its monitors load at the next pass, as any change to the files does
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "m.yaml").write_text(MONITOR)
    assert [m.name for m in runner.load().monitors] == ["slow"]


def test_a_missing_configured_path_is_still_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for paths in (["monitors"], ["ops/monitors"]):
        runner = _runner(tmp_path, {"monitors": {"paths": paths}})
        with caplog.at_level(logging.INFO, logger="signalbox.monitors"):
            result = runner.load()
        (error,) = result.errors
        assert error.message == "no such file or directory"
        assert error.file == str(tmp_path / paths[0])
        assert any(
            r.levelno == logging.ERROR and "monitor not loaded" in r.getMessage()
            for r in caplog.records
        )
        caplog.clear()
