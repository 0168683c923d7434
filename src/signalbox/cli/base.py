"""The ``signalbox`` click group and what every command module shares.

Command modules import from here, never from :mod:`signalbox.cli.main`, so importing any
one of them first cannot start a circular import.

Exit codes (SPEC): 0 ok, 1 a check failed, 2 usage or configuration error. Heavy modules
are imported inside each command so ``collect --once`` from cron starts fast.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import click

from signalbox import __version__
from signalbox.exceptions import ConfigError, SignalboxError, UsageError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn our errors into one clear line and the right exit code.

    A store error is exit 2 like the others (SPEC has no code of its own for it): a damaged
    or foreign database and a full disk say what to do. A database driver's error that the
    store did not name is still one line, not a traceback (``-vv`` logs the traceback).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, UsageError) as e:
            click.echo(f"signalbox: {e}", err=True)
            sys.exit(2)
        except SignalboxError as e:
            click.echo(f"signalbox: {e}", err=True)
            sys.exit(2)
        except Exception as e:
            from signalbox.storage.failures import is_driver_error

            if not is_driver_error(e):
                raise
            logging.getLogger("signalbox.cli").debug("store error", exc_info=True)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            click.echo(f"signalbox: store error: {first} (-vv shows where)", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


class Context:
    def __init__(self, config: str | None, verbose: int) -> None:
        self.config_path = config
        self.verbose = verbose
        self._settings: Any = None

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from signalbox.config import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings

    def existing_store_url(self) -> str:
        """The configured store for a command that only reads: named on stderr, and refused
        (exit 2) when it does not exist, instead of creating an empty one that answers
        "no data" from the wrong folder."""
        from signalbox.storage.database import redact_url

        settings = self.settings
        url: str = settings.store_url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            path = Path(url[len("sqlite:///") :])
            if not path.is_file():
                raise UsageError(f"no store at {path}: {_NOT_COLLECTED.format(self._config())}")
        elif url.startswith(("postgresql://", "postgres://")) and not _has_metrics(url):
            where = f"{redact_url(url)} (the database has no signalbox tables)"
            raise UsageError(f"no store at {where}: {_NOT_COLLECTED.format(self._config())}")
        click.echo(f"store: {redact_url(url)}", err=True)
        return url

    def _config(self) -> str:
        return describe_config_source(self.settings.source)


_NOT_COLLECTED = (
    "nothing was collected with this config yet (config: {}). Run where your signalbox.toml "
    "is, or pass --config FILE; `signalbox serve` or `signalbox collect --once` creates the store"
)


def _has_metrics(url: str) -> bool:
    """Whether the PostgreSQL database at ``url`` holds signalbox's metric tables (reading
    them through a store would otherwise create them)."""
    from signalbox.storage import open_database

    db = open_database(url)
    try:
        return db.schema_version("metrics") > 0
    finally:
        db.close()


def describe_config_source(source: str) -> str:
    """Where the settings came from, with the lookup order when no file was found."""
    if source != "(defaults)":
        return source
    return (
        f"none found: not given with --config, $SIGNALBOX_CONFIG unset, no signalbox.toml in "
        f"{Path.cwd()}; defaults apply"
    )


@contextmanager
def logs_after_output() -> Iterator[None]:
    """Hold log records while a command prints its data, then write them to stderr after it.

    A log line (stderr) written between two lines of a table (stdout) splits the table
    when both go to one terminal or file; held, it comes after the whole table instead.
    """
    root = logging.getLogger()
    held = _HeldRecords()
    saved = root.handlers[:]
    root.handlers = [held]
    try:
        yield
    finally:
        root.handlers = saved
        try:
            with suppress(ValueError):  # stdout already closed
                sys.stdout.flush()  # a closed pipe raises here, once the logs are out
        finally:
            targets = saved
            if not targets and logging.lastResort is not None:
                targets = [logging.lastResort]  # what logging does when nothing is configured
            for record in held.records:
                for handler in targets:
                    if record.levelno >= handler.level:
                        handler.handle(record)


class _HeldRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def prints_data(fn: F) -> F:
    """For commands that print data (tables, series, JSON): logs come after the data."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with logs_after_output():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


pass_ctx = click.make_pass_decorator(Context)


def current_user() -> str:
    """Who runs the command, for audit trails (``--by`` overrides it where offered)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when run (click's documented pattern):
    ``collect --once`` from cron should not pay for importing the monitors CLI."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            import importlib

            module, attr = self.lazy[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Every command: a reader that stops reading (``signalbox query ... | head``) ends
        the output quietly with exit 0, as ``cat`` does; click alone would exit 1."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _silence_stdout()
            raise click.exceptions.Exit(0) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (e.g. under a test runner)
        pass


COMMANDS = {
    "init": "signalbox.cli.init:init_cmd",
    "serve": "signalbox.cli.serve:serve_cmd",
    "agent": "signalbox.cli.collect:agent_cmd",
    "collect": "signalbox.cli.collect:collect_cmd",
    "compact": "signalbox.cli.collect:compact_cmd",
    "send": "signalbox.cli.collect:send_cmd",
    "query": "signalbox.cli.query:query_cmd",
    "import": "signalbox.cli.importer:import_cmd",
    # importing monitors_ops attaches run/status/silence/... to the monitors group
    "monitors": "signalbox.cli.monitors_ops:monitors_group",
    "tokens": "signalbox.cli.tokens:tokens_group",
    "users": "signalbox.cli.users:users_group",
    "worker": "signalbox.cli.worker:worker_cmd",
    "tasks": "signalbox.cli.tasks:tasks_group",
    "gates": "signalbox.cli.gates:gates_group",
    "flags": "signalbox.cli.flags:flags_group",
    "logs": "signalbox.cli.logs:logs_group",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="signalbox")
@click.option(
    "--config",
    "config",
    metavar="FILE",
    help="signalbox.toml to use (default: $SIGNALBOX_CONFIG, then ./signalbox.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: int) -> None:
    """signalbox: metrics, monitors, load feedback, instrumentation and feature flags,
    shared by development and operations."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = Context(config, verbose)
