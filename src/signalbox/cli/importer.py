"""``signalbox import``: load history from OpenMetrics text with timestamps."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx
from signalbox.exceptions import UsageError

if TYPE_CHECKING:
    from signalbox.metrics.sql.store import SQLMetricStore


@click.command("import")
@click.argument("file", metavar="FILE")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report (counts, time range, bad lines) as JSON.",
)
@click.option(
    "--no-pack",
    is_flag=True,
    help="Leave the imported rollups' closed hours unpacked: serve's compactions pack them "
    "later, a budget at a time.",
)
@pass_ctx
@handle_errors
def import_cmd(ctx: Context, file: str, as_json: bool, no_pack: bool) -> None:
    """Import OpenMetrics text (timestamps in seconds, ending in `# EOF`); `-` reads stdin.

    Good lines are imported even when others are bad; every bad line is printed as
    FILE:LINE: reason, and the exit code is then 1. The rollups' closed hours are then
    packed as a long-running server keeps them (a transaction per chunk of series: an
    interrupt or a failure keeps what is packed, and serve packs the rest).
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
    # rollups, and raw history past retention dropped; then every closed unit packed
    store.compact(int(store.clock.now() * 1000), seal=False)
    if not no_pack:
        _pack(store, report.samples, tty, quiet=as_json)
    reclaimed = store.db.reclaim_space()  # SQLite keeps dropped tables' pages until VACUUM
    store.close()
    if tty:
        click.echo("", err=True)
    if reclaimed and not as_json:
        click.echo(f"reclaimed {reclaimed / 1e6:,.0f} MB of dropped raw partitions", err=True)
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


def _pack(store: SQLMetricStore, samples: int, tty: bool, *, quiet: bool) -> None:
    """Pack every closed unit now (:meth:`SQLMetricStore.pack_closed`), with progress on a
    terminal; if interrupted or failing, say what is kept before the error goes on."""
    import time

    done = (0, 0)
    started = time.perf_counter()

    def progress(sealed: int, packed: int) -> None:
        nonlocal done
        done = (sealed, packed)
        if tty:
            click.echo(
                f"\rpacking closed hours: {packed:,} bucket rows, {sealed:,} positions...",
                nl=False,
                err=True,
            )

    try:
        store.pack_closed(progress)
    except BaseException:
        store.close()
        click.echo(
            f"\nsignalbox: imported {samples} samples; packing stopped after {done[1]:,} bucket "
            "rows (those stay packed, serve's compactions pack the rest)",
            err=True,
        )
        raise
    if not quiet and any(done):
        positions = f", {done[0]:,} positions" if done[0] else ""
        click.echo(
            f"{chr(13) if tty else ''}packed closed hours: {done[1]:,} bucket rows{positions} "
            f"in {time.perf_counter() - started:.1f} s",
            nl=not tty,
            err=True,
        )
