"""Reading log files for ``signalbox logs`` and ``/api/v1/logs``: streamed, gzip too.

Files are read a line at a time, never whole, so a multi-gigabyte access log costs one line
of memory (a page keeps its ``limit`` best records, a trace only the lines it found). A file
is gzip when it starts with gzip's magic bytes, whatever its name (logrotate's
``access.log.2.gz``). A line that cannot be read -- not UTF-8, longer than
:data:`MAX_LINE_BYTES`, not an access-log line, or where a compressed file ends early -- is
handed to ``on_bad`` as a :class:`Malformed` (file, line, why) and skipped: one bad line
never hides the others.

Lines that cannot match (a quick test of the values asked for, see
:meth:`RequestQuery.might_match`) are not parsed, so not reported either.
"""

from __future__ import annotations

import gzip
import heapq
import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from signalbox.exceptions import ParseError
from signalbox.instrument.accesslog import AccessRecord, parse_line
from signalbox.instrument.logline import line_time, mentions
from signalbox.instrument.logsources import LogFiles
from signalbox.instrument.search import RequestQuery, record_key

__all__ = [
    "MAX_LINE_BYTES",
    "Found",
    "Malformed",
    "Page",
    "TraceLine",
    "access_records",
    "classify",
    "page",
    "read_lines",
    "search",
    "trace",
]

MAX_LINE_BYTES = 1 << 20
"""A longer line is reported and skipped (the middleware's lines are far shorter)."""
_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 1 << 20  # read at a time; lines are cut from it


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that was skipped, and why."""

    file: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.why}"


OnBad = Callable[[Malformed], None]


def _ignore(_: Malformed) -> None:
    pass


@contextmanager
def open_log(path: Path) -> Iterator[io.BufferedIOBase]:
    """``path`` for reading bytes, through gzip when it is compressed."""
    with path.open("rb") as raw:
        gz = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not gz:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield unzipped


def read_lines(path: Path, on_bad: OnBad = _ignore) -> Iterator[tuple[int, str]]:
    """``(line number, text without its line break)`` of every readable, non-blank line.

    A file that cannot be opened is reported as line 0 and read as empty.
    """
    name = str(path)
    n = 0
    stack = ExitStack()
    try:
        f = stack.enter_context(open_log(path))
    except OSError as e:  # gone (rotated away) or not readable: said, the others still read
        on_bad(Malformed(name, 0, f"cannot read the file ({e.strerror or e})"))
        return
    with stack:
        buf = b""
        skipping = False  # inside a line already reported as too long
        while True:
            try:
                block = f.read1(_BLOCK)
            except (EOFError, OSError, zlib.error) as e:
                why = f"the file ends or breaks here ({e}); the rest is skipped"
                on_bad(Malformed(name, n + 1, why))
                return
            if not block:
                if buf and not skipping:
                    n += 1
                    text = _text(buf, name, n, on_bad)
                    if text is not None:
                        yield n, text
                return
            pieces = (buf + block).split(b"\n")
            buf = pieces.pop()
            for raw in pieces:
                if skipping:  # the end of the long line
                    skipping = False
                    continue
                n += 1
                text = _text(raw, name, n, on_bad)
                if text is not None:
                    yield n, text
            if skipping:
                buf = b""
            elif len(buf) > MAX_LINE_BYTES:
                n += 1
                on_bad(Malformed(name, n, f"longer than {MAX_LINE_BYTES} bytes"))
                buf, skipping = b"", True


def _text(raw: bytes, name: str, n: int, on_bad: OnBad) -> str | None:
    """A line's text (None: blank, or reported and skipped)."""
    if len(raw) > MAX_LINE_BYTES:
        on_bad(Malformed(name, n, f"longer than {MAX_LINE_BYTES} bytes"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        on_bad(Malformed(name, n, f"not UTF-8 (byte {e.start + 1})"))
        return None
    if text.endswith("\r"):
        text = text[:-1]
    return text if text.strip() else None


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
    for path in paths:
        for n, text in read_lines(path, on_bad):
            if literals and not all(v in text for v in literals):
                continue
            if might_match is not None and not might_match(text):
                continue
            try:
                record = parse_line(text, str(path), n)
            except ParseError as e:
                on_bad(Malformed(str(path), n, e.reason))
                continue
            yield Found(path, n, text, record)


def search(paths: Iterable[Path], query: RequestQuery, on_bad: OnBad = _ignore) -> Iterator[Found]:
    """The records of ``paths`` that ``query`` matches, in file order."""
    for found in access_records(paths, on_bad, might_match=query.might_match):
        if query.matches(found.record):
            yield found


@dataclass(frozen=True, slots=True)
class Page:
    """Up to ``limit`` matches, newest first; ``next_after``: the key to pass for the next
    page (None on the last)."""

    found: list[Found]
    next_after: tuple[int, str] | None


def page(
    paths: Iterable[Path],
    query: RequestQuery,
    *,
    limit: int,
    after: tuple[int, str] | None = None,
    on_bad: OnBad = _ignore,
) -> Page:
    """The newest ``limit`` matches older than ``after`` (a key of the page before)."""
    heap: list[tuple[tuple[int, str], int, Found]] = []  # the best limit + 1, smallest on top
    seq = 0
    for found in search(paths, query, on_bad):
        key = record_key(found.record, found.text)
        if after is not None and key >= after:
            continue
        seq += 1
        item = (key, -seq, found)
        if len(heap) <= limit:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    best = sorted(heap, reverse=True)
    more = len(best) > limit
    best = best[:limit]
    return Page([f for _, _, f in best], best[-1][0] if more and best else None)


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
    arrival, so it opens the lines logged while the request ran."""
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
    order = 0
    for path in files.other:
        last: datetime | None = None
        taking = False
        for n, text in read_lines(path, on_bad):
            order += 1
            if not taking and request_id not in text:
                continue  # not ours, and no entry of ours for it to continue
            t = line_time(text)
            if t is not None or _starts_entry(text):  # a new entry: its own marker decides
                last = t if t is not None else last
                taking = mentions(text, request_id)
                continued = False
            else:  # a traceback's line: with the entry before it
                continued = True
            if not taking:
                continue
            at = last.timestamp() if last is not None else float("-inf")
            found.append(
                ((at, 1, order, 0), TraceLine(t or last, path, n, text, continued=continued))
            )
    found.sort(key=lambda item: item[0])
    return [line for _, line in found]


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
