"""The collector's held passes in-process (the end-to-end outage is in test_agent_outage.py):
the bounded buffer itself, a pass whose commit reached the database but whose answer did not
(written again over itself: no point twice, no counter doubled), and a SQLite store on a full
disk through several refused passes (every value at its own time, a file removed meanwhile
ended at the pass that missed it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import settings_from_dict
from signalbox.exceptions import ConfigError, DiskFullError, StoreError
from signalbox.metrics.buffer import HeldPass, PassBuffer, Span, utc
from signalbox.metrics.collect import Collector
from signalbox.metrics.samples import Matcher, MetricMeta, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.statsd.aggregate import StatsdAggregator
from signalbox.metrics.store import Ended, Frame
from signalbox.runtime import build_collector
from signalbox.storage import open_database
from tests.diskfull import small_disk

T0 = 1_800_000_000  # the start of a raw partition
MS = T0 * 1000


def write(path: Path, text: str, clock: FrozenClock) -> None:
    """A spool file written at the clock's time (it would be stale at the real mtime)."""
    path.write_text(text)
    os.utime(path, (clock.now(), clock.now()))


def held(ts_s: int, n: int, **kw: Any) -> HeldPass:
    return HeldPass(ts_s * 1000, [Sample("x", (), float(i)) for i in range(n)], **kw)


# -- the buffer -------------------------------------------------------------------------------
def test_the_buffer_drops_the_oldest_passes_past_its_bound_and_keeps_the_newest_whole() -> None:
    buf = PassBuffer(max_samples=10)
    assert buf.hold(held(1, 4)) is None
    assert buf.hold(held(2, 4)) is None
    drop = buf.hold(held(3, 4))  # 12 > 10: the oldest goes
    assert drop is not None and drop.reason == "bound"
    assert drop.span == Span(1, 4, 1000, 1000)
    assert [p.ts_ms for p in buf.passes] == [2000, 3000] and buf.samples == 8
    drop = buf.hold(held(4, 25))  # alone over the bound: kept, every older one dropped
    assert drop is not None and drop.span == Span(2, 8, 2000, 3000)
    assert [p.ts_ms for p in buf.passes] == [4000] and buf.samples == 25
    assert buf.dropped_samples_total == 12 and buf.dropped_passes_total == 3
    assert buf.stored_oldest().ts_ms == 4000 and not buf
    held_span, stored, dropped = buf.end_episode()
    assert held_span == Span(4, 37, 1000, 4000)
    assert stored == Span(1, 25, 4000, 4000) and dropped == Span(3, 12, 1000, 3000)
    assert buf.end_episode() == (Span(), Span(), Span())  # a new episode starts empty
    assert buf.dropped_samples_total == 12  # totals are since start: a counter


def test_a_dropped_pass_hands_its_stale_markers_spool_states_and_metadata_to_the_next() -> None:
    buf = PassBuffer(max_samples=3)
    meta = MetricMeta("x", "gauge", "X.")
    buf.hold(
        held(
            1,
            2,
            ended=Ended([b"gone-layout"], [("y", ())]),
            spool_files={"a.metrics": b"digest-1", "b.metrics": None},
            metas=[meta],
        )
    )
    buf.hold(held(2, 2, frames=[Frame(b"d", [1.0])], spool_files={"a.metrics": "a=1\n"}))
    (kept,) = buf.passes
    assert kept.ts_ms == 2000 and kept.size == 3  # rows and frame values
    assert kept.spool_files == {"a.metrics": "a=1\n", "b.metrics": None}  # its own win
    assert kept.ended == Ended([b"gone-layout"], [("y", ())])  # ended at its time instead
    assert kept.metas == [meta]


def test_passes_older_than_raw_retention_are_dropped_before_they_are_written() -> None:
    buf = PassBuffer(max_samples=100, max_age_ms=60_000)
    for t in (0, 30, 70, 100):
        buf.hold(held(t, 1))
    drop = buf.expire(130_000)
    assert drop is not None and drop.reason == "age" and drop.span == Span(2, 2, 0, 30_000)
    assert [p.ts_ms for p in buf.passes] == [70_000, 100_000]
    assert buf.expire(10**9) is not None and len(buf) == 1  # the newest stays
    with pytest.raises(ValueError, match="max_samples: at least 1"):
        PassBuffer(max_samples=0)


# -- a commit the client never heard of -------------------------------------------------------
class AnswerLost:
    """A real store whose next write commits and then fails as a connection that broke
    before the answer came back does: the client cannot know it was stored."""

    def __init__(self, store: SQLMetricStore) -> None:
        self.store = store
        self.lose = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def write(self, *args: Any, **kwargs: Any) -> Any:
        result = self.store.write(*args, **kwargs)
        if self.lose:
            self.lose = False
            raise StoreError("server closed the connection unexpectedly")
        return result


def points(store: SQLMetricStore, name: str, end_s: int) -> list[tuple[int, float]]:
    got = store.select([Matcher("__name__", "=", name)], MS, end_s * 1000)
    assert len(got) == 1, got
    return list(zip(got[0].timestamps, got[0].values, strict=True))


