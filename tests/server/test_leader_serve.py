"""Two real ``signalbox serve`` processes on one PostgreSQL schema: one leads (evaluates
monitors, sends notifications, compacts), the other stands by. The leader stalls
(SIGSTOP) in the middle of an incident: the other takes over within seconds, the incident's
recovery is sent once, by the new leader, rollups go on, and the stalled one, woken after
its lease, does nothing as leader. Then the new leader is killed (SIGKILL) and the first
takes over again. A receiver that had not answered the stalled leader's send gets it again
at once, under the same id (the one at-least-once window: a receiver deduplicates by it),
and everything after it once.

The monitor's metric is written by the test itself, into the shared store, so that it does
not depend on which instance collects; each instance has a ``host`` of its own, so the
monitor state series it writes say who evaluated.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.metrics.samples import Sample
from signalbox.monitors.outbox.store import Outbox
from signalbox.runtime import open_metric_store
from signalbox.storage import open_database
from tests.cli.helpers import SIGNALBOX, free_port
from tests.monitors.delivery_helpers import Hook, hook
from tests.serving import fetch, wait_for
from tests.stores import pg_schema_url

pytestmark = pytest.mark.service("postgresql")

MONITOR = """
- name: queue_deep
  description: The queue is deeper than its workers can drain.
  query: max(queue_depth)
  critical: "> 5"
  repeat: 1h
  notify: [hook, held]
"""


def config(url: str, host: str, port: int, hook_url: str, held_url: str) -> str:
    return (
        f'store = "{url}"\nhost = "{host}"\n'
        '[collect]\ninterval = "1s"\n[statsd]\nenabled = false\n'
        '[retention]\nraw = "1h"\ntiers = "1s:1h"\n'
        f'[server]\nport = {port}\nleader_ttl = "3s"\n'
        '[monitors]\ninterval = "500ms"\nretry_delay = "200ms"\nretry_max_delay = "1s"\n'
        f'[notifiers.hook]\ntype = "webhook"\nurl = "{hook_url}"\n'
        f'[notifiers.held]\ntype = "webhook"\nurl = "{held_url}"\ntimeout = "2s"\n'
    )


@contextlib.contextmanager
def instance(root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``signalbox serve`` in ``root`` (output in root/serve.log); killed at the end if the
    test has not stopped it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    with (root / "serve.log").open("ab") as out:
        proc = subprocess.Popen([SIGNALBOX, "serve"], cwd=root, env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def ready(base: str) -> str:
    status, body = fetch(base + "/-/ready")
    return body if status == 200 else ""


def query(base: str, promql: str) -> dict[str, float]:
    """``{host label (or server label): value}`` of an instant query."""
    status, body = fetch(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    out = {}
    for r in json.loads(body)["data"]["result"]:
        m = r["metric"]
        out[m.get("server") or m.get("host", "")] = float(r["value"][1])
    return out


class Depth:
    """Writes ``queue_depth`` into the shared store every 200 ms, as told."""

    def __init__(self, config_file: Path) -> None:
        self.store = open_metric_store(load_settings(str(config_file), environ={}))
        self.value = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def backfill(self, seconds: int) -> None:
        """A value a second for the last ``seconds``: buckets past the rollup grace (30 s),
        for compaction to build."""
        now_ms = int(time.time() * 1000)
        for ago in range(seconds, 0, -1):
            self.store.write(
                [Sample("queue_depth", (("host", "queue"),), 0.0)], now_ms - ago * 1000
            )

    def run(self) -> None:
        while not self.stop.is_set():
            sample = Sample("queue_depth", (("host", "queue"),), self.value)
            self.store.write([sample], int(time.time() * 1000))
            self.stop.wait(0.2)


def rows(outbox: Outbox, notifier: str) -> list[tuple[str, int]]:
    """(status, attempts) of ``notifier``'s outbox rows, oldest first."""
    return [(e.status, e.attempts) for e in outbox.entries() if e.notifier == notifier]


def kinds(h: Hook) -> list[str]:
    return [b["kind"] for b in h.bodies()]


