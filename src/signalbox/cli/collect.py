"""``collect``, ``agent`` and ``send``: getting metrics in."""

from __future__ import annotations

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx


@click.command("collect")
@click.option("--once", is_flag=True, required=True, help="One pass, then exit (for cron).")
@click.option("--json", "as_json", is_flag=True, help="Print the pass report as JSON.")
@click.option(
    "--no-compact",
    is_flag=True,
    help="Leave rollups and retention to `signalbox compact` (one host of a shared store).",
)
@pass_ctx
@handle_errors
def collect_cmd(ctx: Context, once: bool, as_json: bool, no_compact: bool) -> None:
    """One collection pass over the spool dir, then rollups and retention; exit. Exit 1 if
    any input was refused."""
    from signalbox.cli.collect_once import collect_once

    raise SystemExit(collect_once(ctx.settings, as_json, click.echo, compact=not no_compact))


@click.command("compact")
@pass_ctx
@handle_errors
def compact_cmd(ctx: Context) -> None:
    """Build the rollups of every closed bucket and drop data past retention, then exit.

    `collect --once` does this after each pass; where several hosts share one store, let
    one of them (or this command from cron) do it and give the others `--no-compact`.
    """
    import time

    from signalbox.runtime import open_metric_store

    store = open_metric_store(ctx.settings)
    try:
        started = time.perf_counter()
        store.compact(int(store.clock.now() * 1000))
        click.echo(f"compacted in {time.perf_counter() - started:.3f}s")
    finally:
        store.close()


def _listen_address(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT, like 127.0.0.1:9108")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("agent")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default=None,
    callback=_listen_address,
    help="Serve this agent's last collection pass as /metrics there, for Prometheus to "
    "scrape (no authentication: bind it where only scrapers reach). Off by default.",
)
@pass_ctx
@handle_errors
def agent_cmd(ctx: Context, listen: tuple[str, int] | None) -> None:
    """Collectors only (spool + StatsD), for the other hosts of a PostgreSQL-backed install.

    The `serve` instance that leads compacts the shared store (rollups, retention); while no
    `serve` leads, one agent does (lease agent:compactor), so an agents-only install still
    compacts. A store that is away is waited for; passes it refuses are kept in memory
    (bounded by [collect] buffer_max_samples) and written once it answers.
    """
    from signalbox.durations import format_duration
    from signalbox.server.loops import Background, run_agent
    from signalbox.storage.database import redact_url

    s = ctx.settings

    def started(bg: Background) -> None:
        statsd = "udp://{}:{}".format(*bg.statsd_address) if bg.statsd_address else "off"
        click.echo(
            f"signalbox agent collecting every {format_duration(s.metrics.interval_s)} as host "
            f"{s.host!r}  (spool {s.metrics.spool_dir}, StatsD {statsd}, store "
            f"{redact_url(s.store_url)}, config {s.source}); Ctrl-C or SIGTERM stops it"
        )
        if bg.scrape_address is not None:
            click.echo("/metrics on http://{}:{}/metrics".format(*bg.scrape_address))

    run_agent(s, started=started, listen=listen)


@click.command("send")
@click.argument("pairs", nargs=-1, required=True, metavar="NAME=VALUE...")
@click.option(
    "--file",
    "file_name",
    default="send",
    show_default=True,
    help="Spool file name (without .metrics) to update.",
)
@click.option(
    "--stale-after",
    metavar="DURATION",
    default=None,
    help="How long the file's values stay fresh, like 25h for a daily job (default: the "
    "file's own value if it has one, else collect.stale_after).",
)
@pass_ctx
@handle_errors
def send_cmd(ctx: Context, pairs: tuple[str, ...], file_name: str, stale_after: str | None) -> None:
    """Write metrics into the spool from a shell script: `signalbox send jobs_done=5 'lag{shard="7"}=0.4'`.

    The values are merged into SPOOL/FILE.metrics (other keys in it are kept) and published
    atomically; the next collection pass stores them. `--stale-after 25h` writes a
    `# stale_after: 25h` line into the file so a daily job's values are still collected
    a day later; a later send without it keeps the file's value, one with it replaces it.
    """
    from signalbox.metrics.send import send

    sent = send(ctx.settings.metrics.spool_dir, file_name, list(pairs), stale_after=stale_after)
    for e in sent.dropped:
        click.echo(f"{e.source}:{e.line}: not carried over: {e.reason}", err=True)
    click.echo(f"wrote {len(pairs)} value(s) to {sent.path}")
