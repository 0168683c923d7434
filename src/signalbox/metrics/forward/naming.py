"""Series names for peers whose names are paths: percent-escaping of label values.

Graphite and Ganglia name a series with one string, and each reserves characters: Graphite
splits a line on spaces and tags on ``;``, forbids a tag value starting with ``~`` and maps
``/`` into directories; gmond writes names and host names into its XML without escaping.
A label value (any UTF-8 in Prometheus) is therefore written with every character outside
ASCII letters, digits and a small safe set replaced by ``%XX`` of its UTF-8 bytes, ``%``
itself included: the escape is lossless (``a b`` and ``a_b`` stay two series), the way URLs
escape. Empty label values are left out: Prometheus treats them as absent.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["escape"]


@lru_cache(maxsize=8)
def _pattern(keep: str) -> re.Pattern[str]:
    return re.compile(f"[A-Za-z0-9_{re.escape(keep)}]*\\Z")


@lru_cache(maxsize=65536)
def escape(text: str, keep: str = "-:") -> str:
    """``text`` with each character outside ``[A-Za-z0-9_]`` and ``keep`` as ``%XX`` bytes."""
    if _pattern(keep).match(text):
        return text
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch == "_" or ch in keep):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
    return "".join(out)
