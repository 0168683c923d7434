"""Staleness through the collector and the lookback rule.

A spool file's series end at the pass where the file went stale, was removed or lost a line
(a stale marker, as Prometheus writes when a target drops a series): ``latest`` (what
``/metrics`` and monitors read) drops them at once, and an instant selector at or after the
marker finds nothing, instead of the value lingering for the lookback window.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Matcher, Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.metrics.store import Ended, MetricStore
from signalbox.query.lookback import latest_at
from signalbox.storage import open_database
from tests.stores import pg_schema_url, sqlite_url

NOW = 1_700_000_000.0
H = (("host", "h"),)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.service("postgresql")),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetricStore]:
    clock = FrozenClock(NOW)
    if request.param == "memory":
        yield MemoryMetricStore()
        return
    if request.param == "sqlite":
        s = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=clock)
        yield s
        s.close()
        return
    with pg_schema_url() as url:
        s = SQLMetricStore(open_database(url), clock=clock)
        yield s
        s.close()


class Pass:
    """A spool dir, a collector over it, and a clock moved 15 s per pass."""

    def __init__(self, store: MetricStore, tmp_path: Path) -> None:
        self.store = store
        self.clock = FrozenClock(NOW)
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        self.collector = Collector(
            store, spool_dir=self.spool, host="h", clock=self.clock, stale_after_s=60
        )
        self.n = 0

    @property
    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def write(self, name: str, text: str, *, age_s: float = 0.0) -> None:
        path = self.spool / name
        path.write_text(text)
        t = self.clock.now() - age_s
        os.utime(path, (t, t))

    def run(self, *, fresh: bool = False) -> None:
        """One pass; ``fresh``: by a new collector, as ``collect --once`` from cron runs."""
        self.n += 1
        self.clock.set(NOW + 15 * self.n)
        if fresh:
            self.collector = Collector(
                self.store, spool_dir=self.spool, host="h", clock=self.clock, stale_after_s=60
            )
        self.collector.run_once()

    def latest(self, name: str) -> dict[Labels, float]:
        rows = self.store.latest([Matcher("__name__", "=", name)])
        return {labels: v for _, labels, _, v in rows}

    def markers(self, name: str) -> dict[Labels, list[int]]:
        """Marker times of each series of ``name`` since the first pass."""
        got = self.store.select([Matcher("__name__", "=", name)], int(NOW * 1000), self.now_ms)
        return {sp.labels: sp.stale for sp in got if sp.stale}


@pytest.fixture
def p(store: MetricStore, tmp_path: Path) -> Pass:
    return Pass(store, tmp_path)


def frames_path(p: Pass, name: str, text: str, passes: int = 2) -> None:
    """Write a file and run passes: the first registers its layout, the next send frames."""
    for _ in range(passes):
        p.write(name, text)
        p.run()


def test_a_removed_file_ends_its_series_at_that_pass(p: Pass) -> None:
    frames_path(p, "app.metrics", "jobs=3\nload=1.5\n")
    frames_path(p, "other.metrics", "other=1\n", passes=1)
    assert p.latest("jobs") == {H: 3.0}
    (p.spool / "app.metrics").unlink()
    p.write("other.metrics", "other=2\n")
    p.run()
    assert p.latest("jobs") == {} and p.latest("load") == {}
    assert p.latest("other") == {H: 2.0}  # another file's series go on
    assert p.markers("jobs") == {H: [p.now_ms]}
    # the file's own age and limit self-metrics end too
    file_labels = (("file", "app.metrics"), ("host", "h"))
    assert file_labels not in p.latest("signalbox_spool_file_age_seconds")
    assert (("file", "other.metrics"), ("host", "h")) in p.latest(
        "signalbox_spool_file_age_seconds"
    )
    # a marker is written once, not every pass
    p.write("other.metrics", "other=3\n")
    p.run()
    assert p.markers("jobs") == {H: [p.now_ms - 15_000]}


def test_a_file_gone_stale_ends_its_series_and_comes_back_when_rewritten(p: Pass) -> None:
    frames_path(p, "app.metrics", "jobs=3\n")
    p.write("app.metrics", "jobs=4\n", age_s=120)  # past stale_after (60 s)
    p.run()
    assert p.latest("jobs") == {}
    ended_at = p.now_ms
    p.run()  # still stale: nothing more to end
    assert p.markers("jobs") == {H: [ended_at]}
    p.write("app.metrics", "jobs=5\n")
    p.run()
    assert p.latest("jobs") == {H: 5.0}  # a newer sample revives it


def test_a_lost_line_ends_that_series_only_on_the_frames_path(p: Pass) -> None:
    frames_path(p, "app.metrics", "jobs=3\nload=1.5\nqueue_a=1\n", passes=3)
    p.write("app.metrics", "jobs=4\nqueue_a=2\n")  # a new shape: load is gone
    p.run()
    assert p.latest("load") == {}
    assert p.latest("jobs") == {H: 4.0} and p.latest("queue_a") == {H: 2.0}
    assert p.markers("load") == {H: [p.now_ms]}
    assert p.markers("jobs") == {} and p.markers("queue_a") == {}
    frames_path(p, "app.metrics", "jobs=5\nqueue_a=3\n")  # the new shape as frames
    assert p.markers("load") == {H: [p.now_ms - 30_000]}
    assert p.latest("jobs") == {H: 5.0}


def test_a_lost_line_of_a_prom_file_ends_that_series(p: Pass) -> None:
    text = '# TYPE up gauge\nup{job="a"} 1\nup{job="b"} 1\n'
    frames_path(p, "app.prom", text)
    p.write("app.prom", '# TYPE up gauge\nup{job="a"} 1\n')
    p.run()
    assert p.latest("up") == {(("host", "h"), ("job", "a")): 1.0}
    assert p.markers("up") == {(("host", "h"), ("job", "b")): [p.now_ms]}
    p.write("app.prom", '# TYPE up gauge\nup{job="a"} 1\n')
    p.run()
    assert list(p.markers("up").values()) == [[p.now_ms - 15_000]]  # once


def test_a_bad_line_ends_its_series_and_a_fixed_file_revives_it(p: Pass) -> None:
    frames_path(p, "app.metrics", "jobs=3\nload=1.5\n")
    p.write("app.metrics", "jobs=4\nload=oops\n")  # parsed the long way: load not stored
    p.run()
    assert p.latest("load") == {} and p.latest("jobs") == {H: 4.0}
    frames_path(p, "app.metrics", "jobs=5\nload=2\n")
    assert p.latest("load") == {H: 2.0}


def test_a_file_changed_shape_keeps_every_series_it_still_has(p: Pass) -> None:
    frames_path(p, "app.metrics", "jobs=3\n")
    p.write("app.metrics", "jobs=4\nload=1\n")  # a line added: nothing ends
    p.run()
    assert p.markers("jobs") == {}
    assert p.latest("jobs") == {H: 4.0} and p.latest("load") == {H: 1.0}


def test_a_refused_pass_ends_nothing_until_one_is_stored(p: Pass, store: MetricStore) -> None:
    """The state between passes moves only with a stored write: a pass the store refused
    (here: a file naming a series another file has, redone without frames) still ends
    what went away."""
    frames_path(p, "a.metrics", "shared=1\nonly_a=1\n")
    p.write("b.metrics", "shared=9\nonly_b=7\n")
    p.run()  # a duplicate: the pass is redone without frames, and stored
    assert p.latest("only_b") == {H: 7.0}
    (p.spool / "b.metrics").unlink()
    p.write("a.metrics", "shared=2\nonly_a=2\n")
    p.run()
    assert p.latest("only_b") == {}
    assert p.latest("shared") == {H: 2.0}


def test_a_new_process_ends_what_went_away_since_the_last_one(p: Pass) -> None:
    """``collect --once`` from cron: every pass a new collector, the file states from the
    store."""
    for i in range(3):
        p.write("app.metrics", f"jobs={i}\nload=1\n")
        p.write("app.prom", 'up{job="a"} 1\nup{job="b"} 1\n')
        p.run(fresh=True)
    kept = p.store.spool_files(H)
    assert set(kept) == {"app.metrics", "app.prom"} and isinstance(kept["app.metrics"], bytes)
    assert p.markers("jobs") == {} and p.markers("up") == {}
    (p.spool / "app.metrics").unlink()
    p.write("app.prom", 'up{job="a"} 2\n')
    p.run(fresh=True)
    assert p.latest("jobs") == {} and p.latest("load") == {}
    assert p.latest("up") == {(("host", "h"), ("job", "a")): 2.0}
    ended_at = p.now_ms
    assert p.markers("up") == {(("host", "h"), ("job", "b")): [ended_at]}
    assert (("file", "app.metrics"), ("host", "h")) not in p.latest(
        "signalbox_spool_file_age_seconds"
    )
    assert set(p.store.spool_files(H)) == {"app.prom"}
    p.write("app.prom", 'up{job="a"} 3\n')
    p.run(fresh=True)
    assert p.markers("jobs") == {H: [ended_at]}  # once
    assert p.markers("up") == {(("host", "h"), ("job", "b")): [ended_at]}


def test_a_file_whose_series_stay_is_not_saved_again_by_each_new_process(p: Pass) -> None:
    # read the long way every pass: non-ASCII text has no shape (see prometheus_shape)
    p.write("app.prom", 'up{job="ä"} 1\n')
    p.run(fresh=True)
    for i in range(2, 4):
        p.write("app.prom", f'up{{job="ä"}} {i}\n')
        p.run(fresh=True)
    assert p.store.spool_files(H) == {"app.prom": 'up{job="ä"} 1\n'}  # the same series
    assert p.latest("up") == {(("host", "h"), ("job", "ä")): 3.0}


# -- the lookback rule, and with the store ---------------------------------------------------


def test_latest_at_blanks_steps_from_a_marker_to_the_next_sample() -> None:
    ts = [0, 10_000, 20_000, 60_000]
    vs = [1.0, 2.0, 3.0, 4.0]
    ends = list(range(0, 90_000, 5_000))
    plain = latest_at(ts, vs, ends, 300_000)
    got = latest_at(ts, vs, ends, 300_000, stale=[30_000])
    want = [None if 30_000 <= e < 60_000 else v for e, v in zip(ends, plain, strict=True)]
    assert got == want
    assert got[ends.index(25_000)] == 3.0 and got[ends.index(30_000)] is None
    assert got[ends.index(60_000)] == 4.0
    # a marker at a sample's own time ends it there; one after the last, for good
    assert latest_at(ts, vs, [20_000, 25_000], 300_000, stale=[20_000]) == [None, None]
    assert latest_at(ts, vs, [60_000, 90_000], 300_000, stale=[70_000]) == [4.0, None]
    # markers before the steps, or none at all, change nothing
    assert latest_at(ts, vs, ends, 300_000, stale=[]) == plain
    assert latest_at(ts, vs, ends[12:], 300_000, stale=[-5]) == plain[12:]


def reference(
    ts: list[int], vs: list[float], ends: list[int], lookback: int, stale: list[int]
) -> list[float | None]:
    """The rule spelled out per step: the newest sample at or before the end and inside the
    lookback, unless the newest marker at or before the end is not older than it."""
    out: list[float | None] = []
    for e in ends:
        at = [i for i, t in enumerate(ts) if e - lookback < t <= e]
        marks = [m for m in stale if m <= e]
        if not at or (marks and marks[-1] >= ts[at[-1]]):
            out.append(None)
        else:
            out.append(vs[at[-1]])
    return out


@pytest.mark.parametrize("seed", range(40))
def test_latest_at_with_markers_follows_the_rule_on_both_paths(seed: int) -> None:
    """Both ways of computing the lookback (the slice for regular series read at regular
    steps, bisection otherwise) blank the same steps around markers."""
    rng = random.Random(seed)
    d = rng.choice([10_000, 15_000, 60_000])
    ts = list(range(0, d * rng.randint(2, 60), d))
    if seed % 2:  # a gap: the bisecting path after it
        del ts[rng.randrange(1, len(ts))]
    vs = [float(i) for i in range(len(ts))]
    step = d * rng.choice([1, 2, 4])
    ends = list(range(rng.randrange(0, 3) * d, ts[-1] + 10 * d, step))
    stale = sorted(rng.sample(range(-d, ts[-1] + 5 * d, 5_000), rng.randint(1, 4)))
    lookback = rng.choice([d * 3, 300_000])
    assert latest_at(ts, vs, ends, lookback, stale=stale) == reference(
        ts, vs, ends, lookback, stale
    )


def test_an_instant_read_right_after_the_marker_finds_nothing(store: MetricStore) -> None:
    """What the engine does per instant selector: select the window with its lookback, then
    ``latest_at`` with the series' markers (the engine passes ``stale=sp.stale``)."""
    t0 = int(NOW * 1000)
    for i in range(4):
        store.write([Sample("jobs", (), float(i))], t0 + i * 15_000, add_labels=H)
    ended = t0 + 60_000
    store.write([], ended, add_labels=H, ended=Ended(series=[("jobs", ())]))
    ends = [ended - 1, ended, ended + 1, ended + 120_000]
    lookback = 300_000
    (sp,) = store.select([Matcher("__name__", "=", "jobs")], ends[0] - lookback, ends[-1])
    assert sp.stale == [ended]
    got = latest_at(sp.timestamps, sp.values, ends, lookback, stale=sp.stale)
    assert got == [3.0, None, None, None]
    # without the markers, the value would linger for the whole lookback
    assert latest_at(sp.timestamps, sp.values, ends, lookback) == [3.0, 3.0, 3.0, 3.0]


def test_the_engine_answers_nothing_after_the_marker(store: MetricStore) -> None:
    """Through the query engine: needs engine.py's ``_instant_selector`` to pass
    ``stale=sp.stale`` to ``latest_at``."""
    from signalbox.query import Engine

    t0 = int(NOW * 1000)
    for i in range(4):
        store.write([Sample("jobs", (), float(i))], t0 + i * 15_000, add_labels=H)
    ended = t0 + 60_000
    store.write([], ended, add_labels=H, ended=Ended(series=[("jobs", ())]))
    engine = Engine(store, lookback_ms=300_000)
    before = engine.instant("jobs", ended - 1).vector
    assert [v for _, v in before] == [3.0]
    assert engine.instant("jobs", ended).vector == []
    assert engine.instant("jobs", ended + 1).vector == []
    # range functions ignore markers, as Prometheus drops them from range vectors
    assert [v for _, v in engine.instant("count_over_time(jobs[5m])", ended + 1).vector] == [4.0]
