"""The demo's loop, closed: the simulated database stays busy, ``demo_db_overloaded`` goes
CRITICAL and switches ``demo_reprocessing`` off, the reprocessing jobs wait behind the flag
after the load has fallen (the metric gate open again), and an operator's switch back on
lets them run. The demo's own config, monitors and flags files (as ``serve --demo`` writes
them), a SQLite store, the monitor runner ``serve`` uses and the real worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import load_settings
from signalbox.demo.reprocess import (
    FLAG_NAME,
    LOAD_METRIC,
    Reprocessing,
    demo_tasks_settings,
    install,
)
from signalbox.demo.workspace import prepare_config, write_flags, write_monitors
from signalbox.flags import runtime
from signalbox.flags.declarations import load_declarations
from signalbox.flags.model import FlagChange
from signalbox.flags.store import SQLFlagStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors.definitions.load import load_monitors
from signalbox.monitors.engine.actions import undeclared_flags
from signalbox.monitors.engine.runner import MonitorRunner
from signalbox.query import Engine
from signalbox.storage import open_database
from signalbox.tasks.memstore import MemoryQueueStore
from signalbox.tasks.registry import Registry
from signalbox.tasks.worker import Worker


@pytest.fixture
def no_flags_client() -> Iterator[None]:
    runtime.reset()
    yield
    runtime.reset()


def test_the_demos_monitors_name_only_flags_its_flags_file_declares(tmp_path: Path) -> None:
    ws = prepare_config(None, tmp_path, None)
    settings = load_settings(str(ws.config))
    monitors = write_monitors(settings.monitors.paths, ws.config)
    flags = write_flags(settings.flags.paths)
    assert flags is not None and flags.parent == tmp_path / ".signalbox" / "demo" / "flags"
    decls = load_declarations([flags], code=())
    assert decls.ok and decls.flags[FLAG_NAME].default.switch == "on"
    loaded = load_monitors([monitors])
    assert loaded.errors == () and undeclared_flags(loaded.monitors, decls.flags) == []
    [m] = [m for m in loaded.monitors if m.on_critical is not None]
    assert (m.name, m.on_critical.flag, m.on_critical.set) == (  # type: ignore[union-attr]
        "demo_db_overloaded",
        FLAG_NAME,
        "off",
    )
    assert m.on_recover is None  # an operator turns it back on: the demo says how
    assert "flags set demo_reprocessing on" in ws.config.read_text()


def test_an_earlier_demos_config_without_a_flags_folder_gets_no_flags_written(
    tmp_path: Path,
) -> None:
    assert write_flags([tmp_path / "flags"]) is None and not (tmp_path / "flags").exists()


def test_the_loop_closes_monitor_switches_off_jobs_wait_operator_switches_on(
    tmp_path: Path, no_flags_client: None
) -> None:
    ws = prepare_config(None, tmp_path, None)
    settings = load_settings(str(ws.config))
    write_monitors(settings.monitors.paths, ws.config)
    write_flags(settings.flags.paths)
    store = SQLMetricStore(open_database(settings.store_url))
    try:
        runner = MonitorRunner.from_settings(settings, store, store.db)
        now = int(time.time() * 1000)
        # the database stays busy for longer than the monitor's `for: 20s`, then quiets down
        for at, load in ((now - 60_000, 62.0), (now - 30_000, 63.0), (now - 5_000, 14.0)):
            store.write([Sample(LOAD_METRIC, (("db", "photos-db"),), load, at)], at)
            runner.run_pass(at)
        flags = SQLFlagStore(store.db)
        [off] = flags.history(FLAG_NAME)
        assert off.by == "monitor:demo_db_overloaded" and off.new.switch == "off"
        assert off.reason.startswith("OK -> CRITICAL: ")
        states = runner.state.series("demo_db_overloaded")["demo_db_overloaded"]
        assert [r.state.state.value for r in states.values()] == ["OK"]  # recovered...
        assert flags.get(FLAG_NAME).state.switch == "off"  # type: ignore[union-attr]  # ...flag stays off

        registry, queue = Registry(), MemoryQueueStore()
        task = install(Engine(store), registry, settings=settings)
        ids = Reprocessing(task, queue, photos=5).enqueue_batch()
        clock = FrozenClock(time.time())
        tasks = demo_tasks_settings(settings.tasks)

        def burst() -> None:
            Worker(queue, registry=registry, settings=tasks, clock=clock).run(burst=True)

        burst()  # the load is low (the metric gate is open), the flag holds the jobs
        [s] = queue.stats(int(clock.now() * 1000))
        assert (s.scheduled, s.outcomes["done"], s.outcomes["failed"]) == (len(ids), 0, 0)
        [(gate, reason, held)] = s.holding
        assert (gate, reason, held) == (f"flag:{FLAG_NAME}", f"flag {FLAG_NAME} is off", len(ids))

        # the operator turns it back on (as the flags page or `flags set` do)
        flags.set(
            FLAG_NAME, FlagChange(switch="on"), by="alice (dashboard)", reason="load is normal",
            now_ms=int(time.time() * 1000),
        )  # fmt: skip
        cache = runtime.current()
        assert cache is not None and cache.refresh()  # within [flags] refresh, here at once
        time.sleep(1.05)  # the gate's decision is cached for a second
        clock.advance(60)  # past the longest deferral
        burst()
        [s] = queue.stats(int(clock.now() * 1000))
        assert (s.scheduled, s.holding, s.outcomes["done"]) == (0, (), len(ids))
        assert [e.by for e in flags.history(FLAG_NAME)] == [
            "alice (dashboard)",
            "monitor:demo_db_overloaded",
        ]
    finally:
        store.close()
