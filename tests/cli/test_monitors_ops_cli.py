"""``monitors run|status|silence|unsilence|ack|drill|history`` over real stores and a real webhook."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import signalbox.cli.monitors_ops  # noqa: F401  (attaches the commands to the group)
from signalbox.cli.base import Context
from signalbox.cli.monitors import monitors_group
from signalbox.config import load_settings
from signalbox.metrics.samples import Sample, labels_of
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.cli.helpers import StoreProject, run, store_project
from tests.monitors.notify.notify_helpers import Receiver, receiver

__all__ = ["receiver", "store_project"]

MONITORS = """
- name: resize_slow
  description: Resizes slower than users tolerate.
  owner: photos
  query: latency
  critical: "> 8"
  notify: [hook]
- name: quiet
  description: Has nobody to tell.
  query: latency
  critical: "> 100"
"""


class Project:
    def __init__(self, root: Path, hook_url: str, store_url: str | None = None) -> None:
        self.root = root
        (root / "monitors").mkdir()
        (root / "monitors" / "m.yaml").write_text(MONITORS)
        self.config = root / "signalbox.toml"
        store = f'store = "{store_url}"\n' if store_url is not None else ""
        self.config.write_text(
            f'{store}[notifiers.hook]\ntype = "webhook"\nurl = "{hook_url}/hook/secret-token"\n'
        )

    def put(self, value: float, **labels: str) -> None:
        s = load_settings(str(self.config), environ={})
        store = SQLMetricStore(open_database(s.store_url))
        store.write([Sample("latency", labels_of(labels), value, None)], int(time.time() * 1000))
        store.close()

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(monitors_group, list(args), obj=Context(str(self.config), 0))


@pytest.fixture
def project(store_project: StoreProject, receiver: Receiver) -> Project:
    """A project over a fresh store: every test here runs on SQLite and on PostgreSQL."""
    return Project(store_project.root, receiver.url, store_project.store_url)


def test_run_once_evaluates_notifies_and_prints_the_transitions(
    project: Project, receiver: Receiver
) -> None:
    project.put(9, shard="7")
    r = project.cli("run", "--once")
    assert r.exit_code == 0, r.output
    assert 'resize_slow{shard="7"}: OK -> CRITICAL (state): latency = 9 > 8' in r.output
    assert "1 notifications queued, 1 sent, 0 failed" in r.output
    (req,) = receiver.requests
    assert req.path == "/hook/secret-token" and json.loads(req.body)["kind"] == "firing"


def test_run_once_exits_1_on_lint_errors_but_runs_the_valid_monitors(project: Project) -> None:
    (project.root / "monitors" / "bad.yaml").write_text("- name: bad\n  description: x\n")
    project.put(9)
    r = project.cli("run", "--once", "--json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["monitors"] == 2 and "bad.yaml:1" in report["lint_errors"][0]
    assert "lint: " in r.stderr and "bad.yaml:1" in r.stderr


def test_status_shows_each_series_and_the_outbox(project: Project, receiver: Receiver) -> None:
    project.put(9, shard="7")
    receiver.status = 500
    project.cli("run", "--once")
    r = project.cli("status")
    assert r.exit_code == 0, r.output
    assert "resize_slow  CRITICAL  [threshold]  owner photos" in r.output
    assert '{shard="7"}  CRITICAL since ' in r.output and "value 9" in r.output
    assert (
        "last notification: firing at " in r.output
        and "-> hook: pending (POST http://127.0.0.1:" in r.output
    )
    assert "outbox: 1 pending, 0 dead" in r.output and "answered HTTP 500" in r.output
    assert "secret-token" not in r.output
    data = json.loads(project.cli("status", "--json").stdout)
    (series,) = data["monitors"][0]["series"]
    assert (series["state"], series["value"], series["labels"]) == ("CRITICAL", 9.0, {"shard": "7"})
    assert series["last_notification"]["delivery"]["status"] == "pending"
    assert [m["name"] for m in data["monitors"]] == ["resize_slow", "quiet"]


def test_silence_then_status_history_and_unsilence(project: Project) -> None:
    r = project.cli(
        "silence",
        "resize_slow",
        "--for",
        "2h",
        "--reason",
        "deploy",
        "--series",
        "shard=7",
        "--by",
        "alice",
    )
    assert r.exit_code == 0, r.output
    assert 'silenced resize_slow{shard="7"} for 2h until ' in r.output
    assert "by alice: deploy [silence #1]" in r.output
    project.put(9, shard="7")
    project.cli("run", "--once")
    status = project.cli("status").output
    assert 'silenced: silence #1 (shard="7") by alice: deploy until ' in status
    hist = json.loads(project.cli("history", "resize_slow", "--json").stdout)
    assert [h["event"] for h in hist] == ["silenced", "state"]
    assert hist[1]["note"].startswith("silenced by silence #1")
    text = project.cli("history", "resize_slow", "--since", "1h").output
    assert "state  OK -> CRITICAL  latency = 9 > 8  value 9  [silenced by" in text
    r = project.cli("unsilence", "resize_slow", "--by", "bob")
    assert r.exit_code == 0 and "ended silence #1" in r.output
    assert "has no active silence" in project.cli("unsilence", "resize_slow").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for", "soon", "--reason", "x"], "--for: bad duration 'soon'"),
        (["--for", "0s", "--reason", "x"], "--for: expected a positive duration"),
        (["--for", "99999999y", "--reason", "x"], "--for: at most 1000 years"),  # was a crash
        (["--for", "1h", "--reason", "  "], "--reason: say why"),
        (["--for", "1h", "--reason", "x", "--series", "shard"], "--series: bad part 'shard'"),
    ],
)
def test_silence_refuses_bad_arguments_naming_them(
    project: Project, args: list[str], message: str
) -> None:
    r = project.cli("silence", "resize_slow", *args)
    assert r.exit_code == 2 and message in r.output


def test_an_unknown_monitor_is_refused_with_the_known_names(project: Project) -> None:
    r = project.cli("silence", "resize_slwo", "--for", "1h", "--reason", "x")
    assert r.exit_code == 2
    assert "no monitor named 'resize_slwo'" in r.output and "known: quiet, resize_slow" in r.output


def test_ack_needs_a_problem_and_acknowledges_it(project: Project) -> None:
    r = project.cli("ack", "resize_slow")
    assert r.exit_code == 2 and "nothing to acknowledge" in r.output
    project.put(9)
    project.cli("run", "--once")
    r = project.cli("ack", "resize_slow", "--reason", "on it", "--by", "carol")
    assert r.exit_code == 0 and "acknowledged resize_slow{} in CRITICAL by carol: on it" in r.output
    assert "acknowledged: by carol: on it" in project.cli("status").output


def test_drill_sends_a_marked_test_and_says_where_it_went(
    project: Project, receiver: Receiver
) -> None:
    r = project.cli("drill", "resize_slow")
    assert r.exit_code == 0, r.output
    assert "drill for resize_slow sent to hook (webhook http://127.0.0.1:" in r.output
    assert "secret-token" not in r.output
    body = json.loads(receiver.requests[0].body)
    assert (body["kind"], body["drill"]) == ("drill", True) and body["title"].startswith("[TEST]")
    receiver.status = 503
    r = project.cli("drill", "resize_slow")
    assert r.exit_code == 1 and "NOT delivered to hook" in r.output and "will retry" in r.output
    r = project.cli("drill", "quiet")
    assert r.exit_code == 2 and "has no notifiers" in r.output


def test_the_commands_are_reachable_from_the_signalbox_executable(
    store_project: StoreProject,
) -> None:
    tmp_path = store_project.root
    project = Project(tmp_path, "http://127.0.0.1:9", store_project.store_url)
    project.put(1)  # the store exists: something was collected
    r = run("monitors", "status", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [m["name"] for m in json.loads(r.stdout)["monitors"]] == ["resize_slow", "quiet"]
    r = run("monitors", "history", "resize_slow", cwd=tmp_path)
    assert r.returncode == 0 and "no history for resize_slow" in r.stdout
    assert project.config.exists()
