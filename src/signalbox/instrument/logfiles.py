"""Reading log files for ``signalbox logs`` and ``/api/v1/logs``: streamed, gzip too.

Files are read a block of whole lines at a time (:mod:`signalbox.instrument.logblocks`), never
whole, so a multi-gigabyte access log costs a megabyte of memory (a page keeps its ``limit``
best records, a trace only the lines it found). A search does not look at each line in
Python: one ``bytes.find`` or compiled bytes regex over a block (:meth:`RequestQuery.finder`)
finds the lines holding what the query asks for, and only those are decoded and parsed; the
full parse and :meth:`RequestQuery.matches` judge them.

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
* with no filter but ``since``/``until`` (``signalbox logs grep`` alone), every line is
  parsed: every malformed line is reported. That is how to check a whole log.

A shaped line the finder passes over cannot match the query whatever else is wrong with it,
so a fault elsewhere in it (a broken time, a bad ``key=value``) is not reported by a filtered
search: it is not silently dropped from the answer, it was never going to be in it.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from signalbox.exceptions import ParseError, UsageError
from signalbox.instrument.accesslog import AccessRecord, parse_line
from signalbox.instrument.logblocks import (
    MAX_LINE_BYTES,
    LineCount,
    Malformed,
    OnBad,
    read_blocks,
    tail_before,
)
from signalbox.instrument.logset import LogFiles
from signalbox.instrument.search import LineFinder, RequestQuery, record_key

__all__ = [
    "MAX_LINE_BYTES",
    "Budget",
    "Found",
    "Malformed",
    "Page",
    "ScanPoint",
    "TraceLine",
    "access_records",
    "classify",
    "page",
    "read_lines",
    "search",
    "trace",
]


_TAIL = 4096  # bytes of the line before a resume point, checked when resuming


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
) -> Iterator[tuple[int, int, list[tuple[int, str, bool]], bytes]]:
    """Per block of ``path``: ``(lines and offset after the block, its lines to parse, the
    block)``. The lines to parse: those ``finder`` finds (every line when None), and
    those without an access line's shape (``True`` beside them: parse to report, whatever
    the filter). A block whose lines all have the shape (:func:`_all_shaped`) is searched
    whole; any other is read a line at a time."""
    name = str(path)
    counted = LineCount(lines)
    for end, block in read_blocks(path, on_bad, counted, start):
        got: list[tuple[int, str, bool]] = []
        before = counted.n
        if finder is None:
            got = [(n, text, False) for n, text in _lines(name, block, counted, on_bad)]
            yield counted.n, end, got, block
            continue
        if _decodes(block):
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
            if finder.hit(raw):
                got.append((n, read, False))
            elif _STATUS_ANYWHERE.search(raw) is None:
                got.append((n, read, True))
        counted.n += len(parts)
        yield counted.n, end, got, block


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
            record = parse_line(text, str(path), n)
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
        for _, _, got, _ in _found_lines(path, finder, on_bad):
            for found in _parsed(path, got, on_bad, might_match=query.might_match):
                if query.matches(found.record):
                    yield found


@dataclass(frozen=True, slots=True)
class Budget:
    """How much one scan may read before it stops and says where (None: no bound): bytes
    of log text (decompressed), and seconds. Checked between blocks, so a scan reads at
    least one block and overshoots by at most one."""

    bytes: int | None = None
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ScanPoint:
    """Where a scan stopped: in the file named ``file`` (a base name), at byte ``offset``
    of its text, after ``lines`` lines; ``span`` and ``digest``: the length and digest of the
    line before ``offset`` (at most :data:`_TAIL` bytes of it), checked on resuming so a
    file rotated meanwhile is not read from the wrong place."""

    file: str
    offset: int
    lines: int
    span: int = 0
    digest: str = ""

    def token(self) -> str:
        return f"{self.offset}.{self.lines}.{self.span}.{self.digest or '-'}.{self.file}"

    @classmethod
    def after(cls, file: str, offset: int, lines: int, block: bytes) -> ScanPoint:
        """The point after ``block`` (whole lines, the last one ending at ``offset``)."""
        last = block[block.rfind(b"\n", 0, len(block) - 1) + 1 :][-_TAIL:]
        return cls(file, offset, lines, len(last), _digest(last))

    def holds(self, path: Path) -> bool:
        """Whether ``path`` has this point's line just before its offset."""
        if self.span == 0:
            return self.offset == 0
        tail = tail_before(path, self.offset, self.span)
        return tail is not None and len(tail) == self.span and _digest(tail) == self.digest

    @classmethod
    def parse(cls, text: str, what: str = "resume") -> ScanPoint:
        parts = text.split(".", 4)
        ok = len(parts) == 5 and all(p.isdigit() and len(p) <= 19 for p in parts[:3])
        ok = ok and (re.fullmatch(r"[0-9a-f]{16}", parts[3]) is not None or parts[3] == "-")
        if not ok or not parts[4] or "/" in parts[4]:
            raise UsageError(
                f"invalid parameter {what!r}: expected the resume of an answer whose scan "
                f"stopped early, got {text[:60]!r}"
            )
        digest = "" if parts[3] == "-" else parts[3]
        return cls(parts[4], int(parts[0]), int(parts[1]), int(parts[2]), digest)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Page:
    """Up to ``limit`` matches, newest first; ``next_after``: the key to pass for the next
    page of the lines this scan read (None: no more there); ``stopped``: where the scan
    stopped when its budget ran out (None: it read every file to the end)."""

    found: list[Found]
    next_after: tuple[int, str] | None
    stopped: ScanPoint | None = None


