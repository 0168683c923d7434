"""``signalbox monitors``: monitors as code — lint, unit-test and backtest monitor files.

Other modules attach their subcommands (``run``, ``status``, ``silence``, ...) to
:data:`monitors_group`. Exit codes: 0 ok, 1 a check failed (lint errors, failing tests),
2 usage or configuration error (a backtest is informational: 0 unless its input is bad).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx
from signalbox.durations import parse_duration
from signalbox.exceptions import UsageError

if TYPE_CHECKING:
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
    configured = list(ctx.settings.monitor_paths)
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
    result = load_monitors(targets, notifiers=set(ctx.settings.notifiers))
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
    context = list(ctx.settings.monitor_paths)
    passed = failed = bad_files = 0
    reports = []
    for f in files:
        report = run_test_file(f, default_repeat_s=ctx.settings.monitor_repeat_s, context=context)
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


def _load_for_backtest(file: Path, ctx: Context, errors: list[str]) -> list[Monitor]:
    """The monitors defined in ``file``, with the configured ones loaded beside it so a
    ``depends_on`` naming a monitor elsewhere resolves; only ``file``'s own errors count."""
    from signalbox.monitors.definitions.load import load_monitors

    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    context = [p for p in ctx.settings.monitor_paths if p.exists()]
    result = load_monitors([file, *context])
    errors.extend(str(e) for e in result.errors if e.file == str(file))
    return [m for m in result.monitors if m.file == str(file)]


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
    change. Silences, acknowledgements and depends_on are not modelled.
    """
    from signalbox.monitors.backtest.report import (
        backtest,
        default_step_s,
        dropped_note,
        format_backtest,
        format_comparison,
        format_window,
        to_json,
    )
    from signalbox.runtime import open_metric_store, query_engine

    settings = ctx.settings
    since_s = _duration_arg("--since", since)
    errors: list[str] = []
    new = _load_for_backtest(file, ctx, errors)
    old = _load_for_backtest(against, ctx, errors) if against is not None else []
    if names:
        known = sorted({m.name for m in [*new, *old]})
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(
                f"--monitor {', '.join(unknown)}: not defined in {file}"
                + (f" or {against}" if against else "")
                + f" (monitors: {', '.join(known) or 'none'})"
            )
        new = [m for m in new if m.name in names]
        old = [m for m in old if m.name in names]
    elif against is not None:
        wanted = {m.name for m in new}
        old = [m for m in old if m.name in wanted]
    for e in errors:
        click.echo(e, err=True)
    skipped = [m for m in [*new, *old] if m.rule() is None]
    for m in skipped:
        click.echo(
            f"{m.file}:{m.line}: {m.name}: a Nagios plugin check has no stored history; not replayed",
            err=True,
        )
    new = [m for m in new if m.rule() is not None]
    old = [m for m in old if m.rule() is not None]

    step_s = (
        _duration_arg("--step", step)
        if step
        else default_step_s(
            since_s,
            raw_retention_s=settings.raw_retention_s,
            tiers=settings.tiers,
            evaluation_s=settings.monitor_interval_s,
        )
    )
    step_ms = max(1, round(step_s * 1000))
    store = open_metric_store(settings)
    now_ms = int(store.clock.now() * 1000)
    end_ms = now_ms // step_ms * step_ms
    start_ms = end_ms - round(since_s * 1000) // step_ms * step_ms
    engine = query_engine(store)
    tty = sys.stderr.isatty() and not as_json
    total = len(new) + len(old)

    def progress(offset: int) -> Callable[[int, Monitor], None]:
        def show(i: int, m: Monitor) -> None:
            if tty:
                click.echo(
                    f"\rbacktesting {offset + i + 1}/{total}: {m.name}\033[K", nl=False, err=True
                )

        return show

    repeat = settings.monitor_repeat_s
    try:
        got_new = backtest(
            new, engine, start_ms, end_ms, step_ms, default_repeat_s=repeat, progress=progress(0)
        )
        got_old = backtest(
            old,
            engine,
            start_ms,
            end_ms,
            step_ms,
            default_repeat_s=repeat,
            progress=progress(len(new)),
        )
    finally:
        store.close()
        if tty:
            click.echo("\r\033[K", nl=False, err=True)

    for b in [*got_new, *got_old]:
        if (note := dropped_note(b)) is not None:
            click.echo(note, err=True)
    window = {"start": start_ms / 1000, "end": end_ms / 1000, "step_s": step_ms / 1000}
    if as_json:
        if against is None:
            doc: dict[str, Any] = {
                **window,
                "file": str(file),
                "monitors": [to_json(b) for b in got_new],
            }
        else:
            by_old = {b.monitor.name: b for b in got_old}
            by_new = {b.monitor.name: b for b in got_new}
            order = [*by_old, *(n for n in by_new if n not in by_old)]
            doc = {
                **window,
                "file": str(file),
                "against": str(against),
                "monitors": [
                    {
                        "name": n,
                        "old": to_json(by_old[n]) if n in by_old else None,
                        "new": to_json(by_new[n]) if n in by_new else None,
                    }
                    for n in order
                ],
            }
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(format_window(start_ms, end_ms, step_ms))
        if against is None:
            for b in got_new:
                click.echo("\n".join(format_backtest(b)))
            if not got_new:
                click.echo(f"no monitors to backtest in {file}")
        else:
            click.echo("\n".join(format_comparison(got_new, got_old, str(file), str(against))))
    raise SystemExit(2 if errors else 0)