def test_a_pass_whose_commit_was_not_heard_is_written_again_over_itself(
    store_url: str, tmp_path: Path
) -> None:
    clock = FrozenClock(float(T0))
    store = SQLMetricStore(open_database(store_url), clock=clock)
    lossy = AnswerLost(store)
    spool = tmp_path / "spool"
    spool.mkdir()
    agg = StatsdAggregator()
    collector = Collector(lossy, spool_dir=spool, host="h", sources=[agg], clock=clock)  # type: ignore[arg-type]
    try:
        for step in range(3):
            text = f'jobs_done={step}\ndepth{{q="a"}}={10 + step}\n'
            write(spool / "jobs.metrics", text, clock)
            agg.add_packet(b"c:1|c", "test")
            lossy.lose = step == 1
            if step == 1:
                with pytest.raises(StoreError, match="closed the connection"):
                    collector.run_once()
                (p,) = collector.buffer.passes
                assert p.frames, "the second pass of a known file shape is a frame"
            else:
                collector.run_once()
            clock.advance(10)
        assert not collector.buffer
        stamps = [MS, MS + 10_000, MS + 20_000]
        end = T0 + 20
        assert points(store, "jobs_done", end) == list(zip(stamps, [0.0, 1.0, 2.0], strict=True))
        assert points(store, "depth", end) == list(zip(stamps, [10.0, 11.0, 12.0], strict=True))
        assert points(store, "c_total", end) == list(zip(stamps, [1.0, 2.0, 3.0], strict=True))
    finally:
        store.close()


# -- SQLite on a full disk --------------------------------------------------------------------
def test_sqlite_on_a_full_disk_gets_every_refused_pass_at_its_own_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        clock = FrozenClock(float(T0))
        store = SQLMetricStore(open_database(f"sqlite:///{disk.path / 'm.db'}"), clock=clock)
        spool = tmp_path / "spool"
        spool.mkdir()
        collector = Collector(store, spool_dir=spool, host="h", clock=clock)
        caplog.set_level(logging.WARNING, "signalbox.collect")
        try:
            write(spool / "b.metrics", "b_value=7\n", clock)
            for step in range(6):
                write(spool / "a.metrics", f"a_value={step}\n", clock)
                if step == 2:
                    (spool / "b.metrics").unlink()  # while the store refuses writes
                if step == 1:
                    disk.fill()
                if step == 5:
                    disk.free()
                if 1 <= step <= 4:
                    with pytest.raises(DiskFullError):
                        collector.run_once()
                    assert collector.buffer.passes[-1].frames  # the shapes it knew: frames
                else:
                    collector.run_once()
                clock.advance(10)
            end = T0 + 50
            stamps = [MS + 10_000 * i for i in range(6)]
            got = points(store, "a_value", end)
            assert got == list(zip(stamps, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], strict=True))
            b = store.select([Matcher("__name__", "=", "b_value")], MS, end * 1000)
            assert b[0].timestamps == stamps[:2] and b[0].stale == [MS + 20_000]
            assert store.latest([Matcher("__name__", "=", "b_value")]) == []
            said = [r.getMessage() for r in caplog.records]
            assert len([m for m in said if m.startswith("holding the collection")]) == 1
            assert f"from {utc(MS + 10_000)}" in said[0]
            (back,) = [m for m in said if m.startswith("the store takes writes again")]
            assert f"of 4 pass(es) at {utc(MS + 10_000)} to {utc(MS + 40_000)}" in back
        finally:
            store.close()


# -- a held pass the store can never take -----------------------------------------------------
class Unreachable:
    """A real store that can be made unreachable: every call refused while ``down``."""

    def __init__(self, store: SQLMetricStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        if not self.down:
            return getattr(self.store, name)

        def refused(*_: object, **__: object) -> Any:
            raise StoreError("cannot connect to the database")

        return refused


def test_a_held_pass_whose_file_shapes_left_the_store_is_dropped_and_said_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FrozenClock(float(T0))
    real = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'm.db'}"), clock=clock)
    store = Unreachable(real)
    spool = tmp_path / "spool"
    spool.mkdir()
    collector = Collector(store, spool_dir=spool, host="h", clock=clock)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, "signalbox.collect")
    try:
        for step in range(4):
            write(spool / "a.metrics", f"a_value={step}\n", clock)
            store.down = step == 2
            if step == 2:
                with pytest.raises(StoreError):
                    collector.run_once()
                assert collector.buffer.passes[0].frames
                with real.db.transaction():  # meanwhile retention drops the file's shape
                    real.db.execute("DELETE FROM metric_layout_series")
                    real.db.execute("DELETE FROM metric_layouts")
            else:
                collector.run_once()
            clock.advance(10)
        assert not collector.buffer
        assert real.latest([Matcher("__name__", "=", "a_value")])[0][2:] == (MS + 30_000, 3.0)
        said = [r.getMessage() for r in caplog.records]
        (refused,) = [m for m in said if "no longer has" in m]
        dropped = collector.buffer.dropped_samples_total
        assert dropped > 0
        assert refused.startswith(f"dropped {dropped} samples of 1 pass(es) at {utc(MS + 20_000)}")
    finally:
        real.close()


# -- the setting --------------------------------------------------------------------------------
def test_buffer_max_samples_reaches_the_agents_collector_and_a_bad_one_is_named(
    tmp_path: Path,
) -> None:
    def settings(collect: dict[str, object]) -> Any:
        return settings_from_dict(
            {"collect": collect}, source="sb.toml", base_dir=tmp_path, environ={}
        )

    assert settings({}).metrics.buffer_max_samples == 250_000
    s = settings({"buffer_max_samples": 1_000})
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'm.db'}"))
    try:
        agents = build_collector(s, store, hold=True)
        assert agents.hold and agents.buffer.max_samples == 1_000
        assert agents.buffer.max_age_ms == s.metrics.retention.raw_s * 1000
        assert not build_collector(s, store).hold  # collect --once: exits, holds nothing
    finally:
        store.close()
    for bad in (0, -5):
        with pytest.raises(ConfigError, match=r"collect\.buffer_max_samples") as e:
            settings({"buffer_max_samples": bad})
        assert "sb.toml" in str(e.value) and "a positive number of samples" in str(e.value)
