"""``signalbox flags list|show|set|history|lint``: feature flags from the shell.

Declarations are read from ``[flags] paths``; runtime state and the audit trail from the
configured store. Every write lands in the audit as ``cli (user@host)`` with its required
``--reason``; every process using the flags sees it within ``[flags] refresh``. Exit codes:
0 ok, 1 lint found errors, 2 usage or configuration error (an unknown flag, a bad value, no
reason).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import click

from signalbox.cli.base import Context, current_user, handle_errors, pass_ctx, prints_data
from signalbox.exceptions import UsageError

if TYPE_CHECKING:
    from signalbox.flags.declarations import Declarations
    from signalbox.flags.model import AuditEntry
    from signalbox.flags.operate import FlagView
    from signalbox.flags.store import FlagStore


def _decls(ctx: Context, *, strict: bool = False) -> Declarations:
    from signalbox.flags.declarations import load_declarations

    decls = load_declarations(list(ctx.settings.flags.paths), code=())
    if decls.errors:
        for e in decls.errors:
            click.echo(f"signalbox: {e}", err=True)
        if strict:
            raise UsageError(
                f"{len(decls.errors)} error(s) in the flag declarations: fix them first "
                "(`signalbox flags lint`)"
            )
    return decls


@contextmanager
def _store(ctx: Context, *, create: bool) -> Iterator[FlagStore | None]:
    """The configured store; None for a read when the SQLite file does not exist yet (the
    declarations alone answer: nothing was ever changed)."""
    from signalbox.flags.store import open_flag_store

    url: str = ctx.settings.store_url
    sqlite_file = url.startswith("sqlite:///") and url != "sqlite:///:memory:"
    if not create and sqlite_file and not Path(url[len("sqlite:///") :]).is_file():
        yield None
        return
    store = open_flag_store(url)
    try:
        yield store
    finally:
        store.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _who() -> str:
    """``cli (deploy@db-admin-1)``, beside the API's ``alice (dashboard)``."""
    import socket

    return f"cli ({current_user()}@{socket.gethostname() or 'localhost'})"


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]))


def _declared_ms(decls: Declarations) -> dict[str, int]:
    """When each flag's file was last written: the age of a flag never changed at run time."""
    out: dict[str, int] = {}
    for name, d in decls.flags.items():
        if d.file:
            with suppress(OSError):
                out[name] = int(Path(d.file).stat().st_mtime * 1000)
    return out


def _views(ctx: Context, decls: Declarations) -> list[FlagView]:
    from signalbox.flags.operate import views

    with _store(ctx, create=False) as store:
        stored = store.states() if store is not None else {}
        evals = store.evaluations() if store is not None else {}
    return views(decls, stored, evals, _declared_ms(decls))


@click.group("flags")
def flags_group() -> None:
    """Feature flags: list, show, switch (with a reason) and their audit trail."""


