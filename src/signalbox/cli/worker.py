"""``signalbox worker``: run the jobs of ``[tasks] modules``' tasks until stopped.

SIGTERM or Ctrl-C stops it gracefully (running jobs finish, claimed ones not started go back
at once); a second one exits at once (what was running runs again after its lease).
``--burst`` exits once no job is ready now, for cron and tests. Exit codes: 0 ok, 2 usage or
configuration error.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx


@click.command("worker")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    help="Run jobs of this queue (repeat for more; default: [tasks] queues, else every queue).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=None,
    help="Jobs run at once, one thread each (default: [tasks] concurrency).",
)
@click.option("--burst", is_flag=True, help="Exit once no job is ready now.")
@pass_ctx
@handle_errors
def worker_cmd(ctx: Context, queues: tuple[str, ...], concurrency: int | None, burst: bool) -> None:
    """Run offline tasks: claim jobs, check their gates, run them, retry or defer them."""
    from signalbox.gates.settings import sharing_enabled
    from signalbox.instrument.logline import use_request_format
    from signalbox.runtime import open_metric_store
    from signalbox.tasks.operate import check_queue
    from signalbox.tasks.registry import REGISTRY, open_queue_store
    from signalbox.tasks.settings import queue_store_url
    from signalbox.tasks.worker import Worker

    settings = ctx.settings
    use_request_format(secret_notes=settings.instrument.secret_notes)  # `logs trace` finds lines
    for q in queues:
        check_queue(q)
    # tasks modules are import paths of the user's project: found from the config's folder
    # and the working directory, as `python -m` would find them
    for folder in (os.getcwd(), str(settings.base_dir)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    failed = REGISTRY.import_modules(settings.tasks.modules)
    store = open_queue_store(settings)
    worker = Worker(
        store,
        settings=settings.tasks,
        queues=queues or None,
        concurrency=concurrency,
        metrics=open_metric_store(settings),
        share_gates=sharing_enabled(settings),
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if worker.stopping:
            click.echo("signalbox worker: stopped at once", err=True)
            os._exit(130)
        click.echo(
            f"signalbox worker: {signal.Signals(signum).name}: finishing running jobs "
            "(again to stop at once)",
            err=True,
        )
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from signalbox.storage.database import redact_url

    click.echo(
        f"signalbox worker {worker.name}: queue {redact_url(queue_store_url(settings.tasks, settings.store_url))}, "
        f"queues {', '.join(worker.queues) or '(all)'}, concurrency {worker.concurrency}, "
        f"{len(REGISTRY.names())} tasks"
        + (f", modules failing to import: {', '.join(sorted(failed))}" if failed else ""),
        err=True,
    )
    try:
        counts = worker.run(burst=burst)
    finally:
        store.close()
    ran = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no jobs"
    click.echo(f"signalbox worker {worker.name}: stopped ({ran})", err=True)
