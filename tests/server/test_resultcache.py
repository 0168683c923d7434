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
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalbox.config import load_settings
from signalbox.exceptions import ConfigError
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.query import Engine, Expr, QueryResult, parse_expr
from signalbox.runtime import open_metric_store
from signalbox.server.app import create_app
from signalbox.server.resultcache import IN_FLIGHT_STAGE, ResultCache, data_version
from signalbox.server.serve import build_services
from signalbox.server.services import Services
from signalbox.storage import open_database
from signalbox.storage.lease import Lease
from tests.cli.helpers import free_port, run
from tests.server.quick_stop_uvicorn import on_socket as on_socket  # re-exported
from tests.serving import fetch, serve_process, wait_for
from tests.stores import pg_schema_url, sqlite_url

# PostgreSQL's data version is the store's own counter (signalbox.metrics.dataversion):
# commits to other schemas and databases (the other xdist worker's) leave it alone
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
        """The answer, which must be served from the cache."""
        hits = self.cache.hits
        body = self.get(path, params)
        assert self.cache.hits == hits + 1, f"not answered from the cache: {path} {params}"
        return body

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


PG_ONLY = pytest.mark.service("postgresql")


@PG_ONLY
def test_commits_outside_the_metric_data_keep_the_postgresql_cache(tmp_path: Path) -> None:
    """Another schema's metric store, the leader lease and the monitor state of the same
    schema commit: the cached answer is still served (the server's snapshot, the version
    before, moved with each of them and emptied the cache)."""
    with open_site("postgresql", tmp_path) as site, pg_schema_url() as elsewhere:
        params = site.range_params()
        before = site.get("/api/v1/query_range", params)
        other = SQLMetricStore(open_database(elsewhere))
        try:
            other.write([Sample("x", (("job", "b"),), 5.0, (site.t0 - 60) * 1000)], site.t0 * 1000)
        finally:
            other.close()
        db = open_database(site.url)
        try:
            lease = Lease(db, "serve:leader", 10.0)
            assert lease.acquire() and lease.renew()
            lease.release()
        finally:
            db.close()
        site.signalbox("monitors", "run", "--once")  # the monitor state's own commits
        assert site.hit("/api/v1/query_range", params) == before
        assert site.cache.invalidations == 0


@PG_ONLY
def test_no_postgresql_cache_while_a_compaction_runs(tmp_path: Path) -> None:
    """A compaction commits many transactions and bumps the version once, at its end: while
    another process holds its lock, requests bypass the cache (neither served nor kept);
    after its bump, the entries made before it are gone."""
    with open_site("postgresql", tmp_path) as site:
        params = site.range_params()
        before = site.get("/api/v1/query_range", params)
        other = SQLMetricStore(open_database(site.url))
        try:
            with other.db.exclusive("compact") as held:
                assert held
                hits, misses = site.cache.hits, site.cache.misses
                assert site.get("/api/v1/query_range", params) == before
                assert site.get("/api/v1/query_range", params) == before
                assert (site.cache.hits, site.cache.misses) == (hits, misses)  # bypassed
                other.compact((site.t0 + 2 * 86400) * 1000)  # joins the lock: retention
            after = site.get("/api/v1/query_range", params)
            assert values(after) == {}
            assert after == fresh(site, "/api/v1/query_range", params)
        finally:
            other.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_least_recently_used_answers_go_first_past_the_byte_bound(
    backend: str, tmp_path: Path
) -> None:
    with open_site(backend, tmp_path) as site:
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


