"""The kill test: real ``signalbox worker`` processes SIGKILLed at random while 2,000 jobs
run. Every job completes at least once, none is lost; the duplicates (runs whose worker
died before recording them) are counted and reported. Leases are 2 s here so the test is
short; the worker and the store are the ones users run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from signalbox.config import load_settings
from signalbox.tasks.jobs import NewJob
from signalbox.tasks.registry import open_queue_store

JOBS = 2000
WORKERS = 3
KILLS = 8

TASKS = """
import os, time
import signalbox

_fd = os.open(os.environ["SB_KILL_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

@signalbox.task(queue="kill")
def record(i):
    time.sleep(0.002)  # work that takes a while, so kills land mid-batch
    os.write(_fd, f"{i}\\n".encode())
"""


def _start(root: Path, n: int) -> subprocess.Popen[bytes]:
    exe = str(Path(sys.executable).parent / "signalbox")
    with (root / f"worker{n}.log").open("ab") as log:
        return subprocess.Popen(
            [exe, "--config", str(root / "signalbox.toml"), "worker", "--concurrency", "2"],
            cwd=root,
            env={**os.environ, "SB_KILL_OUT": str(root / "runs.txt")},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def test_sigkilled_workers_lose_no_job(tmp_path: Path) -> None:
    (tmp_path / "killjobs.py").write_text(TASKS)
    (tmp_path / "signalbox.toml").write_text(
        '[tasks]\nmodules = ["killjobs"]\nlease = "2s"\npoll_interval = "50ms"\n'
    )
    settings = load_settings(str(tmp_path / "signalbox.toml"))
    store = open_queue_store(settings)
    now = int(time.time() * 1000)
    for i in range(JOBS):
        store.enqueue(NewJob("kill", "killjobs.record", f"[[{i}]]", now, now))
    rng = random.Random(11)
    workers = [_start(tmp_path, n) for n in range(WORKERS)]
    kills = 0
    deadline = time.monotonic() + 50
    try:
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 0.8))
            n = rng.randrange(WORKERS)
            workers[n].send_signal(signal.SIGKILL)
            workers[n].wait()
            kills += 1
            workers[n] = _start(tmp_path, n)
        while time.monotonic() < deadline:
            [s] = store.stats(int(time.time() * 1000))
            if s.ready + s.running + s.scheduled == 0:
                break
            time.sleep(0.2)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    runs = Counter(int(x) for x in (tmp_path / "runs.txt").read_text().split())
    [s] = store.stats(int(time.time() * 1000))
    store.close()
    missing = set(range(JOBS)) - set(runs)
    duplicates = sum(runs.values()) - len(runs)
    print(
        f"\nkill test: {kills} SIGKILLs, {JOBS} jobs, {len(runs)} completed, {duplicates} run twice or more"
    )
    assert kills == KILLS
    assert not missing, f"lost jobs: {sorted(missing)[:20]}"
    assert (s.ready, s.running, s.scheduled, s.dead) == (0, 0, 0, 0)
    assert s.outcomes is not None and s.outcomes["done"] == JOBS  # a lost lease records nothing
