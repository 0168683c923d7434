"""Several hosts on loopback (issue 14): three ``signalbox agent``, two ``signalbox serve``
and four ``signalbox worker`` processes, plus a flag probe, on one PostgreSQL schema, each
in a directory of its own as if on a host of its own, all started at once.

One test, run alone (``serial``): the cluster holds about 70 PostgreSQL connections (each
process one per thread that touches the store; the server allows 100), which beside another
test's serve instances left PostgreSQL refusing clients, and would disturb the tests that
count the server's connections. Held by one test, the run lock covers the cluster's whole
life (a module-scoped fixture would outlive each test's hold). It shows, in this order:

* every agent's metric is queryable through each ``serve``, under the agent's ``host``;
* a flag flipped with ``signalbox flags set`` is seen by every process within a second:
  the four workers and the probe through their flags clients (pushed: their poll is 30 s),
  both ``serve`` instances through ``/api/v1/flags/NAME``;
* 200 jobs are all done after a worker is SIGKILLed mid-run: each done once in the store,
  and run to its end once, except a job the killed worker had run to its end but not yet
  recorded (the queue is at-least-once: such a job runs again after its lease);
* exactly one ``serve`` leads; SIGKILLed, it is replaced, and the survivor and every agent
  say so;
* no process still running logged an error.

The agents evaluate no flag (they have no flags client), so they are not among the flag's
observers. The workers share one directory: one deploy of the app, run on four "hosts".
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.flags.store import open_flag_store
from signalbox.storage import Database, open_database
from signalbox.tasks.jobs import NewJob
from signalbox.tasks.registry import open_queue_store
from signalbox.tasks.store import QueueStore
from tests.cli.helpers import free_port, run
from tests.cluster.processes import Processes
from tests.server.test_leader_serve import query, ready
from tests.serving import fetch, wait_for
from tests.stores import pg_schema_url

pytestmark = [pytest.mark.service("postgresql"), pytest.mark.serial]

AGENTS = ("agent-1", "agent-2", "agent-3")
SERVES = ("serve-a", "serve-b")
WORKERS = ("worker-1", "worker-2", "worker-3", "worker-4")
JOBS = 200
FLAG = "cluster_switch"  # the flag clusterapp.py watches
# the workers' app: copied into their directory, never imported here (it registers a task)
APP = Path(__file__).with_name("clusterapp.py")
FLAG_YAML = f"""
- name: {FLAG}
  description: The cluster test's kill switch.
  owner: tests
  default: true
