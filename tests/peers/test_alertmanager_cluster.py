"""Two real Alertmanagers (Debian ``prometheus-alertmanager``) in a gossip cluster, fed by two
``signalbox serve`` instances on one PostgreSQL schema, page once per alert and once per
resolve, through a leader killed mid-incident.

As Prometheus does, the ``alertmanager`` notifier posts every alert to each member
(``urls``) and leaves deduplication to the cluster: the member that is not first in the
cluster waits ``--cluster.peer-timeout`` before it notifies, and then skips a page its peer
already logged (the notification log travels by gossip). Both members use one webhook
receiver, a small HTTP server in the test that records every POST: the pages.

Only the leader evaluates and notifies; the metric is collected from a spool by
``signalbox collect --once`` (a cron job on an app host), so it does not depend on which
instance lives. The leader re-sends the firing alert every ``repeat`` (1 s): each re-send,
before and after the takeover, reaches both members, which page nothing new.

Why the waits are long enough to see a duplicate: a member's group flushes every
``group_interval``; a duplicate of a page would come from the other member's flush of the
same instant, at most ``peer_timeout`` later (the two groups started within milliseconds:
the posts run in parallel). ``group_interval`` is kept above ``peer_timeout`` so that a
member's flush (wait included) never runs into its next one: with the flushes drifting
apart, a member that snapshotted a firing group before the resolve reached it would page
it as firing again once its peer had logged the resolve.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from signalbox.monitors.outbox.store import Outbox
from signalbox.storage import open_database
from tests.cli.helpers import SIGNALBOX, free_port
from tests.monitors.delivery_helpers import Hook, hook
from tests.server.test_leader_serve import instance, ready
from tests.serving import fetch, wait_for
from tests.stores import pg_schema_url

pytestmark = [pytest.mark.peer("alertmanager"), pytest.mark.service("postgresql")]

PEER_TIMEOUT_S = 1.0
GROUP_INTERVAL_S = 2.0  # above PEER_TIMEOUT_S by a second: a flush (wait included) ends first
DUPLICATE_WAIT_S = PEER_TIMEOUT_S + GROUP_INTERVAL_S
"""After a page: its duplicate, if any, would have come by now (see the module's doc)."""

ALERTMANAGER_YML = f"""\
route:
  receiver: pages
  group_by: [alertname]
  group_wait: 500ms
  group_interval: {GROUP_INTERVAL_S:g}s
  repeat_interval: 1h
receivers:
  - name: pages
    webhook_configs:
      - url: {{pages}}
        send_resolved: true
"""

MONITOR = """
- name: queue_deep
  description: The queue is deeper than its workers can drain.
  query: max(queue_depth)
  critical: "> 5"
  repeat: 1s
  no_data: ok
  notify: [am]
"""


@dataclass
class Member:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def status(self) -> dict[str, Any]:
        code, body = fetch(self.url + "/api/v2/status", timeout=5)
        assert code == 200, body
        cluster: dict[str, Any] = json.loads(body)["cluster"]
        return cluster

    def alerts(self, name: str) -> list[dict[str, Any]]:
        code, body = fetch(self.url + "/api/v2/alerts", timeout=5)
        assert code == 200, body
        return [a for a in json.loads(body) if a["labels"]["alertname"] == name]


@contextlib.contextmanager
def cluster(root: Path, pages_url: str) -> Iterator[list[Member]]:
    """Two Alertmanagers gossiping on loopback (each names the other as its peer), started
    (:func:`settled` waits until they may notify), stopped at the end."""
    binary = shutil.which("prometheus-alertmanager")
    assert binary is not None  # the peer mark fails (CI) or skips the test otherwise
    config = root / "alertmanager.yml"
    config.write_text(ALERTMANAGER_YML.format(pages=pages_url))
    gossip = [free_port(), free_port()]
    members: list[Member] = []
    try:
        for i in range(2):
            port, log = free_port(), root / f"am{i}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.path={root / f'am{i}'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        f"--cluster.listen-address=127.0.0.1:{gossip[i]}",
                        f"--cluster.peer=127.0.0.1:{gossip[1 - i]}",
                        "--cluster.gossip-interval=50ms",
                        "--cluster.pushpull-interval=1s",
                        f"--cluster.peer-timeout={PEER_TIMEOUT_S:g}s",
                        "--log.level=debug",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            members.append(Member(f"http://127.0.0.1:{port}", proc, log))
        yield members
    finally:
        for m in reversed(members):  # one by one: a member leaves while its peer listens
            m.proc.terminate()
            try:
                m.proc.wait(15)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(5)


def settled(members: list[Member]) -> None:
    """Until both members see two and their gossip has settled (they notify only then)."""

    def ready() -> bool:
        for m in members:
            if m.proc.poll() is not None:
                pytest.fail(f"alertmanager exited: {m.log.read_text()[-3000:]}")
            s = m.status()
            if s["status"] != "ready" or len(s.get("peers") or []) != 2:
                return False
        return True

    wait_for(ready, timeout=60)


def spool_value(spool: Path, value: float) -> None:
    """The app's spool file, replaced in one step (a half-written file is never read)."""
    spool.mkdir(exist_ok=True)
    tmp = spool / "queue.metrics.tmp"
    tmp.write_text(f"queue_depth={value:g}\n")
    os.replace(tmp, spool / "queue.metrics")


def collect_once(app: Path) -> None:
    """``signalbox collect --once`` on the app host, as its cron job runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    done = subprocess.run(
        [SIGNALBOX, "collect", "--once", "--no-compact"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def pages(receiver: Hook) -> list[tuple[str, str]]:
    """(status, alertname) of each page, in the order they came."""
    return [(b["status"], a["labels"]["alertname"]) for b in receiver.bodies() for a in b["alerts"]]


def senders(receiver: Hook) -> list[str]:
    """Which member sent each page (its external URL), for a failure's message."""
    return [b["externalURL"] for b in receiver.bodies()]


def updated_at(alert: dict[str, Any]) -> float:
    """An alert's ``updatedAt`` (RFC 3339, nanoseconds) as a Unix time."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", alert["updatedAt"]).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def config(url: str, host: str, port: int, members: list[Member]) -> str:
    urls = ", ".join(f'"{m.url}"' for m in members)
    return (
        f'store = "{url}"\nhost = "{host}"\n'
        '[collect]\ninterval = "1s"\n[statsd]\nenabled = false\n'
        f'[server]\nport = {port}\nleader_ttl = "3s"\n'
        '[monitors]\ninterval = "500ms"\nretry_delay = "200ms"\nretry_max_delay = "1s"\n'
        f'[notifiers.am]\ntype = "alertmanager"\nurls = [{urls}]\ntimeout = "2s"\n'
    )


def test_two_serve_and_an_alertmanager_cluster_page_once_through_a_leader_kill(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(hook(status=200, path="/pages"))
        (tmp_path / "am").mkdir()
        members = stack.enter_context(cluster(tmp_path / "am", receiver.url))
        url = stack.enter_context(pg_schema_url())

        app = tmp_path / "app"  # the app host: its spool, collected into the shared store
        app.mkdir()
        (app / "signalbox.toml").write_text(
            f'store = "{url}"\nhost = "app"\n[collect]\nspool_dir = "spool"\n'
        )
        # the app's first pass creates the schema: two serve starting at once on an empty
        # schema race in its migration (one found the other's first tables and refused)
        spool_value(app / "spool", 1)
        collect_once(app)

        # the members settle while the serve instances start
        roots, bases = {}, {}
        for name in ("a", "b"):
            root = roots[name] = tmp_path / name
            (root / "monitors").mkdir(parents=True)
            (root / "monitors" / "queue.yaml").write_text(MONITOR)
            port = free_port()
            (root / "signalbox.toml").write_text(config(url, name, port, members))
            bases[name] = f"http://127.0.0.1:{port}"
        procs = {name: stack.enter_context(instance(roots[name])) for name in ("a", "b")}
        settled(members)
        said = {n: wait_for(lambda n=n: ready(bases[n]), timeout=30) for n in bases}
        first = next(n for n, text in said.items() if "(this instance)" in text)
        second = "b" if first == "a" else "a"

        # the incident: one page, though both members got the alert (and its repeats)
        spool_value(app / "spool", 9)
        collect_once(app)
        wait_for(lambda: pages(receiver), timeout=20)
        for m in members:
            (alert,) = m.alerts("queue_deep")
            assert alert["status"]["state"] == "active", alert
        time.sleep(DUPLICATE_WAIT_S)
        assert pages(receiver) == [("firing", "queue_deep")], senders(receiver)

        # the leader dies; the other leads and re-sends the alert to both members: no page
        procs[first].send_signal(signal.SIGKILL)
        procs[first].wait(10)
        wait_for(lambda: "(this instance)" in ready(bases[second]), timeout=15)
        took_over = time.time()
        db = stack.enter_context(contextlib.closing(open_database(url)))
        outbox = Outbox(db)

        def resent() -> bool:
            rows = outbox.entries(monitor="queue_deep")
            return any(
                e.kind == "repeat" and e.status == "sent" and e.created_ms > took_over * 1000
                for e in rows
            )

        try:
            wait_for(resent, timeout=15)
        except AssertionError:
            rows = [(e.kind, e.status, e.created_ms, e.last_error) for e in outbox.entries()]
            raise AssertionError(f"no re-send by the new leader at {took_over}: {rows}") from None
        for m in members:  # each member got the re-send (Alertmanager notes when)
            wait_for(lambda m=m: updated_at(m.alerts("queue_deep")[0]) > took_over, timeout=5)
        time.sleep(DUPLICATE_WAIT_S)
        assert pages(receiver) == [("firing", "queue_deep")], senders(receiver)

        # the queue drains: one resolved page, sent by the new leader through both members
        spool_value(app / "spool", 1)
        collect_once(app)
        wait_for(lambda: len(pages(receiver)) >= 2, timeout=20)
        for m in members:
            assert m.alerts("queue_deep") == []  # resolved: listed by neither
        time.sleep(DUPLICATE_WAIT_S)
        assert pages(receiver) == [("firing", "queue_deep"), ("resolved", "queue_deep")], senders(
            receiver
        )
        kinds = [(e.kind, e.status) for e in outbox.entries(monitor="queue_deep")]
        assert kinds[0] == ("firing", "sent") and kinds[-1] == ("resolved", "sent"), kinds
        assert {k for k, _ in kinds} == {"firing", "repeat", "resolved"}, kinds

        procs[second].send_signal(signal.SIGTERM)
        assert procs[second].wait(20) in (0, -signal.SIGTERM)

    log = (roots[second] / "serve.log").read_text()
    assert "Traceback" not in log, log
    assert not re.search(r"Alertmanager \S+ missed", log), log  # each post reached both
