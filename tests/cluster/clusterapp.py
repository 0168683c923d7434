"""The app of the cluster test, copied into the workers' project directory.

Imported by each ``signalbox worker`` through ``[tasks] modules``: the task ``record`` notes
each run in ``runs.txt`` as it starts and as it ends (``start|done JOB PID EPOCH_SECONDS``), one
``O_APPEND`` write a line, so the lines of several processes interleave whole: a run whose
process was killed has a start and no end. With ``CLUSTER_WATCH=1`` in its environment
the importing process also watches the flag ``cluster_switch`` through its own flags client
(:func:`watch`), as an app would at startup. Run as a script, it is the flag probe: a process
that only watches.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import signalbox
from signalbox import flags
from signalbox.config import load_settings

FLAG = "cluster_switch"
HERE = Path(__file__).resolve().parent

_runs = os.open(HERE / "runs.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


@signalbox.task(queue="cluster")
def record(i: int) -> None:
    os.write(_runs, f"start {i} {os.getpid()} {time.time()}\n".encode())
    time.sleep(0.15)  # long enough that a kill aimed at a run just started lands mid-run
    os.write(_runs, f"done {i} {os.getpid()} {time.time()}\n".encode())


def watch(out: Path) -> None:
    """Configure this process's flags client from ``signalbox.toml`` beside this file; once
    it listens for pushed changes, write ``ready``; then, at each change of ``FLAG``'s state
    as this process sees it, a line ``EPOCH_SECONDS STATE``. Runs until the process ends."""
    cache = flags.configure(load_settings(str(HERE / "signalbox.toml")))
    end = time.monotonic() + 60
    while not cache.listening and time.monotonic() < end:
        time.sleep(0.01)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"ready {cache.listening}\n".encode())
    last = None
    while True:
        now = flags.enabled(FLAG)
        if now != last:
            os.write(fd, f"{time.time()} {now}\n".encode())
            last = now
        time.sleep(0.005)


if os.environ.get("CLUSTER_WATCH") == "1":
    threading.Thread(
        target=watch, args=(HERE / f"flag-{os.getpid()}.log",), daemon=True, name="flag-watch"
    ).start()

if __name__ == "__main__":
    watch(Path(sys.argv[1]))
