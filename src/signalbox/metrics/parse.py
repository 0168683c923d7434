"""Pure parsers for the two spool file formats: ``*.metrics`` (key=value) and ``*.prom``.

Both take the whole decoded text of one file and return every good sample *and* one
:class:`LineError` per bad line, so one typo never costs the rest of the file. Nothing
here does I/O or reads the clock: the spool collector decodes (``errors="replace"``),
decides what "now" is and what to do with the errors.

Common rules (both formats)
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
      reported as an error naming both lines -- it is the one whose value was discarded.
      So every line ends up as exactly one of: sample, blank/comment/metadata, error.

``*.metrics`` (Flickr's gmetric-style files)
    ``name=value`` or ``name{shard="7"}=value``, blanks allowed around ``=``, ``#``
    comments. Graphite/StatsD style keys (``image.processed``, ``api-hits``) are mapped
    with :func:`~signalbox.metrics.samples.sanitize_name` so they become valid Prometheus
    names (``image_processed``); anything else outside the alphabet is an error. Every
    metric from these files is a gauge: a file is a snapshot of current values.

``*.prom`` (Prometheus text exposition format 0.0.4, as node_exporter's textfile
collector reads it)
    ``# HELP``, ``# TYPE``, samples with an optional integer timestamp in milliseconds.
    Histogram and summary ``_bucket``/``_sum``/``_count`` samples become plain series;
    the type is recorded once, for the family's base name; a bucket needs a numeric
    ``le`` and a summary quantile a numeric ``quantile``. Undeclared metrics get an
    ``untyped`` :class:`MetricMeta`. A second ``# HELP``/``# TYPE`` for a name, or a
    ``# TYPE`` after that family's samples, is an error line (node_exporter would reject
    the whole file; we keep the rest).

    Timestamp policy: a spool file is a snapshot, so a timestamp is unusual but allowed.
    This parser only checks that it is an integer that fits in 64 bits and stores it in
    ``Sample.timestamp_ms``; whether it is recent enough (the suggested window is the
    last hour up to five minutes ahead) needs "now" and is decided by the spool
    collector, which reports the line otherwise.

Speed: the spool collector re-reads every file each pass, so a 100k-line file must stay
cheap. A clean file (the common case, either format) takes a batch path that does its
per-line work in C (``map`` over ``str`` methods, one ``sanitize_name`` over all names
joined, label sets of one shape split into columns); any irregularity -- an error, a
duplicate, an odd character -- sends the whole file through the line-by-line parser,
which is the reference behaviour and produces the error messages. Tests check that both
paths agree. Two more habits serve the same budget: the cyclic GC is held while a file is
parsed (see :func:`_gc_paused`), and help-less ``MetricMeta`` records are memoized by
name, since the same files come back every pass.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import itemgetter, lt, not_
from typing import cast

from signalbox.exceptions import ParseError
from signalbox.metrics.samples import (
    METRIC_NAME,
    METRIC_TYPES,
    Labels,
    MetricMeta,
    MetricType,
    Sample,
    SeriesKey,
    format_series,
    sanitize_name,
)

__all__ = [
    "LineError",
    "Parsed",
    "blank_split",
    "control_char_reason",
    "excerpt",
    "fast_labels",
    "parse_float",
    "parse_int_ms",
    "parse_keyvalue",
    "parse_prometheus",
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
# Helpers, also used by signalbox.metrics.openmetrics.

# \t is a separator, \n splits lines, \r is handled apart (CRLF is fine, a lone \r is not).
_CTRL_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
_CTRL_LINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
_ASCII_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n"
_ESCAPE_TABLE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPE_TABLE[0xFFFD] = "\\ufffd"
_LABEL_NAME_AT = re.compile(LABEL_RULE)
_TOKEN_AT = re.compile(r'[^=,}"\s]*')
_BLANKS = re.compile(r"[ \t]+")
_DIGIT = re.compile("[0-9]")
_new_sample = tuple.__new__  # Sample(...) minus the Python-level __new__, for hot loops
_make_sample = partial(tuple.__new__, Sample)
_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)


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


def _has_control_chars(text: str) -> bool:
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
    return lines, _has_control_chars(text)


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


def _bulk_labels(tails: list[str]) -> list[Labels] | None:
    """Labels for every line at once, when all label sets have one shape; else None.

    ``tails`` are the label texts after ``{`` (``shard="1",dc="x"}``). Files with labels
    usually repeat the same names in the same order on every line; then one ``split`` of
    all tails joined on ``"`` yields the values column by column, and checking that the
    text between the values is the same on every line validates the lot -- no Python
    loop per line. Such tails are canonical: equal tails mean equal label sets.
    """
    n = len(tails)
    joined = "\n".join(tails)
    if "\\" in joined:
        return None
    parts = joined.split('"')
    between, values = parts[0::2], parts[1::2]  # between[i] precedes values[i]
    k = len(values) // n
    if k == 0 or len(values) != k * n or "" in values:
        return None
    head = between[0]  # 'shard='
    if not head.endswith("="):
        return None
    names = [head[:-1]]
    for j in range(1, k):
        sep = between[j]  # ',dc='
        if len(sep) < 3 or sep[0] != "," or sep[-1] != "=" or between[j::k].count(sep) != n:
            return None
        names.append(sep[1:-1])
    if between[-1] != "}" or between[k:-1:k].count("}\n" + head) != n - 1:
        return None
    for name in names:
        if _LABEL_NAME_AT.fullmatch(name) is None or name.startswith("__"):
            return None
    if len(set(names)) != k:
        return None
    columns = sorted((name, values[j::k]) for j, name in enumerate(names))
    return list(zip(*(zip(repeat(name), vals) for name, vals in columns), strict=True))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold CPython's cyclic GC while building 100k+ tuples.

    CPython (before 3.12's heuristics) runs collections in proportion to container
    allocations, and each full one walks every object built so far: that was 30-40% of
    parse time. Nothing here creates cycles. The previous state is restored, so an
    application that disabled GC itself keeps it disabled.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _duplicate(source: str, lines: list[str], key: SeriesKey, old: int, new: int) -> LineError:
    reason = (
        f"duplicate series {show(format_series(*key), 120)}: "
        f"line {new} overrides line {old} (the later line wins)"
    )
    return LineError(source, old, reason, excerpt(lines[old - 1].removesuffix("\r")))


# ---------------------------------------------------------------------------------------
# *.metrics

_PLAIN_METAS: dict[str, dict[str, MetricMeta]] = {"gauge": {}, "untyped": {}}
_PLAIN_METAS_MAX = 500_000


def _plain_metas(names: Iterable[str], kind: MetricType) -> list[MetricMeta]:
    """One help-less ``MetricMeta`` of ``kind`` per name, memoized: the same files are
    re-read every pass and building a frozen dataclass costs as much as parsing a line."""
    memo = _PLAIN_METAS[kind]
    if len(memo) > _PLAIN_METAS_MAX:
        memo.clear()
    names = list(names)
    found = list(map(memo.get, names))
    if None not in found:
        return cast(list[MetricMeta], found)
    out: list[MetricMeta] = []
    for name, meta in zip(names, found, strict=True):
        if meta is None:
            meta = memo[name] = MetricMeta(name, kind, "")
        out.append(meta)
    return out


def _keyvalue_name(raw: str) -> str:
    """The Prometheus name for a key, or "" when it is not valid even after sanitizing."""
    name = sanitize_name(raw)
    return name if METRIC_NAME.match(name) else ""


def parse_keyvalue(text: str, source: str, *, metas: bool = True) -> Parsed:
    """Parse a ``*.metrics`` spool file (see the module docstring for the rules).

    ``metas=False`` skips the (all-gauge) metadata records: the collector stores none for
    key=value metrics since gauge is the default.
    """
    with _gc_paused():
        fast = _keyvalue_batch(text, metas)
        return fast if fast is not None else _keyvalue_lines(text, source, metas)


def _columns(rows: Iterable[tuple[str, str, str]]) -> tuple[list[str], list[str], list[str]]:
    """``str.partition`` results, transposed in C (faster than ``zip(*rows)``)."""
    table = list(rows)
    return list(map(_first, table)), list(map(_second, table)), list(map(_third, table))


def _float_column(values: list[str]) -> list[float] | None:
    """Every value as :func:`parse_float` reads it, or None if any is not a number."""
    try:
        floats = list(map(float, values))
    except ValueError:
        return None
    joined = "".join(values)
    if "_" in joined or not joined.isascii():
        return None
    return floats


def _valid_names(names: list[str]) -> bool:
    """Does every name match ``[a-zA-Z_:][a-zA-Z0-9_:]*``? Checked on all names joined."""
    if "" in names:
        return False
    flat = "".join(names).replace(":", "_")
    if not (flat.isascii() and flat.isidentifier()):
        return False
    return _DIGIT.search("".join(map(_first, names))) is None


def _label_column(tails: list[str]) -> tuple[list[Labels], list[str]] | None:
    """Labels per line from the texts after ``{`` ("" for no label set), plus a key suffix
    per line that tells label sets apart; None if any label set is not clean."""
    labels = _bulk_labels(tails)
    if labels is not None:
        return labels, tails  # canonical, and all start with the same label name
    parsed: dict[str, Labels] = {"": (), "}": ()}
    canon: dict[str, str] = {"": "", "}": ""}
    for tail in set(tails).difference(parsed):
        got = fast_labels(tail)
        if got is None:
            r = scan_labels(tail, 0)
            if isinstance(r, str) or r[1] != len(tail):
                return None
            got = r[0]
        parsed[tail] = got
        canon[tail] = repr(got) if got else ""
    return list(map(parsed.__getitem__, tails)), list(map(canon.__getitem__, tails))


def _keyvalue_batch(text: str, metas: bool = True) -> Parsed | None:
    """All-or-nothing fast path: the parse of a flawless file, or None to go line by line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if _has_control_chars(text):
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    blanks = " " in text or "\t" in text
    if blanks:
        lines = list(map(str.strip, lines, repeat(" \t")))
    if "#" in text or "" in lines:  # keep lines that are non-empty and not comments
        is_comment = map(str.startswith, lines, repeat("#"))
        lines = list(compress(lines, map(lt, is_comment, map(bool, lines))))
    if not lines:
        return Parsed([], [], [])
    lefts, seps, values = _columns(map(str.rpartition, lines, repeat("=")))
    if "" in seps:
        return None
    floats = _float_column(values)
    if floats is None:
        return None
    if blanks:
        lefts = list(map(str.rstrip, lefts, repeat(" \t")))
    labels: list[Labels] | None = None
    keys: list[str] | None = None
    heads = lefts
    if "{" in text:
        heads, braces, tails = _columns(map(str.partition, lefts, repeat("{")))
        if tails.count("") != braces.count(""):  # a "{" with nothing after it
            return None
        column = _label_column(tails)
        if column is None:
            return None
        labels, suffixes = column
        if blanks:
            heads = list(map(str.rstrip, heads, repeat(" \t")))
    if "" in heads:
        return None
    names = sanitize_name("\n".join(heads)).split("\n")
    if not _valid_names(names):
        return None
    unique = dict.fromkeys(names)
    if labels is not None:
        keys = list(map(str.__add__, names, suffixes))
    if len(set(keys) if keys is not None else unique) != len(names):
        return None  # a duplicate series: the line parser reports it
    samples = list(map(_make_sample, zip(names, labels or repeat(()), floats, repeat(None))))
    return Parsed(samples, _plain_metas(unique, "gauge") if metas else [], [])


def _keyvalue_lines(text: str, source: str, metas: bool = True) -> Parsed:
    """The reference parser: one line at a time, every problem reported."""
    lines, check = split_lines(text)
    samples: list[Sample | None] = []
    sample_lines: list[int] = []
    errors: list[LineError] = []
    seen: dict[SeriesKey, int] = {}
    names: dict[str, str] = {}  # raw key -> sanitized name, "" if invalid
    no_labels: Labels = ()
    dups = False
    for lineno, line in enumerate(lines, 1):
        if check:
            if line.endswith("\r"):
                line = line[:-1]
            bad = control_char_reason(line)
            if bad is not None:
                errors.append(LineError(source, lineno, bad, excerpt(line)))
                continue
        if not line:
            continue
        c = line[0]
        if c == "#":
            continue
        if c == " " or c == "\t":
            line = line.lstrip(" \t")
            if not line or line[0] == "#":
                continue
        eq = line.find("=")
        if eq < 0:
            errors.append(LineError(source, lineno, "expected NAME=VALUE", excerpt(line)))
            continue
        brace = line.find("{", 0, eq)
        if brace < 0:
            raw = line[:eq].rstrip(" \t")
            value = line[eq + 1 :].strip(" \t")
            labels = no_labels
        else:
            raw = line[:brace].rstrip(" \t")
            last = line.rfind("=")
            fast = fast_labels(line[brace + 1 : last].rstrip(" \t"))
            if fast is not None:
                labels = fast
                value = line[last + 1 :].strip(" \t")
            else:
                r = scan_labels(line, brace + 1)
                if isinstance(r, str):
                    errors.append(LineError(source, lineno, r, excerpt(line)))
                    continue
                labels, end = r
                rest = line[end:].lstrip(" \t")
                if not rest.startswith("="):
                    reason = "expected '=' after the label set: NAME{LABELS}=VALUE"
                    errors.append(LineError(source, lineno, reason, excerpt(line)))
                    continue
                value = rest[1:].strip(" \t")
        name = names.get(raw)
        if name is None:
            name = names[raw] = _keyvalue_name(raw)
        if not name:
            if not raw:
                reason = "missing metric name: expected NAME=VALUE"
            else:
                reason = (
                    f"invalid metric name '{show(raw)}': must match {NAME_RULE} "
                    "('.', '-' and '/' are turned into '_')"
                )
            errors.append(LineError(source, lineno, reason, excerpt(line)))
            continue
        if not value:
            errors.append(
                LineError(source, lineno, "missing value: expected NAME=VALUE", excerpt(line))
            )
            continue
        v = parse_float(value)
        if v is None:
            reason = f"value '{show(value)}' is not a number"
            errors.append(LineError(source, lineno, reason, excerpt(line)))
            continue
        key = (name, labels)
        prev = seen.get(key)
        if prev is not None:
            samples[prev] = None
            errors.append(_duplicate(source, lines, key, sample_lines[prev], lineno))
            dups = True
        seen[key] = len(samples)
        samples.append(_new_sample(Sample, (name, labels, v, None)))
        sample_lines.append(lineno)
    good = [s for s in samples if s is not None] if dups else cast(list[Sample], samples)
    if dups:
        errors.sort(key=lambda e: e.line)
    return Parsed(good, _plain_metas(dict.fromkeys(s[0] for s in good), "gauge") if metas else [], errors)


# ---------------------------------------------------------------------------------------
# *.prom

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}
_SAMPLE_SHAPE = "expected NAME[{LABELS}] VALUE [TIMESTAMP]"


