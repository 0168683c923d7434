"""Scans of the logs that stop within a budget and resume: a page of ``/api/v1/logs/requests``
(:func:`page`) and a request's trace (:func:`trace_scan`; ``signalbox logs trace`` reads it
whole, :func:`trace`).

One answer of the server reads a bounded stretch of the logs (:class:`Budget`): the files
newest first, a block at a time (:mod:`signalbox.instrument.logfiles` finds and parses the
lines), and when the budget runs out the answer says where it stopped (:class:`ScanPoint`,
its ``token`` the API's ``resume``). Resuming checks the file still holds, just before that
offset, the line the scan stopped after, so a file rotated meanwhile is refused rather than
read from the wrong place. Kept apart from :mod:`~signalbox.instrument.logfiles` so
``signalbox logs grep`` does not import (nor build) what only pages and traces use.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from signalbox.exceptions import UsageError
from signalbox.instrument.accessrecord import AccessRecord
from signalbox.instrument.logblocks import (
    Expect,
    LineCount,
    Malformed,
    Moved,
    OnBad,
    read_blocks,
)
from signalbox.instrument.logfiles import (
    Found,
    _decodes,
    _found_lines,
    _ignore,
    _lines,
    _parsed,
)
from signalbox.instrument.logset import LogFiles
from signalbox.instrument.search import RequestQuery, record_key

__all__ = [
    "Budget",
    "Page",
    "ScanPoint",
    "Trace",
    "TraceLine",
    "page",
    "trace",
    "trace_scan",
]

_TAIL = 4096  # bytes of the line before a resume point, checked when resuming


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
    file rotated meanwhile is not read from the wrong place.

    ``index``: the file's place in the scan's order of files. The token names a file by it
    and its base name, so two configured logs of one base name in different folders are
    told apart without a path leaving the server. ``live``: a trace's order of the live
    files (smallest first when it started, :func:`trace_scan`), kept so its resumes read
    them in that order however they grew since.

    ``taking`` and ``last`` (µs since the epoch): a trace's state in an application log
    there -- inside an entry of the request (its traceback's lines follow), and the time of
    the last entry looked at -- so a resumed trace takes the lines a whole read takes."""

    file: str
    offset: int
    lines: int
    span: int = 0
    digest: str = ""
    taking: bool = False
    last: int | None = None
    index: int = 0
    live: tuple[int, ...] = ()

    def token(self) -> str:
        core = (
            f"{self.offset}.{self.lines}.{self.span}.{self.digest or '-'}.{self.index}.{self.file}"
        )
        if self.live:
            core = f"o{'-'.join(map(str, self.live))}.{core}"
        if not self.taking and self.last is None:
            return core
        return f"t{int(self.taking)}{'n' if self.last is None else self.last}.{core}"

    @classmethod
    def after(
        cls,
        file: str,
        offset: int,
        lines: int,
        block: bytes,
        taking: bool = False,
        last: int | None = None,
    ) -> ScanPoint:
        """The point after ``block`` (whole lines, the last one ending at ``offset``)."""
        tail = block[block.rfind(b"\n", 0, len(block) - 1) + 1 :][-_TAIL:]
        return cls(file, offset, lines, len(tail), _digest(tail), taking, last)

    def expect(self) -> Expect:
        """What the file must hold just before ``offset`` to be read on from there
        (:func:`~signalbox.instrument.logblocks.read_blocks` checks it on the way)."""

        def check(tail: bytes) -> bool:
            if self.span == 0:
                return self.offset == 0
            return len(tail) == self.span and _digest(tail) == self.digest

        return self.span, check

    @classmethod
    def parse(cls, text: str, what: str = "resume") -> ScanPoint:
        taking, last = False, None
        state = re.match(r"t([01])(n|[0-9]{1,19})\.", text)
        if state is not None:
            taking = state.group(1) == "1"
            last = None if state.group(2) == "n" else int(state.group(2))
            text = text[state.end() :]
        live: tuple[int, ...] = ()
        order = re.match(r"o([0-9]{1,4}(?:-[0-9]{1,4}){0,999})\.", text)
        if order is not None:
            live = tuple(int(k) for k in order.group(1).split("-"))
            text = text[order.end() :]
        parts = text.split(".", 5)
        # ASCII digits, and short enough to seek to (str.isdigit takes "²", int() does not)
        ok = len(parts) == 6 and all(re.fullmatch(r"[0-9]{1,18}", p) for p in parts[:3])
        ok = ok and (re.fullmatch(r"[0-9a-f]{16}", parts[3]) is not None or parts[3] == "-")
        ok = ok and re.fullmatch(r"[0-9]{1,6}", parts[4]) is not None
        if not ok or not parts[5] or "/" in parts[5]:
            raise UsageError(
                f"invalid parameter {what!r}: expected the resume of an answer whose scan "
                f"stopped early, got {text[:60]!r}"
            )
        digest = "" if parts[3] == "-" else parts[3]
        offset, lines, span, index = (int(parts[k]) for k in (0, 1, 2, 4))
        return cls(parts[5], offset, lines, span, digest, taking, last, index, live)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


