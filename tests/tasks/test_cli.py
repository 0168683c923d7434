"""``signalbox worker`` and ``signalbox tasks`` end to end, the real executable, on SQLite
and PostgreSQL: a module that fails to import leaves the worker running; a failing job's
traceback is in ``tasks show``; dead jobs are retried; queues pause and resume; each of
those writes is in ``tasks history`` as ``cli (user@host)``."""

from __future__ import annotations

import getpass
import json
import socket

from signalbox.config import load_settings
from signalbox.tasks.jobs import NewJob
from signalbox.tasks.registry import open_queue_store
from tests.cli.helpers import StoreProject, run, store_project

__all__ = ["store_project"]

JOBS = """
import signalbox

@signalbox.task(queue="photos", retries=0)
def resize(photo_id):
    if photo_id < 0:
        raise ValueError(f"no photo {photo_id}")
"""


def _enqueue(p: StoreProject, *jobs: tuple[str, str, str]) -> list[int]:
    store = open_queue_store(load_settings(str(p.config)))
    try:
        return [store.enqueue(NewJob(q, t, a, 0, 0)).id for q, t, a in jobs]
    finally:
        store.close()


def test_worker_runs_jobs_keeps_going_past_a_bad_module_and_tasks_shows_the_error(
    store_project: StoreProject,
) -> None:
    p = store_project
    (p.root / "photojobs.py").write_text(JOBS)
    (p.root / "brokenjobs.py").write_text("import no_such_dependency\n")
    p.configure('[tasks]\nmodules = ["photojobs", "brokenjobs"]\n')
    ok, bad, newer, corrupt = _enqueue(
        p,
        ("photos", "photojobs.resize", "[[1]]"),
        ("photos", "photojobs.resize", "[[-1]]"),
        ("photos", "photojobs.v2_only", "[[1]]"),
        ("photos", "photojobs.resize", "[[1"),
    )
    r = run("worker", "--burst", "--queue", "photos", cwd=p.root)
    assert r.returncode == 0, r.stderr
    assert (
        "brokenjobs failed to import" in r.stderr
        and "No module named 'no_such_dependency'" in r.stderr
    )
    assert (
        f"job {bad}, queue photos, attempt 1" in r.stderr and "ValueError: no photo -1" in r.stderr
    )
    assert "stopped (dead 2, done 1, held 1)" in r.stderr

    show = run("tasks", "show", str(bad), cwd=p.root)
    assert show.returncode == 0 and "state:      dead" in show.stdout
    assert "ValueError: no photo -1" in show.stdout and "Traceback" in show.stdout
    held = json.loads(run("tasks", "show", str(newer), "--json", cwd=p.root).stdout)
    assert held["state"] == "scheduled" and "failed to import: brokenjobs" in held["last_error"]
    assert "corrupt job row" in run("tasks", "show", str(corrupt), cwd=p.root).stdout
    assert run("tasks", "show", str(ok), cwd=p.root).returncode == 2  # done: deleted

    st = json.loads(run("tasks", "status", "--json", cwd=p.root).stdout)
    [photos] = st["queues"]
    assert photos["counts"] == {"done": 1, "failed": 2, "dead": 2, "deferred": 0}
    assert (photos["dead"], photos["scheduled"], photos["depth"]) == (2, 1, 0)

    assert run("tasks", "retry", str(newer), cwd=p.root).returncode == 2  # not dead
    r = run("tasks", "retry", "--all-dead", "--queue", "photos", cwd=p.root)
    assert r.returncode == 0 and "2 dead jobs of queue photos are ready again" in r.stdout
    assert (
        json.loads(run("tasks", "status", "--json", cwd=p.root).stdout)["queues"][0]["depth"] == 2
    )


def test_a_paused_queue_waits_until_resumed(store_project: StoreProject) -> None:
    p = store_project
    (p.root / "photojobs.py").write_text(JOBS)
    p.configure('[tasks]\nmodules = ["photojobs"]\n')
    _enqueue(p, ("photos", "photojobs.resize", "[[1]]"))
    assert run("tasks", "pause", "photos", "--reason", "db migration", cwd=p.root).returncode == 0
    status = run("tasks", "status", cwd=p.root).stdout
    assert "paused by" in status and "db migration" in status
    assert "stopped (no jobs)" in run("worker", "--burst", cwd=p.root).stderr
    assert "queue photos resumed" in run("tasks", "resume", "photos", cwd=p.root).stdout
    assert "done 1" in run("worker", "--burst", cwd=p.root).stderr
    bad = run("tasks", "pause", "no spaces", cwd=p.root)
    assert bad.returncode == 2 and "not a queue name" in bad.stderr


def test_cli_writes_are_in_tasks_history_as_cli_user_at_host(store_project: StoreProject) -> None:
    p = store_project
    (p.root / "photojobs.py").write_text(JOBS)
    p.configure('[tasks]\nmodules = ["photojobs"]\n')
    _, dead1, _ = _enqueue(
        p,
        ("photos", "photojobs.resize", "[[1]]"),
        ("photos", "photojobs.resize", "[[-1]]"),
        ("photos", "photojobs.resize", "[[-2]]"),
    )
    assert "dead 2, done 1" in run("worker", "--burst", cwd=p.root).stderr
    empty = run("tasks", "history", cwd=p.root)
    assert empty.returncode == 0 and "no operator actions recorded" in empty.stdout

    assert run("tasks", "retry", str(dead1), "--reason", "disk freed", cwd=p.root).returncode == 0
    assert run("tasks", "retry", str(dead1), cwd=p.root).returncode == 2  # not dead: refused
    assert run("tasks", "retry", "--all-dead", "--queue", "photos", cwd=p.root).returncode == 0
    assert run("tasks", "pause", "reports", "--reason", "db3 rebuild", cwd=p.root).returncode == 0
    assert run("tasks", "resume", "reports", "--reason", "done", cwd=p.root).returncode == 0
    bad = run("tasks", "resume", "reports", "--reason", "a\x07b", cwd=p.root)
    assert bad.returncode == 2 and "--reason" in bad.stderr

    who = f"cli ({getpass.getuser()}@{socket.gethostname()})"
    r = run("tasks", "history", "--json", cwd=p.root)
    assert r.returncode == 0, r.stderr
    got = [(e["by"], e["action"], e["queue"], e["job_id"], e["reason"], e["count"])
           for e in json.loads(r.stdout)]  # fmt: skip
    assert got == [
        (who, "resume", "reports", None, "done", 1),
        (who, "pause", "reports", None, "db3 rebuild", 1),
        (who, "retry_dead", "photos", None, "", 1),
        (who, "retry", "photos", dead1, "disk freed", 1),
    ]
    photos = json.loads(run("tasks", "history", "--queue", "photos", "--json", cwd=p.root).stdout)
    assert [e["action"] for e in photos] == ["retry_dead", "retry"]
    text = run("tasks", "history", "--queue", "reports", cwd=p.root).stdout.splitlines()
    assert text[0].split() == ["WHEN", "BY", "ACTION", "QUEUE", "JOB", "COUNT", "REASON"]
    assert len(text) == 3 and who in text[1] and text[1].rstrip().endswith("done")
    assert "pause" in text[2] and "db3 rebuild" in text[2]
