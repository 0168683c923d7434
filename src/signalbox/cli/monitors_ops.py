"""``monitors run|status|silence|unsilence|ack|drill|history``: operating monitors.

These subcommands attach to the ``monitors`` group of :mod:`signalbox.cli.monitors` when
this module is imported.
Each command parses its arguments and calls :mod:`signalbox.monitors.operate` (the writes,
shared with the HTTP API), :mod:`signalbox.monitors.engine.runner` or
:mod:`signalbox.monitors.state.store`; printing is all that happens here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from signalbox.cli.base import Context, current_user, handle_errors, pass_ctx, prints_data
from signalbox.cli.monitors import monitors_group
from signalbox.exceptions import StoreError, UsageError

if TYPE_CHECKING:
    from signalbox.monitors.engine.passes import PassReport
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.storage.database import Database
    from signalbox.storage.leader import LeaseLeadership


def _now_ms() -> int:
    return int(time.time() * 1000)


def _user() -> str:
    return current_user()


def _by(given: str | None) -> str:
    """Who acts: ``--by``, else the user running the command."""
    from signalbox.monitors.operate import check_by

    return check_by(given, "--by") if given else _user()


@contextmanager
def _runner(ctx: Context, *, reading: bool = False) -> Iterator[MonitorRunner]:
    """A runner over the configured stores, closed afterwards. ``reading``: the command only
    reads, so the store must exist already (it is never created to answer "nothing")."""
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.runtime import open_metric_store
    from signalbox.storage import open_database

    if reading:
        ctx.existing_store_url()
    s = ctx.settings
    store = open_metric_store(s)
    db = open_database(s.store_url)
    try:
        yield MonitorRunner.from_settings(s, store, db)
    finally:
        db.close()
        store.close()


def _time(ms: int) -> str:
    """``2023-11-14T22:13:20Z``: UTC, to the second."""
    from signalbox.monitors.notify.notification import rfc3339

    return rfc3339(ms // 1000)[:-5] + "Z"


def _when(ms: int | None, now_ms: int) -> str:
    """``2023-11-14T22:13:20Z (5m ago)``, or ``(in 2m)`` for a time to come."""
    from signalbox.durations import format_duration

    if ms is None:
        return "-"
    delta = (now_ms - ms) // 1000
    rel = f"{format_duration(delta)} ago" if delta >= 0 else f"in {format_duration(-delta)}"
    return f"{_time(ms)} ({rel})"


def _series(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "{}"


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@contextmanager
def _leading(ctx: Context, db: Database, force: bool) -> Iterator[LeaseLeadership | None]:
    """The ``serve:leader`` lease for one pass on a PostgreSQL store (None: SQLite, whose
    one host always leads, or ``--force``), released afterwards. While another instance
    holds it, that instance evaluates and notifies: a pass here would do both a second
    time, so the command refuses (exit 1), naming it."""
    if db.dialect.name != "postgresql":
        yield None
        return
    from signalbox.storage.leader import LEASE_NAME, LeaseLeadership, instance_of
    from signalbox.storage.lease import Lease

    s = ctx.settings
    if force:
        holder = Lease(db, LEASE_NAME, 1.0, holder="(monitors run --force)").holder_now()
        if holder is not None:
            click.echo(
                f"signalbox: --force: {instance_of(holder)} leads this store and evaluates "
                "the monitors too: their notifications may be sent twice",
                err=True,
            )
        yield None
        return
    lead = LeaseLeadership(db, f"{s.host}:monitors-run", s.server.leader_ttl_s)
    quiet = logging.getLogger("signalbox.leader")
    level = quiet.level
    if ctx.verbose == 0:  # "leads now" / "lease released" at every cron run: noise
        quiet.setLevel(logging.ERROR)
    try:
        lead.start()
        try:
            if not lead.leading():
                who = lead.leader()
                if who is None:
                    raise StoreError(
                        f"monitors not evaluated: could not take the leader lease "
                        f"({LEASE_NAME}) of {db.url}; --force evaluates without it"
                    )
                click.echo(
                    f"signalbox: monitors not evaluated: {who} leads this store (lease "
                    f"{LEASE_NAME}): it evaluates the monitors and sends their notifications, "
                    "and a pass here would do both a second time; --force runs one anyway",
                    err=True,
                )
                sys.exit(1)
            yield lead
        finally:
            lead.stop()  # the lease released: a serve instance leads at its next attempt
    finally:
        quiet.setLevel(level)


def _fenced_pass(runner: MonitorRunner, lead: LeaseLeadership | None, now_ms: int) -> PassReport:
    """A pass whose writes and notification claims commit only while ``lead`` still holds
    the lease (as ``serve``'s leader's do); what a previous leader that died was sending
    goes out now, under its ids."""
    if lead is None:
        return runner.run_pass(now_ms)
    from signalbox.storage.leader import LostLeadership

    term = lead.term()
    runner.outbox.fence = lead.fence(runner.outbox.db)
    if lead.deposed() is not None:
        runner.outbox.release_claims(now_ms)
    try:
        return runner.run_pass(now_ms, fence=lead.fence(runner.state.db, term))
    except LostLeadership as e:
        click.echo(f"signalbox: monitor pass rolled back: {e}", err=True)
        sys.exit(1)


@monitors_group.command("run")
@click.option(
    "--once",
    is_flag=True,
    required=True,
    help="One pass, then exit (for cron; `serve` runs passes itself).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the pass report as JSON.")
@click.option(
    "--force",
    is_flag=True,
    help="Evaluate and notify even while a serve instance leads (PostgreSQL): it does too.",
)
@pass_ctx
@handle_errors
def run_cmd(ctx: Context, once: bool, as_json: bool, force: bool) -> None:
    """Evaluate every monitor now, record transitions, send due notifications, exit.

    On a PostgreSQL store the pass takes the leader lease `serve` instances elect their
    leader with, and releases it: while another instance leads (it evaluates and notifies
    itself) it refuses, naming it, and exits 1; --force runs the pass anyway. Exit 1 too
    when a monitor file has lint errors (the valid monitors still ran).
    """
    with _runner(ctx) as runner, _leading(ctx, runner.state.db, force) as lead:
        report = _fenced_pass(runner, lead, _now_ms())
    for e in report.lint_errors:
        click.echo(f"lint: {e}", err=True)
    for name, why in report.check_errors.items():
        click.echo(f"{name}: {why}", err=True)
    d = report.delivery
    if as_json:
        _echo_json(
            {
                "at_ms": report.at_ms,
                "monitors": report.monitors,
                "series": report.series,
                "transitions": [
                    {
                        "monitor": t.monitor,
                        "labels": dict(t.labels),
                        "event": t.event,
                        "from": t.from_state.value,
                        "to": t.to_state.value,
                        "reason": t.reason,
                    }
                    for t in report.transitions
                ],
                "queued": len(report.queued),
                "sent": d.sent,
                "failed": d.failed,
                "lint_errors": [str(e) for e in report.lint_errors],
                "check_errors": report.check_errors,
            }
        )
    else:
        for t in report.transitions:
            click.echo(
                f"{t.monitor}{_series(t.labels) if t.labels else ''}: {t.from_state.value} -> {t.to_state.value} ({t.event}): {t.reason}"
            )
        click.echo(
            f"evaluated {report.monitors} monitors ({report.series} series): {len(report.transitions)} transitions, "
            f"{len(report.queued)} notifications queued, {d.sent} sent, {d.failed} failed"
        )
    sys.exit(1 if report.lint_errors else 0)


@monitors_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def status_cmd(ctx: Context, as_json: bool) -> None:
    """Every monitor and series: state, since, value, pending, silenced/acknowledged/suppressed,
    flapping, last notification; then the outbox (pending and dead notifications)."""
    from signalbox.monitors.status import build_status

    now = _now_ms()
    with _runner(ctx, reading=True) as runner:
        report = build_status(runner, now)
    if as_json:
        _echo_json(report.to_dict())
        return
    for m in report.monitors:
        head = f"{m.name}  {m.state.value}  [{m.kind}]"
        if m.owner:
            head += f"  owner {m.owner}"
        if not m.loaded:
            head += (
                "  (not loaded from the monitor files: removed, or see `signalbox monitors lint`)"
            )
        click.echo(head)
        if not m.series:
            click.echo("  (not evaluated yet)")
        for s in m.series:
            value = "-" if s.value is None else f"{s.value:g}"
            click.echo(
                f"  {_series(s.labels)}  {s.state.value} since {_when(s.since_ms, now)}  value {value}"
            )
            if s.reason:
                click.echo(f"      reason: {s.reason}")
            if s.pending:
                click.echo(
                    f"      pending {s.pending.value} since {_when(s.pending_since_ms, now)}"
                )
            for label, text in (("silenced", s.silenced), ("acknowledged", s.acknowledged)):
                if text:
                    click.echo(f"      {label}: {text}")
            if s.suppressed_by:
                click.echo(f"      suppressed by {s.suppressed_by} (it is not OK)")
            if s.flapping:
                click.echo(
                    f"      flapping ({s.flap_percent:.1f}% state change): notifications held"
                )
            if s.last_notified_ms is not None:
                line = f"      last notification: {s.last_notified_kind} at {_when(s.last_notified_ms, now)}"
                if s.delivery is not None:
                    dl = s.delivery
                    line += f" -> {dl.notifier}: {dl.status}" + (
                        f" ({dl.last_error})" if dl.last_error else ""
                    )
                click.echo(line)
    if report.lint_errors:
        click.echo(f"\n{len(report.lint_errors)} lint error(s) keep monitors from loading:")
        for err in report.lint_errors:
            click.echo(f"  {err}")
    click.echo(f"\noutbox: {len(report.pending)} pending, {len(report.dead)} dead (last 7 days)")
    for e in report.pending:
        click.echo(
            f"  pending {e.kind} {e.monitor}{_series(e.series)} -> {e.notifier}: attempt {e.attempts}, next at {_when(e.next_attempt_ms, now)}"
            + (f", last error: {e.last_error}" if e.last_error else "")
        )
    for e in report.dead:
        click.echo(
            f"  DEAD {e.kind} {e.monitor}{_series(e.series)} -> {e.notifier} after {e.attempts} attempt(s): {e.last_error}"
        )


@monitors_group.command("silence")
@click.argument("name")
@click.option("--for", "for_", required=True, metavar="DURATION", help="How long, like 30m or 2h.")
@click.option("--reason", required=True, help="Why (shown in status and history).")
@click.option(
    "--series", default=None, metavar="LABEL=VALUE,...", help="Only the series with these labels."
)
@click.option("--by", default=None, help="Who silences (default: your user name).")
@pass_ctx
@handle_errors
def silence_cmd(
    ctx: Context, name: str, for_: str, reason: str, series: str | None, by: str | None
) -> None:
    """Hold back NAME's notifications for a while; transitions are still recorded."""
    from signalbox.durations import format_duration
    from signalbox.monitors import operate

    seconds = operate.positive_duration(for_, "--for")
    why = operate.check_reason(reason, "--reason")
    matchers = operate.parse_matchers(series, "--series")
    who = _by(by)
    with _runner(ctx) as runner:
        s = operate.silence(
            runner, name, seconds=seconds, reason=why, matchers=matchers, by=who, now_ms=_now_ms()
        )
    scope = _series(matchers) if matchers else " (all series)"
    click.echo(
        f"silenced {name}{scope} for {format_duration(seconds)} until {_time(s.until_ms)} by {s.created_by}: {s.reason} [silence #{s.id}]"
    )