def page(
    paths: Iterable[Path],
    query: RequestQuery,
    *,
    limit: int,
    after: tuple[int, str] | None = None,
    on_bad: OnBad = _ignore,
    budget: Budget | None = None,
    resume: ScanPoint | None = None,
) -> Page:
    """The newest ``limit`` matches older than ``after`` (a key of the page before).

    ``paths`` come oldest first (:func:`~signalbox.instrument.logsources.with_rotated`);
    they are read newest file first, each from its start. When ``budget`` runs out the scan
    stops: the page holds the newest matches of the lines read, and ``stopped`` says where
    to ``resume`` (the rest of that file, then the older ones). A resume point whose file
    is gone or holds other bytes there (rotated meanwhile) is refused: start again.
    """
    files = list(paths)[::-1]
    first = 0
    if resume is not None:
        names = [p.name for p in files]
        if resume.file not in names:
            raise UsageError(
                f"resume: {resume.file!r} is no longer among the access-log files (rotated "
                "since the scan stopped); search again without resume"
            )
        first = names.index(resume.file)
        if not resume.holds(files[first]):
            raise UsageError(
                f"resume: {resume.file!r} holds other lines than where the scan stopped "
                "(rotated since); search again without resume"
            )
    finder = query.finder()
    deadline = None
    if budget is not None and budget.seconds is not None:
        deadline = time.monotonic() + budget.seconds
    max_bytes = None if budget is None else budget.bytes
    read = 0

    def spent() -> bool:  # never before a block is read: each answer moves the scan on
        return read > 0 and (
            (max_bytes is not None and read >= max_bytes)
            or (deadline is not None and time.monotonic() >= deadline)
        )

    heap: list[tuple[tuple[int, str], int, Found]] = []  # the best limit + 1, smallest on top
    seq = 0
    stopped: ScanPoint | None = None
    for i in range(first, len(files)):
        path = files[i]
        at, lines, here = 0, 0, ScanPoint(path.name, 0, 0)
        if resume is not None and i == first:
            at, lines, here = resume.offset, resume.lines, resume
        if i > first and spent():
            stopped = here
            break
        pending: list[Malformed] = []  # said by reading a block: said once it is used
        for after_block, end, got, block in _found_lines(path, finder, pending.append, at, lines):
            if spent():  # this block is read again on resuming: its bad lines said then
                stopped = here
                break
            for bad in pending:
                on_bad(bad)
            pending.clear()
            for found in _parsed(path, got, on_bad, might_match=query.might_match):
                if not query.matches(found.record):
                    continue
                key = record_key(found.record, found.text)
                if after is not None and key >= after:
                    continue
                seq += 1
                item = (key, -seq, found)
                if len(heap) <= limit:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)
            read += end - at
            at, lines = end, after_block
            here = ScanPoint.after(path.name, end, after_block, block)
        if stopped is not None:
            break
        for bad in pending:  # the file could not be opened, or broke after its last block
            on_bad(bad)
    best = sorted(heap, reverse=True)
    more = len(best) > limit
    best = best[:limit]
    return Page([f for _, _, f in best], best[-1][0] if more and best else None, stopped)


