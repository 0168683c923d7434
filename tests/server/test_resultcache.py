"""The query results cache: a repeat is answered from memory, and no answer outlives its data.

Each test builds the app exactly as ``serve`` does (``build_services`` from a
``signalbox.toml``) over SQLite and PostgreSQL, asks over HTTP, and changes the store the
ways it changes in production: another process (``signalbox import``, ``collect --once``,
``compact``), a second store object in this process (as ``serve``'s background loops hold),
and a running ``serve``'s own collection loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from signalbox.config import load_settings
from signalbox.exceptions import ConfigError
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.runtime import open_metric_store
from signalbox.server.app import create_app
from signalbox.server.resultcache import ResultCache, data_version
from signalbox.server.serve import build_services
from signalbox.server.services import Services
from signalbox.storage import open_database
from tests.cli.helpers import free_port, run
from tests.serving import fetch, serve_process, wait_for
from tests.stores import pg_schema_url, sqlite_url

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]

STEP_S = 15


@dataclasses.dataclass
class Site:
    root: Path
    url: str
    store: SQLMetricStore
    services: Services
    client: TestClient
    t0: int  # a step boundary, seconds: the samples sit before it

    @property
    def cache(self) -> ResultCache:
        assert self.services.query_cache is not None
        return self.services.query_cache

    def range_params(self, query: str = "x", *, back_s: int = 600) -> dict[str, str]:
        return {
            "query": query,
            "start": str(self.t0 - back_s),
            "end": str(self.t0),
            "step": str(STEP_S),
        }

    def get(self, path: str, params: dict[str, str]) -> bytes:
        r = self.client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.content

    def hit(self, path: str, params: dict[str, str]) -> bytes:
        """The answer served from the cache. On PostgreSQL the data version is the whole
        server's snapshot, so another database's commit (another test suite's) between two
        requests makes the second a miss: ask until one is a hit (never more than a few)."""
        for _ in range(20):
            hits = self.cache.hits
            body = self.get(path, params)
            if self.cache.hits == hits + 1:
                return body
        raise AssertionError(f"never answered from the cache: {path} {params}")

    def signalbox(self, *args: str) -> str:
        done = run("--config", str(self.root / "signalbox.toml"), *args, cwd=self.root)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def write_config(root: Path, url: str, extra: str = "") -> Path:
    (root / "monitors").mkdir(exist_ok=True)
    config = root / "signalbox.toml"
    config.write_text(f'store = "{url}"\nhost = "web1"\n{extra}')
    return config


@contextlib.contextmanager
def open_site(backend: str, tmp_path: Path, extra: str = "") -> Iterator[Site]:
    """The app as ``serve`` builds it, over a fresh store with 40 samples of ``x``."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url()) if backend == "postgresql" else ""
        url = url or sqlite_url(tmp_path)
        settings = load_settings(str(write_config(tmp_path, url, extra)))
        store = open_metric_store(settings)
        stack.callback(store.close)
        services = build_services(settings, store)
        if services.query_cache is not None:
            stack.callback(services.query_cache.close)
        t0 = int(time.time()) // STEP_S * STEP_S
        store.write(
            [
                Sample("x", (("job", "a"),), float(i), (t0 - 600 + i * STEP_S) * 1000 - 7000)
                for i in range(40)
            ],
            t0 * 1000,
        )
        # serve's services check tokens: reads are open to a loopback peer only
        client = stack.enter_context(TestClient(create_app(services), client=("127.0.0.1", 50000)))
        yield Site(tmp_path, url, store, services, client, t0)


@pytest.fixture(params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with open_site(request.param, tmp_path) as s:
        yield s


def values(body: bytes) -> dict[str, list[Any]]:
    """``{job label: values}`` of a range answer."""
    doc = json.loads(body)
    assert doc["status"] == "success", doc
    return {s["metric"].get("job", ""): s["values"] for s in doc["data"]["result"]}


def fresh(site: Site, path: str, params: dict[str, str]) -> bytes:
    """The answer of an app over the same store without a cache (the truth)."""
    uncached = dataclasses.replace(site.services, query_cache=None)
    with TestClient(create_app(uncached), client=("127.0.0.1", 50000)) as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.content


def test_a_repeated_query_is_answered_from_the_cache_with_identical_bytes(site: Site) -> None:
    params = site.range_params("rate(x[1m])")
    first = site.get("/api/v1/query_range", params)
    assert (site.cache.hits, site.cache.misses) == (0, 1)
    # the same query written differently, and the times in another form, share the entry
    again = {**params, "query": "rate( x [1m] )", "start": params["start"] + ".000"}
    assert site.hit("/api/v1/query_range", again) == first
    assert first == fresh(site, "/api/v1/query_range", params)
    assert values(first)  # a real answer, not an empty one
    at = {"query": "x", "time": str(site.t0)}
    instant = site.get("/api/v1/query", at)
    assert site.hit("/api/v1/query", at) == instant
    assert json.loads(instant)["data"]["result"][0]["value"][1] == "39"


def test_a_write_by_another_connection_invalidates(site: Site) -> None:
    """A second store object over the same database, as serve's collection loop holds."""
    params = site.range_params()
    before = site.get("/api/v1/query_range", params)
    assert site.hit("/api/v1/query_range", params) == before
    other = SQLMetricStore(open_database(site.url))
    try:
        other.write([Sample("x", (("job", "b"),), 5.0, (site.t0 - 60) * 1000)], site.t0 * 1000)
    finally:
        other.close()
    after = site.get("/api/v1/query_range", params)
    assert after != before
    assert values(after)["b"][0][1] == "5"
    assert after == fresh(site, "/api/v1/query_range", params)
    assert site.cache.invalidations >= 1


def test_an_import_by_another_process_invalidates(site: Site) -> None:
    params = site.range_params()
    before = site.get("/api/v1/query_range", params)
    assert site.hit("/api/v1/query_range", params) == before
    om = site.root / "more.om"
    om.write_text(f'# TYPE x gauge\nx{{job="imported"}} 7 {site.t0 - 100}\n# EOF\n')
    assert "imported 1 samples" in site.signalbox("import", str(om))
    after = site.get("/api/v1/query_range", params)
    assert values(after)["imported"][0][1] == "7"
    assert after == fresh(site, "/api/v1/query_range", params)


def test_collect_once_by_another_process_invalidates(site: Site) -> None:
    params = site.range_params("y", back_s=300)
    params["end"] = str(site.t0 + 900)  # the pass stamps its samples with its own "now"
    before = site.get("/api/v1/query_range", params)
    assert values(before) == {}
    assert site.hit("/api/v1/query_range", params) == before
    spool = site.root / ".signalbox" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "app.metrics").write_text("y=3\n")
    site.signalbox("collect", "--once")
    after = site.get("/api/v1/query_range", params)
    (series,) = values(after).values()
    assert series[0][1] == "3"
    assert after == fresh(site, "/api/v1/query_range", params)


def test_compaction_by_another_process_invalidates(site: Site) -> None:
    """``signalbox compact`` builds the rollups of the closed buckets (a commit); what was
    cached before it is not answered after it."""
    params = site.range_params()
    before = site.get("/api/v1/query_range", params)
    assert site.hit("/api/v1/query_range", params) == before
    misses = site.cache.misses
    site.signalbox("compact")
    assert site.get("/api/v1/query_range", params) == fresh(site, "/api/v1/query_range", params)
    assert site.cache.misses == misses + 1
    assert site.cache.invalidations >= 1


def test_a_retention_drop_empties_the_cached_answer(site: Site) -> None:
    """Retention (a compaction two days on, by another store object) drops the raw samples:
    the answer that held them must not be served again."""
    params = site.range_params()
    before = site.get("/api/v1/query_range", params)
    assert values(before)
    assert site.hit("/api/v1/query_range", params) == before
    other = SQLMetricStore(open_database(site.url))
    try:
        other.compact((site.t0 + 2 * 86400) * 1000)
    finally:
        other.close()
    after = site.get("/api/v1/query_range", params)
    assert values(after) == {}
    assert after == fresh(site, "/api/v1/query_range", params)


def test_the_least_recently_used_answers_go_first_past_the_byte_bound(tmp_path: Path) -> None:
    """On SQLite only: the bound is the cache's own logic, the same over any store, and on
    PostgreSQL other databases' commits (other suites') would empty it between requests."""
    with open_site("sqlite", tmp_path) as site:
        one = site.get("/api/v1/query_range", site.range_params("x"))
        size = site.cache.size_bytes
        assert size > len(one)  # the answer, its key and the bookkeeping
        # room for two answers of this size, not three
        small = ResultCache(2 * size + size // 2, site.cache.version)
        services = dataclasses.replace(site.services, query_cache=small)
        with TestClient(create_app(services), client=("127.0.0.1", 50000)) as c:
            queries = ["x", "x * 2", "x * 3"]
            for q in queries:
                assert c.get("/api/v1/query_range", params=site.range_params(q)).status_code == 200
            assert (len(small), small.evictions) == (2, 1)
            assert small.size_bytes <= small.max_bytes
            # "x" went first: asking it again misses, and evicts "x * 2"
            c.get("/api/v1/query_range", params=site.range_params("x"))
            assert (small.hits, small.misses, small.evictions) == (0, 4, 2)
            c.get("/api/v1/query_range", params=site.range_params("x * 3"))
            assert small.hits == 1
        small.close()


def test_queries_relative_to_now_are_never_cached(site: Site) -> None:
    for _ in range(2):
        r = site.client.get("/api/v1/query", params={"query": "x"})  # no time: now
        assert r.status_code == 200, r.text
    assert (site.cache.hits, site.cache.misses, len(site.cache)) == (0, 0, 0)


def test_errors_are_never_cached(site: Site) -> None:
    bad = [
        ("/api/v1/query_range", {**site.range_params(), "query": "rate(x"}),
        ("/api/v1/query_range", {**site.range_params(), "step": "0.001"}),  # too many points
        ("/api/v1/query", {"query": "x", "time": "not a time"}),
        ("/api/v1/query", {"query": "sum(", "time": str(site.t0)}),
    ]
    for path, params in bad * 2:
        assert site.client.get(path, params=params).status_code == 400
    assert (site.cache.hits, len(site.cache)) == (0, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_query_cache_mb_0_turns_the_cache_off(backend: str, tmp_path: Path) -> None:
    with open_site(backend, tmp_path, "[server]\nquery_cache_mb = 0\n") as site:
        assert site.services.query_cache is None
        params = site.range_params()
        assert site.get("/api/v1/query_range", params) == site.get("/api/v1/query_range", params)


def test_query_cache_mb_must_not_be_negative(tmp_path: Path) -> None:
    config = write_config(tmp_path, sqlite_url(tmp_path), "[server]\nquery_cache_mb = -1\n")
    with pytest.raises(ConfigError, match="query_cache_mb"):
        load_settings(str(config))


def test_stores_whose_writes_the_cache_cannot_see_get_no_cache() -> None:
    assert data_version(MemoryMetricStore()) is None
    memory_sqlite = SQLMetricStore(open_database("sqlite:///:memory:"))
    try:
        assert data_version(memory_sqlite) is None
    finally:
        memory_sqlite.close()


# --- a running serve -----------------------------------------------------------------


def query_range(base: str, params: dict[str, str]) -> dict[str, list[Any]]:
    status, body = fetch(f"{base}/api/v1/query_range?{urllib.parse.urlencode(params)}")
    assert status == 200, body
    return values(body.encode())


@pytest.mark.parametrize("backend", BACKENDS)
def test_serves_collection_loop_invalidates_and_counts(backend: str, tmp_path: Path) -> None:
    """``serve`` collecting every second: a spool file's new value reaches a query asked
    again and again at fixed times (a stale cache would answer the old value forever),
    and the cache's counters reach ``/metrics``."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url()) if backend == "postgresql" else ""
        write_config(
            tmp_path,
            url or sqlite_url(tmp_path),
            f'[collect]\ninterval = "1s"\n[server]\nport = {port}\n',
        )
        spool = tmp_path / ".signalbox" / "spool"
        spool.mkdir(parents=True)
        base = stack.enter_context(serve_process(tmp_path, port))
        t0 = int(time.time())
        params = {"query": "z", "start": str(t0 - 60), "end": str(t0 + 600), "step": "1"}

        def shows(value: str) -> bool:
            (spool / ".app.tmp").write_text(f"z={value}\n")
            os.replace(spool / ".app.tmp", spool / "app.metrics")
            found = query_range(base, params)
            query_range(base, params)  # a repeat: a hit unless a pass came between
            return any(v == value for s in found.values() for _, v in s[-3:])

        wait_for(lambda: shows("1"))
        wait_for(lambda: shows("2"))

        def hits() -> float:
            query_range(base, params)
            query_range(base, params)
            _, text = fetch(base + "/metrics")
            for line in text.splitlines():
                if line.startswith("signalbox_query_cache_hits_total{"):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        assert wait_for(hits) > 0