def _unescape_help(s: str) -> str | None:
    """HELP text escapes of format 0.0.4 (``\\\\`` and ``\\n``); None if another escape is used."""
    if "\\" not in s:
        return s
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            e = s[i + 1 : i + 2]
            if e == "\\":
                out.append("\\")
            elif e == "n":
                out.append("\n")
            else:
                return None
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _tab_partition(s: str) -> tuple[str, str, str]:
    parts = _BLANKS.split(s, maxsplit=1)
    return (parts[0], " ", parts[1]) if len(parts) == 2 else (parts[0], "", "")


class _PromMeta:
    """``# HELP``/``# TYPE`` bookkeeping for one file."""

    __slots__ = ("first_line", "helps", "order", "types")

    def __init__(self) -> None:
        self.types: dict[str, tuple[MetricType, int]] = {}
        self.helps: dict[str, tuple[str, int]] = {}
        self.order: dict[str, None] = {}  # declared names, in order of first mention
        self.first_line: dict[str, int] = {}  # sample name -> line it first appeared on

    def comment(self, line: str, lineno: int) -> str | None:
        """Handle a ``#`` line; returns an error reason or None (comment or metadata)."""
        body = line[1:].lstrip(" \t")
        keyword = body[:4]
        if keyword not in ("HELP", "TYPE") or body[4:5] not in ("", " ", "\t"):
            return None  # an ordinary comment
        rest = body[4:].lstrip(" \t")
        name, _, arg = rest.partition(" ") if "\t" not in rest else _tab_partition(rest)
        if not name:
            return f"expected '# {keyword} NAME ...': metric name missing"
        if not METRIC_NAME.match(name):
            return f"invalid metric name '{show(name)}' in # {keyword}: must match {NAME_RULE}"
        arg = arg.lstrip(" \t")
        if keyword == "HELP":
            if name in self.helps:
                return f"second # HELP for '{name}' (first on line {self.helps[name][1]})"
            text = _unescape_help(arg)
            if text is None:
                return f"invalid escape in # HELP for '{name}': only \\\\ and \\n are allowed"
            self.helps[name] = (text, lineno)
            self.order.setdefault(name)
            return None
        t = arg.strip(" \t")
        if t not in METRIC_TYPES:
            return (
                f"unknown metric type '{show(t)}' for '{name}': "
                "expected counter, gauge, histogram, summary or untyped"
            )
        if name in self.types:
            return f"second # TYPE for '{name}' (first on line {self.types[name][1]})"
        members = (name, *(name + s for s in _SUFFIXES.get(t, ())))
        first = self.first_line
        earlier = [first[m] for m in members if m in first and first[m] < lineno]
        if earlier:
            return (
                f"# TYPE for '{name}' comes after its samples (line {min(earlier)}); "
                "it must come before them"
            )
        self.types[name] = (cast(MetricType, t), lineno)
        self.order.setdefault(name)
        return None

    def family(self, name: str) -> tuple[str, str]:
        """Family and type of a sample name, once all ``# TYPE`` lines are known."""
        types = self.types
        for kind, suffixes in _SUFFIXES.items():
            for suffix in suffixes:
                if name.endswith(suffix):
                    t = types.get(name[: -len(suffix)])
                    if t is not None and t[0] == kind:
                        return name[: -len(suffix)], kind
        t = types.get(name)
        return name, (t[0] if t is not None else "untyped")

    def metas(self, sample_names: dict[str, None]) -> list[MetricMeta]:
        """Declared families first, then one ``untyped`` meta per undeclared family."""
        out: list[MetricMeta] = []
        for name in self.order:
            t = self.types.get(name)
            h = self.helps.get(name)
            out.append(MetricMeta(name, t[0] if t else "untyped", h[0] if h else ""))
        if any(t[0] in _SUFFIXES for t in self.types.values()):
            families = dict.fromkeys(self.family(n)[0] for n in sample_names)
        else:
            families = sample_names
        undeclared = [n for n in families if n not in self.order]
        return out + _plain_metas(undeclared, "untyped")


