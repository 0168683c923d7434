"""Reading log files for ``signalbox logs`` and ``/api/v1/logs``: streamed, gzip too.

Files are read a block of whole lines at a time (:mod:`signalbox.instrument.logblocks`), never
whole, so a multi-gigabyte access log costs a megabyte of memory (a page keeps its ``limit``
best records, a trace only the lines it found). A search does not look at each line in
Python: one ``bytes.find`` or compiled bytes regex over a block (:meth:`RequestQuery.finder`)
finds the lines holding what the query asks for, and only those are decoded and parsed
(:mod:`signalbox.instrument.quickparse`); the full parse and :meth:`RequestQuery.matches`
judge them. Pages and traces that stop within a budget and resume are
:mod:`signalbox.instrument.logscan`'s, over these.

Which malformed lines are reported (handed to ``on_bad`` as a :class:`Malformed`: file, line,
why; then skipped, never fatal):

* always, whatever the filter, since every byte is read: a file that cannot be opened, a line
  longer than :data:`MAX_LINE_BYTES`, where a compressed file breaks or ends early, a line
  that is not UTF-8 (a block that does not decode is read line by line), and a line without
  an access line's shape: no status where either format writes one (a block is checked by
  counts made in C, :func:`_all_shaped`, and read line by line when they differ; the one
  case that escapes is in its docstring);
* a line the finder finds (it holds the value asked for, a status of the range asked for
  where a status is written, ...) that then fails the full parse;
* with no filter at all (``signalbox logs grep`` alone) or only ``until``, every line is
  parsed: every malformed line is reported. That is how to check a whole log. With
  ``since``, a block whose every line arrived before it (judged by its last line,
  :func:`_ends_before`) is not searched, as a filtered search passes over lines it cannot
  find: only its misshapen lines are parsed, to be reported.

A shaped line the finder passes over cannot match the query whatever else is wrong with it,
so a fault elsewhere in it (a broken time, a bad ``key=value``) is not reported by a filtered
search: it is not silently dropped from the answer, it was never going to be in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from signalbox.exceptions import ParseError
from signalbox.instrument.accessrecord import AccessRecord
from signalbox.instrument.logblocks import (
    MAX_LINE_BYTES,
    Expect,
    LineCount,
    Malformed,
    OnBad,
    read_blocks,
)
from signalbox.instrument.logset import LogFiles
from signalbox.instrument.quickparse import parse
from signalbox.instrument.search import LineFinder, RequestQuery

__all__ = [
    "MAX_LINE_BYTES",
    "Found",
    "Malformed",
    "access_records",
    "classify",
    "read_lines",
    "search",
]


def _ignore(_: Malformed) -> None:
    pass


def _decodes(block: bytes) -> bool:
    if block.isascii():
        return True
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _lines(name: str, block: bytes, counted: LineCount, on_bad: OnBad) -> list[tuple[int, str]]:
    """Every non-blank line of ``block`` (those not UTF-8 reported); its lines are added to
    ``counted``."""
    parts = block.split(b"\n")
    parts.pop()  # after the last line break
    got = []
    for n, raw in enumerate(parts, counted.n + 1):
        text = _text(raw, name, n, on_bad)
        if text is not None:
            got.append((n, text))
    counted.n += len(parts)
    return got


def read_lines(path: Path, on_bad: OnBad = _ignore) -> Iterator[tuple[int, str]]:
    """``(line number, text without its line break)`` of every readable, non-blank line.

    A file that cannot be opened is reported as line 0 and read as empty.
    """
    name = str(path)
    counted = LineCount()
    for _, block in read_blocks(path, on_bad, counted):
        yield from _lines(name, block, counted, on_bad)


def _text(raw: bytes, name: str, n: int, on_bad: OnBad) -> str | None:
    """A line's text (None: blank, or reported and skipped)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        on_bad(Malformed(name, n, f"not UTF-8 (byte {e.start + 1})"))
        return None
    if text.endswith("\r"):
        text = text[:-1]
    return text if text.strip() else None


def _found_lines(
    path: Path,
    finder: LineFinder | None,
    on_bad: OnBad,
    start: int = 0,
    lines: int = 0,
    expect: Expect | None = None,
    since: datetime | None = None,
) -> Iterator[tuple[int, int, list[tuple[int, str, bool]], bytes]]:
    """Per block of ``path``: ``(lines and offset after the block, its lines to parse, the
    block)``. The lines to parse: those ``finder`` finds (every line when None), and
    those without an access line's shape (``True`` beside them: parse to report, whatever
    the filter). A block whose lines all have the shape (:func:`_all_shaped`) is searched
    whole; any other is read a line at a time. A block wholly before ``since``
    (:func:`_ends_before`) has none to find: only its misshapen lines are parsed."""
    name = str(path)
    counted = LineCount(lines)
    for end, block in read_blocks(path, on_bad, counted, start, expect):
        got: list[tuple[int, str, bool]] = []
        before = counted.n
        skip = since is not None and _ends_before(block, since)
        if finder is None and not skip:
            got = [(n, text, False) for n, text in _lines(name, block, counted, on_bad)]
            yield counted.n, end, got, block
            continue
        if _decodes(block):
            if skip:
                found: list[tuple[int, bytes]] = []
                count = block.count(b"\n")
            else:
                assert finder is not None
                found, count = finder.lines(block, before)
            if _all_shaped(block, count):
                for n, raw in found:
                    text = raw.decode("utf-8")
                    if text.endswith("\r"):
                        text = text[:-1]
                    if text.strip():
                        got.append((n, text, False))
                counted.n += count
                yield counted.n, end, got, block
                continue
        parts = block.split(b"\n")
        parts.pop()
        for n, raw in enumerate(parts, before + 1):
            read = _text(raw, name, n, on_bad)
            if read is None:
                continue
            if not skip and (finder is None or finder.hit(raw)):
                got.append((n, read, False))
            elif _STATUS_ANYWHERE.search(raw) is None:
                got.append((n, read, True))
        counted.n += len(parts)
        yield counted.n, end, got, block


