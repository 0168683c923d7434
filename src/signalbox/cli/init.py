"""``signalbox init``: scaffold a project. Running it twice changes nothing."""

from __future__ import annotations

from pathlib import Path

import click

from signalbox.cli.base import handle_errors
from signalbox.scaffold import scaffold


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@handle_errors
def init_cmd(directory: Path) -> None:
    """Write a commented signalbox.toml, example monitors and flags, and the spool dir."""
    for path, created in scaffold(directory):
        click.echo(f"{'created' if created else 'exists, left as is'}: {path}")