def _check_family_labels(name: str, labels: Labels, family: str, kind: str) -> str | None:
    """Histogram buckets need a numeric ``le``; summary quantiles a numeric ``quantile``."""
    if kind == "histogram":
        if name != family + "_bucket":
            return None
        label = "le"
    elif name == family:
        label = "quantile"
    else:
        return None
    for k, v in labels:
        if k == label:
            if parse_float(v) is None:
                return f"{kind} '{family}': {label} value '{show(v)}' is not a number"
            return None
    return f"{kind} '{family}': sample '{name}' needs a '{label}' label"


def parse_prometheus(text: str, source: str) -> Parsed:
    """Parse a ``*.prom`` spool file: Prometheus text format 0.0.4 (see module docstring)."""
    with _gc_paused():
        fast = _prometheus_batch(text)
        return fast if fast is not None else _prometheus_lines(text, source)


def _prometheus_batch(text: str) -> Parsed | None:
    """All-or-nothing fast path, as for ``*.metrics``: None sends the file line by line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if _has_control_chars(text) or not text.isascii():
        return None
    if text.startswith((" ", "\t")) or "\n " in text or "\n\t" in text:
        return None  # indented lines: rare, left to the line parser
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    n = len(lines)
    numbers = list(range(1, n + 1))
    comment_lines: list[tuple[int, str]] = []
    if "#" in text or "" in lines:
        is_comment = list(map(str.startswith, lines, repeat("#")))
        comment_lines = list(
            zip(compress(numbers, is_comment), compress(lines, is_comment), strict=True)
        )
        keep = list(map(lt, is_comment, map(bool, lines)))
        lines, numbers = list(compress(lines, keep)), list(compress(numbers, keep))
    if not lines:
        rows: tuple[list[int], list[str], list[Labels], list[float], list[int | None]] | None
        rows = ([], [], [], [], [])
    else:
        rows = _prometheus_rows(lines, numbers)
    if rows is None:
        return None
    line_of, names, labels, values, stamps = rows
    meta = _PromMeta()
    meta.first_line.update(zip(reversed(names), reversed(line_of), strict=True))
    for lineno, line in comment_lines:
        if meta.comment(line, lineno) is not None:
            return None
    unique = dict.fromkeys(names)
    if any(t[0] in _SUFFIXES for t in meta.types.values()):
        members = {n: f for n in unique if (f := meta.family(n))[1] in _SUFFIXES}
        for name, label_set in zip(names, labels, strict=True):
            if name in members:
                family, kind = members[name]
                if _check_family_labels(name, label_set, family, kind) is not None:
                    return None
    samples = list(map(_make_sample, zip(names, labels, values, stamps, strict=True)))
    return Parsed(samples, meta.metas(unique), [])


def _prometheus_rows(
    lines: list[str], numbers: list[int]
) -> tuple[list[int], list[str], list[Labels], list[float], list[int | None]] | None:
    """Columns (line number, name, labels, value, timestamp) of clean sample lines, in order."""
    labelled = list(map(str.__contains__, lines, repeat("{")))
    plain_lines = list(compress(lines, map(not_, labelled)))
    label_lines = list(compress(lines, labelled))
    names: list[str] = []
    labels: list[Labels] = []
    keys: list[str] = []
    rests: list[str] = []
    if plain_lines:
        if "\t" in "".join(plain_lines):
            return None
        names, blanks, rests = _columns(map(str.partition, plain_lines, repeat(" ")))
        if "" in blanks:
            return None
        labels = [()] * len(names)
        keys = names
    if label_lines:
        lefts, braces, label_rests = _columns(map(str.rpartition, label_lines, repeat("}")))
        if "" in braces:
            return None
        heads, _, tails = _columns(map(str.partition, lefts, repeat("{")))
        column = _label_column(list(map(str.__add__, tails, repeat("}"))))
        if column is None:
            return None
        names = names + heads
        labels = labels + column[0]
        keys = keys + list(map(str.__add__, heads, column[1]))
        rests = rests + label_rests
        numbers = list(compress(numbers, map(not_, labelled))) + list(compress(numbers, labelled))
    if not _valid_names(names) or len(set(keys)) != len(keys):
        return None
    columns = _value_columns(rests)
    if columns is None:
        return None
    values, stamps = columns
    if plain_lines and label_lines:  # back into line order
        order = sorted(range(len(numbers)), key=numbers.__getitem__)
        return (
            sorted(numbers),
            list(map(names.__getitem__, order)),
            list(map(labels.__getitem__, order)),
            list(map(values.__getitem__, order)),
            list(map(stamps.__getitem__, order)),
        )
    return numbers, names, labels, values, stamps


def _value_columns(rests: list[str]) -> tuple[list[float], list[int | None]] | None:
    """Values and timestamps from the ``VALUE [TIMESTAMP]`` text after each name/label set."""
    stripped = list(map(str.strip, rests))
    joined = "".join(stripped)
    if " " not in joined and "\t" not in joined:  # no timestamps: the usual spool file
        if "" in stripped:
            return None
        values = _float_column(stripped)
        return None if values is None else (values, [None] * len(values))
    fields = list(map(str.split, stripped))
    counts = set(map(len, fields))
    if not counts <= {1, 2}:
        return None
    values = _float_column(list(map(_first, fields)))
    if values is None:
        return None
    stamps: list[int | None] = [None] * len(fields)
    for i in compress(range(len(fields)), map((2).__eq__, map(len, fields))):
        ms = parse_int_ms(fields[i][1])
        if isinstance(ms, str):
            return None
        stamps[i] = ms
    return values, stamps


def _prometheus_lines(text: str, source: str) -> Parsed:
    lines, check = split_lines(text)
    ascii_text = text.isascii()
    samples: list[Sample | None] = []
    sample_lines: list[int] = []
    errors: list[LineError] = []
    seen: dict[SeriesKey, int] = {}
    meta = _PromMeta()
    first_line = meta.first_line
    valid_name: dict[str, bool] = {}
    no_labels: Labels = ()
    dups = False
    for lineno, line in enumerate(lines, 1):
        if check:
            if line.endswith("\r"):
                line = line[:-1]
            bad = control_char_reason(line)
            if bad is not None:
                errors.append(LineError(source, lineno, bad, excerpt(line)))
                continue
        if not line:
            continue
        c = line[0]
        if c == " " or c == "\t":
            line = line.lstrip(" \t")
            if not line:
                continue
            c = line[0]
        if c == "#":
            bad = meta.comment(line, lineno)
            if bad is not None:
                errors.append(LineError(source, lineno, bad, excerpt(line)))
            continue
        brace = line.find("{")
        if brace < 0:
            fields = line.split() if ascii_text else blank_split(line)
            name = fields[0]
            labels = no_labels
            nf = len(fields) - 1
            value = fields[1] if nf > 0 else ""
            stamp = fields[2] if nf == 2 else ""
        else:
            name = line[:brace].rstrip(" \t")
            if not name:
                reason = f"missing metric name before '{{': {_SAMPLE_SHAPE}"
                errors.append(LineError(source, lineno, reason, excerpt(line)))
                continue
            end = line.rfind("}") + 1
            fast = fast_labels(line[brace + 1 : end]) if end else None
            if fast is not None:
                labels = fast
            else:
                r = scan_labels(line, brace + 1)
                if isinstance(r, str):
                    errors.append(LineError(source, lineno, r, excerpt(line)))
                    continue
                labels, end = r
            fields = blank_split(line[end:])
            nf = len(fields)
            value = fields[0] if nf > 0 else ""
            stamp = fields[1] if nf == 2 else ""
        ok = valid_name.get(name)
        if ok is None:
            ok = valid_name[name] = METRIC_NAME.match(name) is not None
            first_line[name] = lineno
        if not ok:
            reason = f"invalid metric name '{show(name)}': must match {NAME_RULE}"
            errors.append(LineError(source, lineno, reason, excerpt(line)))
            continue
        if nf == 0 or nf > 2:
            what = "missing value" if nf == 0 else "unexpected text after the timestamp"
            errors.append(LineError(source, lineno, f"{what}: {_SAMPLE_SHAPE}", excerpt(line)))
            continue
        try:
            v = float(value)
        except ValueError:
            v = None
        if v is None or "_" in value or not value.isascii():
            reason = f"value '{show(value)}' is not a number"
            errors.append(LineError(source, lineno, reason, excerpt(line)))
            continue
        ts: int | None = None
        if stamp:
            t = parse_int_ms(stamp)
            if isinstance(t, str):
                errors.append(LineError(source, lineno, t, excerpt(line)))
                continue
            ts = t
        key = (name, labels)
        prev = seen.get(key)
        if prev is not None:
            samples[prev] = None
            errors.append(_duplicate(source, lines, key, sample_lines[prev], lineno))
            dups = True
        seen[key] = len(samples)
        samples.append(_new_sample(Sample, (name, labels, v, ts)))
        sample_lines.append(lineno)
    names = dict.fromkeys(s[0] for s in samples if s is not None)
    if any(t[0] in _SUFFIXES for t in meta.types.values()):
        dups |= _check_families(source, lines, meta, names, samples, sample_lines, errors)
    good = [s for s in samples if s is not None] if dups else cast(list[Sample], samples)
    if dups:
        errors.sort(key=lambda e: e.line)
        names = dict.fromkeys(s[0] for s in good)
    return Parsed(good, meta.metas(names), errors)


def _check_families(
    source: str,
    lines: list[str],
    meta: _PromMeta,
    names: dict[str, None],
    samples: list[Sample | None],
    sample_lines: list[int],
    errors: list[LineError],
) -> bool:
    """Drop histogram/summary samples lacking their ``le``/``quantile``; True if any was."""
    members = {n: f for n in names if (f := meta.family(n))[1] in _SUFFIXES}
    dropped = False
    for i, s in enumerate(samples):
        if s is None or s[0] not in members:
            continue
        family, kind = members[s[0]]
        bad = _check_family_labels(s[0], s[1], family, kind)
        if bad is not None:
            samples[i] = None
            line = lines[sample_lines[i] - 1].removesuffix("\r")
            errors.append(LineError(source, sample_lines[i], bad, excerpt(line)))
            dropped = True
    return dropped
