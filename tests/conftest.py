"""Shared test setup: required services and peers, and small builders.

Tests that need a running service (``@pytest.mark.service("postgresql")``) or a peer tool
(``@pytest.mark.peer("promtool")``) skip when it is absent on a developer's laptop, and FAIL
when ``SIGNALBOX_REQUIRE_SERVICES=1`` (set by ``.ci/run``): in CI nothing may skip.

The suite runs on two pytest-xdist workers (``-n 2 --dist loadfile`` in pyproject's
addopts): a module's tests run on one worker, in order, so a module-scoped fixture (a serve,
a chromium, the MariaDB pair) starts once. Each worker's resources are its own: ports from
the kernel, a PostgreSQL schema per test, tmp_path. A test that reads server-wide state
the other worker's tests disturb (PostgreSQL's count of connections) carries
``@pytest.mark.serial``: it runs while no other test of the run does.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
from collections.abc import Generator, Iterator, MutableMapping
from pathlib import Path

import pytest
from hypothesis import settings

from signalbox.storage import Database, open_database
from tests.stores import SQL_BACKENDS, pg_schema_url, sqlite_url

REQUIRED = os.environ.get("SIGNALBOX_REQUIRE_SERVICES") == "1"

# Property tests: no per-example deadline (a loaded 2-core CI box is not a bug); in CI the
# examples are derandomized so a landing is reproducible, on a laptop they explore anew.
settings.register_profile("dev", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

SERVICES = {
    "postgresql": ("127.0.0.1", 5432),
    "mariadb": ("127.0.0.1", 3306),
    "redis": ("127.0.0.1", 6379),
}

PEERS = {
    "promtool": lambda: shutil.which("promtool") is not None,
    "alertmanager": lambda: shutil.which("prometheus-alertmanager") is not None,
    "node_exporter": lambda: shutil.which("prometheus-node-exporter") is not None,
    "monitoring-plugins": lambda: Path("/usr/lib/nagios/plugins/check_dummy").exists(),
    "chromium": lambda: shutil.which("chromium") is not None,
    "mariadbd": lambda: Path("/usr/sbin/mariadbd").exists(),
    "gmond": lambda: shutil.which("gmond") is not None or Path("/usr/sbin/gmond").exists(),
}


def _cache_bytecode_outside_the_tree(environ: MutableMapping[str, str]) -> None:
    """With ``PYTHONDONTWRITEBYTECODE`` set, each xdist worker rewrote and compiled every
    test module again at collection (pytest caches its rewritten modules only where bytecode
    may be written: ~13 s of CPU a worker, every run), and every ``signalbox`` process a test
    starts (the CLI, ``serve``, helper scripts: hundreds a run) compiled ``src`` from source
    again, ~0.1 s of CPU each. Instead they share compiled files kept out of the tree
    (``PYTHONPYCACHEPREFIX``, what the benches do): nothing is written into the tree, and
    the code run is the same (a cached file is used only while its source is unchanged).
    Set here, before xdist starts its workers, so they and every process they start inherit
    it. An explicit ``PYTHONPYCACHEPREFIX`` is left alone."""
    if environ.get("PYTHONDONTWRITEBYTECODE") and not environ.get("PYTHONPYCACHEPREFIX"):
        prefix = Path(tempfile.gettempdir()) / f"signalbox-tests-pycache-{os.getuid()}"
        prefix.mkdir(mode=0o700, exist_ok=True)
        del environ["PYTHONDONTWRITEBYTECODE"]
        environ["PYTHONPYCACHEPREFIX"] = str(prefix)


def pytest_configure(config: pytest.Config) -> None:
    _cache_bytecode_outside_the_tree(os.environ)
    config.addinivalue_line(
        "markers",
        "serial: runs while no other test of the run runs, on any xdist worker (it reads "
        "server-wide state, e.g. PostgreSQL's count of connections, that they would disturb)",
    )


class _RunLock:
    """A readers-writer lock between the xdist workers of one run (``flock`` on files in the
    run's shared base temp dir): every test holds it shared, a ``serial`` test exclusive.
    A turnstile file keeps a waiting ``serial`` test from being starved by the other
    worker's stream of shared holders."""

    def __init__(self, root: Path) -> None:
        self._gate = os.open(root / "signalbox-serial.gate", os.O_RDWR | os.O_CREAT, 0o600)
        self._lock = os.open(root / "signalbox-serial.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, exclusive: bool) -> None:
        if exclusive:
            fcntl.flock(self._gate, fcntl.LOCK_EX)  # held until release: no new readers
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        else:
            fcntl.flock(self._gate, fcntl.LOCK_SH)  # waits while a serial test waits or runs
            fcntl.flock(self._lock, fcntl.LOCK_SH)
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    def release(self) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        fcntl.flock(self._gate, fcntl.LOCK_UN)


_run_lock: _RunLock | None = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Under xdist, hold the run lock around the whole test (setup, call, teardown)."""
    global _run_lock
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return (yield)
    if _run_lock is None:
        # the workers' base temp dirs (.../popen-gw0) share their parent
        _run_lock = _RunLock(item.config._tmp_path_factory.getbasetemp().parent)
    _run_lock.acquire(exclusive=item.get_closest_marker("serial") is not None)
    try:
        return (yield)
    finally:
        _run_lock.release()


@pytest.fixture(autouse=True)
def _no_flags_client_left() -> Iterator[None]:
    """The process's flags client (:mod:`signalbox.flags.runtime`) is global: one a test
    configured, or auto-started by asking before configuring, is gone when it ends. (On an
    xdist worker the modules run in another order than alone, and a client left over
    answered the next module's "not configured" tests.)"""
    yield
    from signalbox.flags import runtime

    runtime.reset()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _absent(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} is required (SIGNALBOX_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("service"):
        name = mark.args[0]
        host, port = SERVICES[name]
        if not _reachable(host, port):
            _absent(f"service {name} at {host}:{port}")
    for mark in item.iter_markers("peer"):
        name = mark.args[0]
        check = PEERS.get(name, lambda n=name: shutil.which(n) is not None)
        if not check():
            _absent(f"peer tool {name}")


@pytest.fixture(params=SQL_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL on every backend: SQLite in tmp_path, PostgreSQL in its own schema."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with pg_schema_url() as url:
            yield url


@pytest.fixture(params=SQL_BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database on every backend: SQLite in tmp_path, PostgreSQL in its own schema."""
    if request.param == "sqlite":
        d = open_database(sqlite_url(tmp_path))
        yield d
        d.close()
    else:
        with pg_schema_url() as url:
            d = open_database(url)
            yield d
            d.close()