"""
FLIP_WITHIN_S = 1.0  # the contract: a flip is seen everywhere within a second


def _config(url: str, host: str, extra: str = "") -> str:
    # flags polled every 30 s: a flip seen within a second was pushed (LISTEN/NOTIFY)
    return (
        f'store = "{url}"\nhost = "{host}"\n[statsd]\nenabled = false\n'
        '[collect]\ninterval = "1s"\nspool_dir = "spool"\n[flags]\nrefresh = "30s"\n' + extra
    )


@dataclass
class Cluster:
    url: str
    procs: Processes
    bases: dict[str, str]  # serve name -> http://127.0.0.1:PORT
    agent_bases: dict[str, str]  # agent name -> its --listen address (/metrics, /-/ready)
    workers_dir: Path
    db: Database
    queue: QueueStore
    watch_logs: dict[str, Path]  # process name -> its flag watcher's log


def _host_dir(root: Path, name: str, config: str) -> Path:
    d = root / name
    (d / "flags").mkdir(parents=True)
    (d / "flags" / "cluster.yaml").write_text(FLAG_YAML)
    (d / "spool").mkdir()
    (d / "monitors").mkdir()  # none, but the folder [monitors] paths names is there
    (d / "signalbox.toml").write_text(config)
    return d


@contextlib.contextmanager
def cluster_on(root: Path) -> Iterator[Cluster]:
    """The cluster, every process started at once, both serve instances answering; every
    process killed at the end."""
    (root / "logs").mkdir()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema_url())
        procs = stack.enter_context(Processes(root / "logs"))
        bases, agent_bases = {}, {}
        for name in SERVES:
            port = free_port()
            d = _host_dir(root, name, _config(url, name, f"[server]\nport = {port}\n"))
            procs.start(name, ["serve"], d)
            bases[name] = f"http://127.0.0.1:{port}"
        for n, name in enumerate(AGENTS, 1):
            d = _host_dir(root, name, _config(url, name))
            # a metric file of its own: the value says which agent wrote it
            (d / "spool" / f"{name}.metrics").write_text(f"cluster_agent_value={n}\n")
            listen = f"127.0.0.1:{free_port()}"
            procs.start(name, ["agent", "--listen", listen], d)
            agent_bases[name] = f"http://{listen}"
        tasks = '[tasks]\nmodules = ["clusterapp"]\nlease = "3s"\npoll_interval = "50ms"\n'
        workers_dir = _host_dir(root, "workers", _config(url, "workers", tasks))
        shutil.copy(APP, workers_dir / "clusterapp.py")
        watch_logs = {}
        for name in WORKERS:
            p = procs.start(
                name, ["worker", "--concurrency", "2"], workers_dir, {"CLUSTER_WATCH": "1"}
            )
            watch_logs[name] = workers_dir / f"flag-{p.pid}.log"
        watch_logs["probe"] = root / "probe-flag.log"
        procs.start(
            "probe", [sys.executable, "clusterapp.py", str(watch_logs["probe"])], workers_dir
        )
        for name, base in bases.items():
            try:
                wait_for(lambda base=base: fetch(base + "/-/healthy")[0] == 200, timeout=60)
            except AssertionError:
                raise AssertionError(f"{name} never answered:\n{procs.log(name)}") from None
        db = stack.enter_context(contextlib.closing(open_database(url)))
        queue = open_queue_store(load_settings(str(workers_dir / "signalbox.toml"), environ={}))
        stack.callback(queue.close)
        yield Cluster(url, procs, bases, agent_bases, workers_dir, db, queue, watch_logs)


def every_agents_metrics_are_queryable_through_each_serve(cluster: Cluster) -> None:
    want = {name: float(n) for n, name in enumerate(AGENTS, 1)}
    for base in cluster.bases.values():
        wait_for(lambda base=base: query(base, "cluster_agent_value") == want, timeout=30)


# -- the flag flip ---------------------------------------------------------------------------


class ApiWatch(threading.Thread):
    """Polls ``/api/v1/flags/FLAG`` of one ``serve``; notes when its answer changes."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}/api/v1/flags/{FLAG}"
        self.seen: list[tuple[float, bool]] = []
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = fetch(self.url, timeout=10)
            except OSError as e:
                status, body = 0, repr(e)
            if status != 200:
                self.error = f"{self.url}: {status} {body[:500]}"
                return
            on = json.loads(body)["data"]["flag"]["describe"] == "on"
            if not self.seen or self.seen[-1][1] != on:
                self.seen.append((time.time(), on))
            self.stop.wait(0.01)


def _lines(path: Path) -> list[list[str]]:
    """The whole lines of a file other processes append to (a last line still being written
    is left for the next read), split into words."""
    text = path.read_text() if path.exists() else ""
    return [line.split() for line in text.split("\n")[:-1]]


def _watched(log: Path) -> list[tuple[float, bool]]:
    """(when, state) lines a flags-client watcher wrote (after its ``ready True``)."""
    lines = _lines(log)
    if not lines:
        return []
    assert lines[0] == ["ready", "True"], f"{log}: {lines[0]!r} (its flags client is not listening)"
    return [(float(t), s == "True") for t, s in lines[1:]]


def _views_after(
    n: int, cluster: Cluster, apis: dict[str, ApiWatch]
) -> dict[str, list[tuple[float, bool]]] | None:
    """Every process's (when, state) changes, once each has seen ``n`` changes after the
    first state; None before."""
    seen = {k: _watched(p) for k, p in cluster.watch_logs.items()}
    seen.update({k: list(w.seen) for k, w in apis.items()})
    errors = [w.error for w in apis.values() if w.error]
    assert not errors, errors
    return seen if all(len(v) > n for v in seen.values()) else None


