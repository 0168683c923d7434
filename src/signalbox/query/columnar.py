"""``sum by (shard) (x)`` at one instant over a million series, without a Python object each.

The general path reads every series into a ``SeriesPoints``, finds its value at the instant,
wraps it in a ``StepSeries`` with its label tuple, sorts them all by labels and groups them:
about 13 µs a series, 13 s for a million. Here the store hands over the newest values as
arrays (:class:`~signalbox.metrics.store.LatestColumns`), and each series' group and its
place in label order are looked up in arrays kept across queries (:class:`GroupCache`):
series' labels never change, so they are decoded once per grouping, not once per query.

The answers are the general path's, value for value: each group is reduced by the same
reducers (:data:`signalbox.query.aggregate._REDUCERS`) over its members in the same label
order where the reducer's result depends on it (Welford's ``stddev``/``stdvar``, and the
compensated loop ``sum``/``avg`` fall back to past an overflow: then the series are ranked
in label order once, and kept ranked); ``count``, ``group``, ``min``, ``max`` and an
exactly rounded ``sum``/``avg`` do not depend on order, and need no ranking. A property
test compares both paths.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, repeat

import numpy as np
import numpy.typing as npt

from signalbox.limits import check_deadline
from signalbox.metrics.labelcodec import decode_labels
from signalbox.metrics.store import LatestColumns
from signalbox.query.aggregate import _REDUCERS, _SINGLE, group_key
from signalbox.query.values import Metric, StepSeries

OPS = frozenset({"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar"})
"""Aggregations this path answers (the ones without a parameter)."""

_ORDER_FREE = frozenset({"count", "group", "min", "max"})
_EXACT_SUM = frozenset({"sum", "avg"})  # order-free while math.fsum answers (finite sums)

Ints = npt.NDArray[np.int64]


_BATCH = 10_000  # series decoded between two deadline checks
_BATCH_COLUMNS = 50_000  # series read column-wise between two deadline checks (~20 ms)


def _metric(name: str, labels: tuple[tuple[str, str], ...]) -> Metric:
    return tuple(sorted((("__name__", name), *labels)))


def _label_lines(label: str) -> Callable[[str], list[str]]:
    """All of a newline-joined run of label texts at once: per text, in order, the value of
    ``label`` with its closing quote (``'v"'``, ``'"'`` for an empty value) or ``""`` where
    the text has no such label. Whole pairs are skipped from the start of a line, so a value
    that looks like ``label="`` is never taken for the label (a search for it would be); the
    pattern is optional and anchored to each line, so every line (an empty one too) gives
    exactly one match: one ``findall`` in C instead of a call a series. Texts hold no newline (:func:`encode_labels` escapes
    it); texts with an escaped value are read apart by the caller."""
    find = re.compile(
        rf'^(?:(?:[^=,\n]+="[^"\n]*",)*?{re.escape(label)}="([^"\n]*")|)[^\n]*$', re.M
    ).findall
    return find


def _label_column(label: str, texts: list[str]) -> list[str]:
    """The value of ``label`` in each of ``texts``, column-wise, as :func:`_label_lines`
    gives it (``'v"'``; ``""``: not there)."""
    if not texts:  # "" joined is one empty line
        return []
    found = _label_lines(label)("\n".join(texts))
    if len(found) != len(texts):  # cannot happen for texts we wrote: say so, never guess
        raise AssertionError(f"{len(found)} label values read for {len(texts)} label texts")
    if any(map(operator.contains, texts, repeat("\\"))):
        for i in compress(range(len(texts)), map(operator.contains, texts, repeat("\\"))):
            v = dict(decode_labels(texts[i])).get(label)  # an escaped value: decoded properly
            found[i] = "" if v is None else v + '"'
    return found


def _key_function(grouping: tuple[str, ...], without: bool) -> Callable[[str, str], Metric]:
    """``(name, label text) -> group key``, what :func:`group_key` gives for the series'
    metric, without building the metric: labels are stored sorted by name, so keeping or
    dropping some keeps them sorted (``__name__`` sorts among them only when grouped by).
    A grouping by one other label is read column-wise instead (:meth:`GroupCache._by_label`)."""
    names = frozenset(grouping)
    if not without and not names:  # sum(x): one group, no label read
        return lambda name, text: ()
    if not without and "__name__" in names:
        return lambda name, text: group_key(_metric(name, decode_labels(text)), grouping, False)
    if without:
        return lambda name, text: tuple(p for p in decode_labels(text) if p[0] not in names)
    return lambda name, text: tuple(p for p in decode_labels(text) if p[0] in names)


def _single_label(grouping: tuple[str, ...], without: bool) -> str | None:
    """The label of a grouping by one label other than ``__name__``, else None."""
    if without or len(set(grouping)) != 1 or grouping[0] == "__name__":
        return None
    return grouping[0]


@dataclass(slots=True)
class _Groups:
    """Per series id (array index): its group (-1: not known yet) and its rank in label
    order among the series known (-1: not ranked yet); the groups' label sets."""

    group: Ints
    rank: Ints
    keys: list[Metric]
    index: dict[Metric, int]


