"""``signalbox tasks status|show|list|retry|pause|resume|history``: the offline task queues.

Every verb is :mod:`signalbox.tasks.operate`'s, the same the HTTP API calls, and every write
lands in the queue's audit trail as ``cli (user@host)`` (``tasks history`` reads it, beside
what the dashboard and tokens did). Exit codes: 0 ok, 2 usage or configuration error (a job
that does not exist or is not dead).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from signalbox.cli.base import Context, current_user, handle_errors, pass_ctx, prints_data
from signalbox.exceptions import UsageError

if TYPE_CHECKING:
    from signalbox.tasks.jobs import Job
    from signalbox.tasks.store import QueueStore


@contextmanager
def _queue(ctx: Context) -> Iterator[QueueStore]:
    from signalbox.tasks.registry import open_queue_store

    store = open_queue_store(ctx.settings)
    try:
        yield store
    finally:
        store.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _who() -> str:
    """How the audit trail names a CLI write: ``cli (deploy@db-admin-1)``, beside the API's
    ``alice (dashboard)`` and ``ci-bot (token #3)``."""
    import socket

    return f"cli ({current_user()}@{socket.gethostname() or 'localhost'})"


def _reason(text: str) -> str:
    """``--reason`` as the audit keeps it: one printable line (optional from the CLI)."""
    from signalbox.monitors.operate import check_reason

    return check_reason(text, "--reason", required=False)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _age(seconds: float) -> str:
    from signalbox.durations import format_duration

    return format_duration(round(seconds)) if seconds else "-"


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]))


@click.group("tasks")
def tasks_group() -> None:
    """Offline task queues: status, jobs, retry dead ones, pause and resume queues."""


@tasks_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def status_cmd(ctx: Context, as_json: bool) -> None:
    """Per queue: depth, oldest age, running, done/failed/dead/deferred, paused, and the
    gates holding work back with their reasons."""
    from signalbox.tasks.operate import status

    now = _now_ms()
    with _queue(ctx) as store:
        st = status(store, now)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    if not st["queues"]:
        click.echo("no queues yet (nothing was enqueued)")
        return
    rows = [
        (
            "QUEUE",
            "DEPTH",
            "OLDEST",
            "RUNNING",
            "LATER",
            "DONE",
            "FAILED",
            "DEAD",
            "DEFERRED",
            "STATE",
        )
    ]
    for q in st["queues"]:
        c = q["counts"]
        state = "paused" if q["paused"] else "active"
        if q["paused"]:
            state += f" by {q['paused_by']}" + (
                f": {q['paused_reason']}" if q["paused_reason"] else ""
            )
        rows.append(
            (
                q["queue"],
                str(q["depth"]),
                _age(q["oldest_age_seconds"]),
                str(q["running"]),
                str(q["scheduled"]),
                str(c.get("done", 0)),
                str(c.get("failed", 0)),
                str(q["dead"]),
                str(c.get("deferred", 0)),
                state,
            )
        )
    _table(rows)
    holding = [(q["queue"], h) for q in st["queues"] for h in q["holding"]]
    if holding:
        click.echo("\nheld back by gates:")
        for queue, h in holding:
            click.echo(f"  {queue}: {h['jobs']} jobs deferred by {h['gate']}: {h['reason']}")


def _describe(job: Job, now_ms: int) -> None:
    d = job.to_dict(now_ms)
    for key in ("id", "queue", "task", "state", "priority", "attempts", "failures", "defers"):
        click.echo(f"{key + ':':<12}{d[key]}")
    click.echo(f"{'args:':<12}{json.dumps(d['args'])}")
    click.echo(f"{'enqueued:':<12}{_time(job.enqueued_ms)}")
    click.echo(f"{'due:':<12}{_time(job.due_ms)}")
    if job.finished_ms is not None:
        click.echo(f"{'dead since:':<12}{_time(job.finished_ms)}")
    if job.gate:
        click.echo(f"{'deferred:':<12}gate {job.gate}: {job.gate_reason}")
    if job.checkpoint is not None:
        click.echo(f"{'checkpoint:':<12}{job.checkpoint}")
    if job.last_error:
        click.echo("last error:")
        for line in job.last_error.rstrip().splitlines():
            click.echo(f"  {line}")


