"""``signalbox import`` packs the imported rollups' closed units itself (SQLite and
PostgreSQL): the store it leaves is the one serve's compactions would have made, table for
table and bit for bit, and answers the same through ``signalbox query``; a packing stopped
half-way by a full disk keeps what it packed, answers as before, and is finished later; an
import into a store a running serve reads shows in serve's next answer (its cache of
decoded packed units is not trusted past the import's repacking)."""

from __future__ import annotations

import json
import math
import re
import struct
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from signalbox.config import load_settings
from signalbox.metrics.sql import rowsealing, unitcache
from signalbox.query import Engine
from signalbox.runtime import open_metric_store
from signalbox.storage import Database
from tests.cli.helpers import StoreProject, free_port, fresh_project, run, store_project  # noqa: F401
from tests.diskfull import pg_disk_full, small_disk
from tests.serving import fetch, serve_process
from tests.stores import pg_schema_url, sqlite_url

HOUR = 3600
M = 60
_TABLE = re.compile(r"^[pfs]?buckets_r\d+_\d+$")


def _history(now: int, series: range, first_h: int = 40, hours: int = 12, shift_s: int = 0) -> str:
    """``hours`` of counters (a reset every 97 minutes, one NaN) and gauges at 60 s (``shift_s``
    past the minute), ending ``first_h - hours`` hours ago: older than raw retention (1 day),
    so from rollups."""
    start = now - now % HOUR - first_h * HOUR + shift_s
    lines = ["# TYPE jobs_total counter"]
    for s in series:
        for i in range(hours * 60):
            v = "NaN" if (i, s) == (300, 1) else float((i % 97) * (s + 2) + i % 5)
            lines.append(f'jobs_total{{s="{s}"}} {v} {start + i * M}')
    lines.append("# TYPE depth gauge")
    for s in series:
        for i in range(hours * 60):
            lines.append(f'depth{{s="{s}"}} {math.sin(i / 37 + s) * 100 + s} {start + i * M}')
    return "\n".join(lines) + "\n# EOF\n"


def _bits(v: Any) -> Any:
    if isinstance(v, float):
        return struct.pack("<d", v).hex()
    if isinstance(v, memoryview):
        return bytes(v)
    return v


