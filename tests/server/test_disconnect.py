"""A query whose client goes away stops: its wait in the query queue ends at once, and its
evaluation at the engine's next deadline check, so abandoned requests do not hold the
places and threads the next ones need. The app under uvicorn on a loopback socket, as
``serve`` runs it; requests on raw connections that are closed part way. SQLite and
PostgreSQL (the results cache's path and the uncached one)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from signalbox.exceptions import QueryLimitError
from signalbox.limits import Budget, QueryLimits, check_deadline, running
from signalbox.query import Engine, Expr, QueryResult, parse_expr
from signalbox.server.app import create_app
from signalbox.server.errors import classify
from signalbox.server.querygate import QueryGate
from tests.server.test_resultcache import BACKENDS, Site, on_socket, open_site, wait_until


class Spinning(Engine):
    """The server's engine, whose evaluations of the queries in ``spin`` keep working
    (checking their deadline, as the engine does between series) until ``release`` is set;
    records how each evaluation ended."""

    def __init__(self, real: Engine) -> None:
        self.__dict__.update(real.__dict__)
        self.spin: set[str] = set()
        self.release = threading.Event()
        self.calls: Counter[str] = Counter()
        self.ended: list[tuple[str, str]] = []  # (query, "done" or the error's kind)
        self._lock = threading.Lock()

    def _enter(self, expr: Expr | str) -> None:
        printed = str(parse_expr(expr) if isinstance(expr, str) else expr)
        with self._lock:
            self.calls[printed] += 1
        if printed not in self.spin:
            return
        try:
            while not self.release.wait(0.005):
                check_deadline()
        except QueryLimitError as e:
            self.ended.append((printed, e.kind))
            raise
        self.ended.append((printed, "done"))

    def range(self, expr: Expr | str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        self._enter(expr)
        return super().range(expr, start_ms, end_ms, step_ms)

    def instant(self, expr: Expr | str, at_ms: int) -> QueryResult:
        self._enter(expr)
        return super().instant(expr, at_ms)


@dataclasses.dataclass
class Live:
    site: Site
    engine: Spinning
    gate: QueryGate
    base: str

    def leave_later(self, path: str, params: dict[str, str]) -> socket.socket:
        """A request on a raw connection, which closing disconnects mid-request."""
        port = int(self.base.rsplit(":", 1)[1])
        conn = socket.create_connection(("127.0.0.1", port))
        query = urllib.parse.urlencode(params)
        conn.sendall(f"GET {path}?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return conn


@contextlib.contextmanager
def live(backend: str, tmp_path: Path, extra: str = "") -> Iterator[Live]:
    with open_site(backend, tmp_path, extra) as site:
        engine = Spinning(site.services.engine)
        app = create_app(dataclasses.replace(site.services, engine=engine))
        with on_socket(app) as base:
            try:
                yield Live(site, engine, app.state.query_gate, base)
            finally:
                engine.release.set()


LIMITS = "[query]\ntimeout = '60s'\nmax_concurrency = 1\nheavy_concurrency = 1\n"
NO_CACHE = "[server]\nquery_cache_mb = 0\n"


@pytest.mark.parametrize("cache", ["cache", "no cache"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_running_query_stops_when_its_client_leaves(
    backend: str, cache: str, tmp_path: Path
) -> None:
    extra = LIMITS + (NO_CACHE if cache == "no cache" else "")
    with live(backend, tmp_path, extra) as lv:
        q = "rate(x[1m])"
        lv.engine.spin = {str(parse_expr(q))}
        conn = lv.leave_later("/api/v1/query_range", lv.site.range_params(q))
        wait_until(lambda: lv.engine.calls[str(parse_expr(q))] == 1, "the query runs")
        conn.close()
        wait_until(lambda: lv.engine.ended, "the evaluation stopped", timeout=10)
        assert lv.engine.ended == [(str(parse_expr(q)), "cancelled")]
        wait_until(lambda: lv.gate.cancelled == 1, "counted as cancelled")
        # its place is free at once (max_concurrency = 1): the next query answers
        r = httpx.get(lv.base + "/api/v1/query", params={"query": "x"}, timeout=10)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_query_waiting_in_the_queue_is_dropped_when_its_client_leaves(
    backend: str, tmp_path: Path
) -> None:
    """With the only place taken, a request waiting for it whose client leaves never
    evaluates, and does not delay the requests behind it."""
    with live(backend, tmp_path, LIMITS + NO_CACHE) as lv:
        held, gone = "sum(x)", "count(x)"
        lv.engine.spin = {str(parse_expr(held))}
        with httpx.Client(timeout=30) as http:
            pool = threading.Thread(
                target=lambda: http.get(lv.base + "/api/v1/query", params={"query": held}),
                daemon=True,
            )
            pool.start()
            wait_until(lambda: lv.engine.calls[str(parse_expr(held))] == 1, "held runs")
            conn = lv.leave_later("/api/v1/query", {"query": gone})
            time.sleep(0.2)  # it reaches the queue (nothing observable to wait for)
            conn.close()
            wait_until(lambda: lv.gate.cancelled == 1, "the waiting request cancelled")
            lv.engine.release.set()
            pool.join(30)
        assert lv.engine.calls[str(parse_expr(gone))] == 0
        assert lv.engine.ended == [(str(parse_expr(held)), "done")]


def test_a_cancelled_budget_stops_a_sqlite_statement_mid_way(tmp_path: Path) -> None:
    """SQLite's progress handler reads the deadline as it runs, so a cancel from another
    thread interrupts a long statement, and the error says cancelled, not timed out."""
    with open_site("sqlite", tmp_path) as site:
        parts = site.store._partitions
        long_scan = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 500000000) SELECT count(*) FROM c"
        )
        budget = Budget(QueryLimits(timeout_s=60))
        threading.Timer(0.2, budget.cancel, ["the client closed the connection"]).start()
        t0 = time.monotonic()
        with running(budget), pytest.raises(QueryLimitError) as e:
            parts.read(long_scan)
        assert time.monotonic() - t0 < 5
        assert e.value.kind == "cancelled"
        assert "cancelled" in str(e.value) and "client closed" in str(e.value)
        assert classify(e.value)[:2] == (499, "canceled")
        assert parts.read("SELECT 1") == [(1,)]
