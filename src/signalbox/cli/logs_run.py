"""What ``signalbox logs trace`` and ``logs grep`` do, and their start without click.

An operator greps a log many times a minute, and each run used to spend a third of a grep's
CPU starting: importing click, logging and the command-line machinery (~130M and ~40M
instructions) before the first byte of the log was read. :func:`fast_main` recognises the
plain forms (``[--config FILE] logs grep [OPTIONS] [FILE ...]`` and ``[--config FILE] logs
trace [--json] ID [FILE ...]``, options given as ``--opt VALUE`` or ``--opt=VALUE``, in any
order with the arguments, as click takes them) and runs the command itself; anything else
(``--help``, ``-v``, an unknown option, a value starting with ``-``, a directory among the
files) goes to the click CLI, whose commands (:mod:`signalbox.cli.logs`) call the same
:func:`run_trace` and :func:`run_grep`, so both starts give the same answer.

Neither path imports click, logging, the server stack nor a database driver before the
command has something to say that needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from signalbox.cli.plainargs import leading_options
from signalbox.exceptions import SignalboxError, UsageError

TYPE_CHECKING = False  # typing is not imported at all on this path (~17M instructions)
if TYPE_CHECKING:
    from typing import Any

    from signalbox.instrument.logblocks import Malformed
    from signalbox.instrument.logset import LogFiles

__all__ = ["SHOWN_PER_FILE", "fast_main", "run_grep", "run_trace"]

SHOWN_PER_FILE = 10
"""Malformed lines reported one by one per file; the rest are counted."""

if TYPE_CHECKING:
    Settings = Callable[[], Any]  # the config's settings, read on first use (a grep of
    # files named often needs none)


def _say(text: str) -> None:
    """A line on stderr, at once (as ``click.echo(err=True)`` writes it)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _Report:
    """Malformed lines, said after the output (a report between two lines of it would
    split what a pipe reads)."""

    def __init__(self) -> None:
        self.shown: list[Malformed] = []
        self.counts: dict[str, int] = {}

    def __call__(self, bad: Malformed) -> None:
        n = self.counts.get(bad.file, 0) + 1
        self.counts[bad.file] = n
        if n <= SHOWN_PER_FILE:
            self.shown.append(bad)

    def say(self) -> None:
        if not self.counts:
            return
        from signalbox.instrument.logtext import printable

        for bad in self.shown:
            _say(f"signalbox logs: {printable(str(bad))} (skipped)")
        for file, n in self.counts.items():
            if n > SHOWN_PER_FILE:
                _say(
                    f"signalbox logs: {printable(file)}: {n - SHOWN_PER_FILE} more malformed "
                    "line(s) skipped"
                )


@contextmanager
def _reporting() -> Iterator[_Report]:
    report = _Report()
    try:
        yield report
    finally:
        sys.stdout.flush()
        report.say()


def _files(settings: Settings, given: tuple[Path, ...]) -> LogFiles:
    """The files to read: those given, else the config's (refused when there is none)."""
    from signalbox.instrument.logfiles import classify

    if given:
        for p in given:
            if not p.is_file():
                raise UsageError(f"{p}: no such file")
        try:
            return classify(given)
        except OSError as e:
            raise UsageError(f"{e.filename}: cannot read ({e.strerror})") from None
    from signalbox.instrument.logsources import log_files

    found = settings()
    files = log_files(found)
    for missing in files.missing:
        _say(f"signalbox logs: {missing}: no such file yet")
    if not files.access and not files.other:
        from signalbox.cli.base import describe_config_source

        raise UsageError(
            "no log file to read: [instrument] access_log and [logs] files of the config "
            f"({describe_config_source(found.source)}) name none that exists; "
            "name files on the command line"
        )
    return files


def _shown(text: str) -> str:
    """``text`` safe for a terminal: as it is when printable ASCII (a line the middleware
    wrote, mostly: the escaping is not even imported), else through ``printable``."""
    if text.isascii() and text.isprintable():
        return text
    from signalbox.instrument.logtext import printable

    return printable(text)


