"""The records every part of the metrics pipeline passes around.

A *series* is a metric name plus a set of labels; a *sample* is one value of a series at
one time. Labels are kept as a tuple of ``(name, value)`` pairs sorted by name, so that a
series key is hashable, canonical and cheap to build in the hot parsing loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by label name; never contains ``__name__``."""

SeriesKey = tuple[str, Labels]
"""``(metric name, labels)``: the identity of a series."""

MetricType = Literal["counter", "gauge", "histogram", "summary", "untyped"]
METRIC_TYPES: frozenset[str] = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class Sample(NamedTuple):
    """One value of one series. ``timestamp_ms`` None means "at collection time"."""

    name: str
    labels: Labels
    value: float
    timestamp_ms: int | None = None

    @property
    def key(self) -> SeriesKey:
        return (self.name, self.labels)


@dataclass(frozen=True, slots=True)
class MetricMeta:
    """What a metric is (from ``# TYPE``/``# HELP``, StatsD kind, or our default)."""

    name: str
    type: MetricType = "gauge"
    help: str = ""
    unit: str = ""


MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """A PromQL label matcher; ``__name__`` matches the metric name. Regexes are anchored."""

    label: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", compile_label_regex(self.value))

    def matches(self, value: str) -> bool:
        """Does a series whose label has ``value`` ("" when absent) satisfy this matcher?"""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        hit = self._regex.match(value) is not None
        return hit if self.op == "=~" else not hit


def compile_label_regex(value: str) -> re.Pattern[str]:
    """A fully anchored regex with RE2-like semantics, as Prometheus matches label values.

    Leading global flags such as ``(?i)`` are valid in PromQL (RE2) but must stay at the
    very start of a Python pattern, so they are lifted out before anchoring. ``\\d``,
    ``\\w`` and ``\\s`` match ASCII only, as in RE2.
    """
    flags = re.DOTALL | re.ASCII
    m = re.match(r"\(\?([ims]+)\)", value)
    if m:
        for ch in m.group(1):
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[ch]
        value = value[m.end() :]
    return re.compile(f"(?:{value})\\Z", flags)


def merge_labels(labels: Labels, extra: Labels) -> Labels:
    """``labels`` plus each of ``extra`` whose name ``labels`` does not already have."""
    if not extra:
        return labels
    have = {k for k, _ in labels}
    add = [kv for kv in extra if kv[0] not in have]
    return tuple(sorted((*labels, *add))) if add else labels


def labels_of(pairs: dict[str, str] | Labels) -> Labels:
    """Canonical label tuple from a mapping or unsorted pairs."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted(items))


def series_matches(
    name: str, labels: Labels, matchers: tuple[Matcher, ...] | list[Matcher]
) -> bool:
    """True when every matcher accepts the series (absent labels read as "")."""
    d = dict(labels)
    for m in matchers:
        v = name if m.label == "__name__" else d.get(m.label, "")
        if not m.matches(v):
            return False
    return True


def format_series(name: str, labels: Labels) -> str:
    """``name{a="1",b="2"}`` with Prometheus escaping; used in messages and exposition."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def sanitize_name(name: str) -> str:
    """Map Graphite/StatsD style names (``image.processed``, ``api-hits``) onto Prometheus' alphabet.

    Only ``.``, ``-`` and ``/`` are rewritten (to ``_``); anything else outside the alphabet
    stays, so the caller's validation reports it instead of guessing.
    """
    return name.replace(".", "_").replace("-", "_").replace("/", "_")
