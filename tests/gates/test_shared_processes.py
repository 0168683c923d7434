"""Shared gate probes across real processes: ``signalbox worker`` CLIs on one store (SQLite
and PostgreSQL), a prober SIGKILLed mid-probe, and a MySQL gate against the real MariaDB.

Probes are counted where they happen: the counting gate's probe appends a line (pid, time)
to a file; the MySQL gate's processes report their own ``gate.probes``. A probe may start
only once the last one's interval has passed, so over a span of S seconds a cluster makes
at most S / interval + 1 probes, whatever the number of workers and however loaded the box.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.gates.shared import SharedDecisions
from signalbox.storage import open_database
from signalbox.tasks.jobs import NewJob
from signalbox.tasks.registry import open_queue_store
from tests.stores import pg_schema_url, sqlite_url

INTERVAL = 0.3
SIGNALBOX = str(Path(sys.executable).parent / "signalbox")

COUNTED = """
import os, time
import signalbox
from signalbox.gates.base import CallableGate

_probes = os.open(os.environ["SB_PROBES"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_runs = os.open(os.environ["SB_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def counted():
    os.write(_probes, f"{os.getpid()} {time.time()}\\n".encode())
    return True


GATE = CallableGate(counted, name="counted", interval=float(os.environ["SB_INTERVAL"]))


@signalbox.task(queue="gated", gates=[GATE])
def work(i):
    time.sleep(0.02)
    os.write(_runs, f"{os.getpid()} {time.time()} {GATE.probes}\\n".encode())
"""

MYSQL = """
import os, time
import signalbox
from signalbox import gates

_runs = os.open(os.environ["SB_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
GATE = gates.mysql_load(
    "mysql://root@127.0.0.1:3306/test", max_running=10_000, name="shard",
    interval=float(os.environ["SB_INTERVAL"]),
)


@signalbox.task(queue="gated", gates=[GATE])
def work(i):
    time.sleep(0.02)
    os.write(_runs, f"{os.getpid()} {time.time()} {GATE.probes}\\n".encode())
"""


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with pg_schema_url() as u:
            yield u


def _project(root: Path, url: str, module: str, *, shared: bool = True) -> None:
    (root / "gatejobs.py").write_text(module)
    (root / "signalbox.toml").write_text(
        f'[tasks]\nmodules = ["gatejobs"]\nstore = "{url}"\npoll_interval = "50ms"\n'
        + ("" if shared else "\n[gates]\nshared = false\n")
    )


def _enqueue(root: Path, n: int) -> None:
    store = open_queue_store(load_settings(str(root / "signalbox.toml")))
    now = int(time.time() * 1000)
    for i in range(n):
        store.enqueue(NewJob("gated", "gatejobs.work", f"[[{i}]]", now, now))
    store.close()


def _workers(root: Path, n: int) -> list[tuple[int, float, int]]:
    """Run ``n`` ``signalbox worker --burst`` at once until the queue is empty; the runs
    they recorded: (pid, time, that process's gate probes so far)."""
    env = {
        **os.environ,
        "SB_PROBES": str(root / "probes.txt"),
        "SB_RUNS": str(root / "runs.txt"),
        "SB_INTERVAL": str(INTERVAL),
    }
    procs = []
    for i in range(n):
        with (root / f"worker{i}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    [SIGNALBOX, "--config", str(root / "signalbox.toml"), "worker", "--burst"],
                    cwd=root,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    for p in procs:
        assert p.wait(timeout=120) == 0, [(root / f"worker{i}.log").read_text() for i in range(n)]
    runs = []
    for line in (root / "runs.txt").read_text().splitlines():
        pid, t, probes = line.split()
        runs.append((int(pid), float(t), int(probes)))
    return runs


def _probes(root: Path) -> list[tuple[int, float]]:
    path = root / "probes.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(p), float(t)) for p, t in (line.split() for line in lines)]


def _show_status_count() -> int:
    """MariaDB's ``Com_show_status``: every ``SHOW [GLOBAL] STATUS`` any client ran."""
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Com_show_status'")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return int(row[1])


def _left(url: str) -> list[tuple[object, ...]]:
    """The jobs not run (deferred by a closed gate?) with their gate's reason."""
    db = open_database(url)
    try:
        return db.query("SELECT id, gate, gate_reason, defers FROM task_jobs")
    finally:
        db.close()


def _record(url: str, name: str) -> dict[str, object]:
    db = open_database(url)
    try:
        rows = SharedDecisions(db).records()
    finally:
        db.close()
    [rec] = [r for k, r in rows.items() if k.startswith(f"{name}#")]
    return {"probes": rec.probes, "prober": rec.prober, "open": rec.is_open}


def test_four_worker_processes_probe_once_per_interval_not_once_each(
    url: str, tmp_path: Path
) -> None:
    _project(tmp_path, url, COUNTED)
    _enqueue(tmp_path, 160)
    runs = _workers(tmp_path, 4)
    assert len(runs) == 160, _left(url)
    runners = {pid for pid, _, _ in runs}
    assert len(runners) >= 2, "the workers ran one after another, not at once"
    probes = _probes(tmp_path)
    span = probes[-1][1] - probes[0][1]
    assert len(probes) <= span / INTERVAL + 2, (len(probes), span)
    assert len(probes) >= 2  # several intervals were spanned
    rec = _record(url, "counted")
    assert rec["probes"] == len(probes) and rec["open"] is True


def test_with_sharing_off_every_worker_probes_for_itself(tmp_path: Path) -> None:
    _project(tmp_path, sqlite_url(tmp_path), COUNTED, shared=False)
    _enqueue(tmp_path, 40)
    runs = _workers(tmp_path, 2)
    runners = {pid for pid, _, _ in runs}
    assert {pid for pid, _ in _probes(tmp_path)} == runners  # each asked the gate itself
    db = open_database(sqlite_url(tmp_path))
    assert "gate_decisions" not in db.table_names()
    db.close()


@pytest.mark.service("postgresql")
@pytest.mark.service("mariadb")
def test_two_worker_clis_share_a_mysql_gates_probes(tmp_path: Path) -> None:
    with pg_schema_url() as url:
        _project(tmp_path, url, MYSQL)
        _enqueue(tmp_path, 120)
        before = _show_status_count()
        runs = _workers(tmp_path, 2)
        assert len(runs) == 120, _left(url)
        # the server's own count of SHOW STATUS statements (every client's, so only a floor
        # here: other tests on this server add theirs) saw at least the probes counted
        shown = _show_status_count() - before
        # each process's own count of SHOW GLOBAL STATUS it ran, at its last job
        by_pid: dict[int, int] = {}
        for pid, _, probes in runs:
            by_pid[pid] = max(by_pid.get(pid, 0), probes)
        total = sum(by_pid.values())
        span = max(t for _, t, _ in runs) - min(t for _, t, _ in runs)
        assert 1 <= total <= span / INTERVAL + 2, (by_pid, span)
        assert shown >= total
        rec = _record(url, "shard")
        assert rec["probes"] == total and rec["open"] is True


PROBER = """
import json, os, sys, time
from signalbox.gates.base import CallableGate
from signalbox.gates.shared import SharedDecisions
from signalbox.storage import open_database

url, log, hang_at, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
calls = 0


def probe():
    global calls
    calls += 1
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {time.time()} {calls}\\n")
    if calls == hang_at:
        time.sleep(3600)  # hung mid-probe: the test kills it here
    return True


shared = SharedDecisions(open_database(url), holder=f"p{os.getpid()}", lease=float(sys.argv[5]))
gate = CallableGate(probe, name="killme", interval=0.5)
shared.attach(gate)
end = time.time() + seconds
while time.time() < end:
    d = gate.check()
    print(json.dumps({"t": time.time(), "open": d.open, "reason": d.reason,
                      "shared": d.reading.get("shared")}), flush=True)
    time.sleep(0.05)
"""


LEASE_S = 2.0  # the shared decision's lease: the killed prober's holds that long


def test_a_prober_killed_mid_probe_is_replaced_after_its_lease(url: str, tmp_path: Path) -> None:
    script, log = tmp_path / "prober.py", tmp_path / "probes.txt"
    script.write_text(PROBER)
    a = subprocess.Popen(
        [sys.executable, str(script), url, str(log), "2", "60", str(LEASE_S)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # A probes once, then hangs in its second probe
            if log.exists() and len(log.read_text().splitlines()) == 2:
                break
            time.sleep(0.05)
        a.send_signal(signal.SIGKILL)
        a.wait()
        _, hung_at, _ = log.read_text().splitlines()[1].split()
        b = subprocess.run(
            # B runs a second past A's lease (from its own start, however late that is)
            [sys.executable, str(script), url, str(log), "0", str(LEASE_S + 1), str(LEASE_S)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        a.kill()
    assert b.returncode == 0, b.stderr
    seen = [json.loads(line) for line in b.stdout.splitlines()]
    prober_a, prober_b = f"p{a.pid}", None
    lease_end = float(hung_at) + LEASE_S
    for d in seen:
        assert d["open"], d  # the last decision while A's lease ran, then B's own
        if d["t"] < lease_end - 0.1:
            assert d["shared"]["prober"] == prober_a and d["shared"]["age_s"] >= 0.5, d
        elif d["shared"]["prober"] != prober_a:
            prober_b = d["shared"]["prober"]
    assert prober_b is not None and prober_b != prober_a, seen[-3:]
    b_probes = log.read_text().splitlines()[2:]
    assert b_probes and all(float(line.split()[1]) >= lease_end - 0.05 for line in b_probes)
