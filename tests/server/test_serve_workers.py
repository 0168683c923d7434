"""``serve --workers N``: a real ``signalbox serve`` runs the jobs another process enqueues,
writes the queue metrics, and stops gracefully (a running job finishes).

And without ``--workers``: ``serve`` writes the queue metrics itself, so a backlog with no
worker anywhere still shows on the charts and to ``queue:`` monitors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from tests.cli.helpers import free_port
from tests.serving import fetch, serve_process, wait_for

TASKS = """\
import pathlib
import time

import signalbox

OUT = pathlib.Path(__file__).parent / "out"


@signalbox.task(queue="files")
def touch(name):
    (OUT / name).write_text("done")


@signalbox.task(queue="slow")
def slow(name):
    (OUT / (name + ".started")).write_text("")
    time.sleep(2.0)
    (OUT / name).write_text("done")
"""


def _project(root: Path, port: int, *, modules: bool = True) -> None:
    (root / "jobs_mod.py").write_text(TASKS)
    (root / "out").mkdir()
    (root / "signalbox.toml").write_text(
        f"[server]\nport = {port}\n[statsd]\nenabled = false\n[tasks]\n"
        + ('modules = ["jobs_mod"]\n' if modules else "")
        + 'poll_interval = "0.2s"\nmetrics_interval = "1s"\n'
    )


def _enqueue(root: Path, code: str) -> None:
    """Run ``code`` in another Python process in ``root`` (its signalbox.toml names the queue)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    done = subprocess.run(
        [sys.executable, "-c", "import jobs_mod\n" + code],
        cwd=root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _query(base: str, expr: str) -> list[dict[str, object]]:
    status, body = fetch(base + "/api/v1/query?query=" + urllib.parse.quote(expr))
    assert status == 200, body
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result


def test_serve_with_a_worker_runs_jobs_enqueued_elsewhere_and_finishes_one_at_stop(
    tmp_path: Path,
) -> None:
    port = free_port()
    _project(tmp_path, port)
    out = tmp_path / "out"
    log: list[str] = []
    with serve_process(tmp_path, port, log, args=["--workers", "1"]) as base:
        _enqueue(tmp_path, "for i in range(5):\n    jobs_mod.touch.enqueue(f'f{i}')")
        wait_for(lambda: len([p for p in out.iterdir() if p.name.startswith("f")]) == 5)
        assert sorted(p.read_text() for p in out.iterdir()) == ["done"] * 5

        def counted() -> bool:
            status, body = fetch(base + "/api/v1/tasks/queues/files")
            return status == 200 and json.loads(body)["data"]["queue"]["counts"]["done"] == 5

        wait_for(counted)
        # the embedded worker leads the scheduler, so it writes the queue metrics
        wait_for(lambda: _query(base, 'signalbox_jobs_total{queue="files",outcome="done"} == 5'))
        # a job running when serve is told to stop is finished, not abandoned
        _enqueue(tmp_path, "jobs_mod.slow.enqueue('s1')")
        wait_for(lambda: (out / "s1.started").exists())
    assert (out / "s1").read_text() == "done"
    assert "1 embedded worker slot(s)" in log[0] and "2 task(s)" in log[0]


def test_serve_without_workers_writes_the_backlog_nobody_runs(tmp_path: Path) -> None:
    port = free_port()
    _project(tmp_path, port, modules=False)
    with serve_process(tmp_path, port) as base:
        _enqueue(tmp_path, "for i in range(3):\n    jobs_mod.touch.enqueue(f'f{i}')")
        wait_for(lambda: _query(base, 'signalbox_queue_depth{queue="files"} == 3'))
        [age] = _query(base, 'signalbox_queue_oldest_age_seconds{queue="files"}')
        assert "host" not in age["metric"]  # one series per queue, whoever writes it
    assert list((tmp_path / "out").iterdir()) == []  # nothing ran them