@pytest.mark.parametrize("key", ["packed_cache_mb", "raw_cache_mb"])
def test_the_store_caches_are_sized_by_server_settings_and_refuse_bad_sizes(
    key: str, tmp_path: Path
) -> None:
    """serve sizes each process-wide store cache from its setting (0 turns it off); a
    negative or absurd size, or one that is not a number, is refused naming the setting."""
    from signalbox.metrics.sql import rawcache, unitcache
    from signalbox.server.serve import size_store_caches

    cache = {"packed_cache_mb": unitcache, "raw_cache_mb": rawcache}[key]
    for bad, why in ((-1, "0-1048576"), (1 << 21, "0-1048576"), ('"lots"', "")):
        config = write_config(tmp_path, sqlite_url(tmp_path), f"[server]\n{key} = {bad}\n")
        with pytest.raises(ConfigError, match=key) as refused:
            load_settings(str(config))
        assert why in str(refused.value)
    try:
        for mb in (5, 0):
            config = write_config(tmp_path, sqlite_url(tmp_path), f"[server]\n{key} = {mb}\n")
            size_store_caches(load_settings(str(config)))
            assert cache.CACHE.max_bytes == mb * 2**20
    finally:
        cache.configure(cache.DEFAULT_MB)


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


# --- single-flight: identical misses evaluate once -------------------------------------


