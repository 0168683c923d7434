"""Backtests: replay a monitor over stored history with the real state machine, and report it."""
