"""Lexing shared by the spool parsers (:mod:`.keyvalue`, :mod:`.promtext`) and by
the OpenMetrics and StatsD parsers: the result records, safe quoting of bad input,
line splitting, numbers and Prometheus label sets.

Common rules (both spool formats)
    * Lines are split on ``\\n`` only, so line numbers match what an editor shows; a
      trailing ``\\r`` (CRLF files) is dropped, a leading byte-order mark is ignored and a
      missing final newline is fine.
    * A line holding a control character, a stray ``\\r`` or U+FFFD (what undecodable
      bytes decode to) is an error line, comments included: such bytes mean a corrupt or
      binary file, and guessing what the writer meant would store garbage.
    * Labels use Prometheus syntax and escaping (``\\\\``, ``\\"``, ``\\n`` only); blanks
      around tokens and a trailing comma are accepted. Names starting with ``__`` are
      reserved and refused. A label with an empty value is the same series as one without
      that label (as in Prometheus), so it is left out.
    * The same series twice in one file: the later line wins, and the *earlier* line is
      reported as an error naming both lines -- it is the one whose value was discarded
      (:func:`duplicate_error`). So every line ends up as exactly one of: sample,
      blank/comment/metadata, error.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_
from typing import cast

from signalbox.exceptions import ParseError
from signalbox.gcpause import gc_paused
from signalbox.metrics.samples import (
    Labels,
    MetricMeta,
    MetricType,
    Sample,
    SeriesKey,
    format_series,
)

__all__ = [
    "EXCERPT_CHARS",
    "LABEL_RULE",
    "NAME_RULE",
    "LineError",
    "Parsed",
    "blank_split",
    "control_char_reason",
    "duplicate_error",
    "excerpt",
    "fast_labels",
    "gc_paused",
    "has_control_chars",
    "parse_float",
    "parse_int_ms",
    "plain_metas",
    "scan_labels",
    "show",
    "split_lines",
]


EXCERPT_CHARS = 200
NAME_RULE = "[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_RULE = "[a-zA-Z_][a-zA-Z0-9_]*"
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class LineError:
    """One rejected input line. ``line`` is 1-based; 0 means the input as a whole.

    ``text`` is the offending line, cut to ~200 characters with control characters
    escaped, so it can go into a log line or a terminal safely.
    """

    source: str
    line: int
    reason: str
    text: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"

    def to_exception(self) -> ParseError:
        """The same problem as a raisable :class:`ParseError`, for callers that stop at one."""
        return ParseError(self.source, self.line, self.reason, self.text)


@dataclass(slots=True)
class Parsed:
    """Everything one file yielded: good samples, metric metadata, and the bad lines."""

    samples: list[Sample]
    metas: list[MetricMeta]
    errors: list[LineError]


# ---------------------------------------------------------------------------------------
# Quoting bad input, splitting lines, numbers.

# \t is a separator, \n splits lines, \r is handled apart (CRLF is fine, a lone \r is not).
_CTRL_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
_CTRL_LINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
_ASCII_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n"
_ESCAPE_TABLE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPE_TABLE[0xFFFD] = "\\ufffd"
_LABEL_NAME_AT = re.compile(LABEL_RULE)
_TOKEN_AT = re.compile(r'[^=,}"\s]*')
_BLANKS = re.compile(r"[ \t]+")


def show(text: str, limit: int = 60) -> str:
    """``text`` made safe to quote in a message: control characters escaped, cut to ``limit``."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return cut.translate(_ESCAPE_TABLE)


def excerpt(line: str) -> str:
    """The ``LineError.text`` form of a line."""
    return show(line, EXCERPT_CHARS)


def control_char_reason(line: str) -> str | None:
    """Why a line with a control character / U+FFFD cannot be trusted, or None if clean."""
    m = _CTRL_LINE.search(line)
    if m is None:
        return None
    ch, col = m.group(), m.start() + 1
    if ch == "\ufffd":
        return f"line contains bytes that are not valid UTF-8 text (U+FFFD) at column {col}"
    if ch == "\r":
        return f"line contains a carriage return (\\r) at column {col}"
    return f"line contains control character \\x{ord(ch):02x} at column {col}"


def has_control_chars(text: str) -> bool:
    """Any control character other than tab/newline? (CR counts.) Fast for ASCII text."""
    if text.isascii():
        return bool(text.encode("ascii").translate(None, _ASCII_TEXT_BYTES))
    return "\r" in text or _CTRL_TEXT.search(text) is not None


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines split on ``\\n`` (final empty piece dropped) and whether they need a per-line check.

    Only files that contain a ``\\r`` or a control character pay for a line-by-line check.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines, has_control_chars(text)


def blank_split(s: str) -> list[str]:
    """Split on spaces/tabs only; ``str.split()`` would also split on U+00A0 and friends."""
    if s.isascii():
        return s.split()
    s = s.strip(" \t")
    return _BLANKS.split(s) if s else []


