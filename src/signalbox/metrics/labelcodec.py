"""Canonical text for a label set, as stored in the ``series`` table.

The text is the inside of a Prometheus selector (``a="1",b="x\\"y"``) with labels sorted by
name, so equal label sets always give equal text and a unique index can key series by it
without decoding anything on the write path.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence
from itertools import compress, repeat

from signalbox.metrics.samples import Labels, merge_labels

_KEY, _VALUE = operator.itemgetter(0), operator.itemgetter(1)
_PLAIN_PAIR = re.compile(r'([^=,]+)="([^"]*)"')


def encode_labels(labels: Labels) -> str:
    if not labels:
        return ""
    parts = []
    for k, v in labels:
        if "\\" in v or '"' in v or "\n" in v:
            v = v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{k}="{v}"')
    return ",".join(parts)


_NEEDS_ESCAPE = re.compile('[\\\\"\\n]').search
_CHUNK = 65_536  # series per step of series_keys: bounds its passing tuples and columns
_MAX_SHAPES = 32  # label-name tuples per chunk taken apart in C; beyond, one set at a time


def _reference_key(name: str, labels: Labels, add: Labels) -> str:
    return name + "{" + encode_labels(merge_labels(labels, add))


def series_keys(
    names: Sequence[str],
    label_sets: Sequence[Labels],
    add: Labels,
    *,
    chunk: int = _CHUNK,
    max_shapes: int = _MAX_SHAPES,
) -> list[str]:
    """``[name + "{" + encode_labels(merge_labels(labels, add))]`` of many series at once,
    in order: the write map's keys (the series table's name and label text, split at the
    first ``{``). A first pass registers a million of them.

    The sets of one label-name tuple (every line of a spool file, usually) are taken apart
    into value columns and joined with the text between them (``add`` written in), all by
    ``map`` in C: no Python step, no dict, nothing kept per series but its key (a set is
    not deduplicated first: hashing a million label tuples costs more than joining a
    repeat). Sets whose names repeat or are unsorted, and values that need escaping, take
    :func:`encode_labels` one at a time. ``chunk`` series are taken at a time, and a chunk
    of more than ``max_shapes`` label-name tuples one set at a time."""
    out: list[str] = []
    for i in range(0, len(names), chunk):
        part = names[i : i + chunk], label_sets[i : i + chunk]
        out.extend(_chunk_keys(*part, add, max_shapes))
    return out


def _one_shape(sets: Sequence[Labels]) -> tuple[tuple[str, ...], list[list[str]]] | None:
    """The label names every one of ``sets`` has, in the same order, and the value columns;
    None when they differ (checked column by column, in C)."""
    lengths = set(map(len, sets))
    if len(lengths) != 1:
        return None
    keys: list[str] = []
    columns: list[list[str]] = []
    for j in range(lengths.pop()):
        pairs = list(map(operator.itemgetter(j), sets))
        names = set(map(_KEY, pairs))
        if len(names) != 1:
            return None
        keys.append(names.pop())
        columns.append(list(map(_VALUE, pairs)))
    return tuple(keys), columns


def _chunk_keys(
    names: Sequence[str], sets: Sequence[Labels], add: Labels, max_shapes: int
) -> list[str]:
    one = _one_shape(sets)
    if one is not None:
        return _shape_keys(*one, names, sets, add)
    shapes = list(map(tuple, map(map, repeat(_KEY), sets)))  # each set's label names
    distinct = dict.fromkeys(shapes)
    if len(distinct) > max_shapes:  # many shapes (hand-made writes): one set at a time
        return list(map(_reference_key, names, sets, repeat(add)))
    out: list[str] = [""] * len(names)
    for shape in distinct:
        at = list(compress(range(len(names)), map(operator.eq, shapes, repeat(shape))))
        part = list(map(sets.__getitem__, at))
        columns = [list(map(_VALUE, map(operator.itemgetter(j), part))) for j in range(len(shape))]
        keys = _shape_keys(shape, columns, list(map(names.__getitem__, at)), part, add)
        list(map(out.__setitem__, at, keys))
    return out


def _shape_keys(
    keys: tuple[str, ...],
    columns: list[list[str]],
    names: Sequence[str],
    sets: Sequence[Labels],
    add: Labels,
) -> list[str]:
    """:func:`series_keys` of sets that all have the label names ``keys``, in that order,
    whose values are ``columns``."""
    have = set(keys)
    extra = [kv for kv in add if kv[0] not in have]
    if len(have) != len(keys) or keys != tuple(sorted(keys)) or _escaped([v for _, v in extra]):
        # repeated or unsorted names, or an added value to escape: as written, one by one
        return list(map(_reference_key, names, sets, repeat(add)))
    # the key's pieces in order: the name, then text and value in turn (added labels'
    # values are text), the text around each value repeated
    pieces: list[Iterable[str]] = [names]
    text = "{"
    for k, ref in sorted([(k, i) for i, k in enumerate(keys)] + [(k, v) for k, v in extra]):
        text += ("," if text != "{" else "") + k + '="'
        if isinstance(ref, int):
            pieces += [repeat(text), columns[ref]]
            text = '"'
        else:
            text += ref + '"'
    pieces.append(repeat(text))
    out = list(map("".join, zip(*pieces, strict=False)))  # names and columns: one length
    for col in columns:
        if _escaped(col):  # a few values to escape: those sets as written
            for i in compress(range(len(col)), map(_NEEDS_ESCAPE, col)):
                out[i] = _reference_key(names[i], sets[i], add)
    return out


def column_keys(
    names: Sequence[str],
    label_names: Sequence[str],
    label_values: Sequence[Sequence[str]],
    add: Labels,
) -> list[str]:
    """:func:`series_keys` of series given column-wise (a
    :class:`~signalbox.metrics.samples.SeriesColumns`): ``names[i]`` with labels
    ``label_names[j]="label_values[j][i]"`` (names distinct, in any order), ``add`` merged
    in as :func:`~signalbox.metrics.samples.merge_labels` does. The key's pieces are
    joined by ``map`` in C, no label tuple made; a column holding a value to escape is
    escaped first (a copy of that column). An empty value (no label, by the rule the
    parsers share) sends those series through :func:`encode_labels` one at a time."""
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"label names repeat: {list(label_names)}")
    columns = [col if isinstance(col, list) else list(col) for col in label_values]
    if any("" in col for col in columns):
        sets = [
            tuple(sorted(p for p in zip(label_names, vals, strict=True) if p[1]))
            for vals in zip(*columns, strict=True)
        ] or [()] * len(names)
        return list(map(_reference_key, names, sets, repeat(add)))
    have = set(label_names)
    pieces: list[Iterable[str]] = [names]
    text = "{"
    own = [(k, columns[j]) for j, k in enumerate(label_names)]
    extra = [(k, [v]) for k, v in add if k not in have]
    for k, col in sorted(own + extra, key=operator.itemgetter(0)):
        if _escaped(col):
            col = [_escape(v) for v in col]
        text += ("," if text != "{" else "") + k + '="'
        if len(col) == 1 and k not in have:  # an added label: its value is text
            text += col[0] + '"'
            continue
        pieces += [repeat(text), col]
        text = '"'
    pieces.append(repeat(text))
    return list(map("".join, zip(*pieces, strict=False)))  # names and columns: one length


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escaped(values: list[str]) -> bool:
    """Does one of ``values`` hold what :func:`encode_labels` escapes?"""
    joined = "".join(values)
    return "\\" in joined or '"' in joined or "\n" in joined


def decode_labels(text: str) -> Labels:
    """Inverse of :func:`encode_labels` (input is trusted: we wrote it)."""
    if "\\" not in text:  # nothing escaped (nearly every label set): no value holds a quote
        return tuple(_PLAIN_PAIR.findall(text))
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        eq = text.index("=", i)
        name = text[i:eq]
        j = eq + 2  # skip ="
        buf: list[str] = []
        while True:
            c = text[j]
            if c == "\\":
                nxt = text[j + 1]
                buf.append("\n" if nxt == "n" else nxt)
                j += 2
            elif c == '"':
                break
            else:
                k = j
                while j < n and text[j] not in '\\"':
                    j += 1
                buf.append(text[k:j])
        out.append((name, "".join(buf)))
        i = j + 2  # skip ",
    return tuple(out)
