"""``monitors run --once`` on a PostgreSQL store respects the ``serve:leader`` lease: while
another instance leads (it evaluates and notifies), the command refuses, naming it, and
exits 1; ``--force`` runs the pass anyway; with nobody leading it takes the lease for its
pass and releases it. The live leader here is a real election (the one ``serve`` runs) in
the test process, which does nothing else: whatever is evaluated or sent is the command's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from signalbox.storage import open_database
from signalbox.storage.leader import LEASE_NAME, LeaseLeadership
from tests.cli.helpers import run
from tests.cli.test_monitors_ops_cli import Project
from tests.monitors.notify.notify_helpers import Receiver, receiver
from tests.stores import pg_schema_url, sqlite_url

__all__ = ["receiver"]


def monitors(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return run("--config", str(project.config), "monitors", *args, cwd=project.root)


def lease_rows(url: str) -> list[tuple[str, ...]]:
    db = open_database(url)
    try:
        return [
            tuple(r)
            for r in db.query("SELECT name FROM storage_leases WHERE name = ?", (LEASE_NAME,))
        ]
    finally:
        db.close()


@pytest.mark.service("postgresql")
def test_run_once_refuses_while_another_instance_leads(tmp_path: Path, receiver: Receiver) -> None:
    with pg_schema_url() as url:
        project = Project(tmp_path, receiver.url, url)
        project.put(9, shard="7")
        db = open_database(url)
        leader = LeaseLeadership(db, "web9:8080", 30.0)
        leader.start()
        try:
            assert leader.leading()
            refused = monitors(project, "run", "--once")
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert (
                "signalbox: monitors not evaluated: web9:8080 leads this store (lease "
                "serve:leader): it evaluates the monitors and sends their notifications"
            ) in refused.stderr
            assert "--force runs one anyway" in refused.stderr
            assert refused.stdout == "" and "Traceback" not in refused.stderr
            assert receiver.requests == []
            status = json.loads(monitors(project, "status", "--json").stdout)
            assert all(m["series"] == [] for m in status["monitors"])  # nothing evaluated
            assert leader.leading()  # its lease untouched

            forced = monitors(project, "run", "--once", "--force")
            assert forced.returncode == 0, forced.stdout + forced.stderr
            assert "--force: web9:8080 leads this store and evaluates the monitors too" in (
                forced.stderr
            )
            assert 'resize_slow{shard="7"}: OK -> CRITICAL' in forced.stdout
            assert len(receiver.requests) == 1
            assert leader.leading()
        finally:
            leader.stop()  # released, as a serve instance that stops cleanly
            db.close()

        # nobody leads now: the pass takes the lease, evaluates, notifies, and lets go
        project.put(1, shard="7")
        done = monitors(project, "run", "--once")
        assert done.returncode == 0, done.stdout + done.stderr
        assert 'resize_slow{shard="7"}: CRITICAL -> OK' in done.stdout
        assert done.stderr == ""  # the lease's own log lines are not cron's business
        assert [json.loads(r.body)["kind"] for r in receiver.requests] == ["firing", "resolved"]
        assert lease_rows(url) == []  # released: a serve instance leads at its next attempt


def test_run_once_on_sqlite_needs_no_lease(tmp_path: Path, receiver: Receiver) -> None:
    """One host by design: the pass runs as it always did, ``--force`` or not."""
    project = Project(tmp_path, receiver.url, sqlite_url(tmp_path))
    project.put(9)
    done = monitors(project, "run", "--once")
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    assert "1 notifications queued, 1 sent, 0 failed" in done.stdout
    assert monitors(project, "run", "--once", "--force").returncode == 0
    db = open_database(sqlite_url(tmp_path))
    assert "storage_leases" not in db.table_names()
    db.close()
