"""``signalbox tokens create|list|revoke`` as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tests.cli.helpers import StoreProject, run, store_project

__all__ = ["store_project"]

TOKEN = re.compile(r"sbx_[A-Za-z0-9_-]{43}")


def test_a_token_is_printed_once_and_stored_as_its_hash(store_project: StoreProject) -> None:
    root = store_project.root
    r = run("tokens", "create", "--role", "operate", "--name", "oncall", cwd=root)
    assert r.returncode == 0, r.stderr
    assert TOKEN.fullmatch(r.stdout.strip()), r.stdout  # stdout: the token, nothing else
    secret = r.stdout.strip()
    assert "created token #1 'oncall' (operate)" in r.stderr and secret not in r.stderr
    j = run("tokens", "create", "--role", "read", "--json", cwd=root)
    assert j.returncode == 0, j.stderr
    made = json.loads(j.stdout)
    assert (made["id"], made["name"], made["role"]) == (2, "unnamed", "read")
    assert TOKEN.fullmatch(made["token"]) and made["token"] != secret

    db = store_project.database()
    try:
        rows = db.query("SELECT * FROM api_tokens ORDER BY id")
    finally:
        db.close()
    stored = " ".join(str(v) for row in rows for v in row)
    for s in (secret, made["token"]):
        assert s not in stored and s[4:] not in stored
        assert hashlib.sha256(s.encode()).hexdigest() in stored

    listed = run("tokens", "list", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert "sbx_" not in listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "CREATED", "LAST", "USED", "REVOKED"]
    assert lines[1].split()[:3] == ["1", "oncall", "operate"]
    as_json = json.loads(run("tokens", "list", "--json", cwd=root).stdout)
    assert [t["name"] for t in as_json] == ["oncall", "unnamed"]
    assert all("token" not in t and "token_hash" not in t for t in as_json)
    assert as_json[0]["last_used_ms"] is None and as_json[0]["revoked_ms"] is None


def test_revoke_and_its_errors(store_project: StoreProject) -> None:
    root = store_project.root
    assert run("tokens", "create", "--role", "admin", "--name", "ci", cwd=root).returncode == 0
    r = run("tokens", "revoke", "1", cwd=root)
    assert r.returncode == 0 and "revoked token #1 'ci' (admin)" in r.stdout, r.stderr
    again = run("tokens", "revoke", "1", cwd=root)
    assert again.returncode == 0 and "was already revoked at" in again.stdout
    listed = json.loads(run("tokens", "list", "--json", cwd=root).stdout)
    assert listed[0]["revoked_ms"] is not None and listed[0]["revoked_by"]

    missing = run("tokens", "revoke", "9", cwd=root)
    assert (missing.returncode, missing.stderr) == (
        2,
        "signalbox: no token #9 (`signalbox tokens list` shows them)\n",
    )
    bad_name = run("tokens", "create", "--role", "read", "--name", "a\nb", cwd=root)
    assert bad_name.returncode == 2
    assert bad_name.stderr.startswith("signalbox: --name: character U+000A")
    assert bad_name.stdout == ""
    bad_role = run("tokens", "create", "--role", "root", cwd=root)
    assert bad_role.returncode == 2 and "'root' is not one of 'read', 'operate', 'admin'" in (
        bad_role.stderr
    )


def test_list_and_revoke_create_no_store(tmp_path: Path) -> None:
    r = run("tokens", "list", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("no tokens"), r.stderr
    r = run("tokens", "revoke", "1", cwd=tmp_path)
    assert r.returncode == 2 and "this store has no tokens" in r.stderr
    assert not (tmp_path / ".signalbox").exists()