@flags_group.command("list")
@click.option(
    "--stale",
    is_flag=True,
    help="Only flag debt: fully on or off and unchanged for [flags] stale_after, never "
    "evaluated, or not declared.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def list_cmd(ctx: Context, stale: bool, as_json: bool) -> None:
    """Every flag: its state in force, owner, last change and evaluations."""
    decls = _decls(ctx)
    now = _now_ms()
    after = int(ctx.settings.flags.stale_after_s * 1000)
    vs = _views(ctx, decls)
    if stale:
        vs = [v for v in vs if v.stale(now, after)]
    if as_json:
        click.echo(json.dumps([v.to_dict(now, after) for v in vs], indent=2))
        return
    if not vs:
        click.echo("no stale flags" if stale else "no flags declared (see [flags] paths)")
        return
    head = ("FLAG", "STATE", "OWNER", "CHANGED", "BY", "EVALS", "STALE" if stale else "DESCRIPTION")
    rows = [head]
    for v in vs:
        last = (
            v.stale(now, after) if stale else (v.decl.description if v.decl else "(not declared)")
        )
        rows.append(
            (
                v.name,
                v.state.describe(),
                v.decl.owner if v.decl and v.decl.owner else "-",
                _time(v.stored.updated_ms) if v.stored else "never",
                v.stored.updated_by if v.stored else "-",
                str(v.evaluations),
                last or "",
            )
        )
    _table(rows)


@flags_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def show_cmd(ctx: Context, name: str, as_json: bool) -> None:
    """One flag: declaration, state in force, last change and its recent history."""
    from signalbox.flags.memstore import MemoryFlagStore
    from signalbox.flags.operate import show

    decls = _decls(ctx)
    with _store(ctx, create=False) as store:
        src = MemoryFlagStore() if store is None else store  # no store yet: nothing changed
        v = show(src, decls, name)
        recent = src.history(name, limit=5)
    if as_json:
        click.echo(json.dumps({**v.to_dict(), "history": [e.to_dict() for e in recent]}, indent=2))
        return
    d = v.decl
    click.echo(f"{'flag:':<13}{v.name}")
    click.echo(f"{'state:':<13}{v.state.describe()}")
    if d is not None:
        click.echo(f"{'default:':<13}{d.default.describe()} (declared at {d.where})")
        click.echo(f"{'owner:':<13}{d.owner or '-'}")
        click.echo(f"{'description:':<13}{d.description}")
    else:
        click.echo(f"{'default:':<13}not declared in the flags files: evaluates to off")
    if v.stored is not None:
        s = v.stored
        click.echo(
            f"{'changed:':<13}{_time(s.updated_ms)} by {s.updated_by}: {s.reason} (version {s.version})"
        )
    else:
        click.echo(f"{'changed:':<13}never (the declared default is in force)")
    click.echo(
        f"{'evaluations:':<13}{v.evaluations}"
        + (f" (last recorded {_time(v.last_evaluated_ms)})" if v.last_evaluated_ms else "")
    )
    if recent:
        click.echo("recent changes:")
        for e in recent:
            click.echo(f"  {_history_line(e)}")


def _history_line(e: AuditEntry) -> str:
    old = "(declared default)" if e.old is None else e.old.describe()
    return f"{_time(e.at_ms)}  {e.by}: {old} -> {e.new.describe()}: {e.reason}"


def _split(text: str | None) -> list[str] | None:
    return None if text is None else text.split(",")


@flags_group.command("set")
@click.argument("name")
@click.argument("value", metavar="on|off|PERCENT%")
@click.option(
    "--actors", metavar="A,B", help="Allowlist of actor ids (replaces it; '' empties it)."
)
@click.option("--groups", metavar="G,H", help="Allowlist of registered groups (replaces it).")
@click.option("--time", "time_pct", metavar="PERCENT%", help="Percentage of time (of calls).")
@click.option("--reason", required=True, help="Why (required; kept in flags history).")
@click.option("--force", is_flag=True, help="Allow a flag declared only in code.")
@pass_ctx
@handle_errors
def set_cmd(
    ctx: Context,
    name: str,
    value: str,
    actors: str | None,
    groups: str | None,
    time_pct: str | None,
    reason: str,
    force: bool,
) -> None:
    """Switch a flag on, off (the kill switch: beats every other gate), or roll it out to a
    percentage of actors; with allowlists of actors and groups. Seen by every process within
    [flags] refresh."""
    from signalbox.flags.model import parse_setting
    from signalbox.flags.operate import set_flag

    decls = _decls(ctx, strict=True)
    try:
        change = parse_setting(value, actors=_split(actors), groups=_split(groups), time=time_pct)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with _store(ctx, create=True) as store:
        assert store is not None
        entry = set_flag(
            store,
            decls,
            name,
            change,
            by=_who(),
            reason=reason,
            now_ms=_now_ms(),
            allow_undeclared=force,
        )
    old = "(declared default)" if entry.old is None else entry.old.describe()
    click.echo(f"flag {name}: {old} -> {entry.new.describe()}")
    refresh = ctx.settings.flags.refresh_s
    click.echo(f"every process sees it within {refresh:g}s", err=True)


@flags_group.command("history")
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def history_cmd(ctx: Context, name: str | None, limit: int, as_json: bool) -> None:
    """Who changed a flag (or every flag), from what to what, when and why; newest first."""
    from signalbox.flags.operate import history

    with _store(ctx, create=False) as store:
        entries = [] if store is None else history(store, name, limit=limit)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo("no changes recorded" + (f" for flag {name}" if name else ""))
        return
    rows = [("WHEN", "FLAG", "BY", "FROM", "TO", "REASON")]
    for e in entries:
        rows.append(
            (
                _time(e.at_ms),
                e.name,
                e.by,
                "(declared default)" if e.old is None else e.old.describe(),
                e.new.describe(),
                e.reason,
            )
        )
    _table(rows)


@flags_group.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_ctx
@handle_errors
def lint_cmd(ctx: Context, paths: tuple[Path, ...]) -> None:
    """Check flag declaration files (default: [flags] paths); exit 1 on any error."""
    from signalbox.flags.declarations import load_declarations

    decls = load_declarations(list(paths) or list(ctx.settings.flags.paths), code=())
    for e in decls.errors:
        click.echo(str(e))
    click.echo(f"{len(decls.flags)} flags ok, {len(decls.errors)} errors", err=True)
    if decls.errors:
        raise SystemExit(1)
