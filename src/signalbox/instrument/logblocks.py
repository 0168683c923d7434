"""A log file's bytes as blocks of whole lines: how ``signalbox logs`` reads at grep's pace.

Searching a log line by line in Python costs microseconds a line before any test is made;
a block of a megabyte is searched by one ``bytes.find`` or one compiled bytes regex in C, and
only the lines found are decoded and parsed (:mod:`signalbox.instrument.logfiles`).

:func:`read_blocks` yields ``(offset after it, block)``: each block is whole lines, every
one ending with ``\\n`` (a last line without one is given one), so a line's number is the
lines before its block (:class:`LineCount`) plus the line breaks before it in the block.
A gzip file (by its magic bytes, whatever its name) is decompressed with :mod:`zlib` a block at a time, members one
after the other as ``gzip -d`` reads them.

Reported through ``on_bad`` and never fatal, with the file and line: a file that cannot be
opened (line 0); a line longer than :data:`MAX_LINE_BYTES` (left out of its block as an empty
line, so the numbers of the lines after it hold); where a compressed file breaks or ends early
(the lines before it are read; the rest is skipped).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported for this (a grep's start)
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["MAX_LINE_BYTES", "Expect", "LineCount", "Malformed", "Moved", "OnBad", "read_blocks"]

MAX_LINE_BYTES = 1 << 20
"""A longer line is reported and skipped (the middleware's lines are far shorter). Blocks
are read this size at most, so only a block's first line (which may have begun in the block
before) can be longer."""
_GZIP_MAGIC = b"\x1f\x8b"
_COMPRESSED_READ = 1 << 18
_ENDED_EARLY = "Compressed file ended before the end-of-stream marker was reached"


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that was skipped, and why."""

    file: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.why}"


OnBad = Callable[[Malformed], None]


class _Broken(Exception):
    """A compressed file breaks here: its message says how."""


def _plain(f: BinaryIO, size: int, start: bytes) -> Iterator[bytes]:
    if start:
        yield start
    while chunk := f.read(size):
        yield chunk


def _gunzip(f: BinaryIO, size: int, start: bytes) -> Iterator[bytes]:
    """Decompressed pieces of at most ``size`` bytes; raises :class:`_Broken` where the
    data is not gzip or ends inside a member."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = start
    in_member = True
    while True:
        if not data:
            data = f.read(_COMPRESSED_READ)
            if not data:
                if in_member:
                    raise _Broken(_ENDED_EARLY)
                return
        if not in_member:  # between members: another one, or padding zeros (tar, dd)
            if data.strip(b"\x00") == b"":
                data = b""
                continue
            if not data.startswith(_GZIP_MAGIC[: len(data)]):
                raise _Broken("Not a gzipped file (trailing garbage after the last member)")
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            in_member = True
        try:
            out = d.decompress(data, size)
        except zlib.error as e:
            raise _Broken(str(e)) from None
        data = d.unconsumed_tail
        if d.eof:
            data = d.unused_data + data
            in_member = False
        if out:
            yield out


def _skip(pieces: Iterator[bytes], skip: int, keep: int) -> tuple[bytes, bytes]:
    """Reads ``skip`` bytes of ``pieces`` (a compressed file is read through to an offset):
    the last ``keep`` of them, and the rest of the piece the offset falls in."""
    tail = b""
    for piece in pieces:
        take = min(skip, len(piece))
        if keep:
            tail = (tail + piece[max(0, take - keep) : take])[-keep:]
        skip -= take
        if not skip:
            return tail, piece[take:]
    raise _Broken(f"the file is shorter than the {skip} bytes more the scan was at")


class Moved(Exception):
    """A resumed read's file does not hold, before its offset, the bytes the scan stopped
    after: it was rotated, truncated or rewritten since (the reader says to start again)."""


Expect = tuple[int, Callable[[bytes], bool]]
"""``(span, check)``: what a resumed read must find just before its offset: ``check`` of
the ``span`` bytes there (fewer when the file is shorter) is true."""


class LineCount:
    """The lines of one file read so far. :func:`read_blocks` does not count a block's lines:
    its reader does (finding them, it counts them anyway) and adds them here before asking
    for the next block, so each byte is counted once."""

    __slots__ = ("n",)

    def __init__(self, n: int = 0) -> None:
        self.n = n


def read_blocks(
    path: Path, on_bad: OnBad, counted: LineCount, start: int = 0, expect: Expect | None = None
) -> Iterator[tuple[int, bytes]]:
    """``(offset just after the block, block of whole lines)`` over ``path``, from byte
    ``start`` of its (decompressed) text; the reader adds each block's lines to ``counted``
    (:class:`LineCount`). Offsets count the file's own bytes, whatever a block holds in place
    of a long line.

    ``expect``: a resumed read's check of the bytes before ``start``; raises :class:`Moved`
    (before any block) when they differ, the file is shorter or cannot be opened. It is made
    on the way, so a compressed file is decompressed up to ``start`` once, not once to check
    and once to read."""
    name = str(path)
    size = MAX_LINE_BYTES
    try:
        f = path.open("rb")
    except OSError as e:  # gone (rotated away) or not readable: said, the others still read
        if expect is not None:
            raise Moved(name) from None
        on_bad(Malformed(name, 0, f"cannot read the file ({e.strerror or e})"))
        return
    with f:
        base = start  # the offset of the piece's first byte
        try:
            head = f.read(2)
            span = 0 if expect is None else min(expect[0], start)
            pieces: Iterator[bytes]
            if head == _GZIP_MAGIC:
                pieces = _gunzip(f, size, head)
                if start:
                    try:
                        tail, rest = _skip(pieces, start, span)
                    except _Broken:
                        if expect is not None:
                            raise Moved(name) from None
                        raise
                    pieces = itertools.chain((rest,) if rest else (), pieces)
                else:
                    tail = b""
            else:
                f.seek(start - span)
                tail = f.read(span)
                pieces = _plain(f, size, b"")
            if expect is not None and not expect[1](tail):
                raise Moved(name)
            carry = b""  # the start of a line whose end is not read yet
            skipping = False  # inside a line reported as too long: its bytes are dropped
            for piece in pieces:
                at = base
                base += len(piece)
                if skipping:
                    cut = piece.find(b"\n")
                    if cut < 0:
                        continue
                    at += cut  # the long line's end, which stands for it
                    piece = piece[cut:]
                    skipping = False
                cut = piece.rfind(b"\n")
                if cut < 0:
                    carry += piece
                    if len(carry) > size:
                        on_bad(Malformed(name, counted.n + 1, f"longer than {size} bytes"))
                        carry, skipping = b"", True
                    continue
                first = piece.find(b"\n")
                if len(carry) + first > size:  # the only line of the block that can be
                    on_bad(Malformed(name, counted.n + 1, f"longer than {size} bytes"))
                    block = piece[first : cut + 1]
                elif carry:
                    block = b"".join((carry, memoryview(piece)[: cut + 1]))  # one copy
                else:
                    block = piece if cut + 1 == len(piece) else piece[: cut + 1]
                carry = piece[cut + 1 :]
                yield at + cut + 1, block
        except _Broken as e:
            why = f"the file ends or breaks here ({e}); the rest is skipped"
            on_bad(Malformed(name, counted.n + 1, why))
            return
        except OSError as e:
            why = f"the file ends or breaks here ({e.strerror or e}); the rest is skipped"
            on_bad(Malformed(name, counted.n + 1, why))
            return
        if carry and not skipping:
            yield base, carry + b"\n"
