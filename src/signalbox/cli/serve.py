"""``signalbox serve``: collectors, rollups and the HTTP server on one machine."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx
from signalbox.exceptions import UsageError

if TYPE_CHECKING:
    from signalbox.config import Settings


@click.command("serve")
@click.option(
    "--host", default=None, help="Address to bind (default from signalbox.toml: 127.0.0.1)."
)
@click.option("--port", type=int, default=None, help="Port (default from signalbox.toml: 8910).")
@click.option(
    "--statsd",
    "statsd",
    default=None,
    metavar="HOST:PORT",
    help="StatsD UDP address to listen on (default from signalbox.toml: 127.0.0.1:8125).",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 1024),
    default=0,
    show_default=True,
    help="Run the jobs of [tasks] modules' tasks in this process, this many at once "
    "(as `signalbox worker --concurrency N`); stopped gracefully with serve.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Run a simulated photo service that writes real spool files and StatsD, from a "
    "config the CLI in this folder sees too (./signalbox.toml if there is none).",
)
@pass_ctx
@handle_errors
def serve_cmd(
    ctx: Context,
    host: str | None,
    port: int | None,
    statsd: str | None,
    workers: int,
    demo: bool,
) -> None:
    """Run everything on one machine: collection every interval, rollups, StatsD, HTTP API.

    Open http://127.0.0.1:8910/ for the list of metrics; /metrics for Prometheus;
    /api/v1/query and /api/v1/query_range for Grafana; /queues for the task queues.
    """
    from signalbox.instrument.logline import use_request_format
    from signalbox.server.serve import serve

    settings = demo_settings(ctx) if demo else ctx.settings
    use_request_format(secret_notes=settings.instrument.secret_notes)  # `logs trace` finds lines
    if statsd is not None:
        settings = with_statsd(settings, statsd)
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again with the
    # handler it found: the default one would kill the process before serve's clean-up
    # (the demo's spool file, the loops, the store). Exit through that clean-up instead.
    previous = signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        serve(settings, host=host, port=port, demo=demo, workers=workers)
    except KeyboardInterrupt:
        pass  # Ctrl-C: serve has cleaned up; a stop asked for is not a failure
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def with_statsd(settings: Settings, address: str) -> Settings:
    """``settings`` listening for StatsD on ``address`` (``--statsd`` wins over the file)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--statsd {address!r}: expected HOST:PORT like 127.0.0.1:8125")
    metrics = settings.metrics
    statsd = dataclasses.replace(
        metrics.statsd, enabled=True, host=host.strip("[]") or "127.0.0.1", port=int(port)
    )
    return dataclasses.replace(settings, metrics=dataclasses.replace(metrics, statsd=statsd))


def demo_settings(ctx: Context) -> Settings:
    """The demo's config, written if missing (see :mod:`signalbox.demo.workspace`), its
    monitors, and no spool file left by an earlier run."""
    from signalbox.config import find_config, load_settings
    from signalbox.demo.workspace import (
        is_demo_config,
        prepare_config,
        remove_leftovers,
        write_monitors,
    )

    cwd = Path.cwd()
    found = find_config(ctx.config_path)
    users = found is not None and not is_demo_config(found)
    workspace = prepare_config(found, cwd, ctx.settings.data_dir if users else None)
    settings = load_settings(str(workspace.config))
    for line in workspace.notes(cwd):
        click.echo(line)
    write_monitors(settings.monitors.paths, workspace.config)
    settings.metrics.spool_dir.mkdir(parents=True, exist_ok=True)  # the demo's own: no warning
    for path in remove_leftovers(settings.metrics.spool_dir):
        click.echo(f"demo: removed {path.name} from the spool: an earlier demo run left it")
    return settings
