"""`signalbox agent`: collectors only, stopped cleanly by SIGTERM (on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from signalbox.config import load_settings
from signalbox.metrics.samples import Matcher
from signalbox.runtime import open_metric_store
from tests.cli.helpers import SIGNALBOX, StoreProject, free_port, store_project

__all__ = ["store_project"]


def test_agent_collects_spool_and_statsd_until_sigterm(store_project: StoreProject) -> None:
    tmp_path = store_project.root
    udp = free_port(socket.SOCK_DGRAM)
    store_project.configure(
        f'host = "agent1"\n[collect]\ninterval = "1s"\n[statsd]\nlisten = "127.0.0.1:{udp}"\n'
    )
    spool = tmp_path / ".signalbox" / "spool"
    spool.mkdir(parents=True)
    (spool / "jobs.metrics").write_text("backup_bytes=123\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    proc = subprocess.Popen([SIGNALBOX, "agent"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        store = open_metric_store(load_settings(str(tmp_path / "signalbox.toml"), environ={}))
        deadline = time.monotonic() + 20
        sent = False
        while time.monotonic() < deadline:
            if not sent:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b"deploys:1|c", ("127.0.0.1", udp))
            got = {
                n: v
                for n, _, _, v in store.latest(
                    [Matcher("__name__", "=~", "backup_bytes|deploys_total")]
                )
            }
            if "deploys_total" in got:
                sent = True
            if got.get("backup_bytes") == 123.0 and got.get("deploys_total", 0) >= 1:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"agent did not collect: {got}")
        store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
