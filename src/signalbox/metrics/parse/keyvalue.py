"""The ``*.metrics`` spool file parser (Flickr's gmetric-style key=value files).

``name=value`` or ``name{shard="7"}=value``, blanks allowed around ``=``, ``#``
comments. Graphite/StatsD style keys (``image.processed``, ``api-hits``) are mapped
with :func:`~signalbox.metrics.samples.sanitize_name` so they become valid Prometheus
names (``image_processed``); anything else outside the alphabet is an error. Every
metric from these files is a gauge: a file is a snapshot of current values. A
``# stale_after: 25h`` comment is read by the spool scanner, not here
(:mod:`signalbox.metrics.parse.stale_after`): like every comment it is not part of the shape.

The rules shared with ``*.prom`` files (line splitting, bad bytes, labels, duplicates)
are in :mod:`signalbox.metrics.parse.lex`; the fast path for clean files in
:mod:`signalbox.metrics.parse.columns`.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress, repeat
from operator import contains, lt

from signalbox.metrics.parse.columns import (
    PairCache,
    float_column,
    label_column,
    label_sets,
    partition_columns,
    valid_names,
    value_columns,
)
from signalbox.metrics.parse.lex import (
    NAME_RULE,
    LineError,
    LineSamples,
    Parsed,
    excerpt,
    fast_labels,
    gc_paused,
    has_control_chars,
    parse_float,
    plain_metas,
    scan_labels,
    show,
    split_lines,
    text_lines,
)
from signalbox.metrics.samples import METRIC_NAME, Labels, Sample, SeriesColumns, sanitize_name

__all__ = ["keyvalue_columns", "keyvalue_series", "keyvalue_shape", "parse_keyvalue"]

Columns = tuple[list[str], list[float]]
"""A clean file's left sides (the text left of each ``=``, stripped) and values."""

_new_sample = tuple.__new__  # Sample(...) minus the Python-level __new__, for hot loops


def _keyvalue_name(raw: str) -> str:
    """The Prometheus name for a key, or "" when it is not valid even after sanitizing."""
    name = sanitize_name(raw)
    return name if METRIC_NAME.match(name) else ""


def parse_keyvalue(
    text: str,
    source: str,
    *,
    metas: bool = True,
    columns: Columns | None = None,
    pairs: PairCache | None = None,
) -> Parsed:
    """Parse a ``*.metrics`` spool file (see the module docstring for the rules).

    ``metas=False`` skips the (all-gauge) metadata records: the collector stores none for
    key=value metrics since gauge is the default. ``columns``: what
    :func:`keyvalue_columns` answered for this text, when the caller has it already (the
    spool scanner computes a file's shape first). ``pairs``: label pairs to share with
    the other files of a scan (see :data:`~signalbox.metrics.parse.columns.PairCache`).
    """
    with gc_paused():
        fast = _batch_of_columns(_columns(text) if columns is None else columns, metas, pairs)
        return fast if fast is not None else _keyvalue_lines(text, source, metas)


def keyvalue_columns(text: str) -> Columns | None:
    """The left sides and values of a clean file (its shape is the left sides, one a line);
    None for any file the batch parser would not take."""
    return _columns(text)


def keyvalue_series(columns: Columns) -> SeriesColumns | None:
    """A clean file's series column-wise, from its :func:`keyvalue_columns`, when every
    line has no label set, or every line one name and a label set of one shape (the usual
    files); None for any other file (:func:`parse_keyvalue` then reads it, as it reads
    these to the same series: a test checks they agree).

    For a first pass: the store makes each series' key from the columns
    (:func:`~signalbox.metrics.labelcodec.column_keys`), so no label tuple nor sample is
    made per line (a million lines: ~0.8 s and ~150 MB less)."""
    lefts, floats = columns
    if not lefts:
        return None
    shape = "\n".join(lefts)
    if "{" not in shape:
        if " " in shape or "\t" in shape:
            return None
        named = _names(lefts)
        if named is None:
            return None
        names, unique, _ = named
        if len(unique) != len(names):
            return None  # a duplicate series: the line parser reports it
        return SeriesColumns(names, (), [], floats)
    got = _one_name_columns(lefts, shape)
    if got is None:
        return None
    name, label_names, label_values = got
    n = len(lefts)
    # a label of one value in the whole file (its host, its shard): one str for its lines
    # (a million series of 2,000 files: ~50 MB less per such label), found in C
    shared = [[col[0]] * n if col.count(col[0]) == n else col for col in label_values]
    return SeriesColumns([name] * n, tuple(label_names), shared, floats)


