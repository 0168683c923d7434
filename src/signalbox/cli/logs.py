"""``signalbox logs trace|grep|fp``: find requests in the access log, and one request's lines
in every log.

Without FILE arguments the files come from ``signalbox.toml``: ``[instrument] access_log``
and ``[logs] files`` (application and worker logs), each with its rotated siblings, oldest
first (:mod:`signalbox.instrument.logsources`). Files named on the command line are taken as
they are: an access log if its first line is one, else an application or worker log.

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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from signalbox.cli.base import Context, describe_config_source, handle_errors, pass_ctx
from signalbox.exceptions import UsageError

if TYPE_CHECKING:
    from signalbox.instrument.logblocks import Malformed
    from signalbox.instrument.logset import LogFiles

SHOWN_PER_FILE = 10
"""Malformed lines reported one by one per file; the rest are counted."""


class _Report:
    """Malformed lines, said after the output (a report between two lines of it would
    split what a pipe reads)."""

    def __init__(self) -> None:
        self.shown: list[Malformed] = []
        self.counts: dict[str, int] = {}

    def __call__(self, bad: Malformed) -> None:
        n = self.counts.get(bad.file, 0) + 1
        self.counts[bad.file] = n
        if n <= SHOWN_PER_FILE:
            self.shown.append(bad)

    def say(self) -> None:
        if not self.counts:
            return
        from signalbox.instrument.logline import printable

        for bad in self.shown:
            click.echo(f"signalbox logs: {printable(str(bad))} (skipped)", err=True)
        for file, n in self.counts.items():
            if n > SHOWN_PER_FILE:
                click.echo(
                    f"signalbox logs: {printable(file)}: {n - SHOWN_PER_FILE} more malformed "
                    "line(s) skipped",
                    err=True,
                )


@contextmanager
def _reporting() -> Iterator[_Report]:
    report = _Report()
    try:
        yield report
    finally:
        sys.stdout.flush()
        report.say()


def _files(ctx: Context, given: tuple[Path, ...]) -> LogFiles:
    """The files to read: those given, else the config's (refused when there is none)."""
    from signalbox.instrument.logfiles import classify

    if given:
        for p in given:
            if not p.is_file():
                raise UsageError(f"{p}: no such file")
        try:
            return classify(given)
        except OSError as e:
            raise UsageError(f"{e.filename}: cannot read ({e.strerror})") from None
    from signalbox.instrument.logsources import log_files

    files = log_files(ctx.settings)
    for missing in files.missing:
        click.echo(f"signalbox logs: {missing}: no such file yet", err=True)
    if not files.access and not files.other:
        raise UsageError(
            "no log file to read: [instrument] access_log and [logs] files of the config "
            f"({describe_config_source(ctx.settings.source)}) name none that exists; "
            "name files on the command line"
        )
    return files


def _shown(text: str) -> str:
    """``text`` safe for a terminal: as it is when printable ASCII (a line the middleware
    wrote, mostly: the escaping is not even imported), else through ``printable``."""
    if text.isascii() and text.isprintable():
        return text
    from signalbox.instrument.logline import printable

    return printable(text)


def _now() -> datetime:
    return datetime.now(UTC)


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
    from signalbox.instrument.context import REQUEST_ID
    from signalbox.instrument.logline import printable
    from signalbox.instrument.logscan import trace

    if not REQUEST_ID.match(request_id):
        raise UsageError(
            f"request id {printable(request_id[:80])!r}: expected up to 128 letters, digits "
            "and ._:@+=/- (what X-Request-ID and the access log's request_id hold)"
        )
    logs = _files(ctx, files)
    with _reporting() as report:
        lines = trace(logs, request_id, report)
        if as_json:
            import json

            doc = {
                "request_id": request_id,
                "lines": [
                    {
                        "time": t.time.isoformat(timespec="microseconds") if t.time else None,
                        "file": str(t.file),
                        "line": t.line,
                        "text": t.text,
                        "record": t.record.to_dict() if t.record is not None else None,
                    }
                    for t in lines
                ],
                "malformed": sum(report.counts.values()),
            }
            click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        else:
            for t in lines:
                click.echo(f"{printable(str(t.file))}:{t.line}: {printable(t.text)}")
    if not lines and not as_json:
        n = len(logs.access) + len(logs.other)
        click.echo(f"signalbox logs: no line for request {request_id} in {n} file(s)", err=True)


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
    from signalbox.instrument.logfiles import search
    from signalbox.instrument.search import RequestQuery

    query = RequestQuery.build(
        request_id=request_id,
        user=user,
        api_key_fp=api_key_fp,
        method=method,
        status=status,
        since=since,
        until=until,
        now=_now(),
        # the config is read for this only when FILEs are given (a grep starts faster)
        secret_notes=ctx.settings.instrument.secret_notes if api_key_fp else ("api_key",),
        names={
            "request_id": "--request-id",
            "user": "--user",
            "api_key_fp": "--api-key-fp",
            "method": "--method",
            "status": "--status",
            "since": "--since",
            "until": "--until",
        },
    )
    logs = _files(ctx, files)
    if not logs.access:
        raise UsageError(
            "no access log among the files: "
            + ", ".join(str(p) for p in logs.other)
            + " (an access log's first line is one the middleware writes)"
        )
    out = sys.stdout
    if as_json:
        import json
    with _reporting() as report:  # written as found, flushed at the end (not a line each)
        for found in search(logs.access, query, report):
            if as_json:
                doc = {"file": str(found.file), "line": found.line, **found.record.to_dict()}
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
            else:
                out.write(_shown(found.text) + "\n")


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
