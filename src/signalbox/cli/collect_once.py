"""``collect --once`` for cron, with a start that skips click.

Cron runs it every minute, and on a 100k-sample spool importing click is about a tenth of
the whole pass. :func:`fast_main` recognises the plain forms (``[--config FILE] [-v]
collect --once [--json] [--no-compact]``) and runs the pass itself; anything else goes to the click CLI,
whose ``collect`` command calls the same :func:`collect_once`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from signalbox.cli.plainargs import leading_options

if TYPE_CHECKING:
    from signalbox.metrics.spool import SpoolProblem


def collect_once(
    settings: Any, as_json: bool, echo: Callable[..., None], *, compact: bool = True
) -> int:
    """One collection pass and (unless told not to) compaction; print the report; return
    the exit code.

    Each problem is printed once, on stderr as ``file:line: reason`` (and in the ``--json``
    report): the collector's own logging of problems, meant for ``serve`` and ``agent``,
    is turned off here so the same problem is not also logged.
    """
    from signalbox.metrics.spooldir import check_spool_dir
    from signalbox.runtime import build_collector, open_metric_store

    store = open_metric_store(settings)  # first: a store it cannot use is the one message
    missing = check_spool_dir(settings.metrics.spool_dir)
    if missing:  # nothing failed (exit code unchanged), but nothing can come from files
        echo(f"signalbox: warning: {missing}", err=True)
    forwarding = None
    if settings.forward.any:  # [forward] peers: each sent before exit
        from signalbox.metrics.forward import start_forwarding

        forwarding = start_forwarding(settings)
    try:
        collector = build_collector(settings, store, [forwarding] if forwarding else None)
        if forwarding is not None:
            collector.store = forwarding.wrap(collector.store)
        collector.on_problem = _reported_below
        report = collector.run_once()
        if compact:
            store.compact(int(store.clock.now() * 1000))
    finally:
        if forwarding is not None:
            forwarding.close()  # waits for the sends, within the socket timeouts
        store.close()
    bad = [p for p in report.problems if p.kind != "ignored"]
    if as_json:
        import msgspec

        echo(
            msgspec.json.encode(
                {
                    "stored": report.stored,
                    "new_series": report.new_series,
                    "duration_s": round(report.duration_s, 6),
                    "problems": [
                        {"file": p.file, "line": p.line, "kind": p.kind, "reason": p.reason}
                        for p in report.problems
                    ],
                }
            ).decode()
        )
    for p in report.problems:
        echo(
            f"{settings.metrics.spool_dir / p.file}{':' + str(p.line) if p.line else ''}: {p.reason}",
            err=True,
        )
    if not as_json:
        echo(
            f"stored {report.stored} samples ({report.new_series} new series) in {report.duration_s:.3f}s"
        )
    return 1 if bad else 0


def _reported_below(problem: SpoolProblem) -> None:
    """The collector's problem hook for ``collect --once``: its report prints them."""


def _echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def parse_plain(argv: list[str]) -> tuple[str | None, int, bool, bool] | None:
    """(config, verbosity, json, compact) when ``argv`` is a plain ``collect --once``; else
    None."""
    lead = leading_options(argv, "collect", verbose=True)
    if lead is None:
        return None
    config, verbose, i = lead
    rest = argv[i + 1 :]
    if "--once" not in rest or not set(rest) <= {"--once", "--json", "--no-compact"}:
        return None
    return config, verbose, "--json" in rest, "--no-compact" not in rest


def fast_main(argv: list[str]) -> int | None:
    """Run a plain ``collect --once``; None when ``argv`` needs the full CLI."""
    plain = parse_plain(argv)
    if plain is None:
        return None
    config, verbose, as_json, compact = plain
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from signalbox.config import load_settings
    from signalbox.exceptions import SignalboxError

    try:
        return collect_once(load_settings(config), as_json, _echo, compact=compact)
    except SignalboxError as e:
        _echo(f"signalbox: {e}", err=True)
        return 2
    except Exception as e:  # as the click CLI's handle_errors does
        from signalbox.storage.failures import is_driver_error

        if not is_driver_error(e):
            raise
        logging.getLogger("signalbox.cli").debug("store error", exc_info=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        _echo(f"signalbox: store error: {first} (-vv shows where)", err=True)
        return 2
