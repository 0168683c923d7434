"""PostgreSQL connections per process (issue 14, many hosts): a ``serve`` and a ``worker
--concurrency 4`` on one schema, counted by PostgreSQL itself (``pg_stat_activity``, the
backends whose client ports are the process's). A burst of 50 concurrent API queries runs
on ~50 request threads, each with a connection; once it is over (anyio's 10 s idle time and
a sweep) the serve is back to its background threads' connections.

Serial: the burst holds ~60 connections of PostgreSQL's 100 for a while.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cli.helpers import free_port
from tests.cluster.processes import Processes
from tests.serving import fetch, wait_for
from tests.storage.pgbackends import backends_of
from tests.stores import pg_schema_url

pytestmark = [pytest.mark.service("postgresql"), pytest.mark.serial]

APP = """
import signalbox

@signalbox.task(queue="conns")
def noop(n: int) -> None:
    return None
"""
SERVE_MAX = 12  # 9 measured: the event loop's 1, the background threads' 8
CONCURRENCY = 4
WORKER_MAX = CONCURRENCY + 2  # a connection per slot, housekeeping's two (one a store)


def _dir(root: Path, name: str, url: str, extra: str) -> Path:
    d = root / name
    (d / "spool").mkdir(parents=True)
    (d / "monitors").mkdir()
    (d / "signalbox.toml").write_text(
        f'store = "{url}"\nhost = "{name}"\n[statsd]\nenabled = false\n'
        '[collect]\ninterval = "1s"\nspool_dir = "spool"\n' + extra
    )
    return d


def _names(pid: int) -> Counter[str]:
    return Counter(name for name, _state in backends_of(pid))


def test_serve_and_worker_connections_are_bounded_after_a_burst(tmp_path: Path) -> None:
    with pg_schema_url() as url, Processes(tmp_path) as procs:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = procs.start(
            "serve", ["serve"], _dir(tmp_path, "serve", url, f"[server]\nport = {port}\n")
        )
        wd = _dir(tmp_path, "worker", url, '[tasks]\nmodules = ["app"]\npoll_interval = "50ms"\n')
        (wd / "app.py").write_text(APP)
        worker = procs.start("worker", ["worker", "--concurrency", str(CONCURRENCY)], wd)
        try:
            wait_for(lambda: fetch(base + "/-/healthy")[0] == 200, timeout=60)
            wait_for(lambda: sum(_names(worker.pid).values()) >= CONCURRENCY, timeout=60)
        except AssertionError:
            raise AssertionError(procs.log("serve") + procs.log("worker")) from None

        now = time.time()
        paths = [
            "/api/v1/query?query=up",
            f"/api/v1/query_range?query=up&start={now - 300}&end={now}&step=15",
            "/api/v1/series?match[]=up",
            "/api/v1/labels",
            "/api/v1/monitors",
            "/metrics",
        ]
        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(lambda i: fetch(base + paths[i % len(paths)])[0], range(50)))
        assert statuses == [200] * 50
        during = _names(serve.pid)
        # the burst ran on request threads, each with a connection of its own for now
        assert during["signalbox-serve-AnyIO worker thread"] > 0, during

        def settled() -> Counter[str] | None:
            names = _names(serve.pid)
            return names if sum(names.values()) <= SERVE_MAX else None

        try:
            after = wait_for(settled, timeout=45)  # 10 s idle, a 2 s sweep, a loaded box
        except AssertionError:
            raise AssertionError(f"serve still holds {_names(serve.pid)}") from None
        assert "signalbox-serve-AnyIO worker thread" not in after, after
        assert all(n.startswith("signalbox-serve-") for n in after), after

        w = _names(worker.pid)
        assert sum(w.values()) <= WORKER_MAX, w
        assert all(n.startswith("signalbox-worker-") for n in w), w
        assert sum(w[f"signalbox-worker-worker-{i}"] for i in range(CONCURRENCY)) == CONCURRENCY
