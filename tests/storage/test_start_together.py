"""Real processes of every kind started at the same moment on one new, empty store (issue 14:
"schema migrations that run safely when several processes start at once").

``serve``, ``agent``, ``worker --burst`` and ``collect --once``, each in a directory of its
own as if on a host of its own, started together: each opens the store and migrates its
components while the others do. Two ``signalbox serve`` started together on an empty
PostgreSQL schema had one refuse it as "not a signalbox database": its ownership check at
open read the catalog twice, before and after another process's first migration committed
(:mod:`tests.storage.test_open_during_migration` pins that interleaving down). Timing decides
who collides with whom, so PostgreSQL gets more than one round; each round costs the start
of four processes (seconds on a loaded machine), so there are few. The processes' own opens
hit that moment rarely (before the fix: 1 round in 17 here), so on PostgreSQL the test also
runs the check back to back on a connection of its own while they start, which hits it
most of the time (before the fix: 2 runs of 3 failed).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.storage import open_database
from signalbox.storage.ownership import check_postgresql
from tests.cli.helpers import free_port
from tests.cluster.processes import Processes
from tests.serving import fetch, wait_for
from tests.storage.helpers import Worker, started
from tests.stores import pg_schema_url, sqlite_url

ROUNDS = {"sqlite": 1, "postgresql": 2}
START_S = 90.0  # four Python processes starting at once on a loaded 2-core box
# a log line at ERROR or above, or a traceback: nothing of the kind is expected here
_TROUBLE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback|not a signalbox database")


@contextlib.contextmanager
def _empty_store(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield sqlite_url(tmp_path)  # no file yet: the racers create it
    else:
        with pg_schema_url() as url:
            yield url


def _start_all(url: str, root: Path, procs: Processes) -> dict[str, str]:
    """Start the four kinds at once; return each one's base URL (serve, agent) or ''."""
    serve_port, agent_listen = free_port(), f"127.0.0.1:{free_port()}"
    kinds = {
        "serve": ["serve"],
        "agent": ["agent", "--listen", agent_listen],
        "worker": ["worker", "--burst"],
        "collect": ["collect", "--once"],
    }
    dirs = {}
    for name in kinds:  # every directory ready first: the starts follow each other closely
        d = root / name
        (d / "spool").mkdir(parents=True)
        (d / "monitors").mkdir()
        (d / "signalbox.toml").write_text(
            f'store = "{url}"\nhost = "{name}"\n[statsd]\nenabled = false\n'
            f'[server]\nport = {serve_port}\n[collect]\nspool_dir = "spool"\n'
        )
        dirs[name] = d
    for name, argv in kinds.items():
        procs.start(name, argv, dirs[name])
    return {
        "serve": f"http://127.0.0.1:{serve_port}",
        "agent": f"http://{agent_listen}",
        "worker": "",
        "collect": "",
    }


def _started(procs: Processes, name: str, base: str) -> None:
    """``name`` answers ``/-/ready`` (a long-running kind) or exited 0 (a one-shot kind);
    an AssertionError with its log otherwise."""
    proc = procs.procs[name]
    if not base:
        try:
            code = proc.wait(START_S)
        except Exception:
            raise AssertionError(f"{name} did not finish:\n{procs.log(name)}") from None
        assert code == 0, f"{name} exited {code}:\n{procs.log(name)}"
        return

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited {proc.returncode}:\n{procs.log(name)}")
        return fetch(base + "/-/ready", timeout=5)[0] == 200

    try:
        wait_for(ready, timeout=START_S)
    except AssertionError as e:
        raise AssertionError(f"{name} never became ready ({e}):\n{procs.log(name)}") from None


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def test_every_kind_of_process_starts_together_on_an_empty_store(kind: str, tmp_path: Path) -> None:
    for n in range(ROUNDS[kind]):
        root = tmp_path / f"round{n}"
        with _empty_store(kind, root) as url, Processes(_logs(root)) as procs:
            stop = threading.Event()
            checker = _checking(url, stop) if kind == "postgresql" else None
            try:
                bases = _start_all(url, root, procs)
                for name, base in bases.items():
                    _started(procs, name, base)
            finally:
                stop.set()
            if checker is not None:
                assert checker.outcome(30) > 0  # it looked before the schema was there
            for name in bases:
                trouble = [ln for ln in procs.log(name).splitlines() if _TROUBLE.search(ln)]
                assert not trouble, f"round {n}, {name}: {trouble[0]}\n{procs.log(name)}"
            # every kind's components: the samples' (collect, agent), the queue's (worker,
            # serve; on SQLite in tasks.db beside the store), the monitors' and the server's
            # own (serve)
            components = _components(url)
            if kind == "sqlite":
                components |= _components(sqlite_url(root).replace("signalbox.db", "tasks.db"))
            assert {"metrics", "tasks", "monitors", "monitor_outbox", "auth"} <= components


def _checking(url: str, stop: threading.Event) -> Worker:
    """The ownership check every open runs, back to back on a connection of its own, from
    before the processes start until the schema has signalbox's ``schema_version``; its
    result is how many checks ran. Raises what a check raised (before the fix:
    "not a signalbox database" when one straddled a process's first migration)."""
    db = open_database(url)  # the schema is empty: nothing to judge yet

    def check() -> int:
        looks = 0
        try:
            deadline = time.monotonic() + START_S
            while not stop.is_set() and time.monotonic() < deadline:
                check_postgresql(db)
                looks += 1
                if looks % 20 == 0 and "schema_version" in db.table_names():
                    return looks
            raise AssertionError(f"no schema_version after {looks} checks")
        finally:
            db.close()

    return started(check)


def _components(url: str) -> set[str]:
    db = open_database(url)
    try:
        return {r[0] for r in db.query("SELECT component FROM schema_version")}
    finally:
        db.close()


def _logs(root: Path) -> Path:
    (root / "logs").mkdir(parents=True)
    return root / "logs"