@monitors_group.command("unsilence")
@click.argument("name")
@click.option("--by", default=None, help="Who ends the silence (default: your user name).")
@pass_ctx
@handle_errors
def unsilence_cmd(ctx: Context, name: str, by: str | None) -> None:
    """End every active silence of NAME now."""
    from signalbox.monitors import operate

    who = _by(by)
    with _runner(ctx) as runner:
        ended = operate.unsilence(runner, name, by=who, now_ms=_now_ms())
    if not ended:
        click.echo(f"{name} has no active silence")
    for s in ended:
        click.echo(f"ended {s.describe()}")


@monitors_group.command("ack")
@click.argument("name")
@click.option("--reason", default="", help="What you are doing about it.")
@click.option("--by", default=None, help="Who acknowledges (default: your user name).")
@pass_ctx
@handle_errors
def ack_cmd(ctx: Context, name: str, reason: str, by: str | None) -> None:
    """Acknowledge NAME's problems: no repeats until a series changes state."""
    from signalbox.monitors import operate

    why, who = operate.check_reason(reason, "--reason", required=False), _by(by)
    with _runner(ctx) as runner:
        acks = operate.acknowledge(runner, name, reason=why, by=who, now_ms=_now_ms())
    for a in acks:
        click.echo(
            f"acknowledged {name}{_series(a.labels)} in {a.state.value} by {a.by}"
            + (f": {a.reason}" if a.reason else "")
        )


