"""Prometheus text exposition (format 0.0.4) of the latest value of every series: ``GET /metrics``.

Choices, and why:
    * No timestamps on sample lines: a scraper should stamp values with its scrape time,
      and staleness of series is handled by the server, not by the scrape: a series that
      stopped being reported (its spool file went stale, was removed or lost the line) is
      left out by the store's ``latest`` from the pass that saw it go (a stale marker), so a
      scraping Prometheus marks it stale at its next scrape too.
    * Families are sorted by name, each with exactly one ``# HELP`` and ``# TYPE`` line;
      series within a family are sorted by labels (histogram buckets by ``le`` as a
      number, then ``_sum`` and ``_count``). A missing or blank help text becomes
      "collected by signalbox", so ``promtool check metrics`` finds no help-less metric.
    * The declared type is kept only when the exposition stays lint-clean and parseable,
      otherwise the family is exposed as ``untyped`` (which promtool's type-specific lints
      do not judge) -- the values are the same either way, and a scraper must not be
      handed a lint failure it cannot fix:
        - a counter whose name does not end in ``_total`` (lint: counters end in ``_total``);
        - a gauge named ``*_total``/``*_count``/``*_sum``/``*_bucket`` (lint: reserved
          suffixes), or any counter/gauge with an ``le``/``quantile`` label;
        - a histogram or summary whose stored series do not form a valid family (a bucket
          without a numeric ``le``, a stray series under the base name...): each of its
          series is then exposed as its own ``untyped`` family.
      Lints about the name a user chose (camelCase, ``:``, abbreviated units, the type in
      the name) cannot be fixed without renaming series, which we do not do.
    * A series listed twice keeps its last value (one line per series, as the format
      requires).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from signalbox.metrics.samples import Labels, MetricMeta, escape_label_value

__all__ = ["DEFAULT_HELP", "format_value", "render"]

DEFAULT_HELP = "collected by signalbox"
_RESERVED_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
_MEMBER_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
_Series = tuple[str, Labels, float]


def format_value(value: float) -> str:
    """A sample value the way Prometheus writes it: ``NaN``, ``+Inf``, integers without ``.0``."""
    value = float(value)  # stores may hand back ints
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels) + "}"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _label(labels: Labels, name: str) -> str | None:
    for k, v in labels:
        if k == name:
            return v
    return None


def _valid_family(base: str, kind: str, series: list[_Series]) -> bool:
    """Do these series form a histogram/summary family promtool and Prometheus accept?"""
    if kind == "histogram" and any(s[0] == base for s in series):
        return False
    need = base + "_bucket" if kind == "histogram" else base
    label = "le" if kind == "histogram" else "quantile"
    other = "quantile" if label == "le" else "le"
    for name, labels, _ in series:
        if _label(labels, other) is not None:
            return False  # a quantile in a histogram, an le in a summary: promtool refuses it
        if name == need:
            v = _label(labels, label)
            if v is None or _number(v) is None:
                return False
        elif _label(labels, label) is not None:
            return False  # an le on _sum, a quantile on _count: the parser would choke
    return True


def _family_type(name: str, meta: MetricMeta | None, series: list[_Series]) -> str:
    """The type we can honestly expose for a single-name family (see module docstring)."""
    kind = meta.type if meta is not None else "untyped"
    if kind == "counter" and not name.endswith("_total"):
        return "untyped"
    if kind == "gauge" and name.endswith(_RESERVED_SUFFIXES):
        return "untyped"
    if kind in ("histogram", "summary"):
        return "untyped"  # its series did not form a valid family
    if kind in ("counter", "gauge"):
        for _, labels, _ in series:
            if _label(labels, "le") is not None or _label(labels, "quantile") is not None:
                return "untyped"
    return kind


def _sort_key(kind: str, base: str) -> Callable[[_Series], Any]:
    """Order within a family: by labels; buckets/quantiles numerically, then _sum, _count."""
    if kind not in _MEMBER_SUFFIXES:
        return itemgetter(1)
    label = "le" if kind == "histogram" else "quantile"
    rank = {base + "_bucket": 0, base: 0, base + "_sum": 1, base + "_count": 2}

    def key(s: _Series) -> tuple[Labels, int, float, Labels]:
        others = tuple(p for p in s[1] if p[0] != label)
        v = _label(s[1], label)
        n = _number(v) if v is not None else None
        return others, rank.get(s[0], 3), n if n is not None else 0.0, s[1]

    return key


def render(
    latest: Iterable[tuple[str, Labels, int, float]], metadata: dict[str, MetricMeta]
) -> str:
    """The exposition text for ``(name, labels, timestamp_ms, value)`` rows (timestamps unused)."""
    values: dict[tuple[str, Labels], float] = {}
    for name, labels, _ts, value in latest:
        values[(name, labels)] = value
    by_name: dict[str, list[_Series]] = {}
    for (name, labels), value in values.items():
        by_name.setdefault(name, []).append((name, labels, value))

    # Histogram and summary families claim their member names first.
    claimed: dict[str, tuple[str, list[_Series]]] = {}
    taken: set[str] = set()
    for base, meta in sorted(metadata.items()):
        suffixes = _MEMBER_SUFFIXES.get(meta.type)
        if suffixes is None:
            continue
        names = [base + suffix for suffix in suffixes if base + suffix in by_name]
        if meta.type == "histogram" and base in by_name:
            names.append(base)  # a series named like the family: not a valid histogram
        members = [s for n in names for s in by_name[n]]
        if members and not taken.intersection(names) and _valid_family(base, meta.type, members):
            claimed[base] = (meta.type, members)
            taken.update(names)

    families: dict[str, tuple[str, list[_Series]]] = dict(claimed)
    for name, series in by_name.items():
        if name in taken:
            continue
        families[name] = (_family_type(name, metadata.get(name), series), series)

    out: list[str] = []
    for family in sorted(families):
        kind, series = families[family]
        given = metadata.get(family)
        help_text = given.help if given is not None and given.help.strip() else DEFAULT_HELP
        out.append(f"# HELP {family} {_escape_help(help_text)}\n")
        out.append(f"# TYPE {family} {kind}\n")
        series.sort(key=_sort_key(kind, family))
        for name, labels, value in series:
            out.append(f"{name}{_format_labels(labels)} {format_value(value)}\n")
    return "".join(out)
