"""Column-wise helpers for the all-or-nothing fast path of both spool parsers.

Speed: the spool collector re-reads every file each pass, so a 100k-line file must stay
cheap. A clean file (the common case, either format) takes a batch path that does its
per-line work in C (``map`` over ``str`` methods, one ``sanitize_name`` over all names
joined, label sets of one shape split into columns); any irregularity -- an error, a
duplicate, an odd character -- sends the whole file through the line-by-line parser,
which is the reference behaviour and produces the error messages. Tests check that both
paths agree. Two more habits serve the same budget: the cyclic GC is held while a file is
parsed (see :func:`~signalbox.metrics.parse.lex.gc_paused`), and help-less ``MetricMeta``
records are memoized by name (:func:`~signalbox.metrics.parse.lex.plain_metas`), since the same
files come back every pass.

Every helper here answers None (or False) for anything irregular rather than explaining
it: explaining is the line parser's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import repeat
from operator import itemgetter

import msgspec

from signalbox.metrics.parse.lex import LABEL_RULE, fast_labels, scan_labels
from signalbox.metrics.samples import Labels

__all__ = [
    "PairCache",
    "float_column",
    "label_column",
    "label_sets",
    "partition_columns",
    "valid_names",
    "value_columns",
]

_LABEL_NAME_AT = re.compile(LABEL_RULE)
_DIGIT = re.compile("[0-9]")
_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)


def partition_columns(
    rows: Iterable[tuple[str, str, str]],
) -> tuple[list[str], list[str], list[str]]:
    """``str.partition`` results, transposed in C (faster than ``zip(*rows)``)."""
    table = list(rows)
    return list(map(_first, table)), list(map(_second, table)), list(map(_third, table))


_JSON_FLOATS = msgspec.json.Decoder(list[float])


def float_column(values: list[str]) -> list[float] | None:
    """Every value as :func:`~signalbox.metrics.parse.lex.parse_float` reads it; None if one is not.

    The usual values are JSON numbers, which msgspec parses (correctly rounded, like
    ``float``) about four times faster than ``map(float)``. Commas cannot smuggle extra
    numbers in (the count must match, and JSON has no empty elements); the one JSON number
    msgspec reads differently is ``-0`` (as 0.0), so it takes the ``float`` path.
    """
    if "-0" not in values:
        try:
            got = _JSON_FLOATS.decode("[" + ",".join(values) + "]")
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            if len(got) == len(values):
                return got
    try:
        floats = list(map(float, values))
    except ValueError:
        return None
    joined = "".join(values)
    if "_" in joined or not joined.isascii():
        return None
    return floats


def valid_names(names: list[str]) -> bool:
    """Does every name match ``[a-zA-Z_:][a-zA-Z0-9_:]*``? Checked on all names joined."""
    if "" in names:
        return False
    flat = "".join(names).replace(":", "_")
    if not (flat.isascii() and flat.isidentifier()):
        return False
    return _DIGIT.search("".join(map(_first, names))) is None


PairCache = dict[str, dict[str, tuple[str, str]]]
"""Label pairs already made, by label name and value: shared by the files of one scan, so
a value many files repeat (``le``, ``code``, a line number) is one pair in memory."""


def label_column(
    tails: list[str], pairs: PairCache | None = None
) -> tuple[list[Labels], list[str]] | None:
    """Labels per line from the texts after ``{`` ("" for no label set), plus a key suffix
    per line that tells label sets apart; None if any label set is not clean."""
    labels = _bulk_labels(tails, pairs)
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


def _bulk_labels(tails: list[str], pairs: PairCache | None = None) -> list[Labels] | None:
    """Labels for every line at once, when all label sets have one shape; else None.

    ``tails`` are the label texts after ``{`` (``shard="1",dc="x"}``). Such tails are
    canonical when this answers: equal tails mean equal label sets.
    """
    got = value_columns("\n".join(tails), len(tails))
    return None if got is None else label_sets(*got, pairs)


def value_columns(joined: str, n: int) -> tuple[list[str], list[list[str]]] | None:
    """The label names and value columns of ``n`` label texts after ``{`` joined by
    newlines, when all have one shape (the same names in the same order, no escape, no
    blank between tokens, no empty value); else None.

    Files with labels usually repeat the same names in the same order on every line; then
    one ``split`` of the joined texts on ``"`` yields the values column by column, and
    checking that the text between the values is the same on every line validates the
    lot -- no Python loop per line.
    """
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
    return names, [values[j::k] for j in range(k)]


def label_sets(
    names: list[str], columns: list[list[str]], pairs: PairCache | None = None
) -> list[Labels]:
    """The label set of each line from its values ``columns[j]`` of label ``names[j]``
    (distinct, valid, values non-empty): pairs sorted by name, as :data:`Labels` are."""
    order = sorted(range(len(names)), key=names.__getitem__)
    made = (_pairs(names[j], columns[j], pairs) for j in order)
    return list(zip(*made, strict=True))


def _pairs(name: str, values: list[str], cache: PairCache | None) -> Iterable[tuple[str, str]]:
    """``(name, value)`` for each of ``values``; one pair object per distinct value when
    values repeat (a file's ``host`` or ``shard``), or were seen before (``cache``): a
    million label sets hold ~50-100 MB less per such label."""
    if cache is not None:
        known = cache.setdefault(name, {})
        # the distinct values first (a hash each, no tuple), pairs made for the new ones only
        fresh = dict.fromkeys(values).keys() - known.keys()
        if fresh:
            known.update(zip(fresh, zip(repeat(name), fresh), strict=True))
        return list(map(known.__getitem__, values))
    distinct = dict.fromkeys(values)
    if len(distinct) > len(values) // 2:
        return zip(repeat(name), values)
    shared = dict(zip(distinct, zip(repeat(name), distinct), strict=False))  # one length
    return map(shared.__getitem__, values)
