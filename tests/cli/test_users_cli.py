"""``signalbox users create|list|delete|passwd`` as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from signalbox.server.auth.passwords import verify_password
from tests.cli.helpers import StoreProject, run, store_project

__all__ = ["store_project"]


def _hash_of(project: StoreProject, name: str) -> str:
    db = project.database()
    try:
        (row,) = db.query("SELECT password_hash FROM dashboard_users WHERE name = ?", (name,))
    finally:
        db.close()
    return str(row[0])


def test_users_are_created_with_a_hashed_password_listed_and_deleted(
    store_project: StoreProject,
) -> None:
    root = store_project.root
    r = run("users", "list", cwd=root)
    assert r.returncode == 0 and "no users" in r.stdout, r.stderr
    made = run(
        "users", "create", "alice", "--role", "operate", "--password-stdin",
        cwd=root, input="correct horse battery\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "created user 'alice' (operate)" in made.stdout
    # from the prompt: asked twice, unechoed
    prompted = run(
        "users", "create", "bob", "--role", "read", cwd=root, input="bobs password\n" * 2
    )
    assert prompted.returncode == 0, prompted.stderr
    assert "Repeat for confirmation" in prompted.stderr
    stored = _hash_of(store_project, "alice")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_password("correct horse battery", stored)  # the line break is not in it
    assert verify_password("bobs password", _hash_of(store_project, "bob"))

    listed = run("users", "list", cwd=root).stdout.splitlines()
    assert listed[0].split() == ["NAME", "ROLE", "CREATED", "LAST", "LOGIN"]
    assert [line.split()[:2] for line in listed[1:]] == [["alice", "operate"], ["bob", "read"]]
    as_json = json.loads(run("users", "list", "--json", cwd=root).stdout)
    assert [(u["name"], u["role"], u["last_login_ms"]) for u in as_json] == [
        ("alice", "operate", None),
        ("bob", "read", None),
    ]
    assert "scrypt" not in json.dumps(as_json)

    gone = run("users", "delete", "bob", cwd=root)
    assert gone.returncode == 0 and "deleted user 'bob' (read); 0 session(s)" in gone.stdout
    assert [u["name"] for u in json.loads(run("users", "list", "--json", cwd=root).stdout)] == [
        "alice"
    ]


def test_passwd_and_the_errors_people_make(store_project: StoreProject) -> None:
    root = store_project.root
    args = ("users", "create", "alice", "--role", "admin", "--password-stdin")
    assert run(*args, cwd=root, input="first-password").returncode == 0
    before = _hash_of(store_project, "alice")
    r = run("users", "passwd", "alice", "--password-stdin", cwd=root, input="second-password\n")
    assert r.returncode == 0 and "changed the password of user 'alice'" in r.stdout, r.stderr
    after = _hash_of(store_project, "alice")
    assert after != before and verify_password("second-password", after)

    for argv, stdin, message in (
        (args, "another-password", "user 'alice' exists"),
        (("users", "create", "bo b", "--role", "read", "--password-stdin"), "x" * 8,
         "invalid user name 'bo b'"),
        (("users", "create", "carol", "--role", "read", "--password-stdin"), "short",
         "a password needs at least 8 characters"),
        (("users", "create", "carol", "--role", "root", "--password-stdin"), "x" * 8,
         "'root' is not one of"),
        (("users", "passwd", "nobody", "--password-stdin"), "x" * 8, "no user named 'nobody'"),
        (("users", "delete", "nobody"), "", "no user named 'nobody'"),
    ):  # fmt: skip
        bad = run(*argv, cwd=root, input=stdin)
        assert bad.returncode == 2, (argv, bad.stdout, bad.stderr)
        assert message in bad.stderr, (argv, bad.stderr)
        if stdin:
            assert stdin not in bad.stderr + bad.stdout  # a password is never echoed back
    assert _hash_of(store_project, "alice") == after  # nothing above touched alice


def test_list_and_delete_on_a_project_without_a_store_create_nothing(tmp_path: Path) -> None:
    root = tmp_path
    assert run("users", "list", cwd=root).stdout.startswith("no users")
    r = run("users", "delete", "alice", cwd=root)
    assert r.returncode == 2 and "no user named 'alice'" in r.stderr
    assert not (root / ".signalbox").exists()