def a_flag_flip_is_seen_by_every_process_within_a_second(cluster: Cluster) -> None:
    # every watcher listens, and has seen the declared default (on)
    for log in cluster.watch_logs.values():
        wait_for(lambda log=log: [on for _, on in _watched(log)] == [True], timeout=60)
    apis = {name: ApiWatch(base) for name, base in cluster.bases.items()}
    for w in apis.values():
        w.start()
    store = open_flag_store(cluster.url)
    try:
        wait_for(lambda: all([on for _, on in w.seen] == [True] for w in apis.values()))
        lags: list[dict[str, float]] = []
        for n, (value, on) in enumerate((("off", False), ("on", True)), 1):
            r = run(
                "flags", "set", FLAG, value, "--reason", "cluster drill", cwd=cluster.workers_dir
            )
            assert r.returncode == 0, r.stderr
            stored = store.get(FLAG)
            assert stored is not None  # stamped just before its commit: lags are at most this
            changed = stored.updated_ms / 1000
            seen = wait_for(lambda n=n: _views_after(n, cluster, apis), timeout=30)
            assert all(v[n][1] is on for v in seen.values()), seen
            lags.append({k: round(v[n][0] - changed, 3) for k, v in seen.items()})
        print(f"\nflag flip lags (s), per process: {lags}")
        for flip in lags:
            assert max(flip.values()) < FLIP_WITHIN_S, lags
    finally:
        for w in apis.values():
            w.stop.set()
        for w in apis.values():
            w.join(15)
        store.close()


# -- the worker killed mid-drain ---------------------------------------------------------------


def _runs(path: Path) -> list[tuple[str, int, int, float]]:
    """(start|done, job, pid, when) lines of ``runs.txt``."""
    return [(e, int(i), int(p), float(t)) for e, i, p, t in _lines(path)]


def all_jobs_are_done_after_a_worker_is_killed_mid_run(cluster: Cluster) -> None:
    now = int(time.time() * 1000)
    for i in range(JOBS):
        cluster.queue.enqueue(NewJob("cluster", "clusterapp.record", f"[[{i}]]", now, now))
    runs_txt = cluster.workers_dir / "runs.txt"
    victim = cluster.procs.procs["worker-1"].pid

    def victim_just_started() -> set[int]:
        """Jobs the victim started less than 30 ms ago (once the drain is well under way):
        a run takes 150 ms, so they are still running when the kill lands."""
        lines = _runs(runs_txt)
        if sum(e == "done" for e, *_ in lines) < JOBS // 5:
            return set()
        recent = time.time() - 0.03
        return {i for e, i, p, t in lines if p == victim and e == "start" and t > recent}

    deadline = time.monotonic() + 60
    while not (mid_run := victim_just_started()):
        assert time.monotonic() < deadline, "the victim ran no job"
        time.sleep(0.005)
    cluster.procs.kill("worker-1")
    # what the victim held at its death: claimed, so no other worker runs it before its lease
    # is over (rows its last commit, sent as it died, takes away are gone a moment later)
    held = {
        json.loads(args)[0][0]
        for (args,) in cluster.db.query(
            "SELECT args FROM task_jobs WHERE claimed_by LIKE ?",
            (f"{socket.gethostname()}:{victim}:%",),
        )
    }
    assert mid_run <= held, (mid_run, held)

    def drained() -> bool:
        [s] = cluster.queue.stats(int(time.time() * 1000))
        return s.ready + s.running + s.scheduled == 0

    wait_for(drained, timeout=60)
    [s] = cluster.queue.stats(int(time.time() * 1000))
    assert s.dead == 0 and s.outcomes is not None and s.outcomes.get("done") == JOBS, s
    assert cluster.db.query("SELECT count(*) FROM task_jobs") == [(0,)]

    lines = _runs(runs_txt)
    done_by: dict[int, list[int]] = defaultdict(list)  # job -> pids that ran it to its end
    for e, i, p, _ in lines:
        if e == "done":
            done_by[i].append(p)
    assert sorted(done_by) == list(range(JOBS))  # every job ran to its end
    # The queue is at-least-once: a job runs again only if its worker died holding it. So
    # every job ran to its end once, or it was held by the victim at its death: then the
    # victim may have run it to its end (not recorded in the store before the kill), and
    # one other worker ran it once more after its lease.
    twice = {i: pids for i, pids in done_by.items() if len(pids) > 1}
    for i, pids in twice.items():
        assert i in held and len(pids) == 2 and pids[0] == victim != pids[1], (i, pids, held)
    # and every job the victim held was run to its end by another worker after its death
    for i in held:
        assert done_by[i][-1] != victim, (i, done_by[i])
    started_by = Counter(p for e, _, p, _ in lines if e == "start")
    assert len(started_by) == len(WORKERS), started_by  # all four took part
    print(
        f"\njobs: {JOBS} done; the victim (pid {victim}) held {sorted(held)} at its death, "
        f"{sorted(mid_run)} of them just started; run to their end twice: {sorted(twice)}; "
        f"runs started per worker pid: {dict(started_by)}"
    )