class Held(Engine):
    """The server's own engine, counting its evaluations by query (as printed) and holding
    those of the queries in ``hold`` until ``release`` is set: requests are made to overlap
    by waiting for states, never by timing."""

    def __init__(self, real: Engine) -> None:
        self.__dict__.update(real.__dict__)
        self.hold: set[str] = set()
        self.release = threading.Event()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _enter(self, expr: Expr | str) -> None:
        printed = str(parse_expr(expr) if isinstance(expr, str) else expr)
        with self._lock:
            self.calls[printed] += 1
        if printed in self.hold:
            assert self.release.wait(60), f"{printed} was never released"

    def range(self, expr: Expr | str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        self._enter(expr)
        return super().range(expr, start_ms, end_ms, step_ms)

    def instant(self, expr: Expr | str, at_ms: int) -> QueryResult:
        self._enter(expr)
        return super().instant(expr, at_ms)


class CancelOnDisconnect:
    """Pure ASGI: cancels a GET's handling when its client disconnects, as Starlette does
    for a streaming response (uvicorn itself lets a plain request run on): with shutdown,
    the way a request is cancelled part way. Records the query string of each it cancels."""

    def __init__(self, app: ASGIApp, record: list[str]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        body = await receive()  # a GET's empty body; the next message is the disconnect
        never = anyio.Event()

        async def replay() -> Message:
            nonlocal body
            if body is None:
                await never.wait()
            out, body = body, None
            assert out is not None
            return out

        answered = False  # a disconnect after the whole response is no cancellation

        async def sending(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True

        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not answered:  # (a client closing after its answer raced the app's return)
                    self.record.append(scope["query_string"].decode())
                    tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await self.app(scope, replay, sending)
            tg.cancel_scope.cancel()


def wait_until(ok: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


@dataclasses.dataclass
class Live:
    """The site's app (its cache, its query gate) on a real socket, over :class:`Held`."""

    site: Site
    engine: Held
    base: str
    cancelled: list[str]  # query strings of the requests CancelOnDisconnect cancelled
    pool: ThreadPoolExecutor

    @property
    def cache(self) -> ResultCache:
        return self.site.cache

    def ask(self, params: dict[str, str], path: str = "/api/v1/query_range") -> Future[Any]:
        return self.pool.submit(httpx.get, self.base + path, params=params, timeout=60)

    def leave_later(self, params: dict[str, str]) -> socket.socket:
        """A request on a raw connection, which closing disconnects mid-request."""
        port = int(self.base.rsplit(":", 1)[1])
        conn = socket.create_connection(("127.0.0.1", port))
        query = urllib.parse.urlencode(params)
        conn.sendall(f"GET /api/v1/query_range?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return conn

    def invalidate(self, value: float) -> None:
        """A commit by another store object, as serve's loops make: the data version moves."""
        other = SQLMetricStore(open_database(self.site.url))
        try:
            t = (self.site.t0 - 30) * 1000
            other.write([Sample("x", (("job", "b"),), value, t)], self.site.t0 * 1000)
        finally:
            other.close()

    def new_round(self, value: float, hold: set[str]) -> None:
        self.invalidate(value)
        self.engine.hold = {str(parse_expr(q)) for q in hold}
        self.engine.release = threading.Event()
        self.engine.calls.clear()


@contextlib.contextmanager
def live(site: Site) -> Iterator[Live]:
    engine = Held(site.services.engine)
    cancelled: list[str] = []
    services = dataclasses.replace(site.services, engine=engine)
    app = create_app(services, middleware=[Middleware(CancelOnDisconnect, record=cancelled)])
    with on_socket(app) as base, ThreadPoolExecutor(16) as pool:
        try:
            yield Live(site, engine, base, cancelled, pool)
        finally:
            engine.release.set()


N = 8


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_requests_after_an_invalidation_evaluate_once(
    backend: str, tmp_path: Path
) -> None:
    """N identical requests just after the data changed: one evaluation, N-1 answers shared,
    all N the very bytes of an uncached answer."""
    with open_site(backend, tmp_path) as site, live(site) as lv:
        q = "rate(x[1m])"
        params = site.range_params(q)
        assert lv.ask(params).result().status_code == 200  # the text is known: loop lookups

        lv.new_round(10.0, {q})
        misses, shared = lv.cache.misses, lv.cache.shared
        first = lv.ask(params)
        wait_until(lambda: lv.engine.calls[str(parse_expr(q))] == 1, "the first evaluates")
        rest = [lv.ask(params) for _ in range(N - 1)]
        calls = lambda: lv.engine.calls[str(parse_expr(q))]  # noqa: E731
        wait_until(lambda: lv.cache.waiting + calls() == N, "all N wait or evaluate")
        lv.engine.release.set()
        answers = [f.result() for f in [first, *rest]]
        assert all(r.status_code == 200 for r in answers), answers[0].text
        truth = fresh(site, "/api/v1/query_range", params)
        assert values(truth)  # a real answer, not an empty one
        assert all(r.content == truth for r in answers)
        assert calls() == 1
        assert (lv.cache.misses - misses, lv.cache.shared - shared) == (1, N - 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_querys_error_reaches_every_waiter(backend: str, tmp_path: Path) -> None:
    """The leader's error is not shared: every waiter, having waited for it, evaluates the
    query itself and gets the same error (here one of the query and the data); nothing is
    kept or counted as shared."""
    with open_site(backend, tmp_path) as site, live(site) as lv:
        q = "x * on() x"  # with two series of x: many-to-many, refused in evaluation
        params = site.range_params(q)
        lv.invalidate(1.0)
        assert lv.ask(params).result().status_code == 400
        lv.new_round(2.0, {q})
        printed = str(parse_expr(q))
        first = lv.ask(params)
        wait_until(lambda: lv.engine.calls[printed] == 1, "the first evaluates")
        rest = [lv.ask(params) for _ in range(N - 1)]
        wait_until(lambda: lv.cache.waiting + lv.engine.calls[printed] == N, "all N wait")
        assert lv.cache.waiting == N - 1
        lv.engine.release.set()
        answers = [f.result() for f in [first, *rest]]
        assert {r.status_code for r in answers} == {400}
        assert len({r.content for r in answers}) == 1
        doc = answers[0].json()
        assert doc["errorType"] == "bad_data" and "many-to-many" in doc["error"], doc
        assert lv.engine.calls[printed] == N  # the leader, then each waiter alone
        assert (lv.cache.shared, len(lv.cache)) == (0, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_waiter_times_out_by_its_own_budget(backend: str, tmp_path: Path) -> None:
    """A waiter whose query.timeout runs out while the leader still evaluates gets the
    queue's timeout error (503, ``timeout``) then, not when the leader finishes."""
    with (
        open_site(backend, tmp_path, '[query]\ntimeout = "1s"\n') as site,
        live(site) as lv,
    ):
        q = "x"
        printed = str(parse_expr(q))
        params = site.range_params(q)
        assert lv.ask(params).result().status_code == 200

        lv.new_round(1.0, {q})
        leader = lv.ask(params)
        wait_until(lambda: lv.engine.calls[printed] == 1, "the leader evaluates")
        waiter = lv.ask(params)
        wait_until(lambda: lv.cache.waiting == 1, "it waits")
        r = waiter.result(timeout=10)  # the leader is still held
        assert not lv.engine.release.is_set() and lv.engine.calls[printed] == 1
        assert r.status_code == 503, r.text
        doc = r.json()
        assert doc["errorType"] == "timeout"
        assert doc["error"].startswith(f"query timed out in {IN_FLIGHT_STAGE}: "), doc
        assert "1s (query.timeout" in doc["error"]
        lv.engine.release.set()
        late = leader.result()  # held past its own deadline: the evaluation stops
        assert late.status_code == 503 and late.json()["errorType"] == "timeout", late.text
        assert lv.cache.shared == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_leader_cancelled_in_the_queue_hands_over_to_a_waiter(
    backend: str, tmp_path: Path
) -> None:
    """The leader's client goes while the leader still waits for its turn in the query
    queue (one place, taken by another query): the leader is cancelled, its flight
    abandoned, one waiter leads in its stead and the others share that answer."""
    extra = "[query]\nmax_concurrency = 1\nheavy_concurrency = 1\n"
    with open_site(backend, tmp_path, extra) as site, live(site) as lv:
        q, other = "x", "x * 2"
        printed, blocker_printed = str(parse_expr(q)), str(parse_expr(other))
        params = site.range_params(q)
        for text in (q, other):
            assert lv.ask(site.range_params(text)).result().status_code == 200

        lv.new_round(1.0, {other})
        cancelled, misses, shared = len(lv.cancelled), lv.cache.misses, lv.cache.shared
        blocker = lv.ask(site.range_params(other))
        wait_until(lambda: lv.engine.calls[blocker_printed] == 1, "the blocker runs")
        conn = lv.leave_later(params)
        wait_until(lambda: lv.cache.in_flight() >= 2, "the leader queues")
        waiters = [lv.ask(params) for _ in range(N - 1)]
        wait_until(lambda: lv.cache.waiting == N - 1, "all wait")
        assert lv.cache.in_flight() == 2  # the blocker's and the leader's
        conn.close()
        wait_until(lambda: len(lv.cancelled) == cancelled + 1, "the leader is cancelled")
        assert lv.cancelled[-1] == urllib.parse.urlencode(params)
        # one waiter now leads, queued behind the blocker
        wait_until(
            lambda: lv.cache.in_flight() == 2 and lv.cache.waiting == N - 2,
            "a waiter took the lead",
        )
        assert lv.engine.calls[printed] == 0  # the cancelled leader never evaluated
        lv.engine.release.set()
        assert blocker.result().status_code == 200
        answers = [f.result() for f in waiters]
        assert all(r.status_code == 200 for r in answers), answers[0].text
        truth = fresh(site, "/api/v1/query_range", params)
        assert all(r.content == truth for r in answers)
        assert lv.engine.calls[printed] == 1
        assert lv.cache.misses - misses == 2  # the blocker's and the new leader's
        assert lv.cache.shared - shared == N - 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_leader_cancelled_while_evaluating_still_answers_the_waiters(
    backend: str, tmp_path: Path
) -> None:
    """The leader's client goes while its query thread evaluates: the request is
    cancelled, but the thread finishes and its answer reaches every waiter (one
    evaluation)."""
    with open_site(backend, tmp_path) as site, live(site) as lv:
        q = "x"
        printed = str(parse_expr(q))
        params = site.range_params(q)
        assert lv.ask(params).result().status_code == 200

        lv.new_round(1.0, {q})
        cancelled, shared = len(lv.cancelled), lv.cache.shared
        conn = lv.leave_later(params)
        wait_until(lambda: lv.engine.calls[printed] == 1, "the leader evaluates")
        waiters = [lv.ask(params) for _ in range(N - 1)]
        wait_until(lambda: lv.cache.waiting == N - 1, "all wait")
        conn.close()
        wait_until(lambda: len(lv.cancelled) == cancelled + 1, "the leader is cancelled")
        lv.engine.release.set()
        answers = [f.result() for f in waiters]
        assert all(r.status_code == 200 for r in answers), answers[0].text
        truth = fresh(site, "/api/v1/query_range", params)
        assert all(r.content == truth for r in answers)
        assert lv.engine.calls[printed] == 1
        assert lv.cache.shared - shared == N - 1
