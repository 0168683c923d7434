"""The ``# stale_after: DURATION`` line: how long a spool file's values stay fresh.

A daily cron job's file is nearly a day old just before the job runs again; under the global
``collect.stale_after`` (5 minutes) its values would stop being collected minutes after it
wrote them. The file itself says how long they hold (``# stale_after: 25h``). It is a
comment, so the sample parsers, promtool and node_exporter's textfile collector all read such
a file unchanged, and it is not part of a ``*.metrics`` file's shape (the frames fast path
keeps working when the value changes).

Rules, both spool formats:

* A comment whose first word is ``stale_after`` is the directive: ``# stale_after: 25h``
  (blanks around the ``:`` are fine; ``# stale_after_seconds ...`` is an ordinary comment).
  The duration is :func:`~signalbox.durations.parse_duration` syntax and must be above 0.
* It belongs to the file's header, before the first sample line (like ``# TYPE`` before
  its samples), and appears at most once.
* A malformed, misplaced or repeated directive is reported on its line, and the file falls
  back to ``collect.stale_after``; its samples are read as usual.

Pure; the spool scanner (:mod:`signalbox.metrics.spool`) calls it on every file it reads,
and ``signalbox send`` to keep a file's value when merging into it.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalbox.durations import parse_duration
from signalbox.metrics.parse.lex import LineError, excerpt

__all__ = [
    "DIRECTIVE",
    "StaleAfter",
    "find_stale_after",
    "stale_after_line",
    "stale_after_seconds",
]

DIRECTIVE = "stale_after"
_FALLBACK = "this file uses collect.stale_after"


def stale_after_line(duration: str) -> str:
    """The header line ``signalbox send --stale-after`` writes (``duration`` as given)."""
    return f"# {DIRECTIVE}: {duration.strip()}"


def stale_after_seconds(duration: str) -> float | str:
    """Seconds of a directive's duration, or the reason it is not a usable one."""
    raw = duration.strip(" \t")
    try:
        seconds = parse_duration(raw)
    except ValueError as e:
        return str(e)
    if seconds <= 0:
        return f"{raw!r} must be more than 0s"
    return seconds


def _comment_word_at(text: str, pos: int) -> int:
    """Start of the line holding ``text[pos]`` if only ``[blanks] # [blanks]`` precede
    ``pos`` on that line (so the word at ``pos`` opens a comment); else -1."""
    start = text.rfind("\n", 0, pos) + 1
    head = text[start:pos].lstrip("\ufeff \t")
    if not head.startswith("#") or head[1:].strip(" \t"):
        return -1
    return start


def _has_sample_line(prefix: str) -> int:
    """1-based number of the first sample line (non-blank, not a comment) in ``prefix``; 0 if none."""
    for lineno, line in enumerate(prefix.split("\n"), 1):
        s = line.strip("\ufeff \t\r")
        if s and not s.startswith("#"):
            return lineno
    return 0


def _value(rest: str) -> float | str:
    """Seconds from the text after ``stale_after``, or the reason it is malformed."""
    rest = rest.strip(" \t\r")
    if not rest.startswith(":"):
        return "expected '# stale_after: DURATION', like '# stale_after: 25h'"
    seconds = stale_after_seconds(rest[1:])
    return f"# stale_after: {seconds}" if isinstance(seconds, str) else seconds


@dataclass(frozen=True, slots=True)
class StaleAfter:
    """What a file says about its freshness: ``seconds`` (None: the global limit applies),
    the ``duration`` as written (``25h``), and the problems with its directive lines."""

    seconds: float | None = None
    duration: str = ""
    errors: tuple[LineError, ...] = ()


_NONE = StaleAfter()


def find_stale_after(text: str, source: str) -> StaleAfter:
    """The file's own freshness limit and the problems with its directive, one per
    offending line (any problem: the global limit applies)."""
    if "#" not in text:  # the usual key=value file: one memchr
        return _NONE
    pos = text.find(DIRECTIVE)
    if pos < 0:  # one substring search
        return _NONE
    found: list[tuple[int, float | str, str]] = []  # (line, seconds or reason, duration)
    while pos >= 0:
        end = pos + len(DIRECTIVE)
        nxt = text[end : end + 1]
        start = -1 if nxt.isalnum() or nxt == "_" else _comment_word_at(text, pos)
        if start >= 0:
            stop = text.find("\n", end)
            stop = len(text) if stop < 0 else stop
            lineno = text.count("\n", 0, start) + 1
            rest = text[end:stop]
            value = _value(rest)
            if isinstance(value, float):
                sample = _has_sample_line(text[:start])
                if sample:
                    value = f"# stale_after must come before the first sample (line {sample})"
            found.append((lineno, value, rest.partition(":")[2].strip(" \t\r")))
            pos = text.find(DIRECTIVE, stop)
        else:
            pos = text.find(DIRECTIVE, end)
    if not found:
        return _NONE
    errors: list[LineError] = []
    lines = text.split("\n") if len(found) > 1 or isinstance(found[0][1], str) else []
    for i, (lineno, value, _) in enumerate(found):
        if i and not isinstance(value, str):
            value = f"second # stale_after (first on line {found[0][0]})"
        if isinstance(value, str):
            line = lines[lineno - 1].removesuffix("\r")
            errors.append(LineError(source, lineno, f"{value}; {_FALLBACK}", excerpt(line)))
    if errors:
        return StaleAfter(errors=tuple(errors))
    _, seconds, duration = found[0]
    assert isinstance(seconds, float)
    return StaleAfter(seconds, duration)