def parse_float(s: str) -> float | None:
    """A sample value as Prometheus reads it, or None.

    Accepts ints, floats, exponents, ``NaN``, ``+Inf``/``-Inf``. Python's ``float`` is
    more generous than Go's ``ParseFloat`` (``1_000``, non-ASCII digits); those are refused.
    """
    try:
        v = float(s)
    except ValueError:
        return None
    if "_" in s or not s.isascii() or s != s.strip():
        return None
    return v


def parse_int_ms(s: str) -> int | str:
    """A millisecond timestamp, or the reason it is not one."""
    if s.isascii() and "_" not in s:
        try:
            ms = int(s)
        except ValueError:
            pass
        else:
            if -_INT64_MAX <= ms <= _INT64_MAX:
                return ms
            return f"timestamp '{show(s)}' is out of range for milliseconds since the epoch"
    return f"timestamp '{show(s)}' is not an integer (milliseconds since the epoch)"


def _unescape_label_value(s: str, i: int, label: str) -> tuple[str, int] | str:
    """Slow path for a quoted value holding backslashes; ``s[i]`` is the first value char."""
    out: list[str] = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            e = s[i + 1]
            if e == "\\" or e == '"':
                out.append(e)
            elif e == "n":
                out.append("\n")
            else:
                return (
                    f"invalid escape '\\{show(e)}' in the value of label '{label}': "
                    'only \\\\, \\" and \\n are allowed'
                )
            i += 2
        else:
            out.append(c)
            i += 1
    return f"unterminated label value for '{label}': expected a closing '\"'"


def scan_labels(s: str, i: int) -> tuple[Labels, int] | str:
    """Parse a label set whose ``{`` is at ``s[i - 1]``.

    Returns the canonical labels and the index just past ``}``, or the reason the set is
    malformed.
    """
    names: list[str] = []
    values: list[str] = []
    n = len(s)
    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return "unterminated label set: expected '}'"
        if s[i] == "}":
            i += 1
            break
        m = _LABEL_NAME_AT.match(s, i)
        end = m.end() if m is not None else i
        if m is None or (end < n and s[end] not in "= \t"):
            tok = _TOKEN_AT.match(s, i)
            bad = tok.group() if tok is not None else ""
            if not bad:
                return f"expected a label name or '}}' at column {i + 1}, found '{show(s[i])}'"
            return f"invalid label name '{show(bad)}': must match {LABEL_RULE}"
        name = s[i:end]
        if name.startswith("__"):
            return f"reserved label name '{name}': names starting with '__' are reserved"
        i = end
        while i < n and s[i] in " \t":
            i += 1
        if i >= n or s[i] != "=":
            return f"expected '=' after label name '{name}'"
        i += 1
        while i < n and s[i] in " \t":
            i += 1
        if i >= n or s[i] != '"':
            return f"expected '\"' to start the value of label '{name}'"
        i += 1
        k = s.find('"', i)
        if k >= 0 and s.find("\\", i, k) < 0:
            value = s[i:k]
            i = k + 1
        else:
            r = _unescape_label_value(s, i, name)
            if isinstance(r, str):
                return r
            value, i = r
        names.append(name)
        values.append(value)
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return "unterminated label set: expected ',' or '}'"
        c = s[i]
        if c == ",":
            i += 1
        elif c == "}":
            i += 1
            break
        else:
            return f"expected ',' or '}}' after the value of label '{name}', found '{show(c)}'"
    if len(names) == 1:
        return ((((names[0], values[0]),) if values[0] else ()), i)
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                return f"duplicate label '{name}'"
            seen.add(name)
    return tuple(sorted(p for p in zip(names, values, strict=True) if p[1])), i


_LABEL_NAMES: dict[str, bool] = {}


def fast_labels(tail: str) -> Labels | None:
    """Labels of a plain label set given the text after its ``{`` up to and including ``}``.

    Handles the common shape (``a="1",b="2"}``: no backslash, no blanks between tokens)
    with string methods only; returns None for anything else, and :func:`scan_labels`
    then parses it or explains what is wrong.
    """
    if tail == "}":
        return ()
    if "\\" in tail:
        return None
    if tail.endswith('"}'):
        body = tail[:-2]
    elif tail.endswith('",}'):
        body = tail[:-3]
    else:
        return None
    known = _LABEL_NAMES
    pairs: list[tuple[str, str]] = []
    for piece in body.split('",'):
        name, sep, value = piece.partition('="')
        if not sep or '"' in value:
            return None
        ok = known.get(name)
        if ok is None:
            if len(known) > 10_000:
                known.clear()
            ok = known[name] = _LABEL_NAME_AT.fullmatch(name) is not None and not name.startswith(
                "__"
            )
        if not ok or not value:  # empty values: rare, and scan_labels checks duplicates first
            return None
        pairs.append((name, value))
    if len(pairs) > 1:
        if len({p[0] for p in pairs}) != len(pairs):
            return None
        pairs.sort()
    return tuple(pairs)


