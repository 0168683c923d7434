"""A real ``signalbox serve`` loads the series index in a thread at start
(:func:`signalbox.server.serve.warm_up`): its first ``sum by (shard)`` over 12,000 series,
asked as soon as it is healthy (the warm-up under way or done), and the next one answer
what an engine over a store that never warmed up answers, and the warm-up logs no failure.
SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.series import _WARM_WAIT_MIN
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine
from signalbox.storage import open_database
from tests.cli.helpers import free_port
from tests.serving import serve_process
from tests.stores import SQL_BACKENDS, pg_schema_url, sqlite_url

N = _WARM_WAIT_MIN + 2_000
QUERY = "sum by (shard) (m)"


@contextlib.contextmanager
def _store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with pg_schema_url() as url:
        yield url


def _answer(vector: list[tuple[dict[str, str], float]]) -> list[tuple[str, float]]:
    return sorted((m.get("shard", ""), v) for m, v in vector)


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_the_first_query_of_a_fresh_serve_answers_as_a_cold_store(
    backend: str, tmp_path: Path
) -> None:
    t0_ms = int(time.time() * 1000) - 60_000
    port = free_port()
    with _store_url(backend, tmp_path) as url:
        store = SQLMetricStore(open_database(url), clock=FrozenClock(t0_ms / 1000))
        store.write(
            [
                Sample("m", (("line", str(i)), ("shard", str(i % 7))), float(i % 97) / 8, t0_ms)
                for i in range(N)
            ],
            t0_ms,
        )
        want = _answer(
            [(v.metric, v.value) for v in Engine(store).instant(QUERY, t0_ms + 1000).vector]
        )
        store.close()
        assert len(want) == 7
        (tmp_path / "signalbox.toml").write_text(
            f'store = "{url}"\nhost = "warm"\n[statsd]\nenabled = false\n[server]\nport = {port}\n'
        )
        out: list[str] = []
        with serve_process(tmp_path, port, out) as base:
            for at in (t0_ms + 1000, t0_ms + 2000):  # the first, then warm
                q = urllib.parse.urlencode({"query": QUERY, "time": f"{at / 1000:.3f}"})
                with urllib.request.urlopen(f"{base}/api/v1/query?{q}", timeout=60) as r:
                    body = json.loads(r.read())
                got = [(x["metric"], float(x["value"][1])) for x in body["data"]["result"]]
                assert _answer(got) == want
        assert "series index not loaded" not in out[0], out[0]
