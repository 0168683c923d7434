"""``# HELP``/``# TYPE`` bookkeeping for one Prometheus text file, and the label rules
of histogram and summary families (used by :mod:`signalbox.metrics.parse.promtext`).

Types must be known before a sample's family can be told (``foo_count`` belongs to
``foo`` only if ``foo`` is a histogram or summary), so the parsers collect them all
first and ask :meth:`PromMeta.family` afterwards.
"""

from __future__ import annotations

import re
from typing import cast

from signalbox.metrics.parse.lex import NAME_RULE, parse_float, plain_metas, show, unescape_help
from signalbox.metrics.samples import METRIC_NAME, METRIC_TYPES, Labels, MetricMeta, MetricType

__all__ = ["FAMILY_SUFFIXES", "PromMeta", "check_family_labels"]

_BLANKS = re.compile(r"[ \t]+")

FAMILY_SUFFIXES: dict[str, tuple[str, ...]] = {
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


def _tab_partition(s: str) -> tuple[str, str, str]:
    parts = _BLANKS.split(s, maxsplit=1)
    return (parts[0], " ", parts[1]) if len(parts) == 2 else (parts[0], "", "")


class PromMeta:
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
            text = unescape_help(arg, quote=False)
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
        members = (name, *(name + s for s in FAMILY_SUFFIXES.get(t, ())))
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
        for kind, suffixes in FAMILY_SUFFIXES.items():
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
        if any(t[0] in FAMILY_SUFFIXES for t in self.types.values()):
            families = dict.fromkeys(self.family(n)[0] for n in sample_names)
        else:
            families = sample_names
        undeclared = [n for n in families if n not in self.order]
        return out + plain_metas(undeclared, "untyped")


def check_family_labels(name: str, labels: Labels, family: str, kind: str) -> str | None:
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