def test_one_leader_at_a_time_through_a_stall_and_a_kill_without_losing_a_notification(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url())
        receiver = stack.enter_context(hook(status=200))
        held = stack.enter_context(hook(status=None))  # holds the first send: in flight
        roots, bases = {}, {}
        for name in ("a", "b"):
            root = roots[name] = tmp_path / name
            (root / "monitors").mkdir(parents=True)
            (root / "monitors" / "queue.yaml").write_text(MONITOR)
            port = free_port()
            (root / "signalbox.toml").write_text(config(url, name, port, receiver.url, held.url))
            bases[name] = f"http://127.0.0.1:{port}"
        depth = Depth(roots["a"] / "signalbox.toml")
        stack.callback(depth.store.close)
        depth.backfill(90)
        depth.thread.start()
        stack.callback(depth.thread.join, 5)
        stack.callback(depth.stop.set)
        procs = {name: stack.enter_context(instance(roots[name])) for name in ("a", "b")}

        # one leads, and both say which
        said = {n: wait_for(lambda n=n: ready(bases[n]), timeout=30) for n in bases}
        first = next(n for n, text in said.items() if "(this instance)" in text)
        second = "b" if first == "a" else "a"
        name = {n: f"{n}:{bases[n].rsplit(':', 1)[1]}" for n in bases}  # HOST:PORT
        assert said[first].endswith(f"leader: {name[first]} (this instance)\n"), said
        assert said[second].endswith(f"leader: {name[first]}\n"), said

        # the incident begins: one notification to each receiver, sent by the leader
        depth.value = 9.0
        wait_for(lambda: kinds(receiver) == ["firing"] and kinds(held) == ["firing"], timeout=10)
        db = stack.enter_context(contextlib.closing(open_database(url)))
        outbox = Outbox(db)
        wait_for(lambda: rows(outbox, "hook") == [("sent", 1)], timeout=5)
        # exactly one instance evaluates: the state series carry the evaluator's host
        evaluated = query(bases[second], "count_over_time(signalbox_monitor_state[1m])")
        assert set(evaluated) == {first}, evaluated
        leaders = {name[first]: 1.0, name[second]: 0.0}
        assert query(bases[second], "signalbox_leader") == leaders
        watermark_before = wait_for(  # the leader compacted as it started
            lambda: db.query("SELECT max(watermark_ms) FROM metric_rollups")[0][0], timeout=10
        )

        # the leader stalls while "held" still waits for its answer (it answers from now
        # on); the queue drains meanwhile
        procs[first].send_signal(signal.SIGSTOP)
        stalled = time.monotonic()
        held.status = 200
        depth.value = 1.0
        wait_for(lambda: "(this instance)" in ready(bases[second]), timeout=10)
        took_over = time.monotonic() - stalled
        assert took_over < 6, took_over  # TTL 3 s, tried every 1 s
        procs[first].send_signal(signal.SIGCONT)  # wakes after its lease: it must not act

        # the recovery, sent once by the new leader; the send the stalled one left
        # unanswered went again at once (not after the outbox's 2-minute claim lease),
        # under its id, before the recovery it precedes
        wait_for(lambda: kinds(receiver) == ["firing", "resolved"], timeout=10)
        wait_for(lambda: kinds(held) == ["firing", "firing", "resolved"], timeout=10)
        wait_for(lambda: ready(bases[first]).endswith(f"leader: {name[second]}\n"), timeout=5)
        time.sleep(1.0)  # both run on: nothing more is sent (repeat is 1h)
        assert kinds(receiver) == ["firing", "resolved"]
        assert len(kinds(held)) == 3
        evaluated = query(bases[second], "count_over_time(signalbox_monitor_state[1s])")
        assert set(evaluated) == {second}, evaluated  # the woken one does not evaluate
        assert query(bases[second], "signalbox_leader") == {name[first]: 0.0, name[second]: 1.0}
        watermark = db.query("SELECT max(watermark_ms) FROM metric_rollups")[0][0]
        assert watermark >= watermark_before + 3000, (watermark_before, watermark)

        # now the new leader is killed; the first one takes over again, a new incident is
        # sent once, by it alone
        procs[second].send_signal(signal.SIGKILL)
        procs[second].wait(10)
        killed = time.monotonic()
        wait_for(lambda: "(this instance)" in ready(bases[first]), timeout=10)
        assert time.monotonic() - killed < 6  # (its session gone: one attempt, 1 s, mostly)
        depth.value = 9.0
        wait_for(lambda: kinds(receiver) == ["firing", "resolved", "firing"], timeout=10)
        wait_for(lambda: len(kinds(held)) == 4, timeout=10)
        time.sleep(1.0)
        assert kinds(receiver) == ["firing", "resolved", "firing"]
        assert len({b["id"] for b in receiver.bodies()}) == 3
        assert kinds(held) == ["firing", "firing", "resolved", "firing"]
        held_ids = [b["id"] for b in held.bodies()]
        assert held_ids[0] == held_ids[1] and len(set(held_ids)) == 3
        assert rows(outbox, "hook") == [("sent", 1)] * 3
        assert rows(outbox, "held") == [("sent", 2), ("sent", 1), ("sent", 1)]
        assert query(bases[first], "signalbox_leader") == {name[first]: 1.0, name[second]: 0.0}

        procs[first].send_signal(signal.SIGTERM)
        assert procs[first].wait(20) in (0, -signal.SIGTERM)

    first_log = (roots[first] / "serve.log").read_text()
    second_log = (roots[second] / "serve.log").read_text()
    assert "does not lead any more" in first_log, first_log
    # the stalled leader's session lived on: replaced when its lease expired; the killed
    # one's session died with it: replaced at the next attempt, not after the TTL
    assert f"taking over from {name[first]} (its lease expired)" in second_log, second_log
    assert f"taking over from {name[second]} (its session is gone)" in first_log, first_log
    assert "stopped leading: lease released" in first_log, first_log
    assert "Traceback" not in first_log + second_log
