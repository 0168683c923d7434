"""``signalbox logs trace|grep|fp``: find requests in the access log, and one request's lines
in every log.

Without FILE arguments the files come from ``signalbox.toml``: ``[instrument] access_log``
and ``[logs] files`` (application and worker logs), each with its rotated siblings, oldest
first (:mod:`signalbox.instrument.logsources`). Files named on the command line are taken as
they are: an access log if its first line is one, else an application or worker log.

The plain forms of ``trace`` and ``grep`` start without click
(:func:`signalbox.cli.logs_run.fast_main`); both starts run :mod:`signalbox.cli.logs_run`.

Malformed lines are reported on stderr after the output (file:line and why, the first
:data:`SHOWN_PER_FILE` of each file, then a count) and skipped: never fatal. Which ones a
filtered search reports is :mod:`signalbox.instrument.logfiles`'s rule: always a line not
UTF-8, too long, cut by a broken gzip file, or without an access line's shape; a shaped line
broken deeper (a bad time, a bad pair) only when it holds what the filter asks for. ``logs
grep`` with no filter (or only ``--until``) parses, so reports, every line; ``--since`` passes
over the blocks of lines that all arrived before it. Exit codes:
0 ok (finding nothing is not an error), 2 usage or configuration error (a bad filter, a
file that cannot be read, no log file at all).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx
from signalbox.cli.logs_run import SHOWN_PER_FILE, run_grep, run_trace
from signalbox.exceptions import UsageError

__all__ = ["SHOWN_PER_FILE", "logs_group"]


@click.group("logs")
def logs_group() -> None:
    """Read the logs: one request's lines by its id, requests by user, API key, method,
    status; an API key's fingerprint."""


@logs_group.command("trace")
@click.argument("request_id")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
def trace_cmd(ctx: Context, request_id: str, files: tuple[Path, ...], as_json: bool) -> None:
    """Every line for REQUEST_ID in the access, application and worker logs, in time order.

    FILE: logs to read (default: [instrument] access_log and [logs] files, rotated ones too).
    """
    run_trace(lambda: ctx.settings, request_id, files, as_json)


@logs_group.command("grep")
@click.option("--request-id", "request_id", metavar="ID", help="This request's line.")
@click.option("--user", metavar="ID", help="Requests noted with user_id=ID.")
@click.option(
    "--api-key-fp",
    "api_key_fp",
    metavar="FP",
    help="Requests made with the API key of this fingerprint (`signalbox logs fp KEY`).",
)
@click.option("--method", metavar="M", help="Requests of this HTTP method (GET, POST, ...).")
@click.option("--status", metavar="CODE", help="This status (503) or class (5xx).")
@click.option(
    "--since", metavar="WHEN", help="Arrived since: 1h ago, or a time (2024-05-01T12:00Z)."
)
@click.option("--until", metavar="WHEN", help="Arrived before: a duration ago or a time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines: one object per request.")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
@handle_errors
def grep_cmd(
    ctx: Context,
    request_id: str | None,
    user: str | None,
    api_key_fp: str | None,
    method: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    files: tuple[Path, ...],
) -> None:
    """Access-log lines of the requests matching every filter given, in file order (oldest
    rotated file first). Both line formats (combined, JSON) are read.

    FILE: access logs to read (default: [instrument] access_log, rotated ones too).
    """
    filters = {
        "request_id": request_id,
        "user": user,
        "api_key_fp": api_key_fp,
        "method": method,
        "status": status,
        "since": since,
        "until": until,
    }
    run_grep(lambda: ctx.settings, filters, as_json, files)


@logs_group.command("fp")
@click.argument("key")
@pass_ctx
@handle_errors
def fp_cmd(ctx: Context, key: str) -> None:
    """Print the fingerprint API key KEY is logged as (`-`: read the key from stdin, so it
    stays out of the shell's history), with the key the middleware uses:
    $SIGNALBOX_LOG_KEY ([instrument] key_env), else [instrument] key_file."""
    import os

    from signalbox.instrument.accesslog import fingerprint
    from signalbox.instrument.core import load_secret

    if key == "-":
        key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        raise UsageError("KEY: empty; give the API key (or - and the key on stdin)")
    settings = ctx.settings
    inst = settings.instrument
    where = (
        f"${inst.key_env}"
        if os.environ.get(inst.key_env)
        else str(inst.key_path(settings.data_dir))
    )
    click.echo(fingerprint(key, load_secret(settings)))
    click.echo(f"signalbox logs: fingerprinted with the key of {where}", err=True)
