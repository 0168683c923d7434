"""``signalbox users create|list|delete|passwd|set-role|logout``: people who log in to the
dashboard.

A password is read from a prompt (twice, unechoed) or, with ``--password-stdin``, from
standard input (scripts; a trailing line break is dropped); never from an argument, which
``ps`` and shell history would show. The store keeps a scrypt hash
(:mod:`signalbox.server.auth.users`). ``delete``, ``passwd`` and ``logout`` end the user's
sessions and say how many; ``set-role`` applies to the sessions they hold from their next
request on (sessions read the role from the user's row each time). Exit codes: 0 ok, 2
usage or configuration error.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from signalbox.cli.authdb import ROLES, auth_database, now_ms
from signalbox.cli.base import Context, current_user, handle_errors, pass_ctx, prints_data

if TYPE_CHECKING:
    from signalbox.server.auth.users import UserStore


@contextmanager
def _users(ctx: Context, *, create: bool) -> Iterator[UserStore | None]:
    """The configured store's users; None (``create`` False) when it has none yet."""
    from signalbox.server.auth.users import UserStore

    with auth_database(ctx, create=create, version=2) as db:
        yield None if db is None else UserStore(db)


@contextmanager
def _existing(ctx: Context, name: str) -> Iterator[UserStore]:
    """The store's users, ended sessions purged first (so the counts printed are of
    sessions that were live); NotFoundError when the store has no users at all."""
    from signalbox.exceptions import NotFoundError
    from signalbox.server.auth.sessions import SessionStore

    with _users(ctx, create=False) as users:
        if users is None:
            raise NotFoundError("user", name, "this store has no users")
        SessionStore(users.db).purge_ended(now_ms())
        yield users


def _password(from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.read()
        return text.removesuffix("\n").removesuffix("\r")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return password


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


PASSWORD_STDIN = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input instead of a prompt.",
)


@click.group("users")
def users_group() -> None:
    """Dashboard users: they log in at /login with a name and a password.

    Roles as for tokens: read (every page), operate (silence, ack, drill), admin
    (everything). Each write a user makes is audited as 'NAME (dashboard)'.
    """


@users_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@PASSWORD_STDIN
@pass_ctx
@handle_errors
def create_cmd(ctx: Context, name: str, role: str, password_stdin: bool) -> None:
    """Create user NAME; the password is asked for (or read from stdin)."""
    from signalbox.exceptions import UsageError
    from signalbox.server.auth.roles import Role
    from signalbox.server.auth.users import check_user_name
    from signalbox.storage.database import redact_url

    check_user_name(name)
    with _users(ctx, create=True) as users:
        assert users is not None
        if users.find(name) is not None:  # said before asking for a password
            raise UsageError(f"user {name!r} exists (`signalbox users passwd {name}`)")
        password = _password(password_stdin)
        user = users.create(
            name, role=Role.parse(role), password=password, by=current_user(), now_ms=now_ms()
        )
    click.echo(f"created {user.describe()} in {redact_url(ctx.settings.store_url)}")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def list_cmd(ctx: Context, as_json: bool) -> None:
    """Every user: name, role, created, last login (never a password or its hash)."""
    with _users(ctx, create=False) as store:
        users = store.users() if store is not None else []
    if as_json:
        click.echo(json.dumps([u.to_dict() for u in users], indent=2))
        return
    if not users:
        click.echo("no users (`signalbox users create NAME --role read` makes one)")
        return
    rows = [("NAME", "ROLE", "CREATED", "LAST LOGIN")]
    rows += [
        (u.name, u.role.label, f"{_time(u.created_ms)} by {u.created_by}", _time(u.last_login_ms))
        for u in users
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]))


@users_group.command("delete")
@click.argument("name")
@pass_ctx
@handle_errors
def delete_cmd(ctx: Context, name: str) -> None:
    """Delete user NAME and end their sessions at once."""
    with _existing(ctx, name) as users:
        user, ended = users.delete(name)
    click.echo(f"deleted {user.describe()}; {ended} session(s) ended")


@users_group.command("passwd")
@click.argument("name")
@PASSWORD_STDIN
@pass_ctx
@handle_errors
def passwd_cmd(ctx: Context, name: str, password_stdin: bool) -> None:
    """Set user NAME's password; their sessions end (they log in again)."""
    with _existing(ctx, name) as users:
        users.get(name)  # before asking for a password
        password = _password(password_stdin)
        user, ended = users.set_password(name, password, now_ms=now_ms())
    click.echo(f"changed the password of {user.describe()}; {ended} session(s) ended")


@users_group.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@pass_ctx
@handle_errors
def set_role_cmd(ctx: Context, name: str, role: str) -> None:
    """Give user NAME the role ROLE, from their next request on (no new login needed)."""
    from signalbox.server.auth.roles import Role
    from signalbox.server.auth.sessions import SessionStore

    with _existing(ctx, name) as users:
        user, before = users.set_role(name, Role.parse(role))
        live = SessionStore(users.db).count(user)
    if before == user.role:
        click.echo(f"{user.describe()} already had role {role}")
        return
    click.echo(
        f"changed the role of user {user.name!r} from {before.label} to {user.role.label}; "
        f"it applies to their {live} session(s) from the next request on"
    )


@users_group.command("logout")
@click.argument("name")
@pass_ctx
@handle_errors
def logout_cmd(ctx: Context, name: str) -> None:
    """End every session of user NAME (they log in again; the user stays)."""
    with _existing(ctx, name) as users:
        user, ended = users.end_sessions(name)
    click.echo(f"logged out {user.describe()}: {ended} session(s) ended")