# -- the leader killed ------------------------------------------------------------------------


def one_serve_leads_and_a_killed_leader_is_replaced(cluster: Cluster) -> None:
    bases = cluster.bases
    said = {
        n: wait_for(lambda n=n: "leader: " in ready(bases[n]) and ready(bases[n])) for n in bases
    }
    leaders = [n for n, text in said.items() if "(this instance)" in text]
    assert len(leaders) == 1, said
    [first] = leaders
    [second] = [n for n in bases if n != first]
    name = {n: f"{n}:{bases[n].rsplit(':', 1)[1]}" for n in bases}  # HOST:PORT
    assert said[first].endswith(f"leader: {name[first]} (this instance)\n"), said
    assert said[second].endswith(f"leader: {name[first]}\n"), said
    for agent in cluster.agent_bases.values():
        wait_for(lambda a=agent: ready(a).endswith(f"leader: {name[first]}\n"), timeout=30)
    gauge = {name[first]: 1.0, name[second]: 0.0}
    wait_for(lambda: query(bases[second], "signalbox_leader") == gauge, timeout=30)

    cluster.procs.kill(first)
    killed = time.monotonic()
    wait_for(lambda: "(this instance)" in ready(bases[second]), timeout=30)
    took_over = time.monotonic() - killed
    assert ready(bases[second]).endswith(f"leader: {name[second]} (this instance)\n")
    for agent in cluster.agent_bases.values():  # as of each agent's next pass
        wait_for(lambda a=agent: ready(a).endswith(f"leader: {name[second]}\n"), timeout=30)
    gauge = {name[first]: 0.0, name[second]: 1.0}
    wait_for(lambda: query(bases[second], "signalbox_leader") == gauge, timeout=30)
    print(f"\nleader {name[first]} SIGKILLed; {name[second]} led {took_over:.2f}s later")
    log = cluster.procs.log(second)
    assert f"taking over from {name[first]}" in log, log


def no_surviving_process_logged_an_error(cluster: Cluster) -> None:
    for name in cluster.procs.alive():
        log = cluster.procs.log(name)
        assert "Traceback" not in log and " ERROR " not in log, f"{name}:\n{log}"


def test_three_agents_two_serves_and_four_workers_on_one_postgresql(tmp_path: Path) -> None:
    took: dict[str, float] = {}
    started = time.monotonic()
    with cluster_on(tmp_path) as cluster:
        took["start"] = time.monotonic() - started
        for label, phase in (
            ("metrics", every_agents_metrics_are_queryable_through_each_serve),
            ("flag", a_flag_flip_is_seen_by_every_process_within_a_second),
            ("jobs", all_jobs_are_done_after_a_worker_is_killed_mid_run),
            ("leader", one_serve_leads_and_a_killed_leader_is_replaced),  # kills a serve: last
            ("logs", no_surviving_process_logged_an_error),
        ):
            t0 = time.monotonic()
            phase(cluster)
            took[label] = time.monotonic() - t0
    print("\nphases (s):", {k: round(v, 1) for k, v in took.items()})
