"""``signalbox monitors``: monitors as code — lint, unit-test and backtest monitor files.

Other modules attach their subcommands (``run``, ``status``, ``silence``, ...) to
:data:`monitors_group`. Exit codes: 0 ok, 1 a check failed (lint errors, failing tests),
2 usage or configuration error (a backtest with lint errors in its files exits 1 too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx
from signalbox.durations import parse_duration
from signalbox.exceptions import UsageError

if TYPE_CHECKING:
    from signalbox.monitors.definitions.load import LoadResult
    from signalbox.monitors.definitions.model import Monitor


def _duration_arg(option: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{option} {text!r}: {e}") from None
    if seconds <= 0:
        raise UsageError(f"{option} {text!r}: must be above zero")
    return seconds


def _paths(given: tuple[Path, ...], ctx: Context) -> list[Path]:
    """The paths to read: those given (each must exist), else ``monitors.paths`` from the config."""
    if given:
        missing = [str(p) for p in given if not p.exists()]
        if missing:
            raise UsageError(f"no such file or directory: {', '.join(missing)}")
        return list(given)
    configured = list(ctx.settings.monitors.paths)
    if not any(p.exists() for p in configured):
        where = ", ".join(str(p) for p in configured)
        raise UsageError(
            f"no monitors at {where} (monitors.paths in {ctx.settings.source}); give a PATH"
        )
    return [_relative(p) for p in configured if p.exists()]


def _relative(p: Path) -> Path:
    """``p`` relative to the working directory when it lies below it: shorter messages."""
    try:
        return p.relative_to(Path.cwd())
    except ValueError:
        return p


@click.group("monitors")
def monitors_group() -> None:
    """Monitors as code: lint, unit-test and backtest monitor files, and run them."""


@monitors_group.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[PATH]...")
@click.option("--json", "as_json", is_flag=True, help="Errors as JSON.")
@pass_ctx
@handle_errors
def lint_cmd(ctx: Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """Check monitor files (default: monitors.paths) and print every problem as FILE:LINE.

    Exit 1 when any problem is found, so CI can refuse the change.
    """
    from signalbox.monitors.definitions.load import load_monitors, monitor_files

    targets = _paths(paths, ctx)
    result = load_monitors(targets, notifiers=set(ctx.settings.monitors.notifiers))
    result = _with_flag_checks(ctx, result)
    files, _ = monitor_files(targets)
    if as_json:
        errors = [
            {
                "file": e.file,
                "line": e.line,
                "monitor": e.monitor,
                "key": e.key,
                "message": e.message,
            }
            for e in result.errors
        ]
        click.echo(
            json.dumps({"monitors": len(result.monitors), "files": len(files), "errors": errors})
        )
    else:
        for e in result.errors:
            click.echo(str(e))
        n, f = len(result.monitors), len(files)
        counts = f"{n} valid monitor{'' if n == 1 else 's'} in {f} file{'' if f == 1 else 's'}"
        if result.errors:
            k = len(result.errors)
            click.echo(f"{k} error{'' if k == 1 else 's'} ({counts})")
        else:
            click.echo(f"{counts}: no errors")
    raise SystemExit(1 if result.errors else 0)


def _with_flag_checks(ctx: Context, result: LoadResult) -> LoadResult:
    """``result`` with an error for each action naming a flag the flags files do not declare."""
    if not any(m.on_critical or m.on_warning or m.on_recover for m in result.monitors):
        return result
    from signalbox.flags.declarations import load_declarations
    from signalbox.monitors.definitions.load import LoadResult
    from signalbox.monitors.engine.actions import undeclared_flags

    declared = load_declarations(list(ctx.settings.flags.paths), code=()).flags
    found = undeclared_flags(result.monitors, declared)
    if not found:
        return result
    errors = sorted([*result.errors, *found], key=lambda e: (e.file, e.line))
    return LoadResult(result.monitors, tuple(errors))


@monitors_group.command("test")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[PATH]...")
@click.option("--json", "as_json", is_flag=True, help="Results per file and test as JSON.")
@pass_ctx
@handle_errors
def test_cmd(ctx: Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """Run monitor unit tests (*_test.yaml, *.test.yaml; default: under monitors.paths).

    Each test feeds series written in promtool's notation to the monitors and checks their
    states and notifications. Exit 1 when any test fails or a test file has errors.
    """
    from signalbox.monitors.testing.runner import find_test_files, format_report, run_test_file

    targets = _paths(paths, ctx)
    files, errors = find_test_files(targets)
    if not files and not as_json:
        where = ", ".join(str(p) for p in targets)
        click.echo(f"no monitor test files (*_test.yaml, *.test.yaml) in {where}", err=True)
        raise SystemExit(0)
    context = list(ctx.settings.monitors.paths)
    passed = failed = bad_files = 0
    reports = []
    for f in files:
        report = run_test_file(f, default_repeat_s=ctx.settings.monitors.repeat_s, context=context)
        reports.append(report)
        if not as_json:
            click.echo(format_report(report))
        passed += sum(1 for o in report.outcomes if o.passed)
        failed += sum(1 for o in report.outcomes if not o.passed)
        bad_files += 0 if report.ok else 1
    if as_json:
        body = {
            "passed": passed,
            "failed": failed,
            "errors": [str(e) for e in errors],
            "files": [
                {
                    "path": str(r.path),
                    "errors": [str(e) for e in r.errors],
                    "tests": [
                        {
                            "name": o.name,
                            "line": o.line,
                            "passed": o.passed,
                            "failures": list(o.failures),
                        }
                        for o in r.outcomes
                    ],
                }
                for r in reports
            ],
        }
        click.echo(json.dumps(body, indent=2))
        raise SystemExit(1 if bad_files or errors else 0)
    for e in errors:
        click.echo(f"ERROR: {e}")
    nf = len(files)
    click.echo(
        f"monitor tests: {passed} passed, {failed} failed ({nf} file{'' if nf == 1 else 's'})"
    )
    raise SystemExit(1 if bad_files or errors else 0)


@monitors_group.command("backtest")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--since", default="7d", show_default=True, metavar="DURATION", help="How far back to replay."
)
@click.option(
    "--against",
    "against",
    type=click.Path(path_type=Path),
    metavar="OTHER_FILE",
    help="Compare with the same monitors in another file (e.g. the version on main).",
)
@click.option(
    "--monitor", "names", multiple=True, metavar="NAME", help="Only this monitor (repeatable)."
)
@click.option(
    "--step",
    metavar="DURATION",
    help="Evaluation step (default: the finest stored resolution for --since).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def backtest_cmd(
    ctx: Context,
    file: Path,
    since: str,
    against: Path | None,
    names: tuple[str, ...],
    step: str | None,
    as_json: bool,
) -> None:
    """Replay the monitors of FILE over stored history: when each would have fired, for how
    long, and how many notifications it would have sent.

    With --against OTHER_FILE the same monitor names from both files are shown side by side
    (old = OTHER_FILE, new = FILE): the view a reviewer needs before merging a threshold
    change. Silences, acknowledgements and depends_on are not modelled. Exit 1 when a file
    has lint errors (its valid monitors are still replayed), 2 on bad arguments.
    """
    from signalbox.monitors.backtest import BacktestRequest, UnknownMonitors, run

    request = BacktestRequest(
        file,
        since_s=_duration_arg("--since", since),
        against=against,
        names=names,
        step_s=_duration_arg("--step", step) if step else None,
    )
    tty = sys.stderr.isatty() and not as_json

    def show(done: int, total: int, m: Monitor) -> None:
        click.echo(f"\rbacktesting {done + 1}/{total}: {m.name}\033[K", nl=False, err=True)

    try:
        report = run(request, ctx.settings, progress=show if tty else None)
    except UnknownMonitors as e:
        raise UsageError(
            f"--monitor {', '.join(e.names)}: not defined in "
            + " or ".join(str(f) for f in e.files)
            + f" (monitors: {', '.join(e.known) or 'none'})"
        ) from None
    finally:
        if tty:
            click.echo("\r\033[K", nl=False, err=True)
    for note in report.notes():
        click.echo(note, err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo("\n".join(report.text_lines()))
    raise SystemExit(0 if report.ok else 1)