@monitors_group.command("drill")
@click.argument("name")
@click.option("--by", default=None, help="Who drills, for the history (default: your user name).")
@pass_ctx
@handle_errors
@prints_data
def drill_cmd(ctx: Context, name: str, by: str | None) -> None:
    """Send a TEST notification through NAME's notifiers now and say where it went and what
    it said (a `log` notifier's line is shown here too, whatever the log level).

    Exit 1 if any notifier did not take it (it stays in the outbox and is retried).
    """
    from signalbox.monitors import operate
    from signalbox.monitors.notify.log import log_line
    from signalbox.monitors.notify.notification import title
    from signalbox.monitors.notify.registry import describe_notifier

    who = _by(by)
    with _runner(ctx) as runner:
        deliveries = operate.drill(runner, name, by=who, now_ms=_now_ms())
    failed = False
    for d in deliveries:
        where = f"{d.entry.notifier} ({describe_notifier(ctx.settings, d.entry.notifier)})"
        if d.outcome == "sent":
            click.echo(f"drill for {name} sent to {where}")
            sent = d.entry.notification
            logged = (
                getattr(ctx.settings.monitors.notifiers.get(d.entry.notifier), "type", "") == "log"
            )
            click.echo(f"  {log_line(sent) if logged else title(sent)}")
        elif d.outcome == "retry":
            failed = True
            click.echo(
                f"drill for {name} NOT delivered to {where}: {d.error}; will retry from the outbox"
            )
        else:
            failed = True
            click.echo(f"drill for {name} NOT delivered to {where}: {d.error}; gave up (dead)")
    sys.exit(1 if failed else 0)


