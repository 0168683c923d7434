"""The global options before a command, read without click, for the CLI's fast starts.

``collect --once`` (cron, every minute) and ``logs grep|trace`` recognise their plain forms
themselves so they start without importing click and the server (see
:mod:`~signalbox.cli.collect_once` and :mod:`~signalbox.cli.logs_run`). Both first read the
same global options; anything unusual returns None and the caller hands the whole command
line to click, which says what it says about it.
"""

from __future__ import annotations

__all__ = ["leading_options"]

_VERBOSITY = {"-v": 1, "--verbose": 1, "-vv": 2}


def leading_options(
    argv: list[str], command: str, *, verbose: bool = False
) -> tuple[str | None, int, int] | None:
    """``(config, verbosity, index of command)`` when everything before ``command`` is
    ``--config FILE``, ``--config=FILE`` or (with ``verbose``) ``-v``/``-vv``/``--verbose``;
    else None (a missing command, an empty or dash-led config value, any other option)."""
    config: str | None = None
    level = 0
    i = 0
    while i < len(argv) and argv[i] != command:
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            config, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config=") and len(arg) > len("--config="):
            config = arg[len("--config=") :]
        elif verbose and arg in _VERBOSITY:
            level += _VERBOSITY[arg]
        else:
            return None
        i += 1
    if i >= len(argv):
        return None
    return config, level, i