@dataclass(frozen=True, slots=True)
class TraceLine:
    """One line of a request's trace: from the access log (``record`` set) or another log."""

    time: datetime | None
    file: Path
    line: int
    text: str
    record: AccessRecord | None = None
    continued: bool = field(default=False)  # a line without a time after a matching one


def trace(files: LogFiles, request_id: str, on_bad: OnBad = _ignore) -> list[TraceLine]:
    """Every line of ``files`` for ``request_id``, in time order (lines without a time keep
    their place after the line they follow). An access-log line sorts at its request's
    arrival, so it opens the lines logged while the request ran.

    Other logs are searched for the id by ``bytes.find`` a block at a time; only the lines
    holding it, and the lines without a time that follow one taken (a traceback's), are
    decoded."""
    found: list[tuple[tuple[float, int, int, int], TraceLine]] = []
    query = RequestQuery(request_id=request_id)
    for i, f in enumerate(access_records(files.access, on_bad, query.literals())):
        if query.matches(f.record):
            arrived = f.record.time
            found.append(
                (
                    (arrived.timestamp(), 0, 0, i),
                    TraceLine(arrived, f.file, f.line, f.text, f.record),
                )
            )
    for k, path in enumerate(files.other):
        for n, text, t, continued in _entries(path, request_id, on_bad):
            at = t.timestamp() if t is not None else float("-inf")
            order = (k << 40) + n
            found.append(((at, 1, order, 0), TraceLine(t, path, n, text, continued=continued)))
    found.sort(key=lambda item: item[0])
    return [line for _, line in found]


def _entries(
    path: Path, request_id: str, on_bad: OnBad
) -> Iterator[tuple[int, str, datetime | None, bool]]:
    """``(line, text, time, continued)`` of the lines of one application or worker log that
    belong to ``request_id``: an entry carrying its marker, and the lines without a time
    after it; ``time`` is the entry's (the line's own, or the last one seen)."""
    from signalbox.instrument.logline import line_time, mentions

    name = str(path)
    rid = request_id.encode()
    last: datetime | None = None
    taking = False

    def step(text: str) -> tuple[bool, bool]:
        """Whether the line is taken, and whether it continues an entry."""
        nonlocal last, taking
        if not taking and request_id not in text:
            return False, False  # not ours, and no entry of ours for it to continue
        t = line_time(text)
        if t is not None or _starts_entry(text):  # a new entry: its own marker decides
            last = t if t is not None else last
            taking = mentions(text, request_id)
            return taking, False
        return taking, True  # a traceback's line: with the entry before it

    counted = LineCount()
    for _, block in read_blocks(path, on_bad, counted):
        if not _decodes(block):
            for n, text in _lines(name, block, counted, on_bad):
                take, continued = step(text)
                if take:
                    yield n, text, last, continued
            continue
        pos, at, n = 0, 0, counted.n  # n: the lines before offset ``at``
        size = len(block)
        while pos < size:
            if taking:
                start = pos
            else:
                i = block.find(rid, pos)
                if i < 0:
                    break
                start = block.rfind(b"\n", pos, i) + 1 or pos
            end = block.find(b"\n", start)
            n += block.count(b"\n", at, start) + 1
            at = pos = end + 1
            text = block[start:end].decode("utf-8")
            if text.endswith("\r"):
                text = text[:-1]
            if not text.strip():
                continue
            take, continued = step(text)
            if take:
                yield n, text, last, continued
        counted.n = n + block.count(b"\n", at)


def _starts_entry(text: str) -> bool:
    """A line with no time that still starts a new entry (``INFO ...``): not a continuation."""
    head = text.split(" ", 1)[0].rstrip(":")
    return head in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def classify(paths: Iterable[Path]) -> LogFiles:
    """Files named on a command line, sorted into access logs (their first readable line
    is an access-log line) and others (an unreadable one among them: reading it says why)."""
    access: list[Path] = []
    other: list[Path] = []
    for path in paths:
        is_access = False
        for n, text in read_lines(path):
            try:
                r = parse_line(text, str(path), n)
                is_access = bool(r.method) and r.status > 0  # not a JSON log with a "time"
            except ParseError:
                pass
            break
        (access if is_access else other).append(path)
    return LogFiles(tuple(access), tuple(other), ())