# ---------------------------------------------------------------------------------------
# Shared by both spool parsers: duplicates, GC, memoized metadata.


def duplicate_error(source: str, lines: list[str], key: SeriesKey, old: int, new: int) -> LineError:
    """The error for line ``old``, whose series line ``new`` repeats: its value is the one lost."""
    reason = (
        f"duplicate series {show(format_series(*key), 120)}: "
        f"line {new} overrides line {old} (the later line wins)"
    )
    return LineError(source, old, reason, excerpt(lines[old - 1].removesuffix("\r")))


class LineSamples:
    """The samples a line parser keeps, in line order, under the rule both formats share:
    a later line for the same series replaces the earlier one, which becomes an error."""

    def __init__(self, source: str, lines: list[str], errors: list[LineError]) -> None:
        self.source, self.lines, self.errors = source, lines, errors
        self.samples: list[Sample | None] = []
        self.lines_of: list[int] = []  # line number of each sample
        self._seen: dict[SeriesKey, int] = {}
        self.dropped = False

    def add(self, sample: Sample, lineno: int) -> None:
        key = (sample[0], sample[1])
        prev = self._seen.get(key)
        if prev is not None:
            self.drop(prev, None)
            self.errors.append(
                duplicate_error(self.source, self.lines, key, self.lines_of[prev], lineno)
            )
        self._seen[key] = len(self.samples)
        self.samples.append(sample)
        self.lines_of.append(lineno)

    def drop(self, i: int, reason: str | None) -> None:
        """Lose sample ``i``; with a ``reason``, report it as its line's error."""
        self.samples[i] = None
        self.dropped = True
        if reason is not None:
            line = self.lines[self.lines_of[i] - 1].removesuffix("\r")
            self.errors.append(LineError(self.source, self.lines_of[i], reason, excerpt(line)))

    def kept(self) -> list[Sample]:
        """The samples left; the errors sorted by line once any sample was dropped."""
        if not self.dropped:
            return cast(list[Sample], self.samples)
        self.errors.sort(key=lambda e: e.line)
        return [s for s in self.samples if s is not None]


_PLAIN_METAS: dict[str, dict[str, MetricMeta]] = {"gauge": {}, "untyped": {}}
_PLAIN_METAS_MAX = 500_000


def plain_metas(names: Iterable[str], kind: MetricType) -> list[MetricMeta]:
    """One help-less ``MetricMeta`` of ``kind`` per name, memoized: the same files are
    re-read every pass. The new ones are made column-wise (:func:`new_metas`): a first
    pass of a ``*.prom`` spool of a million names makes a million of them."""
    memo = _PLAIN_METAS[kind]
    if len(memo) > _PLAIN_METAS_MAX:
        memo.clear()
    names = list(names)
    found = list(map(memo.get, names))
    if None not in found:
        return cast(list[MetricMeta], found)
    missing = list(compress(names, map(is_, found, repeat(None))))
    memo.update(zip(missing, new_metas(missing, kind), strict=True))
    return list(map(memo.__getitem__, names))


_META_SLOTS = tuple(getattr(MetricMeta, f) for f in ("name", "type", "help", "unit"))


def new_metas(names: list[str], kind: MetricType) -> list[MetricMeta]:
    """``[MetricMeta(name, kind) for name in names]``, each field written by its slot in C:
    the dataclass's ``__init__`` (a frozen one sets each field through
    ``object.__setattr__``) costs about a microsecond a record, most of a line's parse."""
    made: list[MetricMeta] = list(map(object.__new__, repeat(MetricMeta, len(names))))
    columns: tuple[Iterable[object], ...] = (names, repeat(kind), repeat(""), repeat(""))
    for slot, column in zip(_META_SLOTS, columns, strict=True):
        deque(map(slot.__set__, made, column), maxlen=0)
    return made


def unescape_help(s: str, *, quote: bool) -> str | None:
    """HELP text unescaped: backslash and ``n`` escapes always, ``"`` too when ``quote``
    (OpenMetrics). None when any other escape is used, so the caller can report the line."""
    if "\\" not in s:
        return s
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            e = s[i + 1 : i + 2]
            if e == "\\" or (quote and e == '"'):
                out.append(e)
            elif e == "n":
                out.append("\n")
            else:
                return None
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def text_lines(
    lines: list[str], check: bool, source: str, errors: list[LineError]
) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each non-empty line the line-by-line parsers must read.

    With ``check`` (from :func:`split_lines`: the text had a CR or a control character),
    a trailing CR is dropped and a line with a control character becomes an error here.
    """
    for lineno, line in enumerate(lines, 1):
        if check:
            if line.endswith("\r"):
                line = line[:-1]
            bad = control_char_reason(line)
            if bad is not None:
                errors.append(LineError(source, lineno, bad, excerpt(line)))
                continue
        if line:
            yield lineno, line
