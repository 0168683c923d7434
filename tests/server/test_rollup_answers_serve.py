"""Through the real entry points (``signalbox import``, ``serve``, ``query``), on SQLite and
PostgreSQL: history older than raw retention is answered from rollup buckets exactly when the
query lines up with them, and with a Prometheus-style warning when it does not."""

from __future__ import annotations

import json
import math
import time
import urllib.parse

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.query import Engine
from tests.cli.helpers import StoreProject, free_port, run, store_project  # noqa: F401
from tests.serving import fetch, serve_process, wait_for

HOUR = 3600


def _history(now: int) -> tuple[str, list[tuple[int, float]]]:
    """Twelve hours of a counter at 60 s on whole minutes, reset every 97 minutes, from 40 h
    to 28 h ago: every window the test asks about (36 h to 30 h ago, and each one's hour
    before) with hours to spare on both sides, all of it older than raw retention (1 day).
    Each hour of history is partitions an import creates (and drops once rolled up): the two
    days this was took 40 s on PostgreSQL, most of it in CREATE and DROP TABLE."""
    start = now - now % HOUR - 40 * HOUR
    points = [(start + i * 60, float((i % 97) * 3 + i % 5)) for i in range(12 * 60)]
    lines = ["# TYPE jobs_total counter"]
    lines += [f"jobs_total {v} {t}" for t, v in points]
    lines.append("# EOF")
    return "\n".join(lines) + "\n", points


def _range(base: str, query: str, start: int, end: int, step: int) -> dict[str, object]:
    qs = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    status, body = fetch(f"{base}/api/v1/query_range?{qs}")
    assert status == 200, body
    got: dict[str, object] = json.loads(body)
    return got


def test_old_history_is_exact_when_aligned_and_warned_when_not(
    store_project: StoreProject,  # noqa: F811
) -> None:
    root, port = store_project.root, free_port()
    store_project.configure(f'host = "e2e"\n[server]\nport = {port}\n')
    now = int(time.time())
    text, points = _history(now)
    (root / "history.om").write_text(text)
    r = run("import", str(root / "history.om"), cwd=root)
    assert r.returncode == 0, r.stderr
    # the answer Prometheus' semantics give, from every raw sample
    raw = MemoryMetricStore()
    raw.write([Sample("jobs_total", (), v, t * 1000) for t, v in points], 0)
    end = now - now % HOUR - 30 * HOUR  # beyond raw retention (1 day): rollups only
    start = end - 6 * HOUR
    q = "increase(jobs_total[1h])"
    want = Engine(raw).range(q, start * 1000, end * 1000, HOUR * 1000).matrix[0].points
    with serve_process(root, port) as base:
        got = wait_for(lambda: _range(base, q, start, end, HOUR) or None)
        data = got["data"]
        assert isinstance(data, dict)
        values = [(int(t), float(v)) for t, v in data["result"][0]["values"]]
        assert "warnings" not in got, got.get("warnings")
        assert [t for t, _ in values] == [t // 1000 for t, _ in want]
        for (_, g), (_, w) in zip(values, want, strict=True):
            assert math.isclose(g, w, rel_tol=1e-9), (g, w)
        # shifted by 17 s the windows still hold whole buckets (the samples sit on whole
        # minutes): exact, no warning; shifted by 90 s they split them: an estimate, said so
        assert "warnings" not in _range(base, q, start + 17, end + 17, HOUR)
        off = _range(base, q, start + 90, end + 90, HOUR)
        warnings = off.get("warnings")
        assert isinstance(warnings, list) and warnings and "estimate" in warnings[0]
    # the CLI prints the same warning (its range ends now: not aligned with the buckets)
    r = run(
        "query", "increase(jobs_total[1h] offset 30h)", "--since", "6h", "--step", "1h", cwd=root
    )
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "estimate" in r.stderr
