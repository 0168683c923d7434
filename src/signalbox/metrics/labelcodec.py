"""Canonical text for a label set, as stored in the ``series`` table.

The text is the inside of a Prometheus selector (``a="1",b="x\\"y"``) with labels sorted by
name, so equal label sets always give equal text and a unique index can key series by it
without decoding anything on the write path.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable

from signalbox.metrics.samples import Labels, merge_labels

_KEY = operator.itemgetter(0)
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


_SPECIAL = ("\\", '"', "\n")  # what encode_labels escapes in a value


def series_texts(label_sets: Iterable[Labels], add: Labels) -> dict[Labels, str]:
    """``{labels: "{" + encode_labels(merge_labels(labels, add))}`` for many label sets at
    once: a first pass registers a million of them. Sets with the same label names (every
    line of a spool file, usually) share one format template with ``add`` written in, and
    are formatted by one C call each when none of their values needs escaping."""
    groups: dict[tuple[str, ...], list[Labels]] = {}
    for labels in label_sets:
        groups.setdefault(tuple(map(_KEY, labels)), []).append(labels)
    out: dict[Labels, str] = {}
    for keys, sets in groups.items():
        have = set(keys)
        if len(have) != len(keys) or keys != tuple(sorted(keys)):
            for labels in sets:  # repeated or unsorted names: as written, one by one
                out[labels] = "{" + encode_labels(merge_labels(labels, add))
            continue
        extra = [kv for kv in add if kv[0] not in have]
        if any(any(c in v for c in _SPECIAL) for _, v in extra):
            for labels in sets:
                out[labels] = "{" + encode_labels(merge_labels(labels, add))
            continue
        merged = sorted([(k, i) for i, k in enumerate(keys)] + [(k, v) for k, v in extra])
        parts = []
        for k, ref in merged:
            if isinstance(ref, int):
                parts.append(f'{k}="{{{ref}}}"')
            else:  # an added label's value, written in (its braces doubled for format)
                parts.append(f'{k}="' + ref.replace("{", "{{").replace("}", "}}") + '"')
        fmt = ("{{" + ",".join(parts)).format
        for labels in sets:
            values = [v for _, v in labels]
            joined = "".join(values)
            if "\\" in joined or '"' in joined or "\n" in joined:
                out[labels] = "{" + encode_labels(merge_labels(labels, add))
            else:
                out[labels] = fmt(*values)
    return out


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
