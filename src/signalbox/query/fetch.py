"""Read what a query needs from the store: each distinct selector once, for all steps.

A range query over 11,520 steps must not cost 11,520 store round trips, so the tree is
walked first to find every selector and every window it is read with (lookback, range,
offset), and each selector is fetched once over the union of those windows. When the
store answers with rollup buckets coarser than a window, the fetch is widened so the
engine's widened windows (see :mod:`signalbox.query.engine`) have their data.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from math import gcd
from operator import lt

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import Matcher, format_series
from signalbox.metrics.store import MetricReader, SeriesPoints
from signalbox.query.ast import Call, Expr, MatrixSelector, VectorSelector
from signalbox.query.functions import FUNCTIONS

FetchKey = tuple[tuple[str, str, str], ...]

# range functions that read a rollup bucket's min/max/sum/count, not only its last value
# (counter functions read the maximum to see resets inside a bucket)
_AGGREGATE_FUNCS = frozenset(
    {
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "rate",
        "increase",
        "irate",
    }
)


@dataclass(frozen=True, slots=True)
class _Use:
    """One place a selector is read: its offset, window width and rollup-bucket need."""

    offset_ms: int
    width_ms: int
    buckets: int
    aggregates: bool  # inside min/max/sum/count/avg_over_time: needs the bucket aggregates
    instant: bool = False  # an instant selector: its width is the lookback


def fetch_key(matchers: tuple[Matcher, ...]) -> FetchKey:
    """Selectors with the same matchers (in any order) share one fetch."""
    return tuple(sorted((m.label, m.op, m.value) for m in matchers))


def _uses(tree: Expr, lookback_ms: int) -> dict[FetchKey, tuple[tuple[Matcher, ...], list[_Use]]]:
    uses: dict[FetchKey, tuple[tuple[Matcher, ...], list[_Use]]] = {}

    def note(
        sel: VectorSelector, width: int, buckets: int, aggregates: bool, instant: bool = False
    ) -> None:
        matchers = sel.all_matchers()
        entry = uses.setdefault(fetch_key(matchers), (matchers, []))
        entry[1].append(_Use(sel.offset_ms, width, buckets, aggregates, instant))

    def collect(e: Expr, buckets: int, aggregates: bool) -> None:
        if isinstance(e, MatrixSelector):
            note(e.selector, e.range_ms, buckets, aggregates)
        elif isinstance(e, VectorSelector):
            note(e, lookback_ms, 1, False, instant=True)
        elif isinstance(e, Call):
            for a in e.args:
                collect(a, FUNCTIONS[e.func].rollup_buckets, e.func in _AGGREGATE_FUNCS)
        else:
            for c in e.children():
                collect(c, 1, False)

    collect(tree, 1, False)
    return uses


def fetch(
    store: MetricReader,
    tree: Expr,
    steps: list[int],
    step_ms: int,
    *,
    lookback_ms: int,
    probe_ms: int,
) -> dict[FetchKey, list[SeriesPoints]]:
    """Series per selector covering every window any step reads.

    ``probe_ms``: when a selector's window holds nothing, look that much further back
    once, since coarse rollup buckets may sit just outside a narrow window (0: never).
    """
    first, last = steps[0], steps[-1]
    data: dict[FetchKey, list[SeriesPoints]] = {}
    for key, (matchers, uses) in _uses(tree, lookback_ms).items():
        start = min(first - u.offset_ms - u.width_ms for u in uses)
        end = max(last - u.offset_ms for u in uses)
        agg = any(u.aggregates for u in uses)
        align = _alignment(uses, first, step_ms if len(steps) > 1 else 0)
        got = store.select(matchers, start, end, step_ms=step_ms, aggregates=agg, align_ms=align)
        if not got and probe_ms:
            start -= probe_ms
            got = store.select(
                matchers, start, end, step_ms=step_ms, aggregates=agg, align_ms=align
            )
        res_ms = max((sp.resolution for sp in got), default=0) * 1000
        if res_ms:
            need = min(first - u.offset_ms - max(u.width_ms, u.buckets * res_ms) for u in uses)
            if need < start:
                got = store.select(
                    matchers, need, end, step_ms=step_ms, aggregates=agg, align_ms=align
                )
        for sp in got:
            _check(sp)
        data[key] = got
    return data


def _alignment(uses: list[_Use], first: int, step_ms: int) -> int:
    """The largest span every window edge of these uses is a multiple of: a rollup tier
    whose bucket length divides it answers every window from whole buckets, exactly.

    A window is ``(end - width, end]`` with ``end = step - offset``; an instant selector's
    lookback start needs no alignment (the buckets' own sample times decide it).
    """
    align = step_ms
    for u in uses:
        align = gcd(align, first - u.offset_ms)
        if not u.instant:
            align = gcd(align, u.width_ms)
    return align


def _check(sp: SeriesPoints) -> None:
    """Bisecting unsorted points would give wrong answers silently; refuse them loudly."""
    ts = sp.timestamps
    n = len(ts)
    if any(len(getattr(sp, c)) != n for c in sp.columns()):
        raise StoreError(
            f"store returned misaligned points for {format_series(sp.name, sp.labels)}"
        )
    if not all(map(lt, ts, islice(ts, 1, None))):
        raise StoreError(
            f"store returned points out of time order (or repeated) for "
            f"{format_series(sp.name, sp.labels)}; select() must return them oldest first"
        )