class GroupCache:
    """Group and label-order rank of each series, per grouping, kept across queries (an
    engine's lifetime: ``serve`` keeps one). Bounded: a few groupings, two integers a series
    each (16 MB at a million series)."""

    def __init__(self, max_groupings: int = 8) -> None:
        self._max = max_groupings
        self._entries: OrderedDict[tuple[tuple[str, ...], bool], _Groups] = OrderedDict()
        self._lock = threading.Lock()

    def _entry(self, grouping: tuple[str, ...], without: bool, size: int) -> _Groups:
        key = (tuple(sorted(grouping)), without)
        with self._lock:
            got = self._entries.get(key)
            if got is None:
                got = _Groups(np.full(size, -1), np.full(size, -1), [], {})
                self._entries[key] = got
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(key)
            if len(got.group) < size:  # series ids past the arrays: grow them
                grow = max(size, 2 * len(got.group)) - len(got.group)
                got.group = np.concatenate([got.group, np.full(grow, -1)])
                got.rank = np.concatenate([got.rank, np.full(grow, -1)])
            return got

    def groups(
        self, cols: LatestColumns, grouping: tuple[str, ...], without: bool
    ) -> tuple[Ints, list[Metric], _Groups]:
        """Each series' group index and the groups' label sets; series not seen before
        (only those) are decoded."""
        ids = cols.ids
        size = int(ids.max()) + 1 if len(ids) else 0
        entry = self._entry(grouping, without, size)
        with self._lock:
            new = ids[entry.group[ids] < 0].tolist()
            index, keys, group = entry.index, entry.keys, entry.group
            label = _single_label(grouping, without)
            if label is not None:
                self._by_label(label, new, cols, entry)
                return group[ids], keys, entry
            key_of = _key_function(grouping, without)
            for i in range(0, len(new), _BATCH):
                check_deadline()
                batch = new[i : i + _BATCH]
                for sid, (name, text) in zip(batch, cols.texts(batch), strict=True):
                    k = key_of(name, text)
                    g = index.get(k)
                    if g is None:
                        g = index[k] = len(keys)
                        keys.append(k)
                    group[sid] = g
            return group[ids], keys, entry

    @staticmethod
    def _by_label(label: str, new: list[int], cols: LatestColumns, entry: _Groups) -> None:
        """Groups by one label (``sum by (shard)``): the label's value of every series
        read column-wise (:func:`_label_column`), a dict step per distinct value, not a
        call per series."""
        index, keys, group = entry.index, entry.keys, entry.group
        name_text = operator.itemgetter(1)
        for i in range(0, len(new), _BATCH_COLUMNS):
            check_deadline()
            batch = new[i : i + _BATCH_COLUMNS]
            raw = _label_column(label, list(map(name_text, cols.texts(batch))))
            gid: dict[str, int] = {}
            for v in dict.fromkeys(raw):
                k: Metric = ((label, v[:-1]),) if v else ()
                g = index.get(k)
                if g is None:
                    g = index[k] = len(keys)
                    keys.append(k)
                gid[v] = g
            group[np.asarray(batch, dtype=np.int64)] = np.fromiter(
                map(gid.__getitem__, raw), dtype=np.int64, count=len(raw)
            )

    def ranks(self, entry: _Groups, cols: LatestColumns) -> Ints:
        """Each series' rank in label order (the order the general path sorts series in),
        for the reductions whose result depends on it; ranked once, again when a series
        not ranked yet comes."""
        ids = cols.ids
        with self._lock:
            if (entry.rank[ids] < 0).any():
                known = np.flatnonzero(entry.group >= 0)
                keys: list[Metric] = []
                sids = known.tolist()
                for i in range(0, len(sids), _BATCH):
                    check_deadline()
                    keys += [
                        _metric(name, decode_labels(text))
                        for name, text in cols.texts(sids[i : i + _BATCH])
                    ]
                order = sorted(range(len(keys)), key=keys.__getitem__)
                entry.rank[known[order]] = np.arange(len(order))
            ranks: Ints = entry.rank[ids]
            return ranks


def aggregate(
    op: str,
    cols: LatestColumns,
    grouping: tuple[str, ...],
    without: bool,
    cache: GroupCache,
) -> list[StepSeries]:
    """``op`` by/without ``grouping`` over the newest values ``cols``, as one-step series
    in the order of their label sets (the general path lists groups in the order of their
    first member; every consumer of an aggregation's output sorts or matches by labels, so
    the order is not seen)."""
    values = cols.values
    if not len(values):
        return []
    group, keys, entry = cache.groups(cols, grouping, without)
    ordered = op not in _ORDER_FREE and not (
        op in _EXACT_SUM and bool(np.isfinite(values).all()) and _fsum_finite(values)
    )
    if ordered:  # members in label order: the reduction's rounding depends on it
        order = np.lexsort((cache.ranks(entry, cols), group))
    else:
        order = np.argsort(group, kind="stable")
    g = group[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    starts = np.concatenate([[0], cuts]).astype(np.int64)
    ends = np.concatenate([cuts, [len(g)]]).astype(np.int64)
    vals = values[order].tolist()
    reduce, single = _REDUCERS[op], _SINGLE.get(op)
    out: list[StepSeries] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        check_deadline()
        members = vals[a:b]
        v = single(members[0]) if b - a == 1 and single is not None else reduce(members)
        out.append(StepSeries(keys[int(g[a])], [v]))
    out.sort(key=lambda s: s.metric)
    return out


def _fsum_finite(values: npt.NDArray[np.float64]) -> bool:
    """Whether every group's exactly rounded sum is finite: then ``kahan_sum``/``kahan_mean``
    answer with ``math.fsum``, whatever the order. A whole finite sum of magnitudes bounds
    every group's."""
    try:
        return math.isfinite(math.fsum(np.abs(values).tolist()))
    except (OverflowError, ValueError):
        return False
