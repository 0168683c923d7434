"""Backtests: replay a monitor over stored history with the real state machine, and report it.

:func:`run` is the library call behind ``signalbox monitors backtest`` (and the dashboard):
a :class:`BacktestRequest` in, a :class:`BacktestReport` out, which front ends only present.
"""

from signalbox.monitors.backtest.execute import Progress, run
from signalbox.monitors.backtest.report import BacktestReport, MonitorBacktest
from signalbox.monitors.backtest.request import BacktestRequest, UnknownMonitors, Window

__all__ = [
    "BacktestReport",
    "BacktestRequest",
    "MonitorBacktest",
    "Progress",
    "UnknownMonitors",
    "Window",
    "run",
]