def run_trace(settings: Settings, request_id: str, files: tuple[Path, ...], as_json: bool) -> None:
    """``logs trace``: every line for ``request_id``, in time order."""
    from signalbox.instrument.context import REQUEST_ID
    from signalbox.instrument.logscan import trace
    from signalbox.instrument.logtext import printable

    if not REQUEST_ID.match(request_id):
        raise UsageError(
            f"request id {printable(request_id[:80])!r}: expected up to 128 letters, digits "
            "and ._:@+=/- (what X-Request-ID and the access log's request_id hold)"
        )
    logs = _files(settings, files)
    out = sys.stdout
    with _reporting() as report:
        lines = trace(logs, request_id, report)
        if as_json:
            import json

            doc = {
                "request_id": request_id,
                "lines": [
                    {
                        "time": t.time.isoformat(timespec="microseconds") if t.time else None,
                        "file": str(t.file),
                        "line": t.line,
                        "text": t.text,
                        "record": t.record.to_dict() if t.record is not None else None,
                    }
                    for t in lines
                ],
                "malformed": sum(report.counts.values()),
            }
            out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        else:
            for t in lines:
                out.write(f"{printable(str(t.file))}:{t.line}: {printable(t.text)}\n")
    if not lines and not as_json:
        n = len(logs.access) + len(logs.other)
        _say(f"signalbox logs: no line for request {request_id} in {n} file(s)")


GREP_OPTIONS = {
    "--request-id": "request_id",
    "--user": "user",
    "--api-key-fp": "api_key_fp",
    "--method": "method",
    "--status": "status",
    "--since": "since",
    "--until": "until",
}
"""``logs grep``'s options that take a value, and the filter each sets."""


def run_grep(
    settings: Settings, filters: dict[str, str | None], as_json: bool, files: tuple[Path, ...]
) -> None:
    """``logs grep``: the access-log lines matching every filter, in file order."""
    from signalbox.instrument.logfiles import search
    from signalbox.instrument.search import RequestQuery

    query = RequestQuery.build(
        **filters,
        now=datetime.now(UTC),
        # the config is read for this only when FILEs are given (a grep starts faster)
        secret_notes=(
            settings().instrument.secret_notes if filters.get("api_key_fp") else ("api_key",)
        ),
        names={field: option for option, field in GREP_OPTIONS.items()},
    )
    logs = _files(settings, files)
    if not logs.access:
        raise UsageError(
            "no access log among the files: "
            + ", ".join(str(p) for p in logs.other)
            + " (an access log's first line is one the middleware writes)"
        )
    out = sys.stdout
    if as_json:
        import json
    with _reporting() as report:  # written as found, flushed at the end (not a line each)
        for found in search(logs.access, query, report):
            if as_json:
                doc = {"file": str(found.file), "line": found.line, **found.record.to_dict()}
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
            else:
                out.write(_shown(found.text) + "\n")


def _parse(argv: list[str]) -> tuple[str | None, str, dict[str, str], bool, list[str]] | None:
    """``(config, command, options, --json, arguments)`` of a plain form, else None."""
    lead = leading_options(argv, "logs")
    if lead is None:
        return None
    config, _, i = lead
    if i + 1 >= len(argv) or argv[i + 1] not in ("grep", "trace"):
        return None
    command = argv[i + 1]
    takes = GREP_OPTIONS if command == "grep" else {}
    options: dict[str, str] = {}
    as_json = False
    args: list[str] = []
    rest = argv[i + 2 :]
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg == "--":
            args += rest[j + 1 :]
            break
        if not arg.startswith("-"):
            args.append(arg)
        elif arg == "--json":
            as_json = True
        else:
            name, eq, value = arg.partition("=")
            if name not in takes:
                return None  # --help, -h, an unknown option, "-": click says what it says
            if not eq:
                if j + 1 >= len(rest) or rest[j + 1].startswith("-"):
                    return None
                j += 1
                value = rest[j]
            options[takes[name]] = value  # given twice: the last one, as click takes it
        j += 1
    if command == "trace" and not args:
        return None  # click's usage error
    if any(Path(a).is_dir() for a in (args[1:] if command == "trace" else args)):
        return None  # click refuses a directory with its usage message
    return config, command, options, as_json, args


def fast_main(argv: list[str]) -> int | None:
    """Run a plain ``logs grep|trace`` and return its exit code; None: not one of those
    forms (the click CLI takes it)."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    config, command, options, as_json, args = parsed
    loaded: list[Any] = []

    def settings() -> Any:
        if not loaded:
            from signalbox.config import load_settings

            loaded.append(load_settings(config))
        return loaded[0]

    try:
        if command == "trace":
            run_trace(settings, args[0], tuple(Path(a) for a in args[1:]), as_json)
        else:
            filters: dict[str, str | None] = {field: None for field in GREP_OPTIONS.values()}
            filters.update(options)
            run_grep(settings, filters, as_json, tuple(Path(a) for a in args))
    except SignalboxError as e:  # ConfigError and UsageError among them: exit 2, one line
        _say(f"signalbox: {e}")
        return 2
    except KeyboardInterrupt:  # as click ends an interrupted command
        _say("\nAborted!")
        return 1
    except BrokenPipeError:  # the reader stopped reading (| head): quiet, as cat is
        from signalbox.cli.base import _silence_stdout

        _silence_stdout()
        return 0
    return 0
