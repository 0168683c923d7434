"""Gates over signalbox's own data: ``metric`` (PromQL over the metric store) and ``monitor``
(monitor state), on a real SQLite store; plus ``flag`` and ``file``."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.exceptions import QueryError
from signalbox.gates import file, flag, metric, monitor
from signalbox.gates.flag import set_flag_source
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.monitors.definitions.model import State
from signalbox.monitors.engine.evaluate import SeriesState
from signalbox.monitors.state.records import SeriesRecord
from signalbox.monitors.state.store import MonitorStore
from signalbox.query import Engine
from signalbox.storage import Database, open_database
from tests.stores import sqlite_url

NOW = 1_700_000_000.0


@pytest.fixture
def store() -> MemoryMetricStore:
    return MemoryMetricStore()


def _write(
    store: MemoryMetricStore, name: str, value: float, at: float = NOW, **labels: str
) -> None:
    store.write([Sample(name, tuple(sorted(labels.items())), value)], int(at * 1000))


def test_metric_below_closes_at_the_bound_and_reopens_under_the_low_mark(
    store: MemoryMetricStore,
) -> None:
    clock = FrozenClock(NOW)
    g = metric("sum(http_requests)", below=500, engine=Engine(store), now=clock.now, interval=0)
    for value, is_open in [(100, True), (500, False), (450, False), (399, True)]:
        clock.advance(15)
        _write(store, "http_requests", value, clock.now(), route="/")
        d = g.check()
        assert d.open is is_open, (value, d.reason)
        assert d.reading["values"] == {"sum(http_requests)": value}
    clock.advance(15)
    _write(store, "http_requests", 600, clock.now(), route="/")
    assert g.check().reason == "sum(http_requests) 600 >= 500 (reopens below 400)"


def test_metric_every_series_must_be_within_and_the_reason_names_the_one_that_is_not(
    store: MemoryMetricStore,
) -> None:
    clock = FrozenClock(NOW)
    _write(store, "replica_lag", 2, shard="1")
    _write(store, "replica_lag", 40, shard="7")
    g = metric("replica_lag", below=(30, 10), engine=Engine(store), now=clock.now, interval=0)
    d = g.check()
    assert not d.open
    assert d.reason == 'replica_lag{shard="7"} 40 >= 30 (reopens below 10)'
    assert d.reading["values"] == {'replica_lag{shard="1"}': 2, 'replica_lag{shard="7"}': 40}


def test_metric_above_is_a_floor(store: MemoryMetricStore) -> None:
    clock = FrozenClock(NOW)
    _write(store, "disk_free_ratio", 0.05)
    g = metric("disk_free_ratio", above=(0.1, 0.2), engine=Engine(store), now=clock.now, interval=0)
    d = g.check()
    assert not d.open and d.reason == "disk_free_ratio 0.05 <= 0.1 (reopens above 0.2)"


def test_metric_no_data_closes_unless_told_otherwise(store: MemoryMetricStore) -> None:
    clock = FrozenClock(NOW)
    d = metric("nothing_here", below=1, engine=Engine(store), now=clock.now).check()
    assert not d.open and "returned no data" in d.reason
    d = metric("nothing_here", below=1, no_data="open", engine=Engine(store), now=clock.now).check()
    assert d.open


def test_metric_stale_data_is_no_data(store: MemoryMetricStore) -> None:
    """A collector that stopped 10 minutes ago: past the 5 minute lookback, no value."""
    _write(store, "http_requests", 1, NOW - 600)
    d = metric("http_requests", below=500, engine=Engine(store), now=lambda: NOW).check()
    assert not d.open and "no data" in d.reason


def test_metric_bad_query_is_refused_when_built() -> None:
    with pytest.raises(QueryError):
        metric("rate(x[1m]", below=1)
    with pytest.raises(ValueError, match="below= or above="):
        metric("x")


def test_metric_reads_the_configured_sqlite_store(tmp_path: Path) -> None:
    from signalbox.config import settings_from_dict
    from signalbox.runtime import open_metric_store

    settings = settings_from_dict({}, source="(test)", base_dir=tmp_path)
    s = open_metric_store(settings)
    s.write([Sample("queue_depth", (("queue", "photos"),), 9000)], int(NOW * 1000))
    g = metric("max(queue_depth)", below=1000, settings=settings, now=lambda: NOW)
    d = g.check()
    assert not d.open and d.reason.startswith("max(queue_depth) 9000 >= 1000"), d.reason


@pytest.fixture
def mdb(tmp_path: Path) -> Database:
    return open_database(sqlite_url(tmp_path))


def _state(
    db: Database, name: str, state: State, at_ms: int, reason: str = "", **labels: str
) -> None:
    st = SeriesState(state=state, since=at_ms, reason=reason)
    MonitorStore(db).save_series(
        [SeriesRecord(name, tuple(sorted(labels.items())), st, updated_ms=at_ms)]
    )


def test_monitor_gate_is_open_only_while_every_series_is_ok(mdb: Database) -> None:
    now_ms = int(NOW * 1000)
    g = monitor("photo_db", db=mdb, now=lambda: NOW, interval=0)
    _state(mdb, "photo_db", State.OK, now_ms, shard="1")
    _state(mdb, "photo_db", State.OK, now_ms, shard="7")
    assert g.check().open
    _state(mdb, "photo_db", State.CRITICAL, now_ms, "lag 40 > 30", shard="7")
    d = g.check()
    assert not d.open
    assert d.reason == 'monitor photo_db{shard="7"} is CRITICAL: lag 40 > 30'
    assert d.reading["series"] == {'{shard="1"}': "OK", '{shard="7"}': "CRITICAL"}


def test_monitor_gate_fails_closed_on_unknown_and_stale_state(mdb: Database) -> None:
    d = monitor("no_such_monitor", db=mdb, now=lambda: NOW).check()
    assert not d.open and "no recorded state" in d.reason
    _state(mdb, "old", State.OK, int((NOW - 3600) * 1000))
    d = monitor("old", db=mdb, now=lambda: NOW).check()
    assert not d.open and "state is 1h old (max 10m)" in d.reason
    assert monitor("old", db=mdb, now=lambda: NOW, max_age=None).check().open


def test_flag_gate_reads_the_declared_default_then_the_store(tmp_path: Path) -> None:
    from signalbox import flags
    from signalbox.config import settings_from_dict
    from signalbox.flags.model import parse_setting
    from signalbox.flags.store import open_flag_store

    flags_dir = tmp_path / "flags"
    flags_dir.mkdir()
    (flags_dir / "ops.yaml").write_text(
        "- {name: reprocessing, description: r, default: true}\n"
        "- {name: backfill, description: b, default: 'off'}\n"
    )
    url = sqlite_url(tmp_path)
    settings = settings_from_dict({"store": url}, source="t", base_dir=tmp_path)
    try:
        assert flag("reprocessing", path=flags_dir, settings=settings, interval=0).check().open
        d = flag("backfill", path=flags_dir, settings=settings).check()
        assert not d.open and d.reason == "flag backfill is off"
        d = flag("nope", path=flags_dir, settings=settings).check()
        assert not d.open and "not declared" in d.reason
        s = open_flag_store(url)
        s.set("reprocessing", parse_setting("off"), by="t", reason="hold", now_ms=0)
        s.close()
        current = flags.current()
        assert current is not None and current.refresh()
        d = flag("reprocessing", path=flags_dir, settings=settings, interval=0).check()
        assert not d.open and d.reason == "flag reprocessing is off"
    finally:
        flags.reset()


def test_flag_gate_asks_an_installed_flag_source_instead() -> None:
    old = set_flag_source(lambda name: name == "on_flag")
    try:
        assert flag("on_flag", path="/nonexistent").check().open
        assert not flag("other", path="/nonexistent").check().open
    finally:
        set_flag_source(old)


def test_file_gate_holds_while_the_file_exists_and_shows_its_note(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    g = file(hold, interval=0)
    assert g.check().open
    hold.write_text("backup of shard 7 running\nsecond line ignored\n")
    d = g.check()
    assert not d.open and d.reason == f"throttle file {hold} exists: backup of shard 7 running"
    hold.unlink()
    assert g.check().open
    hold.touch()
    assert g.check().reason == f"throttle file {hold} exists"
