"""``signalbox serve``: collectors, rollups and the HTTP server on one machine."""

from __future__ import annotations

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx


@click.command("serve")
@click.option(
    "--host", default=None, help="Address to bind (default from signalbox.toml: 127.0.0.1)."
)
@click.option("--port", type=int, default=None, help="Port (default from signalbox.toml: 8910).")
@click.option(
    "--demo",
    is_flag=True,
    help="Run a simulated photo service that writes real spool files and StatsD.",
)
@pass_ctx
@handle_errors
def serve_cmd(ctx: Context, host: str | None, port: int | None, demo: bool) -> None:
    """Run everything on one machine: collection every interval, rollups, StatsD, HTTP API.

    Open http://127.0.0.1:8910/ for the list of metrics; /metrics for Prometheus;
    /api/v1/query and /api/v1/query_range for Grafana.
    """
    from signalbox.server.serve import serve

    serve(ctx.settings, host=host, port=port, demo=demo)