@tasks_group.command("show")
@click.argument("job_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def show_cmd(ctx: Context, job_id: int, as_json: bool) -> None:
    """One job: its state, arguments, attempts, deferral and last error (the traceback)."""
    from signalbox.tasks.operate import show

    now = _now_ms()
    with _queue(ctx) as store:
        job = show(store, job_id)
    if as_json:
        click.echo(json.dumps(job.to_dict(now), indent=2))
    else:
        _describe(job, now)


@tasks_group.command("list")
@click.option("--queue", "queue", metavar="Q", help="Only this queue.")
@click.option("--dead", is_flag=True, help="Only dead jobs.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def list_cmd(ctx: Context, queue: str | None, dead: bool, limit: int, as_json: bool) -> None:
    """Jobs waiting, running or dead, oldest first."""
    from signalbox.tasks.operate import check_queue

    now = _now_ms()
    with _queue(ctx) as store:
        jobs = store.jobs(
            queue=None if queue is None else check_queue(queue),
            status="dead" if dead else None,
            limit=limit,
        )
    if as_json:
        click.echo(json.dumps([j.to_dict(now) for j in jobs], indent=2))
        return
    if not jobs:
        click.echo("no jobs")
        return
    rows = [("ID", "QUEUE", "TASK", "STATE", "FAILURES", "LAST ERROR")]
    for j in jobs:
        error = (j.last_error.strip().splitlines() or [""])[-1]
        rows.append((str(j.id), j.queue, j.task, j.state(now), str(j.failures), error[:100]))
    _table(rows)


@tasks_group.command("retry")
@click.argument("job_id", metavar="[ID]", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Every dead job of --queue.")
@click.option("--queue", "queue", metavar="Q", help="With --all-dead: the queue.")
@click.option("--reason", default="", help="Why (kept in tasks history).")
@pass_ctx
@handle_errors
def retry_cmd(
    ctx: Context, job_id: int | None, all_dead: bool, queue: str | None, reason: str
) -> None:
    """Run a dead job again now (its failures forgotten): ID, or --all-dead --queue Q."""
    from signalbox.tasks.operate import retry, retry_all_dead

    if (job_id is None) == (not all_dead):
        raise UsageError("give a job ID, or --all-dead --queue Q (not both)")
    if all_dead and queue is None:
        raise UsageError("--all-dead needs --queue Q")
    reason = _reason(reason)
    with _queue(ctx) as store:
        if job_id is not None:
            job = retry(store, job_id, _now_ms(), by=_who(), reason=reason)
            click.echo(f"job {job.id} ({job.task}, queue {job.queue}) is ready again")
        else:
            assert queue is not None
            n = retry_all_dead(store, queue, _now_ms(), by=_who(), reason=reason)
            click.echo(f"{n} dead jobs of queue {queue} are ready again")


@tasks_group.command("pause")
@click.argument("queue", metavar="Q")
@click.option("--reason", default="", help="Why (shown by tasks status and tasks history).")
@pass_ctx
@handle_errors
def pause_cmd(ctx: Context, queue: str, reason: str) -> None:
    """Stop workers claiming jobs of queue Q (running jobs finish; enqueues still land)."""
    from signalbox.tasks.operate import pause

    reason = _reason(reason)
    with _queue(ctx) as store:
        pause(store, queue, by=_who(), reason=reason, now_ms=_now_ms())
    click.echo(
        f"queue {queue} paused: no new job of it starts until `signalbox tasks resume {queue}`"
    )


@tasks_group.command("resume")
@click.argument("queue", metavar="Q")
@click.option("--reason", default="", help="Why (kept in tasks history).")
@pass_ctx
@handle_errors
def resume_cmd(ctx: Context, queue: str, reason: str) -> None:
    """Let workers claim jobs of queue Q again."""
    from signalbox.tasks.operate import resume

    reason = _reason(reason)
    with _queue(ctx) as store:
        was = resume(store, queue, now_ms=_now_ms(), by=_who(), reason=reason)
    click.echo(f"queue {queue} resumed" if was else f"queue {queue} was not paused")


@tasks_group.command("history")
@click.option("--queue", "queue", metavar="Q", help="Only this queue's.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
@prints_data
def history_cmd(ctx: Context, queue: str | None, limit: int, as_json: bool) -> None:
    """Who retried, paused or resumed what, and why, newest first (the CLI, the dashboard
    and API tokens alike)."""
    from signalbox.tasks.operate import history

    with _queue(ctx) as store:
        entries = history(store, queue, limit)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo("no operator actions recorded" + (f" on queue {queue}" if queue else ""))
        return
    rows = [("WHEN", "BY", "ACTION", "QUEUE", "JOB", "COUNT", "REASON")]
    for e in entries:
        rows.append(
            (
                _time(e.at_ms),
                e.by,
                e.action,
                e.queue,
                "-" if e.job_id is None else str(e.job_id),
                str(e.count),
                e.reason,
            )
        )
    _table(rows)