def keyvalue_shape(text: str) -> tuple[str, list[float]] | None:
    """A clean file's *shape* (the text left of each ``=``, one line each) and its values;
    None for any file the batch parser would not take.

    Two files of the same shape parse to the same series in the same order, so a store that
    has seen a shape once needs only the values (see :mod:`signalbox.metrics.sql.layouts`).
    """
    cols = _columns(text)
    if cols is None:
        return None
    lefts, floats = cols
    return "\n".join(lefts), floats


def _columns(text: str) -> Columns | None:
    """Left sides (stripped) and values of a clean file; None to go line by line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if has_control_chars(text):
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
        return [], []
    plain = not blanks and len(lines) == text.count("\n") + (not text.endswith("\n"))
    if plain and text.count("=") == len(lines) and all(map(contains, lines, repeat("="))):
        # one "=" on every line (the usual file): one split of the whole text, in C
        parts = text.replace("=", "\n").split("\n")
        lefts, values = parts[0:-1:2], parts[1::2]
    else:
        lefts, seps, values = partition_columns(map(str.rpartition, lines, repeat("=")))
        if "" in seps:
            return None
    floats = float_column(values)
    if floats is None:
        return None
    if blanks:
        lefts = list(map(str.rstrip, lefts, repeat(" \t")))
    return lefts, floats


def _keyvalue_batch(text: str, metas: bool = True) -> Parsed | None:
    """All-or-nothing fast path: the parse of a flawless file, or None to go line by line."""
    return _batch_of_columns(_columns(text), metas)


def _batch_of_columns(
    cols: Columns | None, metas: bool = True, pairs: PairCache | None = None
) -> Parsed | None:
    """:func:`_keyvalue_batch` from the file's :func:`_columns`.

    Everything here depends on the left sides alone (the shape), so :func:`keyvalue_shape`
    may stand in for a parse that succeeded before.
    """
    if cols is None:
        return None
    lefts, floats = cols
    if not lefts:
        return Parsed([], [], [])
    shape = "\n".join(lefts)
    if "{" in shape:
        fast = _one_name(lefts, shape, floats, metas, pairs)
        if fast is not None:
            return fast
    blanks = " " in shape or "\t" in shape
    labels: list[Labels] | None = None
    suffixes: list[str] = []
    heads = lefts
    if "{" in shape:
        heads, braces, tails = partition_columns(map(str.partition, lefts, repeat("{")))
        if tails.count("") != braces.count(""):  # a "{" with nothing after it
            return None
        column = label_column(tails, pairs)
        if column is None:
            return None
        labels, suffixes = column
        if blanks:
            heads = list(map(str.rstrip, heads, repeat(" \t")))
    if "" in heads:
        return None
    named = _names(heads)
    if named is None:
        return None
    names, unique, merged = named
    if labels is None:
        distinct = len(unique)
    elif len(unique) == 1:  # one name: the label sets' texts tell the series apart
        distinct = len(set(suffixes))
    elif merged:
        distinct = len(set(map(str.__add__, names, suffixes)))
    else:  # names and raw keys one to one: no str made per line
        distinct = len(set(zip(heads, suffixes, strict=True)))
    if distinct != len(names):
        return None  # a duplicate series: the line parser reports it
    return _parsed(names, labels or repeat(()), floats, unique, metas)


def _one_name(
    lefts: list[str], shape: str, floats: list[float], metas: bool, pairs: PairCache | None
) -> Parsed | None:
    """:func:`_batch_of_columns` of a file whose every line has one name and a label set
    of one shape (``bench_requests{shard="3",file="7"}``), the usual labelled file; None
    for any other (the general path then reads it).

    Every line starts with the first line's ``NAME{`` when the text holds one more of
    them than of newlines: then cutting it off every line is one ``replace``, and the
    label values come out of the rest in columns, with no ``str.partition`` per line."""
    got = _one_name_columns(lefts, shape)
    if got is None:
        return None
    name, label_names, columns = got
    labels = label_sets(label_names, columns, pairs)
    return _parsed([name] * len(lefts), labels, floats, {name: None}, metas)


def _one_name_columns(
    lefts: list[str], shape: str
) -> tuple[str, list[str], list[list[str]]] | None:
    """The name, label names and label value columns of :func:`_one_name`'s files (no
    series twice); None for any other."""
    head, brace, _ = lefts[0].partition("{")
    prefix = head + brace
    n = len(lefts)
    if not head or " " in head or "\t" in head or not shape.startswith(prefix):
        return None
    if shape.count("\n" + prefix) != n - 1:
        return None
    got = value_columns(shape.replace("\n" + prefix, "\n")[len(prefix) :], n)
    if got is None:
        return None
    label_names, columns = got
    named = _names([head])
    if named is None:
        return None
    # one name, one label order, no escape: the lines' texts tell the series apart
    if len(set(lefts)) != n:
        return None  # a duplicate series: the line parser reports it
    return named[0][0], label_names, columns


def _parsed(
    names: list[str],
    labels: Iterable[Labels],
    floats: list[float],
    unique: dict[str, None],
    metas: bool,
) -> Parsed:
    rows = zip(names, labels, floats, repeat(None))  # endless repeats: not strict
    samples: list[Sample] = list(map(tuple.__new__, repeat(Sample), rows))
    return Parsed(samples, plain_metas(unique, "gauge") if metas else [], [])


def _names(heads: list[str]) -> tuple[list[str], dict[str, None], bool] | None:
    """Each key's Prometheus name, the distinct names, and whether two keys share a name
    (``a.b`` and ``a_b``); None when a name is not valid."""
    # the first lines tell whether names repeat: no dict of a million distinct names built
    # for nothing
    raw = dict.fromkeys(heads) if len(set(heads[:64])) <= 32 else heads
    if len(raw) <= len(heads) // 2:
        # names repeat: each distinct one sanitized and checked once, and one str per
        # name, not per line (~60 MB a million)
        sane = dict(zip(raw, sanitize_name("\n".join(raw)).split("\n"), strict=True))
        if not valid_names(list(sane.values())):
            return None
        unique = dict.fromkeys(sane.values())
        return list(map(sane.__getitem__, heads)), unique, len(unique) != len(raw)
    names = sanitize_name("\n".join(heads)).split("\n")
    if not valid_names(names):
        return None
    unique = dict.fromkeys(names)
    if len(unique) <= len(names) // 2:  # one str per name, not per line: ~60 MB a million
        names = list(map(dict(zip(unique, unique, strict=True)).__getitem__, names))
    return names, unique, True


def _keyvalue_lines(text: str, source: str, metas: bool = True) -> Parsed:
    """The reference parser: one line at a time, every problem reported."""
    lines, check = split_lines(text)
    errors: list[LineError] = []
    kept = LineSamples(source, lines, errors)
    names: dict[str, str] = {}  # raw key -> sanitized name, "" if invalid
    no_labels: Labels = ()
    for lineno, line in text_lines(lines, check, source, errors):
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
        kept.add(_new_sample(Sample, (name, labels, v, None)), lineno)
    good = kept.kept()
    return Parsed(
        good, plain_metas(dict.fromkeys(s[0] for s in good), "gauge") if metas else [], errors
    )