_Use = Callable[[], None]
_FileReader = Callable[[Path, "ScanPoint | None", OnBad], Iterator[tuple[ScanPoint, _Use]]]


def _scan(
    files: list[Path],
    read: _FileReader,
    *,
    what: str,
    on_bad: OnBad,
    budget: Budget | None,
    resume: ScanPoint | None,
    live: tuple[int, ...] = (),
) -> ScanPoint | None:
    """Reads ``files`` in order (from ``resume`` when given) through ``read``, which yields,
    per block of a file, the point after it and how to use what it found; stops when
    ``budget`` runs out, between blocks, and returns where (None: every file was read).

    A block read when the budget has run out is not used (its malformed lines are not said
    either): the resumed scan reads it again. A resume point whose file is gone or holds
    other bytes there (rotated meanwhile) is refused: start again."""
    first = 0
    if resume is not None:
        # by its place and its name: two logs of one base name in different folders differ
        first = resume.index
        if first >= len(files) or files[first].name != resume.file:
            raise UsageError(
                f"resume: {resume.file!r} is no longer among the {what} files (rotated "
                "since the scan stopped); search again without resume"
            )
    deadline = None
    if budget is not None and budget.seconds is not None:
        deadline = time.monotonic() + budget.seconds
    max_bytes = None if budget is None else budget.bytes
    read_bytes = 0

    def spent() -> bool:  # never before a block is read: each answer moves the scan on
        return read_bytes > 0 and (
            (max_bytes is not None and read_bytes >= max_bytes)
            or (deadline is not None and time.monotonic() >= deadline)
        )

    for i in range(first, len(files)):
        path = files[i]
        point = resume if resume is not None and i == first else None
        here = point if point is not None else ScanPoint(path.name, 0, 0, index=i, live=live)
        if i > first and spent():
            return here
        pending: list[Malformed] = []  # said by reading a block: said once it is used
        try:
            for after, use in read(path, point, pending.append):
                if spent():  # this block is read again on resuming: its bad lines said then
                    return here
                for bad in pending:
                    on_bad(bad)
                pending.clear()
                use()
                read_bytes += after.offset - here.offset
                here = dataclasses.replace(after, index=i, live=live)
        except Moved:
            raise UsageError(
                f"resume: {path.name!r} holds other lines than where the scan stopped "
                "(rotated since); search again without resume"
            ) from None
        for bad in pending:  # the file could not be opened, or broke after its last block
            on_bad(bad)
    return None


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
    finder = query.finder()
    heap: list[tuple[tuple[int, str], int, Found]] = []  # the best limit + 1, smallest on top
    seq = 0

    def keep(path: Path, got: list[tuple[int, str, bool]]) -> None:
        nonlocal seq
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

    def read(path: Path, point: ScanPoint | None, bad: OnBad) -> Iterator[tuple[ScanPoint, _Use]]:
        at, lines = (point.offset, point.lines) if point is not None else (0, 0)
        expect = point.expect() if point is not None else None
        blocks = _found_lines(path, finder, bad, at, lines, expect, query.since)
        for after_block, end, got, block in blocks:
            here = ScanPoint.after(path.name, end, after_block, block)
            yield here, functools.partial(keep, path, got)

    files = list(paths)[::-1]
    stopped = _scan(files, read, what="access-log", on_bad=on_bad, budget=budget, resume=resume)
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


