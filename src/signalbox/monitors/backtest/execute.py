"""Run a backtest end to end: load the file(s), replay over the store, return the report.

This is the one entry point the CLI (``monitors backtest``) and the dashboard share, so
both answer the same question the same way; they only present the
:class:`~signalbox.monitors.backtest.report.BacktestReport`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from signalbox.clock import Clock
from signalbox.config import Settings
from signalbox.exceptions import UsageError
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.monitors.backtest.report import BacktestReport, backtest, default_step_s
from signalbox.monitors.backtest.request import BacktestRequest, choose, window
from signalbox.monitors.definitions.lint import LintError
from signalbox.monitors.definitions.load import load_monitors
from signalbox.monitors.definitions.model import Monitor
from signalbox.runtime import open_metric_store, query_engine

__all__ = ["Progress", "run"]

Progress = Callable[[int, int, Monitor], None]
"""Called before each replay with (monitors done, monitors in all, the next monitor)."""


def _load(file: Path, context: list[Path], errors: list[LintError]) -> list[Monitor]:
    """The monitors defined in ``file``, with the configured ones loaded beside it so a
    ``depends_on`` naming a monitor elsewhere resolves; only ``file``'s own errors count."""
    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    result = load_monitors([file, *context])
    errors.extend(e for e in result.errors if e.file == str(file))
    return [m for m in result.monitors if m.file == str(file)]


def run(
    request: BacktestRequest,
    settings: Settings,
    *,
    store: SQLMetricStore | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> BacktestReport:
    """Replay the requested monitors over stored history and report what they would have done.

    Lint errors in either file do not stop the others: they are in the report, whose
    ``ok`` is then False. Monitors that cannot be replayed (Nagios plugins) are listed as
    skipped. ``store`` defaults to the configured one (opened and closed here); "now" is
    ``clock``, else the store's clock, unless the request gives ``until_ms``.

    Raises:
        UsageError: a file does not exist, or a requested monitor name is in neither file
            (:class:`~signalbox.monitors.backtest.request.UnknownMonitors`).
    """
    errors: list[LintError] = []
    context = [p for p in settings.monitors.paths if p.exists()]
    new = _load(request.file, context, errors)
    old = _load(request.against, context, errors) if request.against is not None else []
    new, old = choose(request, new, old)
    skipped = tuple(m for m in [*new, *old] if m.rule() is None)
    new = [m for m in new if m.rule() is not None]
    old = [m for m in old if m.rule() is not None]
    step_s = request.step_s or default_step_s(
        request.since_s,
        raw_retention_s=settings.metrics.retention.raw_s,
        tiers=settings.metrics.retention.tiers,
        evaluation_s=settings.monitors.interval_s,
    )
    own = store is None
    st = open_metric_store(settings, clock) if store is None else store
    try:
        until_ms = request.until_ms
        if until_ms is None:
            until_ms = int((clock or st.clock).now() * 1000)
        w = window(request.since_s, step_s, until_ms)
        engine = query_engine(st)
        total = len(new) + len(old)

        def counted(offset: int) -> Callable[[int, Monitor], None] | None:
            if progress is None:
                return None
            tell = progress
            return lambda i, m: tell(offset + i, total, m)

        repeat_s = settings.monitors.repeat_s
        args = (engine, w.start_ms, w.end_ms, w.step_ms)
        got_new = backtest(new, *args, default_repeat_s=repeat_s, progress=counted(0))
        got_old = backtest(old, *args, default_repeat_s=repeat_s, progress=counted(len(new)))
    finally:
        if own:
            st.close()
    return BacktestReport(request, w, tuple(got_new), tuple(got_old), tuple(errors), skipped)
