"""Monitors that flip flags (``on_critical``, ``on_recover``), through ``monitors run --once``
over SQLite and PostgreSQL, a real webhook receiving the notifications.

The flip happens once per transition, inside the pass: audited as done by the monitor
(``monitor:NAME``), written in the monitor's history, told in the transition's notification,
not repeated while the flag is already so (a second series, an operator's earlier switch),
never undone unless ``on_recover`` says so, and then only when the monitor's last firing
series recovers. A pass that fails half-way commits neither the transition nor the flip; the
next one makes both, once. ``monitors lint`` names an action's undeclared flag at its line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import signalbox.cli.monitors_ops  # noqa: F401  (attaches the commands to the group)
from signalbox.cli.base import Context
from signalbox.cli.monitors import monitors_group
from signalbox.flags.model import FlagChange
from signalbox.flags.store import SQLFlagStore
from signalbox.metrics.samples import Sample, labels_of
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors.state.store import MonitorStore
from signalbox.storage import open_database
from tests.cli.helpers import StoreProject, store_project
from tests.monitors.notify.notify_helpers import Receiver, receiver

__all__ = ["receiver", "store_project"]

FLAGS = """
- name: photo_uploads
  description: Accept new photo uploads; off sheds write load.
  default: true
- name: reprocessing
  description: Reprocess old photos.
  default: true
"""
MONITORS = """
- name: db_overloaded
  description: The photo database is overloaded.
  query: db_load
  critical: "> 8"
  recover: "< 3"
  notify: [hook]
  on_critical: {flag: photo_uploads, set: "off"}
  on_recover: {flag: photo_uploads, set: "on"}
- name: disk_filling
  description: The photo disk fills up.
  query: disk_used
  critical: "> 90"
  on_critical:
    flag: reprocessing
    set: "off"
"""


class Project:
    def __init__(self, sp: StoreProject, hook_url: str) -> None:
        self.root, self.store_url = sp.root, sp.store_url
        (self.root / "monitors").mkdir()
        (self.root / "monitors" / "m.yaml").write_text(MONITORS)
        (self.root / "flags").mkdir()
        (self.root / "flags" / "f.yaml").write_text(FLAGS)
        sp.configure(f'[notifiers.hook]\ntype = "webhook"\nurl = "{hook_url}/hook"\n')
        self.config = sp.config
        self.db = open_database(sp.store_url)

    def put(self, name: str, value: float, **labels: str) -> None:
        store = SQLMetricStore(open_database(self.store_url))
        store.write([Sample(name, labels_of(labels), value, None)], int(time.time() * 1000))
        store.close()

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(monitors_group, list(args), obj=Context(str(self.config), 0))

    def run_once(self) -> Result:
        r = self.cli("run", "--once")
        assert r.exit_code == 0, r.output
        return r

    @property
    def flags(self) -> SQLFlagStore:
        return SQLFlagStore(self.db)

    def switch(self, name: str) -> str | None:
        stored = self.flags.get(name)
        return None if stored is None else stored.state.switch

    def actions(self, monitor: str) -> list[tuple[str, str]]:
        """The monitor's ``action`` history lines, oldest first: (note, text)."""
        hist = MonitorStore(self.db).history(monitor, since_ms=0, limit=100)
        return [(h.note, h.reason) for h in sorted(hist, key=lambda h: h.id) if h.event == "action"]


@pytest.fixture
def project(store_project: StoreProject, receiver: Receiver) -> Project:
    p = Project(store_project, receiver.url)
    yield p  # type: ignore[misc]
    p.db.close()


def test_critical_flips_once_audited_by_the_monitor_and_recover_waits_for_the_last_series(
    project: Project, receiver: Receiver
) -> None:
    project.put("db_load", 9, shard="1")
    project.put("db_load", 1, shard="2")
    project.run_once()
    assert project.switch("photo_uploads") == "off"
    (entry,) = project.flags.history("photo_uploads")
    assert entry.by == "monitor:db_overloaded" and entry.old is None
    assert entry.reason == "OK -> CRITICAL: db_load = 9 > 8"
    assert project.actions("db_overloaded") == [
        (
            "applied",
            "flag photo_uploads switched to off by this monitor (was its declared default on)",
        )
    ]
    (req,) = receiver.requests
    sent = json.loads(req.body)
    assert sent["kind"] == "firing"
    assert sent["summary"].endswith(
        "; flag photo_uploads switched to off by this monitor (was its declared default on)"
    )

    project.put("db_load", 9, shard="2")  # a second series: the flag is off already
    project.run_once()
    assert len(project.flags.history("photo_uploads")) == 1
    assert project.actions("db_overloaded")[-1] == (
        "not repeated",
        "flag photo_uploads already off: not switched again",
    )
    project.put("db_load", 1, shard="1")  # one recovers, the other still fires
    project.run_once()
    assert project.switch("photo_uploads") == "off"
    assert project.actions("db_overloaded")[-1][0] == "waiting"
    assert "1 other series of this monitor still firing" in project.actions("db_overloaded")[-1][1]

    project.put("db_load", 1, shard="2")  # the last one recovers: on_recover switches it on
    project.run_once()
    assert project.switch("photo_uploads") == "on"
    newest = project.flags.history("photo_uploads")[0]
    assert newest.by == "monitor:db_overloaded" and newest.reason.startswith("CRITICAL -> OK: ")
    resolved = [
        json.loads(r.body) for r in receiver.requests if json.loads(r.body)["kind"] == "resolved"
    ]
    assert any(
        "flag photo_uploads switched to on by this monitor (was off)" in r["summary"]
        for r in resolved
    )
    assert len(project.flags.history("photo_uploads")) == 2


