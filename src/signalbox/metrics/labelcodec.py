"""Canonical text for a label set, as stored in the ``series`` table.

The text is the inside of a Prometheus selector (``a="1",b="x\\"y"``) with labels sorted by
name, so equal label sets always give equal text and a unique index can key series by it
without decoding anything on the write path.
"""

from __future__ import annotations

import re

from signalbox.metrics.samples import Labels

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
