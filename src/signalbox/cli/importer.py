"""``signalbox import``: load history from OpenMetrics text with timestamps."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx
from signalbox.exceptions import UsageError


@click.command("import")
@click.argument("file", metavar="FILE")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report (counts, time range, bad lines) as JSON.",
)
@pass_ctx
@handle_errors
def import_cmd(ctx: Context, file: str, as_json: bool) -> None:
    """Import OpenMetrics text (timestamps in seconds, ending in `# EOF`); `-` reads stdin.

    Good lines are imported even when others are bad; every bad line is printed as
    FILE:LINE: reason, and the exit code is then 1.
    """
    from signalbox.metrics.importer import ImportReport, import_openmetrics
    from signalbox.runtime import open_metric_store

    tty = sys.stderr.isatty()

    def progress(r: ImportReport) -> None:
        if tty:
            click.echo(f"\rimported {r.samples:,} samples...", nl=False, err=True)

    store = open_metric_store(ctx.settings)
    if file == "-":
        report = import_openmetrics(store, sys.stdin, "<stdin>", progress=progress)
    else:
        path = Path(file)
        try:
            fh = path.open(encoding="utf-8", errors="replace", newline="")
        except OSError as e:
            raise UsageError(f"{file}: cannot open: {e.strerror}") from None
        with fh:
            report = import_openmetrics(store, fh, file, progress=progress)
    store.compact(int(store.clock.now() * 1000))  # rollups, and raw history past retention dropped
    reclaimed = store.db.reclaim_space()  # SQLite keeps dropped tables' pages until VACUUM
    store.close()
    if reclaimed and not as_json:
        click.echo(f"reclaimed {reclaimed / 1e6:,.0f} MB of dropped raw partitions", err=True)
    if tty:
        click.echo("", err=True)
    if as_json:
        import msgspec

        click.echo(
            msgspec.json.encode(
                {
                    "samples": report.samples,
                    "first_ms": report.first_ms,
                    "last_ms": report.last_ms,
                    "errors": [
                        {"source": e.source, "line": e.line, "reason": e.reason, "text": e.text}
                        for e in report.errors
                    ],
                }
            ).decode()
        )
        raise SystemExit(1 if report.errors else 0)
    for err in report.errors:
        click.echo(
            f"{err.source}:{err.line}: {err.reason}" + (f": {err.text}" if err.text else ""),
            err=True,
        )
    click.echo(
        f"imported {report.samples} samples"
        + (f", {len(report.errors)} bad line(s) skipped" if report.errors else "")
    )
    raise SystemExit(1 if report.errors else 0)