def test_without_on_recover_the_flag_stays_off_until_an_operator_turns_it_on(
    project: Project,
) -> None:
    project.put("disk_used", 95)
    project.run_once()
    assert project.switch("reprocessing") == "off"
    project.put("disk_used", 50)
    project.run_once()  # recovered: nothing flips back by itself
    assert project.switch("reprocessing") == "off"
    assert len(project.actions("disk_filling")) == 1
    project.flags.set(
        "reprocessing", FlagChange(switch="on"), by="cli (ops@host)", reason="disk cleaned",
        now_ms=int(time.time() * 1000),
    )  # fmt: skip
    project.put("disk_used", 96)  # critical again: a new transition, a new flip
    project.run_once()
    assert project.switch("reprocessing") == "off"
    assert [e.by for e in project.flags.history("reprocessing")] == [
        "monitor:disk_filling",
        "cli (ops@host)",
        "monitor:disk_filling",
    ]
    project.run_once()  # still critical: no transition, no flip
    assert len(project.flags.history("reprocessing")) == 3


def test_an_operator_switch_beforehand_is_not_repeated(project: Project) -> None:
    project.flags.set(
        "reprocessing", FlagChange(switch="off"), by="cli (ops@host)", reason="maintenance",
        now_ms=int(time.time() * 1000),
    )  # fmt: skip
    project.put("disk_used", 95)
    project.run_once()
    assert [e.by for e in project.flags.history("reprocessing")] == ["cli (ops@host)"]
    assert project.actions("disk_filling") == [
        ("not repeated", "flag reprocessing already off: not switched again")
    ]


def test_a_pass_failing_half_way_commits_neither_the_transition_nor_the_flip(
    project: Project,
) -> None:
    project.put("db_load", 1)
    project.run_once()  # every table made, the series OK
    project.put("db_load", 9)
    # the outbox cannot be written: the pass fails after the flip, inside its transaction
    project.db.execute("ALTER TABLE monitor_outbox RENAME TO monitor_outbox_away")
    r = project.cli("run", "--once")
    assert r.exit_code != 0
    assert project.switch("photo_uploads") is None and project.flags.history() == []
    (rec,) = MonitorStore(project.db).series("db_overloaded")["db_overloaded"].values()
    assert rec.state.state.value == "OK"
    assert project.actions("db_overloaded") == []
    project.db.execute("ALTER TABLE monitor_outbox_away RENAME TO monitor_outbox")
    project.run_once()  # the next pass makes the transition and the flip, once
    assert project.switch("photo_uploads") == "off"
    assert [e.by for e in project.flags.history()] == ["monitor:db_overloaded"]
    assert [n for n, _ in project.actions("db_overloaded")] == ["applied"]


def test_an_undeclared_flag_is_a_lint_error_at_its_line_and_refused_at_run_time(
    project: Project, receiver: Receiver
) -> None:
    text = MONITORS.replace('{flag: photo_uploads, set: "off"}', '{flag: photo_upload, set: "off"}')
    (project.root / "monitors" / "m.yaml").write_text(text)
    r = project.cli("lint")
    assert r.exit_code == 1
    m_yaml = project.root / "monitors" / "m.yaml"
    assert (
        f"{m_yaml}:8: db_overloaded: on_critical.flag: unknown flag 'photo_upload' (did you "
        "mean 'photo_uploads'?)"
    ) in r.output, r.output
    project.put("db_load", 9)
    project.run_once()  # the monitor runs and notifies; the action is refused, visibly
    assert project.flags.history() == []
    (note, line) = project.actions("db_overloaded")[0]
    assert note == "refused" and "flag photo_upload is not declared" in line
    (req,) = receiver.requests
    assert "flag photo_upload NOT switched: it is not declared" in json.loads(req.body)["summary"]
    (project.root / "monitors" / "m.yaml").write_text(MONITORS)
    assert project.cli("lint").exit_code == 0


def test_lint_refuses_a_bad_on_recover(tmp_path: Path) -> None:
    from signalbox.monitors.definitions.load import load_monitors

    (tmp_path / "m.yaml").write_text(
        "- name: x\n  description: y\n  query: z\n  critical: '> 1'\n"
        "  on_recover: {flag: photo_uploads, set: sometimes}\n"
    )
    errors = load_monitors([tmp_path]).errors
    assert [(e.line, e.key) for e in errors] == [(5, "on_recover.set")]


def test_a_flag_store_that_fails_the_flip_fails_the_pass_and_the_next_one_flips(
    project: Project,
) -> None:
    project.put("db_load", 1)
    project.run_once()
    project.put("db_load", 9)
    project.db.execute("ALTER TABLE flag_state RENAME TO flag_state_away")
    r = project.cli("run", "--once")
    assert r.exit_code != 0 and "photo_uploads could not be switched" in r.output, r.output
    (rec,) = MonitorStore(project.db).series("db_overloaded")["db_overloaded"].values()
    assert rec.state.state.value == "OK"  # the transition waits for its flip
    project.db.execute("ALTER TABLE flag_state_away RENAME TO flag_state")
    project.run_once()
    assert project.switch("photo_uploads") == "off"
    assert [n for n, _ in project.actions("db_overloaded")] == ["applied"]
