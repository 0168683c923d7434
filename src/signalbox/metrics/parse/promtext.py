"""The ``*.prom`` spool file parser: Prometheus text exposition format 0.0.4, as
node_exporter's textfile collector reads it.

``# HELP``, ``# TYPE``, samples with an optional integer timestamp in milliseconds.
Histogram and summary ``_bucket``/``_sum``/``_count`` samples become plain series;
the type is recorded once, for the family's base name; a bucket needs a numeric
``le`` and a summary quantile a numeric ``quantile``. Undeclared metrics get an
``untyped`` :class:`MetricMeta`. A second ``# HELP``/``# TYPE`` for a name, or a
``# TYPE`` after that family's samples, is an error line (node_exporter would reject
the whole file; we keep the rest). Other comments are ignored here, ``# stale_after: 25h``
included: the spool scanner reads that one (:mod:`signalbox.metrics.parse.stale_after`).

Timestamp policy: a spool file is a snapshot, so a timestamp is unusual but allowed.
This parser only checks that it is an integer that fits in 64 bits and stores it in
``Sample.timestamp_ms``; whether it is recent enough (the suggested window is the
last hour up to five minutes ahead) needs "now" and is decided by the spool
collector, which reports the line otherwise.

The rules shared with ``*.metrics`` files (line splitting, bad bytes, labels,
duplicates) are in :mod:`signalbox.metrics.parse.lex`; the fast path for clean files in
:mod:`signalbox.metrics.parse.columns`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import itemgetter, lt, not_

from signalbox.metrics.parse.columns import (
    float_column,
    label_column,
    partition_columns,
    valid_names,
    value_columns,
)
from signalbox.metrics.parse.lex import (
    NAME_RULE,
    LineError,
    LineSamples,
    Parsed,
    blank_split,
    excerpt,
    fast_labels,
    gc_paused,
    has_control_chars,
    parse_int_ms,
    scan_labels,
    show,
    split_lines,
    text_lines,
)
from signalbox.metrics.parse.prommeta import FAMILY_SUFFIXES, PromMeta, check_family_labels
from signalbox.metrics.samples import METRIC_NAME, Labels, Sample, SeriesColumns

__all__ = [
    "PromShape",
    "parse_prometheus",
    "prometheus_series",
    "prometheus_shape",
    "prometheus_shape_of",
]

_new_sample = tuple.__new__  # Sample(...) minus the Python-level __new__, for hot loops
_make_sample = partial(tuple.__new__, Sample)
_first, _second = itemgetter(0), itemgetter(1)

_SAMPLE_SHAPE = "expected NAME[{LABELS}] VALUE [TIMESTAMP]"


def parse_prometheus(text: str, source: str, *, shape: PromShape | None = None) -> Parsed:
    """Parse a ``*.prom`` spool file: Prometheus text format 0.0.4 (see module docstring).

    ``shape``: what :func:`prometheus_shape_of` answered for this text, when the caller
    has it already (the spool scanner computes a file's shape first): a file with a shape
    is parsed from it, its lines not split again nor its values read twice."""
    with gc_paused():
        if shape is None:
            shape = prometheus_shape_of(text)
        fast = _batch_of_shape(shape) if shape is not None else None
        if fast is None:
            fast = _prometheus_batch(text)
        return fast if fast is not None else _prometheus_lines(text, source)


@dataclass(slots=True)
class PromShape:
    """A file's sample lines up to their values (``lefts``), its values, the line number of
    each sample line and its comment lines with theirs: what :func:`prometheus_shape` and
    the batch parser both need, taken from the text once."""

    lefts: list[str]
    values: list[float]
    numbers: list[int]
    comments: list[tuple[int, str]]

    def text(self) -> str:
        """The shape itself (see :func:`prometheus_shape`)."""
        where = ""  # where each comment stands: how many sample lines precede it
        if self.comments:
            before = [bisect_left(self.numbers, lineno) for lineno, _ in self.comments]
            where = ",".join(map(str, before))
        comments = "\n".join(map(_second, self.comments))
        # the text has no NUL (a control character): the three parts cannot run into each other
        return "\n".join(self.lefts) + "\0" + where + "\0" + comments


def prometheus_shape(text: str) -> tuple[str, list[float]] | None:
    """A file's *shape* -- its text without the values: every sample line up to its value,
    in order, and every comment line (``# HELP`` and ``# TYPE`` included) where it stands --
    and its values; None for a file that must be parsed every pass.

    Two files of one shape parse to the same series, metadata and errors, in the same order
    (every text the parser reads besides the values is in the shape), so a store that holds a
    shape needs only the values, as for ``*.metrics`` files
    (:func:`~signalbox.metrics.parse.keyvalue.keyvalue_shape`). None for files with a
    timestamp on any line (a stamped sample is checked against the time of each pass, and
    a frame is stored at that time), and for files the batch parser would not take
    (indented lines, non-ASCII text, control characters, a value that is not a number).
    """
    got = prometheus_shape_of(text)
    return None if got is None else (got.text(), got.values)


def prometheus_shape_of(text: str) -> PromShape | None:
    """:func:`prometheus_shape` as its parts, for the parser to go on from."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if has_control_chars(text) or not text.isascii():
        return None
    if text.startswith((" ", "\t")) or "\n " in text or "\n\t" in text:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    numbers = range(1, len(lines) + 1)
    comments: list[tuple[int, str]] = []
    if "#" in text or "" in lines:
        is_comment = list(map(str.startswith, lines, repeat("#")))
        is_sample = list(map(lt, is_comment, map(bool, lines)))
        comments = list(
            zip(compress(numbers, is_comment), compress(lines, is_comment), strict=True)
        )
        lines = list(compress(lines, is_sample))
        numbers = list(compress(numbers, is_sample))  # type: ignore[assignment]
    split = _split_values(lines)
    if split is None:
        return None
    lefts, texts = split
    joined = "".join(texts)
    if "" in texts or " " in joined or "\t" in joined:
        return None  # a missing value, or a timestamp (or more) after it
    values = float_column(texts)
    if values is None:
        return None
    return PromShape(lefts, values, list(numbers), comments)


def prometheus_series(shape: PromShape) -> SeriesColumns | None:
    """The series of a file of :class:`PromShape` ``shape`` column-wise, when it has no
    comment line (so no ``# TYPE`` or ``# HELP``: every name is ``untyped``) and every line
    no label set, or every line one name and a label set of one shape; None for any other
    file (the parser then reads it, to the same series: a test checks they agree). For a
    first pass, as :func:`~signalbox.metrics.parse.keyvalue.keyvalue_series`."""
    lefts = shape.lefts
    n = len(lefts)
    if shape.comments or not n:
        return None
    joined = "\n".join(lefts)
    if "{" not in joined:
        if not valid_names(lefts) or len(set(lefts)) != n:
            return None
        return SeriesColumns(lefts, (), [], shape.values)
    head, brace, _ = lefts[0].partition("{")
    prefix = head + brace
    if not head or not valid_names([head]) or joined.count("\n" + prefix) != n - 1:
        return None
    if not joined.startswith(prefix):
        return None
    got = value_columns(joined.replace("\n" + prefix, "\n")[len(prefix) :], n)
    if got is None or len(set(lefts)) != n:
        return None  # irregular labels, or a series twice: the parser reads it
    label_names, columns = got
    shared = [[col[0]] * n if col.count(col[0]) == n else col for col in columns]
    return SeriesColumns([head] * n, tuple(label_names), shared, shape.values)


def _batch_of_shape(shape: PromShape) -> Parsed | None:
    """The batch parse of a file from its :class:`PromShape` (no timestamps); None for a
    file it would not take so (the caller tries the other paths)."""
    lefts = shape.lefts
    if not lefts:
        return _meta_parse(shape.numbers, [], [], [], [], shape.comments)
    names = lefts
    no_labels: Labels = ()
    labels: list[Labels] = [no_labels] * len(lefts)
    keys: list[str] = lefts
    if "{" in "".join(lefts):
        heads, _, tails = partition_columns(map(str.partition, lefts, repeat("{")))
        column = label_column(tails)
        if column is None:
            return None
        names, labels = heads, column[0]
        keys = list(map(str.__add__, heads, column[1]))
    if not valid_names(names) or len(set(keys)) != len(keys):
        return None
    stamps: list[int | None] = [None] * len(names)
    return _meta_parse(shape.numbers, names, labels, shape.values, stamps, shape.comments)


def _meta_parse(
    line_of: list[int],
    names: list[str],
    labels: list[Labels],
    values: list[float],
    stamps: list[int | None],
    comment_lines: list[tuple[int, str]],
) -> Parsed | None:
    """The batch parse of a file's clean sample rows and comment lines: metadata read,
    histogram and summary labels checked; None for anything the line parser must explain."""
    meta = PromMeta()
    if comment_lines:  # where each name first appears: for a # TYPE after its samples
        meta.first_line.update(zip(reversed(names), reversed(line_of), strict=True))
    for lineno, line in comment_lines:
        if meta.comment(line, lineno) is not None:
            return None
    unique = dict.fromkeys(names)
    if any(t[0] in FAMILY_SUFFIXES for t in meta.types.values()):
        members = {n: f for n in unique if (f := meta.family(n))[1] in FAMILY_SUFFIXES}
        for name, label_set in zip(names, labels, strict=True):
            if name in members:
                family, kind = members[name]
                if check_family_labels(name, label_set, family, kind) is not None:
                    return None
    samples = list(map(_make_sample, zip(names, labels, values, stamps, strict=True)))
    return Parsed(samples, meta.metas(unique), [])


def _split_values(lines: list[str]) -> tuple[list[str], list[str]] | None:
    """Each sample line's text up to its value (the label set's ``}`` included) and the
    value text after it (stripped); None for a line with no value."""
    if not lines:
        return [], []
    labelled = list(map(str.__contains__, lines, repeat("{")))
    if not any(labelled):  # NAME VALUE
        lefts, blanks, rests = partition_columns(map(str.partition, lines, repeat(" ")))
    elif all(labelled):  # NAME{LABELS} VALUE
        heads, blanks, rests = partition_columns(map(str.rpartition, lines, repeat("}")))
        lefts = list(map(str.__add__, heads, repeat("}")))
    else:
        lefts, rests, blanks = [], [], []
        for line, braced in zip(lines, labelled, strict=True):
            head, blank, rest = line.rpartition("}") if braced else line.partition(" ")
            lefts.append(head + "}" if braced else head)
            blanks.append(blank)
            rests.append(rest)
    if "" in blanks:
        return None
    return lefts, list(map(str.strip, rests))


def _prometheus_batch(text: str) -> Parsed | None:
    """All-or-nothing fast path, as for ``*.metrics``: None sends the file line by line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if has_control_chars(text) or not text.isascii():
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
    return _meta_parse(*rows, comment_lines)


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
        names, blanks, rests = partition_columns(map(str.partition, plain_lines, repeat(" ")))
        if "" in blanks:
            return None
        labels = [()] * len(names)
        keys = names
    if label_lines:
        lefts, braces, label_rests = partition_columns(
            map(str.rpartition, label_lines, repeat("}"))
        )
        if "" in braces:
            return None
        heads, _, tails = partition_columns(map(str.partition, lefts, repeat("{")))
        column = label_column(list(map(str.__add__, tails, repeat("}"))))
        if column is None:
            return None
        names = names + heads
        labels = labels + column[0]
        keys = keys + list(map(str.__add__, heads, column[1]))
        rests = rests + label_rests
        numbers = list(compress(numbers, map(not_, labelled))) + list(compress(numbers, labelled))
    if not valid_names(names) or len(set(keys)) != len(keys):
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
        values = float_column(stripped)
        return None if values is None else (values, [None] * len(values))
    fields = list(map(str.split, stripped))
    counts = set(map(len, fields))
    if not counts <= {1, 2}:
        return None
    values = float_column(list(map(_first, fields)))
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
    errors: list[LineError] = []
    kept = LineSamples(source, lines, errors)
    meta = PromMeta()
    first_line = meta.first_line
    valid_name: dict[str, bool] = {}
    no_labels: Labels = ()
    for lineno, line in text_lines(lines, check, source, errors):
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
        kept.add(_new_sample(Sample, (name, labels, v, ts)), lineno)
    names = dict.fromkeys(s[0] for s in kept.samples if s is not None)
    if any(t[0] in FAMILY_SUFFIXES for t in meta.types.values()):
        _check_families(meta, names, kept)
    good = kept.kept()
    if kept.dropped:
        names = dict.fromkeys(s[0] for s in good)
    return Parsed(good, meta.metas(names), errors)


def _check_families(meta: PromMeta, names: dict[str, None], kept: LineSamples) -> None:
    """Drop histogram/summary samples lacking their ``le``/``quantile``."""
    members = {n: f for n in names if (f := meta.family(n))[1] in FAMILY_SUFFIXES}
    for i, s in enumerate(kept.samples):
        if s is None or s[0] not in members:
            continue
        family, kind = members[s[0]]
        bad = check_family_labels(s[0], s[1], family, kind)
        if bad is not None:
            kept.drop(i, bad)