def _dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup table's rows (row buckets, frame buckets, packed and sealed units), floats
    by their bits, in order."""
    out = {}
    for name in sorted(db.table_names()):
        if _TABLE.match(name):
            rows = sorted(
                (tuple(_bits(v) for v in r) for r in db.query(f"SELECT * FROM {name}")), key=repr
            )
            if rows:
                out[name] = rows
    return out


def _packed_rows(dump: dict[str, list[tuple[Any, ...]]]) -> int:
    return sum(len(rows) for name, rows in dump.items() if name.startswith("p"))


@contextmanager
def _other_project(project: StoreProject, tmp_path: Path) -> Iterator[StoreProject]:
    """A second project on the same backend, over a store of its own."""
    (tmp_path / "otherdb").mkdir()
    with fresh_project(project.backend, tmp_path / "other", tmp_path / "otherdb") as other:
        yield other


def test_import_leaves_the_store_serves_compactions_would_bit_for_bit(
    store_project: StoreProject,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = int(time.time())
    history = tmp_path / "history.om"
    history.write_text(_history(now, range(6), hours=8))
    packed = run("import", str(history), cwd=store_project.root)
    assert packed.returncode == 0, packed.stderr
    assert "packed closed hours:" in packed.stderr
    with _other_project(store_project, tmp_path) as other:
        left = run("import", str(history), "--no-pack", cwd=other.root)
        assert left.returncode == 0, left.stderr
        assert "packed" not in left.stderr
        db = other.database()
        assert _packed_rows(_dump(db)) == 0  # nothing packed: serve's compactions do it
        # serve's own packing, a small budget per compaction so that it takes many
        monkeypatch.setattr(rowsealing, "ROWS_PER_PASS", 1500)
        store = open_metric_store(load_settings(str(other.config)))
        try:
            dumps = [_dump(db)]
            while len(dumps) < 100:
                store.compact(int(time.time() * 1000))
                dumps.append(_dump(db))
                if dumps[-1] == dumps[-2]:
                    break
        finally:
            store.close()
        assert len(dumps) > 4, len(dumps)  # the budget was in play
        mine = store_project.database()
        try:
            want, got = dumps[-1], _dump(mine)
        finally:
            mine.close()
            db.close()
        assert _packed_rows(got) > 0
        assert got == want
        end = now - now % HOUR - 33 * HOUR
        for q in (
            f"sum by (s) (rate(jobs_total[5m] @ {end}))",
            f"max_over_time(depth[37m] @ {end - 7 * M})",
        ):
            a = run("query", q, "--json", cwd=store_project.root)
            b = run("query", q, "--json", cwd=other.root)
            assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
            # the same series and value strings (the time is each run's now; @ pins the rest)
            mine = [(r["metric"], r["value"][1]) for r in json.loads(a.stdout)["result"]]
            theirs = [(r["metric"], r["value"][1]) for r in json.loads(b.stdout)["result"]]
            assert mine, q
            assert mine == theirs, q


def _answers(store: Any, start_ms: int, end_ms: int) -> list[Any]:
    out = []
    for q in ("sum(rate(jobs_total[5m]))", "avg_over_time(depth[1h])", "jobs_total"):
        for step in (60_000, 300_000, 3_600_000):
            got = Engine(store).range(q, start_ms, end_ms, step)
            out.append(
                [
                    (sorted(s.metric.items()), [(t, _bits(v)) for t, v in s.points])
                    for s in sorted(got.matrix, key=lambda s: sorted(s.metric.items()))
                ]
            )
    return out


@contextmanager
def _full_disk_store(backend: str, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """(store, a switch with fill() and free()) for a real failing transaction."""
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.storage import open_database

    if backend == "sqlite":
        with small_disk(tmp_path / "disk") as disk:
            store = SQLMetricStore(open_database(sqlite_url(disk.path)), raw_retention_s=86400)
            try:
                yield store, disk
            finally:
                store.close()
                disk.free()
    else:
        with pg_schema_url() as url:
            store = SQLMetricStore(open_database(url), raw_retention_s=86400)
            try:
                yield store, pg_disk_full(url)
            finally:
                store.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def test_packing_stopped_by_a_full_disk_keeps_what_it_packed(backend: str, tmp_path: Path) -> None:
    from signalbox.metrics.importer import import_openmetrics

    now = int(time.time())
    with _full_disk_store(backend, tmp_path) as (store, disk):
        import_openmetrics(store, _history(now, range(6)).splitlines(), "h.om")
        store.compact(now * 1000, seal=False)
        lo = (now - now % HOUR - 41 * HOUR) * 1000
        hi = (now - now % HOUR - 27 * HOUR) * 1000
        want = _answers(store, lo, hi)
        before = _dump(store.db)
        assert _packed_rows(before) == 0
        if backend == "postgresql":
            tables = [t for t in store.db.table_names() if re.match(r"^buckets_r\d+_\d+$", t)]
            disk.install()
            disk.guard(tables)  # a full disk fails the chunk's DELETE of its row buckets
        passes: list[tuple[int, int]] = []

        def fill_after_two(sealed: int, packed: int) -> None:
            passes.append((sealed, packed))
            if len(passes) == 2:
                if backend == "sqlite":  # the next write must grow the WAL: it cannot
                    store.db.query("PRAGMA wal_checkpoint(TRUNCATE)")
                disk.fill()

        with pytest.raises(Exception, match=r"(?i)full|space"):
            store.pack_closed(fill_after_two, step=1)
        assert len(passes) == 2
        disk.free()
        half = _dump(store.db)
        assert 0 < _packed_rows(half) < sum(len(r) for n, r in before.items())
        assert any(not n.startswith("p") for n in half)  # rows left for a later packing
        assert _answers(store, lo, hi) == want
        _, packed = store.pack_closed()
        assert packed > 0
        assert store.pack_closed() == (0, 0)
        assert _answers(store, lo, hi) == want
        assert _packed_rows(_dump(store.db)) > _packed_rows(half)


def _range(base: str, q: str, start: int, end: int, step: int) -> list[Any]:
    qs = urllib.parse.urlencode({"query": q, "start": start, "end": end, "step": step})
    status, body = fetch(f"{base}/api/v1/query_range?{qs}")
    assert status == 200, body
    return sorted(
        (sorted(r["metric"].items()), r["values"]) for r in json.loads(body)["data"]["result"]
    )


def test_an_import_into_a_store_serve_reads_shows_in_its_next_answer(
    store_project: StoreProject,  # noqa: F811
    tmp_path: Path,
) -> None:
    root, port = store_project.root, free_port()
    store_project.configure(f'host = "e2e"\n[server]\nport = {port}\nquery_cache_mb = 0\n')
    now = int(time.time())
    first, more = tmp_path / "first.om", tmp_path / "more.om"
    first.write_text(_history(now, range(4)))
    # into packed hours: samples between the first ones' of the same series, and new series
    more.write_text(_history(now, range(2, 6), first_h=36, hours=4, shift_s=30))
    r = run("import", str(first), cwd=root)
    assert r.returncode == 0 and "packed closed hours:" in r.stderr, r.stderr
    end = now - now % HOUR - 28 * HOUR
    start = end - 12 * HOUR
    queries = ("sum(count_over_time(jobs_total[1h]))", "sum by (s) (avg_over_time(depth[5m]))")
    with serve_process(root, port) as base:
        old = [_range(base, q, start, end, 300) for q in queries]
        assert old == [_range(base, q, start, end, 300) for q in queries]  # cached decodings
        r = run("import", str(more), cwd=root)
        assert r.returncode == 0 and "packed closed hours:" in r.stderr, r.stderr
        new = [_range(base, q, start, end, 300) for q in queries]
    assert new != old
    unitcache.CACHE.clear()
    store = open_metric_store(load_settings(str(store_project.config)))
    try:
        for q, got in zip(queries, new, strict=True):
            fresh = Engine(store).range(q, start * 1000, end * 1000, 300_000)
            want = sorted(
                (sorted(s.metric.items()), [[t / 1000, v] for t, v in s.points])
                for s in fresh.matrix
            )
            assert len(got) == len(want)
            for (gl, gv), (wl, wv) in zip(got, want, strict=True):
                assert [list(x) for x in gl] == [list(x) for x in wl]
                assert [(t, float(v)) for t, v in gv] == [(t, v) for t, v in wv], q
    finally:
        store.close()