@dataclass(frozen=True, slots=True)
class Trace:
    """A request's lines in time order; ``stopped``: where the scan stopped when its budget
    ran out (None: it read every file to the end)."""

    lines: list[TraceLine]
    stopped: ScanPoint | None = None


def trace(files: LogFiles, request_id: str, on_bad: OnBad = _ignore) -> list[TraceLine]:
    """Every line of ``files`` for ``request_id``, in time order (:func:`trace_scan` with
    no budget)."""
    return trace_scan(files, request_id, on_bad).lines


def trace_scan(
    files: LogFiles,
    request_id: str,
    on_bad: OnBad = _ignore,
    *,
    budget: Budget | None = None,
    resume: ScanPoint | None = None,
) -> Trace:
    """The lines of ``files`` for ``request_id``, in time order (lines without a time keep
    their place after the line they follow). An access-log line sorts at its request's
    arrival, so it opens the lines logged while the request ran.

    Files are read newest first (every log's live file, then every ``.1``, ...): when
    ``budget`` runs out the scan stops, the trace holds the lines of what was read (in time
    order) and ``stopped`` says where to ``resume``.

    Other logs are searched for the id by ``bytes.find`` a block at a time; only the lines
    holding it, and the lines without a time that follow one taken (a traceback's), are
    decoded."""
    found: list[tuple[tuple[float, int, int], TraceLine]] = []
    query = RequestQuery(request_id=request_id)
    finder = query.finder()
    access = {p: i for i, p in enumerate(files.access)}
    other = {p: k for k, p in enumerate(files.other)}

    def keep_access(path: Path, got: list[tuple[int, str, bool]]) -> None:
        order = access[path] << 40
        for f in _parsed(path, got, on_bad, might_match=query.might_match):
            if query.matches(f.record):
                arrived = f.record.time
                line = TraceLine(arrived, f.file, f.line, f.text, f.record)
                found.append(((arrived.timestamp(), 0, order + f.line), line))

    def keep_other(path: Path, got: list[tuple[int, str, datetime | None, bool]]) -> None:
        order = other[path] << 40
        for n, text, t, continued in got:
            at = t.timestamp() if t is not None else float("-inf")
            line = TraceLine(t, path, n, text, continued=continued)
            found.append(((at, 1, order + n), line))

    def read(path: Path, point: ScanPoint | None, bad: OnBad) -> Iterator[tuple[ScanPoint, _Use]]:
        at, lines = (point.offset, point.lines) if point is not None else (0, 0)
        expect = point.expect() if point is not None else None
        if path in access:
            for after_block, end, got, block in _found_lines(path, finder, bad, at, lines, expect):
                here = ScanPoint.after(path.name, end, after_block, block)
                yield here, functools.partial(keep_access, path, got)
            return
        entries = _Entries(str(path), request_id)
        if point is not None:
            entries.taking = point.taking
            entries.last = None if point.last is None else _from_us(point.last)
        counted = LineCount(lines)
        for end, block in read_blocks(path, bad, counted, at, expect):
            took = entries.block(block, counted, bad)
            last = None if entries.last is None else _to_us(entries.last)
            here = ScanPoint.after(path.name, end, counted.n, block, entries.taking, last)
            yield here, functools.partial(keep_other, path, took)

    order, live = _trace_order(files, resume)
    stopped = _scan(order, read, what="log", on_bad=on_bad, budget=budget, resume=resume, live=live)
    found.sort(key=lambda item: item[0])
    return Trace([line for _, line in found], stopped)