SINCE_SLACK = timedelta(minutes=5)
"""How far a block's lines may arrive after its last line ends (:func:`_ends_before`):
the write after a response, clocks stepped back by NTP; a generous bound, since the blocks
near ``since`` that it keeps are only parsed."""


def _ends_before(block: bytes, since: datetime) -> bool:
    """Whether every line of ``block`` arrived before ``since``, judged by its last line.

    Lines are written when their response ends, so in file order, but each gives its
    request's arrival: a slow request's line comes after quicker ones that arrived later.
    So no line written before the last one arrived after it ended (its arrival plus its
    duration), give or take :data:`SINCE_SLACK`. A last line that does not parse says
    nothing: the block is read."""
    cut = block.rfind(b"\n", 0, len(block) - 1) + 1
    try:
        r = parse(block[cut:].decode("utf-8"))
    except (ParseError, UnicodeDecodeError):
        return False
    return r.time + timedelta(microseconds=r.duration_us) + SINCE_SLACK < since


_STATUS_ANYWHERE = re.compile(rb'(?:" |"status": *)[1-5][0-9]{2}\b')
"""Where an access line holds its status, in either format: a line without is malformed."""


def _all_shaped(block: bytes, lines: int) -> bool:
    """Whether every line of ``block`` looks like an access line the middleware wrote, by
    counts made in C: as many combined times closing into a request (`` +0000] "``: no
    token can hold it, a quoted value only at its very end) plus JSON objects opening with
    their time (``{"time": "``: no JSON string can hold it) as lines. A blank line, a line
    of another shape (or of a server logging another zone), or a quoted value ending in
    `` +0000] `` makes the counts differ, and the block is read a line at a time. Only a
    block holding both such a value and a line without the shape passes untrue."""
    seen = block.count(b' +0000] "')
    if seen != lines:
        seen += block.count(b'{"time": "')
    return seen == lines


@dataclass(frozen=True, slots=True)
class Found:
    """An access-log line and its record."""

    file: Path
    line: int
    text: str
    record: AccessRecord


def access_records(
    paths: Iterable[Path],
    on_bad: OnBad = _ignore,
    literals: tuple[str, ...] = (),
    might_match: Callable[[str], bool] | None = None,
) -> Iterator[Found]:
    """Every record of the access-log files ``paths``, in file order; lines without every
    one of ``literals``, or that ``might_match`` refuses, are skipped unparsed."""
    finder = LineFinder(literal=literals[0].encode()) if literals else None
    for path in paths:
        for _, _, got, _ in _found_lines(path, finder, on_bad):
            yield from _parsed(path, got, on_bad, literals, might_match)


def _parsed(
    path: Path,
    got: list[tuple[int, str, bool]],
    on_bad: OnBad,
    literals: tuple[str, ...] = (),
    might_match: Callable[[str], bool] | None = None,
) -> Iterator[Found]:
    """The records of the lines ``got`` (malformed ones reported); lines not flagged
    misshapen are parsed only when they hold every one of ``literals`` and ``might_match``."""
    for n, text, misshapen in got:
        if not misshapen:
            if literals and not all(v in text for v in literals):
                continue
            if might_match is not None and not might_match(text):
                continue
        try:
            record = parse(text, str(path), n)
        except ParseError as e:
            on_bad(Malformed(str(path), n, e.reason))
            continue
        if misshapen and (
            (literals and not all(v in text for v in literals))
            or (might_match is not None and not might_match(text))
        ):
            continue
        yield Found(path, n, text, record)


def search(paths: Iterable[Path], query: RequestQuery, on_bad: OnBad = _ignore) -> Iterator[Found]:
    """The records of ``paths`` that ``query`` matches, in file order."""
    finder = query.finder()
    for path in paths:
        for _, _, got, _ in _found_lines(path, finder, on_bad, since=query.since):
            for found in _parsed(path, got, on_bad, might_match=query.might_match):
                if query.matches(found.record):
                    yield found


def classify(paths: Iterable[Path]) -> LogFiles:
    """Files named on a command line, sorted into access logs (their first readable line
    is an access-log line) and others (an unreadable one among them: reading it says why)."""
    access: list[Path] = []
    other: list[Path] = []
    for path in paths:
        is_access = False
        for n, text in read_lines(path):
            try:
                r = parse(text, str(path), n)
                is_access = bool(r.method) and r.status > 0  # not a JSON log with a "time"
            except ParseError:
                pass
            break
        (access if is_access else other).append(path)
    return LogFiles(tuple(access), tuple(other), ())