@monitors_group.command("history")
@click.argument("name")
@click.option("--since", default="1d", show_default=True, help="How far back, like 2h or 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def history_cmd(ctx: Context, name: str, since: str, as_json: bool) -> None:
    """NAME's transitions, flapping, silences, acknowledgements, notifications and actions."""
    from signalbox.durations import parse_duration
    from signalbox.monitors import operate
    from signalbox.monitors.status import history_json

    try:
        since_s = parse_duration(since)
    except ValueError as bad:
        raise UsageError(f"--since: {bad}") from None
    now = _now_ms()
    with _runner(ctx, reading=True) as runner:
        entries = runner.state.history(name, since_ms=now - round(since_s * 1000))
        if not entries:
            operate.check_known(runner, name)
    if as_json:
        _echo_json([history_json(e) for e in entries])
        return
    if not entries:
        click.echo(f"no history for {name} in the last {since}")
    for e in entries:
        change = (
            f"{e.from_state.value} -> {e.to_state.value}  "
            if e.from_state and e.to_state and e.from_state != e.to_state
            else ""
        )
        value = f"  value {e.value:g}" if e.value is not None else ""
        note = f"  [{e.note}]" if e.note else ""
        click.echo(
            f"{_time(e.at_ms)}  {name}{_series(e.labels) if e.labels else ''}  {e.event}  {change}{e.reason}{value}{note}"
        )