_ROTATED = re.compile(r"\.(\d{1,6})(?:\.gz)?\Z")


def _trace_order(files: LogFiles, resume: ScanPoint | None) -> tuple[list[Path], tuple[int, ...]]:
    """The order a trace reads ``files`` in, and its order of the live files (indices among
    them, as the token keeps it).

    Every log's live file first, smallest first, then every ``.1``, and so on. Smallest
    first: when one live log is bigger than the budget (a busy access log), the others are
    read whole in the first answer instead of never, so the lines the budget could reach are
    in it; the big one is read last and resumed. A resume reads the live files in the order
    its scan began with (they grow meanwhile, and may cross)."""
    ranked = sorted([*files.access[::-1], *files.other[::-1]], key=_generation)
    n = sum(1 for p in ranked if _generation(p) == 0)
    if resume is None:
        live = tuple(sorted(range(n), key=lambda k: _size(ranked[k])))
    else:
        live = resume.live if resume.live else tuple(range(n))
        if sorted(live) != list(range(n)):
            raise UsageError(
                "resume: the live logs are not those the scan began with (a log was added "
                "or removed since); search again without resume"
            )
    return [ranked[k] for k in live] + ranked[n:], live


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # reading it reports why


def _generation(path: Path) -> int:
    """0 for a live log, N for its rotated ``.N`` or ``.N.gz``: a trace reads every log's
    newest stretch first."""
    m = _ROTATED.search(path.name)
    return int(m.group(1)) if m else 0


def _to_us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


class _Entries:
    """The lines of one application or worker log that belong to a request, a block at a
    time: an entry carrying its marker, and the lines without a time after it. ``taking``:
    inside such an entry; ``last``: the time of the last entry looked at (what a line
    without a time is given) -- the state a resumed trace starts from."""

    def __init__(self, name: str, request_id: str) -> None:
        from signalbox.instrument.logtext import line_time, mentions

        self.name = name
        self.request_id = request_id
        self.rid = request_id.encode()
        self.taking = False
        self.last: datetime | None = None
        self._line_time = line_time
        self._mentions = mentions

    def step(self, text: str) -> tuple[bool, bool]:
        """Whether the line is taken, and whether it continues an entry."""
        if not self.taking and self.request_id not in text:
            return False, False  # not ours, and no entry of ours for it to continue
        t = self._line_time(text)
        if t is not None or _starts_entry(text):  # a new entry: its own marker decides
            self.last = t if t is not None else self.last
            self.taking = self._mentions(text, self.request_id)
            return self.taking, False
        return self.taking, True  # a traceback's line: with the entry before it

    def block(
        self, block: bytes, counted: LineCount, on_bad: OnBad
    ) -> list[tuple[int, str, datetime | None, bool]]:
        """``(line, text, time, continued)`` of the block's lines taken (``time``: the
        entry's, the line's own or the last one seen); its lines are added to ``counted``."""
        out: list[tuple[int, str, datetime | None, bool]] = []
        if not _decodes(block):
            for n, text in _lines(self.name, block, counted, on_bad):
                take, continued = self.step(text)
                if take:
                    out.append((n, text, self.last, continued))
            return out
        pos, at, n = 0, 0, counted.n  # n: the lines before offset ``at``
        size = len(block)
        while pos < size:
            if self.taking:
                start = pos
            else:
                i = block.find(self.rid, pos)
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
            take, continued = self.step(text)
            if take:
                out.append((n, text, self.last, continued))
        counted.n = n + block.count(b"\n", at)
        return out


def _starts_entry(text: str) -> bool:
    """A line with no time that still starts a new entry (``INFO ...``): not a continuation."""
    head = text.split(" ", 1)[0].rstrip(":")
    return head in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
