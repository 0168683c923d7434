"""``signalbox tokens create|list|revoke``: API tokens for ``signalbox serve``.

A token is printed once, by ``create`` (alone on stdout, so ``$(signalbox tokens create
...)`` captures it; what it is goes to stderr); the store keeps its hash only
(:mod:`signalbox.server.auth.store`). Exit codes: 0 ok, 2 usage or configuration error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from signalbox.cli.authdb import ROLES, auth_database, now_ms
from signalbox.cli.base import Context, current_user, handle_errors, pass_ctx, prints_data

if TYPE_CHECKING:
    from signalbox.server.auth.store import TokenStore


@contextmanager
def _tokens(ctx: Context, *, create: bool) -> Iterator[TokenStore | None]:
    """The configured store's tokens; None (``create`` False) when it has none yet."""
    from signalbox.server.auth.store import TokenStore

    with auth_database(ctx, create=create, version=1) as db:
        yield None if db is None else TokenStore(db)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for `signalbox serve` (Authorization: Bearer <token>).

    Roles: read (every GET), operate (silence, ack, drill), admin (everything). Reads are
    open to loopback connections unless [server] auth = "required".
    """


@tokens_group.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option(
    "--name",
    default="unnamed",
    show_default=True,
    help="What or who it is for; the audit trail names it (grafana, alice).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
@pass_ctx
@handle_errors
def create_cmd(ctx: Context, role: str, name: str, as_json: bool) -> None:
    """Create a token and print it, once: only its hash is stored."""
    from signalbox.server.auth.roles import Role
    from signalbox.server.auth.store import check_token_name
    from signalbox.storage.database import redact_url

    name = check_token_name(name, "--name")
    with _tokens(ctx, create=True) as tokens:
        assert tokens is not None
        token, secret = tokens.create(
            role=Role.parse(role), name=name, by=current_user(), now_ms=now_ms()
        )
    if as_json:
        click.echo(json.dumps({**token.to_dict(), "token": secret}, indent=2))
    else:
        click.echo(secret)
    click.echo(
        f"created {token.describe()} in {redact_url(ctx.settings.store_url)}: the token is shown "
        "only now; keep it like a password and send it as 'Authorization: Bearer <token>'",
        err=True,
    )


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def list_cmd(ctx: Context, as_json: bool) -> None:
    """Every token: id, name, role, created, last used, revoked (never the token)."""
    with _tokens(ctx, create=False) as store:
        tokens = store.tokens() if store is not None else []
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in tokens], indent=2))
        return
    if not tokens:
        click.echo("no tokens (`signalbox tokens create --role read` makes one)")
        return
    rows = [("ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (
            str(t.id),
            t.name,
            t.role.label,
            f"{_time(t.created_ms)} by {t.created_by}",
            _time(t.last_used_ms),
            f"{_time(t.revoked_ms)} by {t.revoked_by}" if t.revoked else "-",
        )
        for t in tokens
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]))


@tokens_group.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@pass_ctx
@handle_errors
def revoke_cmd(ctx: Context, token_id: int) -> None:
    """Revoke token ID (from `tokens list`): refused from the next request on."""
    from signalbox.exceptions import UsageError

    with _tokens(ctx, create=False) as tokens:
        if tokens is None:
            raise UsageError(f"no token #{token_id}: this store has no tokens")
        token, done = tokens.revoke(token_id, by=current_user(), now_ms=now_ms())
    if done:
        click.echo(f"revoked {token.describe()}: requests with it are refused from now on")
    else:
        click.echo(
            f"{token.describe()} was already revoked at {_time(token.revoked_ms)} by {token.revoked_by}"
        )
