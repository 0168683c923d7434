"""``signalbox flags`` end to end on SQLite and PostgreSQL (writes through the real
executable, reads in-process): set with a required reason, show, history as
``cli (user@host)``, list --stale, lint; bad input exit 2."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from signalbox.cli.base import cli
from signalbox.scaffold import FLAGS
from tests.cli.helpers import StoreProject, run, store_project
from tests.stores import sqlite_url

__all__ = ["store_project"]

MORE = """\
- name: new_checkout
  description: The rewritten checkout; off falls back to the old one.
  owner: payments
  default: "10%"
"""


def _project(p: StoreProject) -> None:
    (p.root / "flags").mkdir()
    (p.root / "flags" / "example.yaml").write_text(FLAGS + MORE)


def test_set_show_history_and_list_round_trip_through_the_store(
    store_project: StoreProject,
) -> None:
    p = store_project
    _project(p)
    who = f"cli ({getpass.getuser()}@{socket.gethostname()})"
    r = run(
        "flags",
        "set",
        "new_checkout",
        "30%",
        "--actors",
        "ann,bob",
        "--reason",
        "canary ok",
        cwd=p.root,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "flag new_checkout: (declared default) -> 30% of actors, actors ann, bob\n"
    r = run("flags", "set", "photo_uploads", "off", "--reason", "db3 overloaded", cwd=p.root)
    assert r.returncode == 0, r.stderr
    # the reads in-process (an interpreter start each costs more than the test otherwise)
    show = json.loads(_in_process(p, "flags", "show", "new_checkout", "--json").stdout)
    assert show["state"]["percentage_of_actors"] == 30.0 and show["state"]["actors"] == [
        "ann",
        "bob",
    ]
    assert (show["updated_by"], show["reason"], show["version"]) == (who, "canary ok", 1)
    assert show["history"][0]["old"] is None and show["owner"] == "payments"
    hist = json.loads(_in_process(p, "flags", "history", "--json").stdout)
    assert [(h["name"], h["new"]["switch"], h["reason"]) for h in hist] == [
        ("photo_uploads", "off", "db3 overloaded"),
        ("new_checkout", "rollout", "canary ok"),
    ]
    listed = {f["name"]: f for f in json.loads(_in_process(p, "flags", "list", "--json").stdout)}
    assert listed["photo_uploads"]["describe"] == "off"
    assert listed["new_checkout"]["evaluations"] == 0
    stale = _in_process(p, "flags", "list", "--stale")
    assert stale.exit_code == 0 and stale.stdout.count("never evaluated") == 2
    text = _in_process(p, "flags", "show", "photo_uploads").stdout
    assert "changed:     " in text and f"by {who}: db3 overloaded (version 1)" in text


@pytest.fixture
def project(tmp_path: Path) -> StoreProject:
    """A SQLite project for what does not depend on the backend (run in-process: fast)."""
    p = StoreProject(tmp_path / "project", "sqlite", sqlite_url(tmp_path))
    p.root.mkdir()
    p.configure()
    _project(p)
    return p


def _in_process(p: StoreProject, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(p.config), *args])


def test_bad_input_is_a_clear_error_with_exit_2_and_changes_nothing(project: StoreProject) -> None:
    p = project
    cases = [
        (["photo_upload", "on", "--reason", "x"], "(did you mean 'photo_uploads'?)"),
        (["photo_uploads", "maybe", "--reason", "x"], "value: expected on, off or a percentage"),
        (["photo_uploads", "101%", "--reason", "x"], "from 0% to 100%"),
        (["photo_uploads", "on", "--reason", "  "], "reason: say why"),
        (
            ["photo_uploads", "5%", "--groups", "Bad Group", "--reason", "x"],
            "--groups: expected a group name",
        ),
        (["photo_uploads", "on", "--time", "5%", "--reason", "x"], "--time: a flag switched on"),
        (["photo_uploads", "on"], "Missing option '--reason'"),
    ]
    for args, message in cases:
        r = _in_process(p, "flags", "set", *args)
        assert r.exit_code == 2 and message in r.output, (args, r.output)
    assert _in_process(p, "flags", "history", "--json").output.strip() == "[]"
    r = _in_process(p, "flags", "show", "ghost")
    assert r.exit_code == 2 and "flag 'ghost' is not declared" in r.output


def test_lint_reports_file_and_line_and_exits_1(project: StoreProject) -> None:
    p = project
    (p.root / "flags" / "bad.yaml").write_text("- name: x\n  default: sometimes\n")
    r = _in_process(p, "flags", "lint")
    assert r.exit_code == 1
    bad = p.root / "flags" / "bad.yaml"
    assert f"{bad}:1: x: description: missing 'description'" in r.output
    assert f"{bad}:2: x: default: expected true, false" in r.output
    # a write refuses to go ahead while the declarations are broken
    r = _in_process(p, "flags", "set", "photo_uploads", "off", "--reason", "x")
    assert r.exit_code == 2 and "error(s) in the flag declarations" in r.output
