"""Hung and failing receivers under a real ``signalbox serve`` (issue 8), SQLite and PostgreSQL.

One monitor, critical on every pass and repeating on every pass (each 250 ms), notifies three
webhooks: ``hung`` accepts the connection, reads the request and never answers (10 s default
timeout), ``flaky`` answers 500, ``ok`` answers 200. Seen from outside -- the query API,
``/metrics``, the receivers, the process -- the 250 ms interval holds, ``ok`` gets every
pass's notification, ``flaky`` is retried on the configured backoff, SIGTERM ends the
process within a few seconds, and after a restart the notification ``hung`` never answered
is delivered, under the same id, to the receiver that answers now.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from signalbox.monitors.outbox.store import Outbox
from signalbox.storage import open_database
from tests.cli.helpers import SIGNALBOX, StoreProject, free_port, store_project
from tests.monitors.delivery_helpers import always_down, hook
from tests.serving import fetch, wait_for

__all__ = ["store_project"]

INTERVAL_S = 0.25
MONITOR = always_down("hung", "flaky", "ok", repeat="100ms")  # a repeat due at every pass

TOKEN = "hook-t0ken-s3cret"

EVALUATIONS = 'count_over_time(signalbox_monitor_state{monitor="always_down"}[1m])'


@contextlib.contextmanager
def serve(root: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``signalbox serve`` in ``root``, healthy; its output goes to ``log`` (a file, so a
    chatty process never blocks on a full pipe). Killed at the end if still running: the
    test itself stops it with SIGTERM, to time that."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    with log.open("ab") as out:
        proc = subprocess.Popen([SIGNALBOX, "serve"], cwd=root, env=env, stdout=out, stderr=out)
    try:
        try:
            wait_for(lambda: fetch(f"http://127.0.0.1:{port}/-/healthy")[0] == 200)
        except AssertionError as e:
            raise AssertionError(
                f"{e}; exit code {proc.poll()}; output:\n{log.read_text()}"
            ) from None
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def sigterm(proc: subprocess.Popen[bytes]) -> float:
    """Seconds from SIGTERM to the process's exit (which must be clean)."""
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(20)
    assert code in (0, -signal.SIGTERM), code
    return time.monotonic() - began


def instant(base: str, promql: str) -> dict[str, float]:
    """``{notifier or monitor label: value}`` of an instant query through the HTTP API."""
    status, body = fetch(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    out = {}
    for r in json.loads(body)["data"]["result"]:
        m = r["metric"]
        out[m.get("notifier") or m.get("monitor", "")] = float(r["value"][1])
    return out


def test_hung_and_failing_receivers_delay_only_their_own_deliveries(
    store_project: StoreProject, tmp_path: Path
) -> None:
    root, port, log = store_project.root, free_port(), tmp_path / "serve.log"
    (root / "monitors").mkdir()
    (root / "monitors" / "down.yaml").write_text(MONITOR)
    with (
        hook(status=None, path=f"/hook/{TOKEN}") as hung,
        hook(status=500) as flaky,
        hook(status=200) as ok,
    ):
        store_project.configure(
            f'[server]\nport = {port}\n[statsd]\nlisten = "127.0.0.1:0"\n'
            f'[monitors]\ninterval = "{INTERVAL_S * 1000:g}ms"\n'
            'retry_delay = "100ms"\nretry_max_delay = "400ms"\n'
            f'[notifiers.hung]\ntype = "webhook"\nurl = "{hung.url}"\n'
            f'[notifiers.flaky]\ntype = "webhook"\nurl = "{flaky.url}"\n'
            f'[notifiers.ok]\ntype = "webhook"\nurl = "{ok.url}"\n'
        )
        base = f"http://127.0.0.1:{port}"
        with serve(root, port, log) as proc:
            healthy = time.monotonic()
            # until what the checks below count has had time to happen (four passes; five
            # attempts at flaky, 0.1 s doubling to 0.4 s: at most 1.1 s; four failures
            # written by passes), at most 20 s: polled, not a fixed sleep; they check it
            # either way
            deadline = healthy + 20
            while time.monotonic() < deadline and not (
                instant(base, EVALUATIONS).get("always_down", 0) >= 4
                and len(flaky.hits) >= 5
                and instant(base, "signalbox_notifications_failed_total").get("flaky", 0) >= 4
            ):
                time.sleep(0.2)
            evaluations = instant(base, EVALUATIONS)["always_down"]
            elapsed = time.monotonic() - healthy
            # the interval holds (the hung receiver holds its first attempt for 10 s): a pass
            # each INTERVAL_S but for 1.5 s of slack
            assert evaluations >= (elapsed - 1.5) / INTERVAL_S and evaluations >= 4, (
                evaluations,
                elapsed,
            )
            # the healthy receiver had a notification per pass (the last may be on its way)
            assert len(ok.hits) >= evaluations - 1, (len(ok.hits), evaluations)
            # the failing one was retried on the backoff (0.1 s doubling to 0.4 s), one id
            assert len(flaky.hits) >= 5, flaky.times()
            assert flaky.times()[4] - healthy < 5, flaky.times()  # as a fixed 5 s wait bounded
            assert {b["kind"] for b in flaky.bodies()} == {"firing"}
            assert len({b["id"] for b in flaky.bodies()}) == 1
            # the hung one got its first notification once, and is still holding it
            (held,) = hung.bodies()
            # delivery is observable per notifier (written by each pass)
            pending = instant(base, "signalbox_notifications_pending")
            assert pending["ok"] == 0 and pending["hung"] >= 1 and pending["flaky"] >= 1
            failed = instant(base, "signalbox_notifications_failed_total")
            assert failed["ok"] == 0 and failed["flaky"] >= 4, failed
            status, exposition = fetch(f"{base}/metrics")
            assert status == 200 and "signalbox_notifications_failed_total{" in exposition

            took = sigterm(proc)
            assert took < 5, took  # STOP_WAIT_S (2 s) for the hung attempt, then out

        first_run = log.read_text()
        assert "Traceback" not in first_run, first_run
        assert "to flaky failed (attempt" in first_run and "answered HTTP 500" in first_run
        assert "still in flight at shutdown" in first_run, first_run
        assert TOKEN not in first_run

        hung.status = 200  # the receiver is back
        with serve(root, port, log) as proc:
            wait_for(lambda: held["id"] in [b["id"] for b in hung.bodies()[1:]], timeout=10)
            assert sigterm(proc) < 5
        assert [b["id"] for b in hung.bodies()].count(held["id"]) == 2  # held, then delivered

    db = open_database(store_project.store_url)
    try:
        row = next(e for e in Outbox(db).entries() if e.id == held["id"])
        assert (row.status, row.attempts) == ("sent", 2)
    finally:
        db.close()
    assert "Traceback" not in log.read_text()
