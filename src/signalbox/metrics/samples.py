"""The records every part of the metrics pipeline passes around.

A *series* is a metric name plus a set of labels; a *sample* is one value of a series at
one time. Labels are kept as a tuple of ``(name, value)`` pairs sorted by name, so that a
series key is hashable, canonical and cheap to build in the hot parsing loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Literal, NamedTuple

from signalbox.metrics.labelregex import LabelRegex, compile_label_regex

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


class SeriesColumns(NamedTuple):
    """Series and one value each, column-wise: series ``i`` is ``names[i]`` with the labels
    ``label_names[j]="label_values[j][i]"``, value ``values[i]``, no timestamp.

    What a clean spool file of a new shape parses to (see
    :func:`~signalbox.metrics.parse.keyvalue.keyvalue_series`): the store builds the series'
    keys from the columns (:func:`~signalbox.metrics.labelcodec.column_keys`), so a first
    pass of a million new series makes no label tuple nor :class:`Sample` per series.
    Label names are distinct and valid, in any order; label values are never empty (an
    empty value means no label: such a file keeps to samples)."""

    names: list[str]
    label_names: tuple[str, ...]
    label_values: list[list[str]]
    values: list[float]

    def samples(self) -> list[Sample]:
        """The same series as samples (for stores and paths that take samples)."""
        order = sorted(range(len(self.label_names)), key=self.label_names.__getitem__)
        made = [zip(repeat(self.label_names[j]), self.label_values[j]) for j in order]
        label_sets = zip(*made, strict=True) if made else repeat(())
        rows = zip(self.names, label_sets, self.values, repeat(None))  # repeat: not strict
        return list(map(tuple.__new__, repeat(Sample), rows))


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
    """A PromQL label matcher; ``__name__`` matches the metric name.

    Regexes are RE2, fully anchored, compiled once here (see :mod:`labelregex`), so a bad
    pattern fails where the matcher is built: at parse time, as a 400.
    """

    label: str
    op: MatchOp
    value: str
    _regex: LabelRegex | None = field(default=None, compare=False, repr=False)
    # the whole test as one call, chosen once: selections run it for every series
    _test: Callable[[str], bool] = field(default=bool, compare=False, repr=False)

    def __post_init__(self) -> None:
        test: Callable[[str], bool]
        if self.op == "=":
            test = _equal_to(self.value)
        elif self.op == "!=":
            test = _negated(_equal_to(self.value))
        else:
            regex = compile_label_regex(self.value)
            object.__setattr__(self, "_regex", regex)
            test = regex.matches if self.op == "=~" else _negated(regex.matches)
        object.__setattr__(self, "_test", test)

    def matches(self, value: str) -> bool:
        """Does a series whose label has ``value`` ("" when absent) satisfy this matcher?"""
        return self._test(value)


def _equal_to(expected: str) -> Callable[[str], bool]:
    # a closure, not str.__eq__: that one answers NotImplemented (truthy) to a non-str
    def equal(value: str, expected: str = expected) -> bool:
        return value == expected

    return equal


def _negated(test: Callable[[str], bool]) -> Callable[[str], bool]:
    def negated(value: str) -> bool:
        return not test(value)

    return negated


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
    d: dict[str, str] | None = None  # built only when a matcher reads a label
    for m in matchers:
        if m.label == "__name__":
            v = name
        else:
            if d is None:
                d = dict(labels)
            v = d.get(m.label, "")
        if not m._test(v):
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
